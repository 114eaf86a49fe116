//! [`Pool`]: workers between `min_workers` and `max_workers`, models placed on them by the
//! router, and the background upkeep (heartbeats, memory samples, reaping idle workers,
//! keeping the minimum).
//!
//! Rust API: `pool.get_model(task, name, hardware, fault_tolerance)` returns a [`ModelHandle`];
//! `handle.infer(Input::Prepared).await` runs it on the least-loaded worker holding it. The CLI
//! uses the same API through the scheduler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::browser::{BrowserKind, LaunchSpec, WorkerError};
use crate::metrics::{Phase, Requests, Sample};
use crate::models::{self, Cache, PreparedModel, Task};
use crate::server::AssetServer;

use super::correctness::CellOutput;
use super::router::{self, Candidate, Decision, HardwarePreferences, Preferences, Target};
use super::slot::{Lifecycle, Slot, SlotStatus, SlotTimeouts};
use super::worker::{LoadReply, OutputMode, RunReply};
use super::{Backend, Worker};

/// How the pool is shaped and kept.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// One launch template per browser kind the pool may start, in preference order.
    pub launches: Vec<LaunchSpec>,
    /// Kinds to launch at start (at least `min_workers` of them, in order, cycling).
    pub initial: Vec<BrowserKind>,
    /// Workers kept alive even when idle.
    pub min_workers: usize,
    /// Workers never exceeded.
    pub max_workers: usize,
    /// Backend priority.
    pub backends: Vec<Backend>,
    /// Whether a software WebGPU adapter counts as WebGPU.
    pub allow_fallback_adapter: bool,
    /// Browser preference per model type.
    pub preferences: Preferences,
    /// Bounds on page calls.
    pub timeouts: SlotTimeouts,
    /// How often idle workers are health-checked.
    pub heartbeat_interval: Duration,
    /// How long a health check may take.
    pub heartbeat_timeout: Duration,
    /// Idle time after which a worker beyond the minimum is closed.
    pub idle_timeout: Duration,
    /// Jobs queued on every placement of a model that make the pool add a worker for it.
    pub scale_up_queue: usize,
    /// Model cache.
    pub cache: Cache,
    /// Seed for weights and inputs.
    pub seed: u64,
}

/// Errors from the pool. Classify with the methods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A worker failed.
    #[error(transparent)]
    Worker(#[from] Box<WorkerError>),
    /// A model could not be prepared.
    #[error("model '{model}': {source}")]
    Model {
        /// Which model.
        model: String,
        /// Why.
        source: Box<models::ModelError>,
    },
    /// The router found nowhere to put the model.
    #[error("no placement for '{model}': {reason}")]
    NoPlacement {
        /// Which model.
        model: String,
        /// Why.
        reason: String,
    },
    /// The pool is shutting down.
    #[error("the pool is shutting down")]
    ShuttingDown,
}

impl PoolError {
    /// The underlying worker error, if this is one.
    pub fn as_worker(&self) -> Option<&WorkerError> {
        match self {
            Self::Worker(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WorkerError> for PoolError {
    fn from(e: WorkerError) -> Self {
        Self::Worker(Box::new(e))
    }
}

/// Fault-tolerance wishes for a model handle (the recovery ladder issue fills these in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultTolerance {
    /// Fail the request when its worker fails.
    #[default]
    None,
}

/// What to run a model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The model's prepared input (the catalog's tokenized sentence, image or log-mel).
    Prepared,
}

/// The result of one inference.
#[derive(Debug, Clone)]
pub struct Inference {
    /// Worker that ran it.
    pub worker: String,
    /// Its browser kind.
    pub browser: BrowserKind,
    /// Backend used.
    pub backend: Backend,
    /// `session.run` in the page, ms.
    pub page_ms: f64,
    /// Harness round trip.
    pub service: Duration,
}

/// One placement ever made: a model loaded on a worker, with its first run.
#[derive(Debug, Clone)]
pub struct PlacementRecord {
    /// Model name.
    pub model: String,
    /// Worker id.
    pub worker: String,
    /// Browser kind.
    pub browser: BrowserKind,
    /// The page's load answer.
    pub load: LoadReply,
    /// PSS growth across the load, KiB.
    pub memory_added_kib: u64,
    /// First run, ms (page-measured).
    pub first_run_ms: f64,
    /// Output of the first run, for the correctness checks.
    pub output: Option<CellOutput>,
}

/// A pool event: scaling, health, placement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolEvent {
    /// Since the pool started, ms.
    pub at_ms: u64,
    /// `launched`, `closed_idle`, `unhealthy`, `placed`, `unloaded`, ...
    pub kind: String,
    /// Worker id.
    pub worker: String,
    /// Details.
    pub detail: String,
}

/// A worker's final numbers.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Worker id.
    pub id: String,
    /// Browser kind.
    pub kind: BrowserKind,
    /// Final status.
    pub status: SlotStatus,
    /// Busy time over the worker's lifetime.
    pub utilization: f64,
    /// Lifetime.
    pub alive: Duration,
}

/// Everything the pool observed, at shutdown.
#[derive(Debug, Clone, Default)]
pub struct PoolReport {
    /// Every worker that ever existed.
    pub workers: Vec<WorkerReport>,
    /// Every routing decision.
    pub decisions: Vec<Decision>,
    /// Every placement.
    pub placements: Vec<PlacementRecord>,
    /// Scaling and health events.
    pub events: Vec<PoolEvent>,
    /// Request accounting.
    pub requests: Requests,
    /// Every request.
    pub samples: Vec<Sample>,
    /// Largest number of live workers at once.
    pub peak_workers: usize,
}

/// A pool of browser workers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PoolConfig,
    server: Arc<AssetServer>,
    cancel: CancellationToken,
    t0: Instant,
    slots: Mutex<Vec<Arc<Slot>>>,
    retired: Mutex<Vec<Arc<Slot>>>,
    counters: Mutex<HashMap<BrowserKind, usize>>,
    launching: AtomicUsize,
    peak: AtomicUsize,
    models: Mutex<HashMap<String, Arc<ModelEntry>>>,
    log: Mutex<Log>,
    upkeep: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Log {
    decisions: Vec<Decision>,
    placements: Vec<PlacementRecord>,
    events: Vec<PoolEvent>,
    requests: Requests,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct ModelEntry {
    prepared: Arc<PreparedModel>,
    hardware: HardwarePreferences,
    placements: Mutex<Vec<Arc<Slot>>>,
    /// Serialises (re)placement so a burst of requests places a model once.
    placing: tokio::sync::Mutex<()>,
    scaling: AtomicBool,
}

/// A model placed in the pool. Cheap to clone; `infer` is safe to call concurrently.
#[derive(Debug, Clone)]
pub struct ModelHandle {
    pool: Pool,
    entry: Arc<ModelEntry>,
}

impl Pool {
    /// Starts the pool: launches the initial workers in parallel and the upkeep task.
    ///
    /// # Errors
    /// [`PoolError::Worker`] when an initial worker cannot be launched (the others are closed).
    pub async fn start(
        config: PoolConfig,
        server: Arc<AssetServer>,
        cancel: CancellationToken,
    ) -> Result<Self, PoolError> {
        let pool = Self {
            inner: Arc::new(Inner {
                config,
                server,
                cancel: cancel.child_token(),
                t0: Instant::now(),
                slots: Mutex::default(),
                retired: Mutex::default(),
                counters: Mutex::default(),
                launching: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                models: Mutex::default(),
                log: Mutex::default(),
                upkeep: Mutex::new(None),
            }),
        };
        let c = &pool.inner.config;
        let want = c.min_workers.max(c.initial.len().min(c.max_workers)).max(1);
        let kinds: Vec<BrowserKind> = c.initial.iter().copied().cycle().take(want).collect();
        let results =
            futures::future::join_all(kinds.into_iter().map(|k| pool.launch(k, "initial"))).await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            pool.close_all().await;
            return Err(e);
        }
        let upkeep = tokio::spawn(upkeep(pool.clone()));
        *lock(&pool.inner.upkeep) = Some(upkeep);
        Ok(pool)
    }

    /// Places `name` per the router and returns a handle to it. Loads it (and runs it once,
    /// keeping the output for the correctness checks) unless a live placement exists.
    ///
    /// # Errors
    /// Unknown model, preparation failure, nowhere to place it, or the load failed everywhere.
    pub async fn get_model(
        &self,
        task: Task,
        name: &str,
        hardware: HardwarePreferences,
        _fault_tolerance: FaultTolerance,
    ) -> Result<ModelHandle, PoolError> {
        let spec = models::resolve(name).map_err(|e| PoolError::Model {
            model: name.into(),
            source: Box::new(e),
        })?;
        let key = format!("{}@{:?}", spec.name, hardware.browser);
        let existing = lock(&self.inner.models).get(&key).cloned();
        let entry = match existing {
            Some(e) => e,
            None => {
                let cache = self.inner.config.cache.clone();
                let seed = self.inner.config.seed;
                let prepared =
                    tokio::task::spawn_blocking(move || models::prepare(spec, &cache, seed))
                        .await
                        .map_err(|e| PoolError::NoPlacement {
                            model: name.into(),
                            reason: format!("preparation task: {e}"),
                        })?
                        .map_err(|e| PoolError::Model {
                            model: name.into(),
                            source: Box::new(e),
                        })?;
                if prepared.task != task {
                    return Err(PoolError::NoPlacement {
                        model: name.into(),
                        reason: format!(
                            "it is a {} model, not {}",
                            prepared.task.as_str(),
                            task.as_str()
                        ),
                    });
                }
                let entry = Arc::new(ModelEntry {
                    prepared: Arc::new(prepared),
                    hardware,
                    placements: Mutex::default(),
                    placing: tokio::sync::Mutex::new(()),
                    scaling: AtomicBool::new(false),
                });
                lock(&self.inner.models).entry(key).or_insert(entry).clone()
            }
        };
        let handle = ModelHandle {
            pool: self.clone(),
            entry,
        };
        handle.ensure_placed().await?;
        Ok(handle)
    }

    /// Live workers right now.
    pub fn workers(&self) -> Vec<Arc<Slot>> {
        lock(&self.inner.slots).clone()
    }

    /// Milliseconds since the pool started (the time base of its samples and events).
    pub fn elapsed_ms(&self) -> f64 {
        self.inner.t0.elapsed().as_secs_f64() * 1e3
    }

    /// The instant the pool started.
    pub fn started(&self) -> Instant {
        self.inner.t0
    }

    /// Stops upkeep, closes every worker, and returns what the pool observed.
    pub async fn shutdown(self) -> PoolReport {
        self.inner.cancel.cancel();
        // Take the handle first: the std mutex must not be held across the await.
        let upkeep = lock(&self.inner.upkeep).take();
        if let Some(h) = upkeep {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        self.close_all().await;
        let now = Instant::now();
        let workers = lock(&self.inner.retired)
            .iter()
            .map(|s| {
                let status = s.status();
                let alive = now.duration_since(status.created);
                WorkerReport {
                    id: s.id.clone(),
                    kind: s.kind,
                    utilization: status.busy.as_secs_f64() / alive.as_secs_f64().max(1e-9),
                    status,
                    alive,
                }
            })
            .collect();
        let mut log = std::mem::take(&mut *lock(&self.inner.log));
        log.requests.settle();
        PoolReport {
            workers,
            decisions: log.decisions,
            placements: log.placements,
            events: log.events,
            requests: log.requests,
            samples: log.samples,
            peak_workers: self.inner.peak.load(Ordering::SeqCst),
        }
    }

    async fn close_all(&self) {
        let slots: Vec<_> = std::mem::take(&mut *lock(&self.inner.slots));
        futures::future::join_all(slots.iter().map(|s| s.close())).await;
        lock(&self.inner.retired).extend(slots);
    }

    fn event(&self, kind: &str, worker: &str, detail: String) {
        let at_ms = self.inner.t0.elapsed().as_millis() as u64;
        lock(&self.inner.log).events.push(PoolEvent {
            at_ms,
            kind: kind.into(),
            worker: worker.into(),
            detail,
        });
    }

    /// Whether one more worker fits under `max_workers`.
    fn has_room(&self) -> bool {
        lock(&self.inner.slots).len() + self.inner.launching.load(Ordering::SeqCst)
            < self.inner.config.max_workers
    }

    /// Launches one worker of `kind` and adds it to the pool.
    async fn launch(&self, kind: BrowserKind, why: &str) -> Result<Arc<Slot>, PoolError> {
        let c = &self.inner.config;
        let Some(mut spec) = c.launches.iter().find(|l| l.kind == kind).cloned() else {
            return Err(PoolError::NoPlacement {
                model: String::new(),
                reason: format!("{kind} is not configured in the pool"),
            });
        };
        spec.page_url = self.inner.server.page_url();
        let id = {
            let mut n = lock(&self.inner.counters);
            let k = n.entry(kind).or_insert(0);
            *k += 1;
            format!("{kind}#{k}")
        };
        self.inner.launching.fetch_add(1, Ordering::SeqCst);
        let started = async {
            let worker = Worker::start(id.clone(), spec).await?;
            let caps = match worker
                .capabilities(c.backends.contains(&Backend::Webnn), c.timeouts.call)
                .await
            {
                Ok(caps) => caps,
                Err(e) => {
                    let _ = worker.close().await;
                    return Err(e);
                }
            };
            Ok::<_, WorkerError>((worker, caps))
        }
        .await;
        self.inner.launching.fetch_sub(1, Ordering::SeqCst);
        let (worker, caps) = started?;
        let env = super::worker::browser_env(&worker, &caps);
        let backends = super::worker::offered_backends(&caps, c.allow_fallback_adapter);
        let launch_ms = worker.launch_time.as_millis();
        let slot = Slot::spawn(
            worker,
            env,
            backends,
            self.inner.server.clone(),
            c.backends.clone(),
            c.allow_fallback_adapter,
            c.timeouts,
        );
        let live = {
            let mut slots = lock(&self.inner.slots);
            slots.push(slot.clone());
            slots.len()
        };
        self.inner.peak.fetch_max(live, Ordering::SeqCst);
        self.event(
            "launched",
            &slot.id,
            format!("{why}; ready in {launch_ms} ms; {live} live"),
        );
        Ok(slot)
    }

    fn candidates(&self, entry: &ModelEntry) -> Vec<Candidate> {
        let placed = lock(&entry.placements)
            .iter()
            .map(|s| s.id.clone())
            .collect::<Vec<_>>();
        self.workers()
            .iter()
            .filter(|s| s.is_routable())
            .map(|s| Candidate {
                id: s.id.clone(),
                kind: s.kind,
                backends: s.status().backends,
                queued: s.queued(),
                has_model: placed.contains(&s.id),
                score: None,
            })
            .collect()
    }

    fn route(&self, entry: &ModelEntry, can_launch: bool) -> Result<Decision, PoolError> {
        let c = &self.inner.config;
        let launchable: Vec<BrowserKind> = c.launches.iter().map(|l| l.kind).collect();
        let req = router::Request {
            model: &entry.prepared.name,
            task: entry.prepared.task,
            hardware: &entry.hardware,
            backends: &c.backends,
            preferences: &c.preferences,
            launchable: &launchable,
            can_launch,
        };
        let decision = router::route(&req, &self.candidates(entry)).map_err(|reason| {
            PoolError::NoPlacement {
                model: entry.prepared.name.clone(),
                reason,
            }
        })?;
        lock(&self.inner.log).decisions.push(decision.clone());
        Ok(decision)
    }

    /// Loads the model on `slot`, runs it once, records the placement.
    async fn place(&self, entry: &Arc<ModelEntry>, slot: Arc<Slot>) -> Result<(), PoolError> {
        let loaded = slot.load(entry.prepared.clone()).await?;
        let model = &entry.prepared;
        let mode = if model.golden.is_some() {
            OutputMode::Full
        } else {
            OutputMode::Sample
        };
        let backend = loaded.reply.backend;
        let issued = Instant::now();
        let ran = slot.run(&model.name, mode).await;
        let first = self.record(
            &slot,
            &model.name,
            backend,
            Phase::First,
            issued,
            issued,
            ran,
        )?;
        let output = super::worker::cell_output(&slot.kind.to_string(), model, backend, &first);
        lock(&self.inner.log).placements.push(PlacementRecord {
            model: model.name.clone(),
            worker: slot.id.clone(),
            browser: slot.kind,
            load: loaded.reply.clone(),
            memory_added_kib: loaded.memory_added_kib,
            first_run_ms: first.run_ms,
            output,
        });
        self.event("placed", &slot.id, format!("{} on {backend}", model.name));
        lock(&entry.placements).push(slot);
        Ok(())
    }

    /// Accounts for one request that reached `slot`: it ends succeeded or failed, and leaves
    /// one sample.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        slot: &Slot,
        model: &str,
        backend: Backend,
        phase: Phase,
        scheduled: Instant,
        issued: Instant,
        result: Result<RunReply, WorkerError>,
    ) -> Result<RunReply, PoolError> {
        let outcome = match &result {
            Ok(r) => Ok(r.run_ms),
            Err(e) => Err(super::worker::error_class(e)),
        };
        self.push_request(
            model,
            Some((slot, backend)),
            phase,
            scheduled,
            issued,
            outcome,
        );
        result.map_err(PoolError::from)
    }

    /// Builds the one sample of a request from what is known about it and accounts for it.
    /// `ran` is where it ran (`None` when it never reached a worker); `outcome` is the page's
    /// `session.run` ms or the error class.
    fn push_request(
        &self,
        model: &str,
        ran: Option<(&Slot, Backend)>,
        phase: Phase,
        scheduled: Instant,
        issued: Instant,
        outcome: Result<f64, &str>,
    ) {
        let done = Instant::now();
        let ms = |t: Instant| t.saturating_duration_since(self.inner.t0).as_secs_f64() * 1e3;
        let since = |t: Instant| done.saturating_duration_since(t).as_secs_f64() * 1e3;
        self.push_sample(Sample {
            seq: 0,
            model: model.to_string(),
            browser: ran.map(|(s, _)| s.kind.to_string()).unwrap_or_default(),
            worker: ran.map(|(s, _)| s.id.clone()).unwrap_or_default(),
            backend: ran.map(|(_, b)| b.to_string()).unwrap_or_default(),
            phase,
            scheduled_ms: ms(scheduled),
            started_ms: ms(issued),
            latency_ms: since(scheduled),
            service_ms: if ran.is_some() { since(issued) } else { 0.0 },
            page_ms: *outcome.as_ref().unwrap_or(&0.0),
            ok: outcome.is_ok(),
            error: outcome.err().unwrap_or_default().to_string(),
            attempt: 1,
        });
    }

    fn push_sample(&self, mut sample: Sample) {
        let mut log = lock(&self.inner.log);
        sample.seq = log.samples.len() as u64;
        log.requests.issued += 1;
        if sample.ok {
            log.requests.succeeded += 1;
        } else {
            log.requests.failed += 1;
        }
        log.samples.push(sample);
    }
}

impl ModelHandle {
    /// The prepared model behind the handle.
    pub fn model(&self) -> &PreparedModel {
        &self.entry.prepared
    }

    /// Runs the model once on its prepared input.
    ///
    /// # Errors
    /// When no worker can run it or the worker running it fails.
    pub async fn infer(&self, input: Input) -> Result<Inference, PoolError> {
        let Input::Prepared = input;
        self.infer_at(Instant::now(), Phase::Measure).await
    }

    /// Runs the model once, accounting latency from `scheduled` (the scheduler's intended start,
    /// so queueing behind a slow request counts: no coordinated omission).
    ///
    /// # Errors
    /// As [`ModelHandle::infer`].
    pub async fn infer_at(&self, scheduled: Instant, phase: Phase) -> Result<Inference, PoolError> {
        let pool = &self.pool;
        if pool.inner.cancel.is_cancelled() {
            self.never_ran(scheduled, phase, "interrupted");
            return Err(PoolError::ShuttingDown);
        }
        let slot = match self.pick().await {
            Ok(s) => s,
            Err(e) => {
                self.never_ran(scheduled, phase, "no_placement");
                return Err(e);
            }
        };
        self.maybe_scale_up(&slot);
        let name = &self.entry.prepared.name;
        let backend = slot
            .status()
            .loaded
            .get(name)
            .map(|l| l.reply.backend)
            .unwrap_or(Backend::Wasm);
        let issued = Instant::now();
        let result = slot.run(name, OutputMode::None).await;
        let service = issued.elapsed();
        let reply = pool.record(&slot, name, backend, phase, scheduled, issued, result)?;
        Ok(Inference {
            worker: slot.id.clone(),
            browser: slot.kind,
            backend,
            page_ms: reply.run_ms,
            service,
        })
    }

    /// Unloads the model from every worker holding it.
    pub async fn release(&self) {
        let slots: Vec<_> = std::mem::take(&mut *lock(&self.entry.placements));
        for s in slots {
            let _ = s.unload(&self.entry.prepared.name).await;
            self.pool
                .event("unloaded", &s.id, self.entry.prepared.name.clone());
        }
        let mut models = lock(&self.pool.inner.models);
        models.retain(|_, e| !Arc::ptr_eq(e, &self.entry));
    }

    /// Records a request that never ran: `rejected` (queue full) or `deadline` (too late).
    pub fn reject(&self, scheduled: Instant, class: &str) {
        self.never_ran(scheduled, Phase::Measure, class);
    }

    fn never_ran(&self, scheduled: Instant, phase: Phase, class: &str) {
        let name = &self.entry.prepared.name;
        self.pool
            .push_request(name, None, phase, scheduled, Instant::now(), Err(class));
    }

    /// The least-loaded live placement, placing the model again if it has none.
    async fn pick(&self) -> Result<Arc<Slot>, PoolError> {
        if let Some(s) = self.least_loaded() {
            return Ok(s);
        }
        self.ensure_placed().await?;
        self.least_loaded().ok_or_else(|| PoolError::NoPlacement {
            model: self.entry.prepared.name.clone(),
            reason: "its workers went away".into(),
        })
    }

    fn least_loaded(&self) -> Option<Arc<Slot>> {
        let mut placements = lock(&self.entry.placements);
        placements.retain(|s| s.is_routable());
        placements.iter().min_by_key(|s| s.queued()).cloned()
    }

    /// Places the model once if it has no live placement (serialised per model).
    async fn ensure_placed(&self) -> Result<(), PoolError> {
        let _placing = self.entry.placing.lock().await;
        if self.least_loaded().is_some() {
            return Ok(());
        }
        let pool = &self.pool;
        let decision = pool.route(&self.entry, pool.has_room())?;
        let slot = match decision.target {
            Target::Worker(id) => {
                pool.workers()
                    .into_iter()
                    .find(|s| s.id == id)
                    .ok_or_else(|| PoolError::NoPlacement {
                        model: self.entry.prepared.name.clone(),
                        reason: format!("{id} went away"),
                    })?
            }
            Target::Launch(kind) => {
                pool.launch(kind, &format!("for {}", self.entry.prepared.name))
                    .await?
            }
        };
        pool.place(&self.entry, slot).await
    }

    /// Adds a worker for this model when every placement is queued up and there is room.
    fn maybe_scale_up(&self, chosen: &Slot) {
        let pool = &self.pool;
        if chosen.queued() < pool.inner.config.scale_up_queue || !pool.has_room() {
            return;
        }
        if self.entry.scaling.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        let kind = chosen.kind;
        tokio::spawn(async move {
            let pool = &this.pool;
            let name = this.entry.prepared.name.clone();
            let result = async {
                let slot = pool
                    .launch(kind, &format!("scale-up: {name} has a queue"))
                    .await?;
                pool.place(&this.entry, slot).await
            }
            .await;
            if let Err(e) = result {
                pool.event("scale_up_failed", "", format!("{name}: {e}"));
            }
            this.entry.scaling.store(false, Ordering::SeqCst);
        });
    }
}

/// Background upkeep: memory samples every second, heartbeats on idle workers, closing idle or
/// unhealthy workers beyond the minimum.
async fn upkeep(pool: Pool) {
    let c = pool.inner.config.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_beat = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = pool.inner.cancel.cancelled() => return,
        }
        let slots = pool.workers();
        for s in &slots {
            s.sample_memory();
        }
        if last_beat.elapsed() >= c.heartbeat_interval {
            last_beat = Instant::now();
            let idle: Vec<_> = slots
                .iter()
                .filter(|s| s.is_routable() && s.queued() == 0)
                .cloned()
                .collect();
            let beats = idle.iter().map(|s| async move {
                let r = tokio::time::timeout(
                    c.heartbeat_timeout,
                    s.call("echo", serde_json::json!({"beat": true})),
                )
                .await;
                (s.clone(), r)
            });
            for (s, r) in futures::future::join_all(beats).await {
                let why = match r {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no heartbeat answer within {:?}", c.heartbeat_timeout),
                };
                s.mark_unhealthy(why.clone());
                pool.event("unhealthy", &s.id, why);
            }
        }
        // Close unhealthy workers, and idle ones beyond the minimum.
        let now = Instant::now();
        let mut close = Vec::new();
        {
            let mut live = lock(&pool.inner.slots);
            let mut count = live.len();
            live.retain(|s| {
                let st = s.status();
                let idle = st.queued == 0 && now.duration_since(st.last_active) >= c.idle_timeout;
                let drop = st.lifecycle == Lifecycle::Unhealthy || (idle && count > c.min_workers);
                if drop {
                    count -= 1;
                    close.push((s.clone(), st.lifecycle));
                }
                !drop
            });
        }
        for (s, was) in close {
            let why = if was == Lifecycle::Unhealthy {
                "closed_unhealthy"
            } else {
                "closed_idle"
            };
            s.close().await;
            pool.event(why, &s.id, format!("{} live", pool.workers().len()));
            lock(&pool.inner.retired).push(s);
        }
        // Keep the minimum.
        let live = pool.workers().len() + pool.inner.launching.load(Ordering::SeqCst);
        if live < c.min_workers && !pool.inner.cancel.is_cancelled() {
            if let Some(&kind) = c.initial.first() {
                if let Err(e) = pool.launch(kind, "keeping the minimum").await {
                    pool.event("launch_failed", "", e.to_string());
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
