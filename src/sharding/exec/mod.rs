//! The pipeline executor: [`ShardedModelExecution`] launches one worker per shard, loads each
//! shard, and runs requests through the shards in order, the activation passing as raw float32
//! bytes, never JSON number text: base64 in the page-API calls ([`Route::Harness`]) or through
//! the asset server's relay ([`Route::Server`]). Requests run concurrently, so while one
//! request is in shard 2 the next is in shard 1.
//!
//! A shard call that fails (browser killed, tab crashed, page hung past the run bound) starts
//! one recovery (`retry_failed_shards`, `reassign_shards` or `full_retry`); the request then
//! runs again from the failed shard (from the first shard after a full retry). Recoveries are
//! serialised, and a request that failed on a placement already repaired only retries.
//! Files: this one (the executor, its workers, loads and probes), `pipeline.rs` (one request),
//! `recover.rs` (recovery episodes). Must not import `cli` or `report`.

mod pipeline;
mod recover;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use base64::Engine as _;

use crate::browser::{BrowserKind, LaunchSpec, WorkerError};
use crate::metrics::sharding::{ShardEvent, ShardSpan};
use crate::models::{PreparedModel, ShardedModel};
use crate::pool::worker::WorkerContext;
use crate::pool::{ErrorClass, Journal, Page, Worker};
use crate::scenario::ShardRecovery;
use crate::state::{Op, ShardAssignment};

/// How the executor is set up.
#[derive(Debug, Clone)]
pub struct ShardSetup {
    /// One launch per browser kind; worker `i` uses `launches[i % len]` unless `places` says.
    pub launches: Vec<LaunchSpec>,
    /// Per worker (shard), its browser and the one backend it must use; empty: the launches
    /// in turn with the context's backends.
    pub places: Vec<(BrowserKind, Option<crate::backend::Backend>)>,
    /// What every worker shares (asset server, page settings, timeouts).
    pub ctx: Arc<WorkerContext>,
    /// What a failed shard gets.
    pub recovery: ShardRecovery,
    /// Recoveries one request may wait for before it fails.
    pub max_attempts: u32,
    /// Where shard placements are journaled.
    pub journal: Option<Journal>,
}

/// Why a sharded request or set-up failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ShardError {
    /// The class (as the pool classifies errors).
    pub class: ErrorClass,
    /// What happened.
    pub message: String,
}

impl ShardError {
    fn of(e: &WorkerError, what: &str) -> Self {
        Self {
            class: ErrorClass::of(e),
            message: format!("{what}: {e}"),
        }
    }
}

/// How activations travel between shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// In the page-API calls: base64 in one page's reply, then in the next page's arguments.
    Harness,
    /// Through the asset server's relay: raw bytes PUT by one page, fetched by the next (the
    /// last shard's output is taken by the harness from the server's memory).
    Server,
}

impl Route {
    /// How the report says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Harness => {
                "harness: base64 float32 in the page-API reply, then in the next call's arguments"
            }
            Self::Server => "asset server relay: raw float32 PUT by one page, fetched by the next",
        }
    }
}

/// One answer of the pipeline.
#[derive(Debug, Clone)]
pub struct ShardedAnswer {
    /// The last shard's output shape.
    pub dims: Vec<i64>,
    /// Every value of it.
    pub output: Vec<f32>,
    /// The worker that ran the last shard.
    pub last_worker: String,
    /// Its browser.
    pub last_browser: BrowserKind,
    /// Its backend.
    pub last_backend: crate::backend::Backend,
    /// Recoveries this request waited for.
    pub recoveries: u32,
}

/// One shard's placement for the report: worker id, earlier worker ids, and (loads, last load
/// ms, backend).
pub(super) type ShardPlacement = (String, Vec<String>, (u32, f64, String));

/// Where the shards are.
#[derive(Debug)]
struct Placement {
    workers: Vec<Arc<Worker>>,
    /// Per shard: index into `workers`.
    assign: Vec<usize>,
    /// Bumped by each recovery.
    generation: u64,
    /// Workers launched per kind (ids are `<kind>#<n>`).
    launched: BTreeMap<BrowserKind, u32>,
    /// Per shard: workers that served it before.
    earlier: Vec<Vec<String>>,
    /// Per shard: loads, the last load's ms and the backend it loaded on.
    loads: Vec<(u32, f64, String)>,
    /// Workers closed by recoveries (for the report).
    retired: Vec<Arc<Worker>>,
    /// Per worker slot: the one backend it must use, if any.
    backends: Vec<Option<crate::backend::Backend>>,
}

/// What the stream observed, per shard and hop.
#[derive(Debug, Default)]
pub(super) struct Records {
    pub spans: Vec<ShardSpan>,
    /// Per shard: compute ms of measured requests.
    pub compute: Vec<Vec<f64>>,
    /// Per shard: successful runs.
    pub runs: Vec<u64>,
    /// Per hop (shard i -> i+1): transfer ms of measured requests.
    pub hops: Vec<Vec<f64>>,
    /// Per hop: ms the activation waited for the next shard's worker (busy with another
    /// request) on the way.
    pub waits: Vec<Vec<f64>>,
    pub events: Vec<ShardEvent>,
}

/// A model cut into shards, served by one worker per shard.
#[derive(Debug)]
pub struct ShardedModelExecution {
    sharded: ShardedModel,
    shards: Vec<Arc<PreparedModel>>,
    setup: ShardSetup,
    /// The stream's start (reset by [`ShardedModelExecution::start_clock`]).
    t0: Mutex<Instant>,
    /// When and which fault was last injected into each worker (for detection times).
    injected: Mutex<BTreeMap<String, (Instant, &'static str)>>,
    place: Mutex<Placement>,
    recovering: tokio::sync::Mutex<()>,
    rec: Mutex<Records>,
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// How activations travel now.
    route: Mutex<Route>,
    /// Makes relay slot keys unique across retries.
    relay_nonce: AtomicU64,
}

impl ShardedModelExecution {
    /// An execution of `sharded` (not started: see [`ShardedModelExecution::initialize`]).
    pub fn new(sharded: ShardedModel, setup: ShardSetup) -> Self {
        let n = sharded.shards.len();
        let shards = sharded.shards.iter().cloned().map(Arc::new).collect();
        Self {
            sharded,
            shards,
            setup,
            t0: Mutex::new(Instant::now()),
            injected: Mutex::new(BTreeMap::new()),
            place: Mutex::new(Placement {
                workers: Vec::new(),
                assign: (0..n).collect(),
                generation: 0,
                launched: BTreeMap::new(),
                earlier: vec![Vec::new(); n],
                loads: vec![(0, 0.0, String::new()); n],
                retired: Vec::new(),
                backends: Vec::new(),
            }),
            recovering: tokio::sync::Mutex::new(()),
            rec: Mutex::new(Records {
                compute: vec![Vec::new(); n],
                runs: vec![0; n],
                hops: vec![Vec::new(); n.saturating_sub(1)],
                waits: vec![Vec::new(); n.saturating_sub(1)],
                ..Records::default()
            }),
            closing: Mutex::new(Vec::new()),
            route: Mutex::new(Route::Harness),
            relay_nonce: AtomicU64::new(0),
        }
    }

    /// The asset server (its relay carries activations on [`Route::Server`]).
    pub fn server(&self) -> Arc<crate::server::AssetServer> {
        self.setup.ctx.server.clone()
    }

    /// How activations travel now.
    pub fn route(&self) -> Route {
        *lock(&self.route)
    }

    /// Sets how activations travel from the next request on.
    pub fn set_route(&self, route: Route) {
        *lock(&self.route) = route;
    }

    /// The model and its shards.
    pub fn model(&self) -> &ShardedModel {
        &self.sharded
    }

    /// Launches one worker per shard (browsers in turn) in parallel.
    ///
    /// # Errors
    /// A launch that failed (the others are closed by `shutdown`).
    pub async fn launch_workers(&self) -> Result<(), ShardError> {
        let n = self.shards.len();
        let places: Vec<(BrowserKind, Option<crate::backend::Backend>)> =
            if self.setup.places.is_empty() {
                (0..n)
                    .map(|i| {
                        (
                            self.setup.launches[i % self.setup.launches.len()].kind,
                            None,
                        )
                    })
                    .collect()
            } else {
                self.setup.places.clone()
            };
        lock(&self.place).backends = places.iter().map(|p| p.1).collect();
        let launched =
            futures::future::join_all(places.iter().map(|&(k, b)| self.launch(k, b))).await;
        let mut workers = Vec::with_capacity(n);
        let mut first_error = None;
        for w in launched {
            match w {
                Ok(w) => workers.push(w),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        lock(&self.place).workers.clone_from(&workers);
        first_error.map_or(Ok(()), Err)
    }

    /// Each worker's ms per layer: `probe` (a shard of one middle layer) loaded on every
    /// worker, one warm-up run each, then `runs` rounds of one run per worker in turn (so a
    /// slow moment of the shared machine lands on every worker alike), the median taken, then
    /// unloaded. Runs on zeros: the time does not depend on the values.
    ///
    /// # Errors
    /// A load or run that failed.
    pub async fn measure_layer_ms(
        &self,
        probe: Arc<PreparedModel>,
        runs: usize,
    ) -> Result<Vec<f64>, ShardError> {
        let workers = lock(&self.place).workers.clone();
        let what = |w: &Worker, e: &WorkerError| ShardError::of(e, &format!("probing {}", w.id));
        for w in &workers {
            w.load(probe.clone(), None).await.map_err(|e| what(w, &e))?;
        }
        let mut times = vec![Vec::with_capacity(runs); workers.len()];
        for round in 0..=runs {
            for (i, w) in workers.iter().enumerate() {
                let r = w
                    .run(&probe.name, crate::pool::worker::OutputMode::None)
                    .await
                    .map_err(|e| what(w, &e))?;
                if round > 0 {
                    times[i].push(r.run_ms);
                }
            }
        }
        for w in &workers {
            w.unload(&probe.name).await.map_err(|e| what(w, &e))?;
        }
        Ok(times
            .into_iter()
            .map(|mut t| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            })
            .collect())
    }

    /// Replaces the shards (a new plan) before they are loaded.
    pub fn replan(&mut self, sharded: ShardedModel) {
        self.shards = sharded.shards.iter().cloned().map(Arc::new).collect();
        self.sharded = sharded;
    }

    /// Launches the workers (unless [`ShardedModelExecution::launch_workers`] did), loads each
    /// shard on its worker, and journals the plan.
    ///
    /// # Errors
    /// A launch or load that failed (every worker launched so far is closed by `shutdown`).
    pub async fn initialize(&self) -> Result<(), ShardError> {
        if lock(&self.place).workers.is_empty() {
            self.launch_workers().await?;
        }
        let workers = lock(&self.place).workers.clone();
        // One at a time: two loads at once on 2 cores only slow each other.
        for (i, w) in workers.iter().enumerate().take(self.shards.len()) {
            self.load(i, w).await?;
        }
        if let Some(j) = &self.setup.journal {
            j.commit(Op::ShardPlanned {
                model: self.sharded.whole.name.clone(),
                shards: self.assignments(),
            });
        }
        Ok(())
    }

    /// The shard plan as the journal records it.
    fn assignments(&self) -> Vec<ShardAssignment> {
        let p = lock(&self.place);
        self.sharded
            .ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                ShardAssignment::new(
                    i as u32,
                    r.start as u32..r.end as u32,
                    p.workers[p.assign[i]].id.clone(),
                )
            })
            .collect()
    }

    /// Launches a worker of `kind`; with `backend`, its page loads only on that backend.
    async fn launch(
        &self,
        kind: BrowserKind,
        backend: Option<crate::backend::Backend>,
    ) -> Result<Arc<Worker>, ShardError> {
        let Some(mut spec) = self.setup.launches.iter().find(|l| l.kind == kind).cloned() else {
            return Err(ShardError {
                class: ErrorClass::NoPlacement,
                message: format!("{kind} is not one of the run's browsers"),
            });
        };
        spec.page_url = self.setup.ctx.server.page_url();
        let id = {
            let mut p = lock(&self.place);
            let k = p.launched.entry(kind).or_insert(0);
            *k += 1;
            format!("{kind}#{k}")
        };
        let webnn = backend.map_or_else(
            || {
                self.setup
                    .ctx
                    .page
                    .backends
                    .contains(&crate::backend::Backend::Webnn)
            },
            |b| b == crate::backend::Backend::Webnn,
        );
        let page = Page::start(id.clone(), spec)
            .await
            .map_err(|e| ShardError::of(&e, &format!("launching {id}")))?;
        let caps = match page.capabilities(webnn, self.setup.ctx.timeouts.call).await {
            Ok(c) => c,
            Err(e) => {
                let _ = page.close().await;
                return Err(ShardError::of(&e, &format!("asking {id} what it offers")));
            }
        };
        let ctx = match backend {
            None => self.setup.ctx.clone(),
            Some(b) => {
                let mut page = self.setup.ctx.page.clone();
                page.backends = vec![b];
                // Naming webgpu counts a software adapter, as `--backends webgpu` does.
                page.allow_fallback_adapter |= b == crate::backend::Backend::Webgpu;
                Arc::new(WorkerContext {
                    server: self.setup.ctx.server.clone(),
                    page,
                    timeouts: self.setup.ctx.timeouts,
                })
            }
        };
        Ok(Worker::spawn(page, &caps, ctx))
    }

    /// Loads shard `i` on `worker` and records it there.
    async fn load(&self, i: usize, worker: &Arc<Worker>) -> Result<(), ShardError> {
        let loaded = worker
            .load(self.shards[i].clone(), None)
            .await
            .map_err(|e| ShardError::of(&e, &format!("loading shard {i} on {}", worker.id)))?;
        let ms = loaded.reply.fetch_ms + loaded.reply.session_create_ms;
        let mut p = lock(&self.place);
        p.loads[i].0 += 1;
        p.loads[i].1 = ms;
        p.loads[i].2 = loaded.reply.backend.to_string();
        Ok(())
    }

    /// Every worker serving now (for the report and fault targets), and those retired.
    pub fn workers(&self) -> (Vec<Arc<Worker>>, Vec<Arc<Worker>>) {
        let p = lock(&self.place);
        (p.workers.clone(), p.retired.clone())
    }

    /// The worker serving shard `i` now.
    pub fn worker_of(&self, i: usize) -> Arc<Worker> {
        let p = lock(&self.place);
        p.workers[p.assign[i]].clone()
    }

    /// Per shard: (worker id, earlier worker ids, (loads, last load ms, backend)).
    pub(super) fn placement_report(&self) -> Vec<ShardPlacement> {
        let p = lock(&self.place);
        (0..self.shards.len())
            .map(|i| {
                (
                    p.workers[p.assign[i]].id.clone(),
                    p.earlier[i].clone(),
                    p.loads[i].clone(),
                )
            })
            .collect()
    }

    pub(super) fn records(&self) -> MutexGuard<'_, Records> {
        lock(&self.rec)
    }

    /// The recoveries so far.
    pub fn events(&self) -> Vec<ShardEvent> {
        lock(&self.rec).events.clone()
    }

    /// Restarts the clock spans, events and fault times are measured from; returns it.
    pub fn start_clock(&self) -> Instant {
        let now = Instant::now();
        *lock(&self.t0) = now;
        now
    }

    /// Notes that a fault was just injected into `worker` (its failure's detection time is
    /// measured from here).
    pub fn fault_injected(&self, worker: &str, kind: &'static str) {
        lock(&self.injected).insert(worker.to_string(), (Instant::now(), kind));
    }

    /// Milliseconds since the clock started.
    pub(super) fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(*lock(&self.t0)).as_secs_f64() * 1e3
    }
}

impl ShardedModelExecution {
    /// Closes every worker (serving and retired) and waits for the closes.
    pub async fn shutdown(&self) {
        let workers = lock(&self.place).workers.clone();
        futures::future::join_all(workers.iter().map(|w| w.close())).await;
        let closing: Vec<_> = lock(&self.closing).drain(..).collect();
        for h in closing {
            let _ = h.await;
        }
    }
}

/// The activation's shape (`[1, S, D]`), from the second shard's per-run input.
fn activation_dims(shards: &[Arc<PreparedModel>]) -> Vec<i64> {
    shards
        .get(1)
        .and_then(|s| s.runtime_inputs.first())
        .map(|i| i.dims.clone())
        .unwrap_or_default()
}

/// Floats from base64 of little-endian float32 bytes.
pub(super) fn decode_f32(b64: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("output is not base64: {e}"))?;
    f32_values(&bytes)
}

/// Floats from little-endian float32 bytes.
pub(super) fn f32_values(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "output has {} bytes, not whole float32 values",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
