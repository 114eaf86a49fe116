//! [`ShardedHandle`]: a sharded model placed in the pool as a pipeline, and the path every
//! request takes through it. A request is ticketed by the pool's ledger like any other; it runs
//! through each shard in order on the worker the placement registry says serves it, the
//! activation carried by the chosen [`Route`]; the last output is checked against the page's
//! digest and every value against the unsharded model run natively. A shard call that fails
//! with a transient class starts (or waits for) the pool's recovery episode of that worker,
//! whose ladder step for a shard is the pipeline's `ShardRecovery`; the request then goes on
//! from that shard (from the first after a full retry). Requests run concurrently, so while one
//! request is in shard 2 the next is in shard 1. Must not import `report`, `cli` or terminal
//! crates.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::sharding::{ShardCorrectness, ShardSpan};
use crate::metrics::Phase;
use crate::models::{PreparedModel, Task, HIDDEN_IN};
use crate::recovery::ShardRecovery;
use crate::sharding::transfer::{decode_f32, f32_values, Route};

use super::attribution::{Cause, Detection};
use super::correctness::{check_answer, Reference};
use super::error::{AnswerFault, ShardError};
use super::ledger::{Ran, RequestEnd, Ticket};
use super::pipelines::PipelineId;
use super::placements::ModelEntry;
use super::recover::recover;
use super::worker::{FedOutputs, Feed, OutputStats, Probe, RunFor, RunReply, Worker};
use super::{lock, ErrorClass, Pool};

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
    pub last_backend: Backend,
    /// Recoveries this request waited for.
    pub recoveries: u32,
}

/// What the pipeline's requests observed, per shard and hop.
#[derive(Debug, Default, Clone)]
pub struct Records {
    /// Every shard call.
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
    /// Every answer against the reference.
    pub correctness: ShardCorrectness,
    /// End-to-end ms of measured, successful requests.
    pub latency: Vec<f64>,
    /// First start and last end of the measured, successful requests.
    pub window: Option<(Instant, Instant)>,
}

/// A sharded model in the pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShardedHandle {
    pool: Pool,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: PipelineId,
    /// The whole model's name (the ledger's model).
    model: String,
    entries: Vec<Arc<ModelEntry>>,
    /// The activation's shape (`[1, S, D]`), from the second shard's per-run input.
    activation_dims: Vec<i64>,
    reference: Reference,
    route: Mutex<Route>,
    /// Makes relay slot keys unique across retries.
    relay_nonce: AtomicU64,
    /// Numbers requests for their spans.
    requests: AtomicU64,
    records: Mutex<Records>,
}

impl ShardedHandle {
    /// The handle of pipeline `id` of `pool`, whose answers must match `reference`.
    pub(super) fn new(pool: Pool, id: PipelineId, model: &str, reference: Reference) -> Self {
        let entries = pool.pipelines().shards(id);
        let n = entries.len();
        let activation_dims = entries
            .get(1)
            .and_then(|e| e.prepared.runtime_inputs.first())
            .map(|i| i.dims.clone())
            .unwrap_or_default();
        let correctness = ShardCorrectness {
            passed: true,
            atol: crate::oracle::ATOL,
            reference: format!(
                "the unsharded {model} run by native onnxruntime {} on the same input",
                crate::oracle::ORT_VERSION
            ),
            argmax_mismatched: (reference.task == Task::TextGeneration).then_some(0),
            ..ShardCorrectness::default()
        };
        Self {
            pool,
            shared: Arc::new(Shared {
                id,
                model: model.to_string(),
                entries,
                activation_dims,
                reference,
                route: Mutex::new(Route::Harness),
                relay_nonce: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                records: Mutex::new(Records {
                    compute: vec![Vec::new(); n],
                    runs: vec![0; n],
                    hops: vec![Vec::new(); n.saturating_sub(1)],
                    waits: vec![Vec::new(); n.saturating_sub(1)],
                    correctness,
                    ..Records::default()
                }),
            }),
        }
    }

    /// The pipeline in the pool's registry.
    pub fn id(&self) -> PipelineId {
        self.shared.id
    }

    /// The shards, in order.
    pub fn shards(&self) -> Vec<Arc<PreparedModel>> {
        self.shared
            .entries
            .iter()
            .map(|e| e.prepared.clone())
            .collect()
    }

    /// The worker serving shard `k` now, if any.
    pub fn worker_of(&self, k: usize) -> Option<Arc<Worker>> {
        self.pool
            .placements()
            .serving(&self.shared.entries[k])
            .first()
            .cloned()
    }

    /// The asset server (its relay carries activations on [`Route::Server`]).
    pub fn server(&self) -> Arc<crate::server::AssetServer> {
        self.pool.ctx().server.clone()
    }

    /// How activations travel now.
    pub fn route(&self) -> Route {
        *lock(&self.shared.route)
    }

    /// Sets how activations travel from the next request on.
    pub fn set_route(&self, route: Route) {
        *lock(&self.shared.route) = route;
    }

    /// What the requests observed so far.
    pub fn records(&self) -> Records {
        let mut r = lock(&self.shared.records).clone();
        if r.correctness.checked == 0 {
            r.correctness.passed = false;
        }
        r
    }

    /// The reference every answer is checked against.
    pub fn reference(&self) -> &Reference {
        &self.shared.reference
    }

    /// Issues the ticket of a request about to be scheduled.
    pub fn ticket(&self, phase: Phase) -> Ticket {
        self.pool.ledger().issue(&self.shared.model, phase)
    }

    /// Runs one request for `ticket` through every shard, latency counted from `scheduled`.
    /// Its answer is checked against the reference: a wrong one fails as `wrong_answer`.
    ///
    /// # Errors
    /// [`ShardError`] when a shard failed and recovery could not make it answer within the
    /// pool's `max_attempts`.
    pub async fn infer_at(
        &self,
        ticket: Ticket,
        scheduled: Instant,
        phase: Phase,
    ) -> Result<ShardedAnswer, ShardError> {
        let pool = &self.pool;
        pool.ledger().start();
        let issued = Instant::now();
        let measured = phase == Phase::Measure;
        let request = self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let result = self
            .run(Some(request), measured, self.route(), RunFor::Request)
            .await;
        let ms = scheduled.elapsed().as_secs_f64() * 1e3;
        let outcome = match &result {
            Ok(a) if self.checked(a, measured, scheduled, ms) => Ok(ms),
            Ok(_) => Err(ErrorClass::WrongAnswer),
            Err(e) => Err(e.class()),
        };
        let attempt = 1 + result.as_ref().map_or(0, |a| a.recoveries);
        pool.request_ended(RequestEnd {
            ticket,
            model: &self.shared.model,
            ran: result.as_ref().ok().map(|a| Ran {
                worker: &a.last_worker,
                browser: a.last_browser,
                backend: a.last_backend,
            }),
            phase,
            scheduled,
            issued,
            attempt,
            outcome,
        });
        result
    }

    /// Closes `ticket` for a request that never ran.
    pub fn reject(&self, ticket: Ticket, scheduled: Instant, phase: Phase, class: ErrorClass) {
        self.pool
            .never_ran((ticket, &self.shared.model), scheduled, phase, 1, class);
    }

    /// Checks an answer against the reference and records it; true when it matched.
    fn checked(&self, a: &ShardedAnswer, measured: bool, scheduled: Instant, ms: f64) -> bool {
        let (diff, ok, same_argmax) = check_answer(&self.shared.reference, &a.dims, &a.output);
        let mut r = lock(&self.shared.records);
        let c = &mut r.correctness;
        c.checked += 1;
        c.max_abs_diff = c.max_abs_diff.max(diff);
        if !ok {
            c.mismatched += 1;
            c.passed = false;
        }
        if same_argmax == Some(false) {
            *c.argmax_mismatched.get_or_insert(0) += 1;
        }
        if ok && measured {
            r.latency.push(ms);
            let now = Instant::now();
            r.window = Some(match r.window {
                Some((first, _)) => (first, now),
                None => (scheduled, now),
            });
        }
        ok
    }

    /// One request through the pipeline outside the ledger (a probe of a route), timed.
    pub async fn probe(&self, route: Route) -> Option<Duration> {
        let t = Instant::now();
        self.run(
            Some(u64::MAX),
            false,
            route,
            RunFor::Probe(Probe::RouteProbe),
        )
        .await
        .ok()?;
        Some(t.elapsed())
    }

    /// One request through the pipeline on the current route, outside the ledger and outside
    /// the stream's records (no span, no shard run or time): a comparison round's, whose
    /// answer the caller checks. After the stream, so the timeline stays the stream's.
    ///
    /// # Errors
    /// As [`ShardedHandle::infer_at`].
    pub async fn unrecorded(&self) -> Result<ShardedAnswer, ShardError> {
        self.run(None, false, self.route(), RunFor::Probe(Probe::Baseline))
            .await
    }

    /// One request (`request` numbers its spans, none for a request the records leave out;
    /// `measured` says whether its times count), its activations carried by `route`, each
    /// shard's call counted as `purpose`. Relay slots it used are freed whatever the outcome.
    async fn run(
        &self,
        request: Option<u64>,
        measured: bool,
        route: Route,
        purpose: RunFor,
    ) -> Result<ShardedAnswer, ShardError> {
        let mut keys = Vec::new();
        let result = self
            .pipeline(request, measured, route, purpose, &mut keys)
            .await;
        let server = &self.pool.ctx().server;
        for key in keys {
            let _ = server.take_relay(&key);
        }
        result
    }

    async fn pipeline(
        &self,
        request: Option<u64>,
        measured: bool,
        route: Route,
        purpose: RunFor,
        keys: &mut Vec<String>,
    ) -> Result<ShardedAnswer, ShardError> {
        let pool = &self.pool;
        let server = pool.ctx().server.clone();
        let entries = &self.shared.entries;
        let n = entries.len();
        let full_retry = pool.pipelines().recovery(self.shared.id) == ShardRecovery::FullRetry;
        let mut k = 0;
        let mut activation: Option<Feed> = None;
        let mut prev_end: Option<f64> = None;
        let mut recoveries = 0;
        loop {
            let worker = serving_worker(pool, &entries[k], k).await?;
            let shard = &entries[k].prepared;
            let generation = worker.generation();
            let mut feeds = BTreeMap::new();
            if let Some(feed) = &activation {
                feeds.insert(HIDDEN_IN.to_string(), feed.clone());
            }
            let mut output_to = BTreeMap::new();
            let key = format!(
                "r{}-s{k}-{}",
                request.map_or_else(|| "x".into(), |r| r.to_string()),
                self.shared.relay_nonce.fetch_add(1, Ordering::Relaxed)
            );
            if route == Route::Server {
                output_to.insert(shard.output_name.clone(), server.relay_path(&key));
                keys.push(key.clone());
            }
            let sent = Instant::now();
            let result = worker
                .run_fed(&shard.name, feeds, FedOutputs::Relay(output_to), purpose)
                .await;
            let back = Instant::now();
            if let Some(request) = request {
                self.span(request, k, &worker, sent, back, result.is_ok());
            }
            let reply = match result {
                Ok(reply) => reply,
                Err(e) => {
                    let call = (k, shard.name.as_str(), sent);
                    recover_shard(pool, &worker, generation, call, e, &mut recoveries).await?;
                    if full_retry {
                        k = 0;
                        activation = None;
                        prev_end = None;
                    }
                    continue;
                }
            };
            let out = Output::of(k, &worker.id, shard, &reply)?;
            if request.is_some() {
                self.note_run(k, measured, sent, &reply, prev_end);
            }
            prev_end = reply.run_end_epoch_ms;
            let bad = |what: AnswerFault| ShardError::Answer {
                shard: k,
                worker: worker.id.clone(),
                what,
            };
            if k + 1 == n {
                let output = match &out.data_b64 {
                    Some(b64) => decode_f32(b64).map_err(|e| bad(e.into()))?,
                    None => {
                        let bytes = server
                            .take_relay(&key)
                            .ok_or_else(|| bad(AnswerFault::EmptySlot(key.clone())))?;
                        f32_values(&bytes).map_err(|e| bad(e.into()))?
                    }
                };
                if let Some(want) = &out.digest {
                    let got = OutputStats::digest_of(&output);
                    if &got != want {
                        return Err(bad(AnswerFault::Changed {
                            page: want.clone(),
                            harness: got,
                        }));
                    }
                }
                return Ok(ShardedAnswer {
                    dims: out.dims,
                    output,
                    last_worker: worker.id.clone(),
                    last_browser: worker.kind,
                    last_backend: worker.backend_of(&shard.name).unwrap_or(Backend::Wasm),
                    recoveries,
                });
            }
            activation = Some(Feed {
                dtype: "float32",
                dims: self.shared.activation_dims.clone(),
                url: out.data_b64.is_none().then(|| server.relay_path(&key)),
                data_b64: out.data_b64,
            });
            k += 1;
        }
    }

    fn span(
        &self,
        request: u64,
        k: usize,
        worker: &Worker,
        sent: Instant,
        back: Instant,
        ok: bool,
    ) {
        let t0 = self.pool.started();
        let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1e3;
        lock(&self.shared.records).spans.push(ShardSpan {
            request,
            shard: k,
            worker: worker.id.clone(),
            start_ms: ms(sent),
            end_ms: ms(back),
            ok,
        });
    }

    /// Records a successful run of shard `k`: its compute time and, past the first shard, the
    /// hop from the previous shard's end.
    fn note_run(
        &self,
        k: usize,
        measured: bool,
        sent: Instant,
        reply: &RunReply,
        prev_end: Option<f64>,
    ) {
        let mut r = lock(&self.shared.records);
        r.runs[k] += 1;
        if !measured {
            return;
        }
        r.compute[k].push(reply.run_ms);
        if let (Some(end), Some(start), true) = (prev_end, reply.run_start_epoch_ms, k > 0) {
            // End of shard k-1's run to the start of shard k's, less the time shard k's worker
            // was busy with other requests (its queue in the harness and in the page): what is
            // left is encoding, the two transfers, the harness and decoding.
            let queued = reply.dispatched.map_or(0.0, |d| {
                d.saturating_duration_since(sent).as_secs_f64() * 1e3
            }) + reply.queue_ms;
            r.hops[k - 1].push((start - end - queued).max(0.0));
            r.waits[k - 1].push(queued);
        }
    }
}

impl super::scheduler::Serve for ShardedHandle {
    fn ticket(&self, phase: Phase) -> Ticket {
        ShardedHandle::ticket(self, phase)
    }

    async fn serve(&self, ticket: Ticket, scheduled: Instant, phase: Phase) -> bool {
        self.infer_at(ticket, scheduled, phase).await.is_ok()
    }

    fn reject(&self, ticket: Ticket, scheduled: Instant, phase: Phase, class: ErrorClass) {
        ShardedHandle::reject(self, ticket, scheduled, phase, class);
    }
}

/// The worker serving shard `k` (`entry`): at once when one is routable, else after waiting
/// (up to the recovery timeout) for the recovery moving it.
pub(super) async fn serving_worker(
    pool: &Pool,
    entry: &ModelEntry,
    k: usize,
) -> Result<Arc<Worker>, ShardError> {
    let waited = Instant::now();
    loop {
        if let Some(w) = pool.placements().least_loaded(entry, None) {
            return Ok(w);
        }
        if pool.cancel().is_cancelled() {
            return Err(ShardError::ShuttingDown);
        }
        if waited.elapsed() >= pool.config().recovery.timeout {
            return Err(ShardError::NoWorker {
                shard: k,
                waited: waited.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A failed call of shard `call.0` (model `call.1`, sent at `call.2`) on `worker`: when its
/// class is transient and the request has recoveries left (`recoveries`, counted here), starts
/// or joins the pool's recovery episode of the worker and returns the class once it ended, for
/// the request to go on; else the request's error.
pub(super) async fn recover_shard(
    pool: &Pool,
    worker: &Arc<Worker>,
    generation: u64,
    (k, model, sent): (usize, &str, Instant),
    e: crate::browser::WorkerError,
    recoveries: &mut u32,
) -> Result<ErrorClass, ShardError> {
    let class = ErrorClass::of(&e);
    if !class.is_transient() || *recoveries >= pool.config().recovery.max_attempts {
        return Err(ShardError::Call {
            shard: k,
            worker: worker.id.clone(),
            recoveries: *recoveries,
            source: e,
        });
    }
    *recoveries += 1;
    let back = Instant::now();
    let cause = Cause {
        seen: Detection::Request(class),
        model: Some(model.to_string()),
        in_flight: back.saturating_duration_since(sent),
        seen_at: back,
    };
    recover(pool, worker, generation, cause).await;
    Ok(class)
}

/// A shard's output as its reply gave it.
#[derive(Debug)]
struct Output {
    dims: Vec<i64>,
    data_b64: Option<String>,
    digest: Option<String>,
}

impl Output {
    /// The output of shard `k` from its reply: its shape, its values in base64 (none when they
    /// went to a relay slot) and the page's digest of them.
    fn of(
        k: usize,
        worker: &str,
        shard: &PreparedModel,
        reply: &RunReply,
    ) -> Result<Self, ShardError> {
        let name = &shard.output_name;
        let bad = |what| ShardError::Answer {
            shard: k,
            worker: worker.to_string(),
            what,
        };
        let t = reply
            .outputs
            .get(name)
            .ok_or_else(|| bad(AnswerFault::Missing(name.clone())))?;
        if t.data_b64.is_none() && !t.relayed {
            return Err(bad(AnswerFault::NoValues(name.clone())));
        }
        Ok(Self {
            dims: t.dims.clone(),
            data_b64: t.data_b64.clone(),
            digest: t.stats.as_ref().map(|s| s.digest.clone()),
        })
    }
}
