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

use crate::recovery;

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
    /// How failed workers are recovered.
    pub recovery: RecoveryConfig,
    /// Where changes of state are journaled (the run's transaction log), if anywhere.
    pub journal: Option<super::Journal>,
    /// Keep a warm spare of every model: a second worker with the model loaded that serves
    /// nothing until a failure promotes it (a migration then costs no load).
    pub warm_spares: bool,
}

/// How the pool recovers failed workers.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryConfig {
    /// Ladder start (`None`: failed workers are closed and their requests fail).
    pub strategy: recovery::Strategy,
    /// Bound on one recovery episode.
    pub timeout: Duration,
    /// Attempts per request (the first included) before it counts as failed.
    pub max_attempts: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            strategy: recovery::Strategy::None,
            timeout: Duration::from_secs(30),
            max_attempts: 1,
        }
    }
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

/// Fault-tolerance wishes for a model handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultTolerance {
    /// Fail the request when its worker fails.
    #[default]
    None,
    /// Hide worker failures from the caller: the pool recovers (per its recovery strategy and
    /// timeout) and the request runs again on the recovered placement, up to the pool's
    /// `max_attempts`. A request succeeds at most once.
    Recover,
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
    /// Every recovery episode.
    pub recoveries: Vec<RecoveryRecord>,
    /// Every fault injected through [`Pool::note_fault`].
    pub faults: Vec<FaultNote>,
}

/// One recovery episode: a worker failed, the ladder ran.
#[derive(Debug, Clone)]
pub struct RecoveryRecord {
    /// When the failure was detected, ms since the pool started.
    pub at_ms: u64,
    /// The worker that failed.
    pub worker: String,
    /// The injected fault it is attributed to, or `external` (a failure nobody injected).
    pub fault_kind: String,
    /// How it was noticed: the error class of the failing call, or `heartbeat`/`process_exit`.
    pub detected_by: String,
    /// Fault to detection, ms (for external failures: the failing call's time in flight).
    pub detection_ms: u64,
    /// Highest ladder level tried.
    pub level: Option<recovery::Level>,
    /// Detection to serving again (or to giving up), ms.
    pub recovery_ms: u64,
    /// Whether service was restored.
    pub succeeded: bool,
    /// What each level did.
    pub steps: Vec<String>,
}

/// A fault as the injector carried it out.
#[derive(Debug, Clone)]
pub struct FaultNote {
    /// Kind, e.g. `kill_browser`.
    pub kind: String,
    /// Ms since the pool started.
    pub at_ms: u64,
    /// Worker hit (empty when skipped).
    pub target: String,
    /// What was done, or why it was skipped.
    pub detail: String,
    /// Whether it was carried out.
    pub injected: bool,
}

/// A fault injected on a worker and not yet matched to a detected failure.
#[derive(Debug)]
struct Pending {
    worker: String,
    kind: String,
    at: Instant,
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
    /// Injected faults waiting to be matched with the failure they cause.
    pending: Mutex<Vec<Pending>>,
    /// Closes of retired workers in flight; shutdown waits for them.
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Requests started (each counted once, whatever its attempts).
    started: std::sync::atomic::AtomicU64,
    /// Woken each time a request ends, for the engine to journal progress at once.
    ended: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Log {
    decisions: Vec<Decision>,
    placements: Vec<PlacementRecord>,
    events: Vec<PoolEvent>,
    requests: Requests,
    samples: Vec<Sample>,
    recoveries: Vec<RecoveryRecord>,
    faults: Vec<FaultNote>,
    /// Measured requests finished, per model.
    per_model: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug)]
struct ModelEntry {
    prepared: Arc<PreparedModel>,
    hardware: HardwarePreferences,
    placements: Mutex<Vec<Arc<Slot>>>,
    /// Serialises (re)placement so a burst of requests places a model once.
    placing: tokio::sync::Mutex<()>,
    scaling: AtomicBool,
    /// Warm spares: workers with the model loaded that serve only once promoted.
    standby: Mutex<Vec<Arc<Slot>>>,
    /// A standby load is in flight.
    readying: AtomicBool,
}

/// A model placed in the pool. Cheap to clone; `infer` is safe to call concurrently.
#[derive(Debug, Clone)]
pub struct ModelHandle {
    pool: Pool,
    entry: Arc<ModelEntry>,
    tolerance: FaultTolerance,
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
                pending: Mutex::default(),
                closing: Mutex::default(),
                started: std::sync::atomic::AtomicU64::new(0),
                ended: tokio::sync::Notify::new(),
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
        fault_tolerance: FaultTolerance,
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
                    standby: Mutex::default(),
                    readying: AtomicBool::new(false),
                });
                lock(&self.inner.models).entry(key).or_insert(entry).clone()
            }
        };
        let handle = ModelHandle {
            pool: self.clone(),
            entry,
            tolerance: fault_tolerance,
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
        // Launches in flight close their own browser when they see the cancellation.
        let waited = Instant::now();
        while self.inner.launching.load(Ordering::SeqCst) > 0
            && waited.elapsed() < Duration::from_secs(90)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Take the handle first: the std mutex must not be held across the await.
        let upkeep = lock(&self.inner.upkeep).take();
        if let Some(h) = upkeep {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        self.close_all().await;
        let closing: Vec<_> = std::mem::take(&mut *lock(&self.inner.closing));
        for h in closing {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
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
            recoveries: log.recoveries,
            faults: log.faults,
        }
    }

    /// Requests finished so far `(succeeded, failed)`, workers in recovery, and the faults and
    /// recovery episodes after the first `seen_faults` / `seen_recoveries` (for live progress).
    pub fn live(
        &self,
        seen_faults: usize,
        seen_recoveries: usize,
    ) -> (u64, u64, usize, Vec<FaultNote>, Vec<RecoveryRecord>) {
        let recovering = self
            .workers()
            .iter()
            .filter(|s| s.status().lifecycle == Lifecycle::Recovering)
            .count();
        let log = lock(&self.inner.log);
        (
            log.requests.succeeded,
            log.requests.failed,
            recovering,
            log.faults.iter().skip(seen_faults).cloned().collect(),
            log.recoveries
                .iter()
                .skip(seen_recoveries)
                .cloned()
                .collect(),
        )
    }

    /// Announces a fault about to hit `worker`: from now on a failure detected there is
    /// matched with it (and timed from it). Announced before the fault acts, so a failure seen
    /// at once is not taken for an external one.
    pub fn fault_starting(&self, worker: &str, kind: &str) {
        lock(&self.inner.pending).push(Pending {
            worker: worker.to_string(),
            kind: kind.to_string(),
            at: Instant::now(),
        });
    }

    /// The announced fault took effect now (a page fault answers once it has started).
    pub fn fault_effective(&self, worker: &str, kind: &str) {
        if let Some(f) = lock(&self.inner.pending)
            .iter_mut()
            .rev()
            .find(|f| f.worker == worker && f.kind == kind)
        {
            f.at = Instant::now();
        }
    }

    /// Records a fault the injector carried out, skipped or failed to carry out (an announced
    /// fault that failed stops waiting for a failure).
    pub fn note_fault(&self, note: FaultNote) {
        if !note.injected && !note.target.is_empty() {
            self.fault_absorbed(&note.target, &note.kind);
        }
        lock(&self.inner.log).faults.push(note);
    }

    /// Clears a pending fault that ended without a failure (a hang or slowdown absorbed by the
    /// timeouts).
    pub fn fault_absorbed(&self, worker: &str, kind: &str) {
        let mut p = lock(&self.inner.pending);
        if let Some(i) = p.iter().position(|f| f.worker == worker && f.kind == kind) {
            p.remove(i);
        }
    }

    async fn close_all(&self) {
        let slots: Vec<_> = std::mem::take(&mut *lock(&self.inner.slots));
        futures::future::join_all(slots.iter().map(|s| s.close())).await;
        for s in &slots {
            self.journal(crate::state::Op::WorkerRemoved { id: s.id.clone() });
        }
        lock(&self.inner.retired).extend(slots);
    }

    /// Commits `op` to the run's journal, if it has one.
    pub(crate) fn journal(&self, op: crate::state::Op) {
        if let Some(j) = &self.inner.config.journal {
            j.commit(op);
        }
    }

    /// The journal's progress op for now: requests started (in flight included), succeeded
    /// and failed, measured requests per model, and `elapsed` of measured time.
    pub fn progress(&self, elapsed: Duration) -> crate::state::Op {
        let log = lock(&self.inner.log);
        crate::state::Op::Progress {
            issued: self.requests_started(),
            succeeded: log.requests.succeeded,
            failed: log.requests.failed,
            per_model: log.per_model.clone(),
            elapsed_ms: elapsed.as_millis() as u64,
        }
    }

    /// The run's journal, if it has one.
    pub fn journal_handle(&self) -> Option<&super::Journal> {
        self.inner.config.journal.as_ref()
    }

    /// Loads a standby copy of every model that has none, on a live worker that does not serve
    /// it (in the background, one per model at a time).
    fn ensure_standbys(&self) {
        let entries: Vec<Arc<ModelEntry>> = lock(&self.inner.models).values().cloned().collect();
        for entry in entries {
            lock(&entry.standby).retain(|s| s.is_routable());
            if !lock(&entry.standby).is_empty() || lock(&entry.placements).is_empty() {
                continue;
            }
            let serving: Vec<String> = lock(&entry.placements)
                .iter()
                .map(|s| s.id.clone())
                .collect();
            let Some(spare) = self
                .workers()
                .into_iter()
                .filter(|s| s.is_routable() && !serving.contains(&s.id))
                .filter(|s| entry.hardware.browser.is_none_or(|b| b == s.kind))
                .min_by_key(|s| s.queued())
            else {
                continue;
            };
            if entry.readying.swap(true, Ordering::SeqCst) {
                continue;
            }
            let (pool, entry) = (self.clone(), entry.clone());
            tokio::spawn(async move {
                match spare.load(entry.prepared.clone()).await {
                    Ok(_) => {
                        pool.event(
                            "standby",
                            &spare.id,
                            format!("{} loaded as a warm spare", entry.prepared.name),
                        );
                        lock(&entry.standby).push(spare);
                    }
                    Err(e) => pool.event("standby_failed", &spare.id, e.to_string()),
                }
                entry.readying.store(false, Ordering::SeqCst);
            });
        }
    }

    /// No launch in progress and no recovery running (a benchmark waits for this between
    /// faults).
    pub fn is_settled(&self) -> bool {
        let spares_ready = !self.inner.config.warm_spares
            || lock(&self.inner.models).values().all(|e| {
                lock(&e.placements).is_empty() || lock(&e.standby).iter().any(|s| s.is_routable())
            });
        self.inner.launching.load(Ordering::SeqCst) == 0
            && self.workers().iter().all(|s| s.episode.try_lock().is_ok())
            && self.workers().len() >= self.inner.config.min_workers
            && spares_ready
    }

    /// Whether exactly `min_workers` are live.
    pub fn at_minimum(&self) -> bool {
        self.workers().len() == self.inner.config.min_workers
    }

    /// Requests started so far (in flight included).
    pub fn requests_started(&self) -> u64 {
        self.inner.started.load(Ordering::SeqCst)
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
        // Counted until the new worker is in the list or closed (even if this future is
        // dropped): has_room() and shutdown() read it.
        let _launching = Launching::enter(&self.inner.launching);
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
            // Checked under the lock shutdown takes the list with: a launch that finishes
            // after shutdown began must not add a browser nobody will close.
            if self.inner.cancel.is_cancelled() {
                None
            } else {
                slots.push(slot.clone());
                Some(slots.len())
            }
        };
        let Some(live) = live else {
            slot.close().await;
            lock(&self.inner.retired).push(slot);
            return Err(PoolError::ShuttingDown);
        };
        self.inner.peak.fetch_max(live, Ordering::SeqCst);
        let browser = slot.browser();
        self.journal(crate::state::Op::WorkerAdded {
            worker: crate::state::WorkerRecord {
                pid: browser.pid(),
                driver_pid: browser.driver_pid(),
                profile_dir: browser.profile_dir().map(|p| p.display().to_string()),
                status: "ready".into(),
                ..crate::state::WorkerRecord::new(
                    slot.id.clone(),
                    kind.as_str(),
                    browser.driver().as_str(),
                )
            },
        });
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
            1,
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
        self.journal(crate::state::Op::Placed {
            model: model.name.clone(),
            worker: slot.id.clone(),
        });
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
        attempt: u32,
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
            (scheduled, issued),
            attempt,
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
        (scheduled, issued): (Instant, Instant),
        attempt: u32,
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
            attempt,
        });
    }

    fn push_sample(&self, mut sample: Sample) {
        let mut log = lock(&self.inner.log);
        sample.seq = log.samples.len() as u64;
        if sample.phase == Phase::Measure {
            *log.per_model.entry(sample.model.clone()).or_default() += 1;
        }
        log.requests.issued += 1;
        if sample.ok {
            log.requests.succeeded += 1;
        } else {
            log.requests.failed += 1;
        }
        log.samples.push(sample);
        drop(log);
        self.inner.ended.notify_one();
    }

    /// Resolves when a request has ended (succeeded or failed) since the last call returned;
    /// several endings in between wake it once.
    pub async fn request_ended(&self) {
        self.inner.ended.notified().await;
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
        pool.inner.started.fetch_add(1, Ordering::SeqCst);
        let recovery = pool.inner.config.recovery;
        let tolerant = self.tolerance == FaultTolerance::Recover
            && recovery.strategy != recovery::Strategy::None;
        let max_attempts = if tolerant {
            recovery.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            if pool.inner.cancel.is_cancelled() {
                self.never_ran_after(scheduled, phase, attempt, "interrupted");
                return Err(PoolError::ShuttingDown);
            }
            let slot = match self.pick().await {
                Ok(s) => s,
                Err(e)
                    if tolerant && attempt < max_attempts && !pool.inner.cancel.is_cancelled() =>
                {
                    // Nowhere to run right now (every placement is being recovered): wait for
                    // the episode in flight, then look again.
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    self.never_ran_after(scheduled, phase, attempt, "no_placement");
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
            let generation = slot.generation();
            let issued = Instant::now();
            let result = slot.run(name, OutputMode::None).await;
            let service = issued.elapsed();
            match result {
                Ok(reply) => {
                    slot.breaker_outcome(true);
                    let reply = pool.record(
                        &slot,
                        name,
                        backend,
                        phase,
                        scheduled,
                        issued,
                        attempt,
                        Ok(reply),
                    )?;
                    return Ok(Inference {
                        worker: slot.id.clone(),
                        browser: slot.kind,
                        backend,
                        page_ms: reply.run_ms,
                        service,
                    });
                }
                Err(e)
                    if tolerant && attempt < max_attempts && !pool.inner.cancel.is_cancelled() =>
                {
                    let cause = Cause {
                        class: super::worker::error_class(&e),
                        session_usable: !(e.is_session_lost()
                            || e.is_timeout()
                            || e.is_device_lost()),
                        model: Some(name.clone()),
                        in_flight: service,
                    };
                    pool.recover(&slot, generation, cause).await;
                    attempt += 1;
                }
                Err(e) => {
                    slot.breaker_outcome(false);
                    pool.push_request(
                        name,
                        Some((&slot, backend)),
                        phase,
                        (scheduled, issued),
                        attempt,
                        Err(super::worker::error_class(&e)),
                    );
                    return Err(e.into());
                }
            }
        }
    }

    /// The workers serving this model now (warm spares excluded).
    pub fn serving(&self) -> Vec<Arc<Slot>> {
        lock(&self.entry.placements).clone()
    }

    /// Unloads the model from every worker holding it.
    pub async fn release(&self) {
        let slots: Vec<_> = std::mem::take(&mut *lock(&self.entry.placements));
        for s in slots {
            let _ = s.unload(&self.entry.prepared.name).await;
            self.pool
                .event("unloaded", &s.id, self.entry.prepared.name.clone());
            self.pool.journal(crate::state::Op::Unplaced {
                model: self.entry.prepared.name.clone(),
                worker: s.id.clone(),
            });
        }
        let mut models = lock(&self.pool.inner.models);
        models.retain(|_, e| !Arc::ptr_eq(e, &self.entry));
    }

    /// Records a request that never ran: `rejected` (queue full) or `deadline` (too late).
    pub fn reject(&self, scheduled: Instant, class: &str) {
        self.never_ran(scheduled, Phase::Measure, class);
    }

    fn never_ran(&self, scheduled: Instant, phase: Phase, class: &str) {
        self.never_ran_after(scheduled, phase, 1, class);
    }

    fn never_ran_after(&self, scheduled: Instant, phase: Phase, attempt: u32, class: &str) {
        let name = &self.entry.prepared.name;
        self.pool.push_request(
            name,
            None,
            phase,
            (scheduled, Instant::now()),
            attempt,
            Err(class),
        );
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
        let tolerant = c.recovery.strategy != recovery::Strategy::None;
        for s in &slots {
            s.sample_memory();
            // A browser killed while idle is found here within a tick, not at the next request.
            if !s.browser_alive() && s.status().lifecycle != Lifecycle::Recovering {
                s.mark_unhealthy("the browser process exited".into());
                pool.event("process_exit", &s.id, "the browser process exited".into());
            }
        }
        if last_beat.elapsed() >= c.heartbeat_interval {
            last_beat = Instant::now();
            let idle: Vec<_> = slots
                .iter()
                .filter(|s| s.is_routable() && s.queued() == 0)
                .cloned()
                .collect();
            let beats = idle.iter().map(|s| async move {
                // Bounded twice: in the queue (the outer timeout) and in the page.
                let r = tokio::time::timeout(
                    c.heartbeat_timeout,
                    s.call_within(
                        "echo",
                        serde_json::json!({"beat": true}),
                        c.heartbeat_timeout,
                    ),
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
        if c.warm_spares && !pool.inner.cancel.is_cancelled() {
            pool.ensure_standbys();
        }
        // Unhealthy workers nobody is recovering yet get a recovery episode.
        if tolerant {
            for s in &slots {
                if s.status().lifecycle == Lifecycle::Unhealthy && s.episode.try_lock().is_ok() {
                    let detected_by = if s.browser_alive() {
                        "heartbeat"
                    } else {
                        "process_exit"
                    };
                    s.set_lifecycle(Lifecycle::Recovering);
                    let (pool, s) = (pool.clone(), s.clone());
                    let generation = s.generation();
                    tokio::spawn(async move {
                        let cause = Cause {
                            class: detected_by,
                            session_usable: false,
                            model: None,
                            in_flight: Duration::ZERO,
                        };
                        pool.recover(&s, generation, cause).await;
                    });
                }
            }
        }
        // Close unhealthy workers (when nothing recovers them), and idle ones beyond the minimum.
        let now = Instant::now();
        let mut close = Vec::new();
        {
            let mut live = lock(&pool.inner.slots);
            let mut count = live.len();
            live.retain(|s| {
                let st = s.status();
                if st.lifecycle == Lifecycle::Recovering {
                    return true;
                }
                let idle = st.queued == 0 && now.duration_since(st.last_active) >= c.idle_timeout;
                let drop = (st.lifecycle == Lifecycle::Unhealthy && !tolerant)
                    || (idle && count > c.min_workers && st.lifecycle != Lifecycle::Unhealthy);
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
            pool.journal(crate::state::Op::WorkerRemoved { id: s.id.clone() });
            lock(&pool.inner.retired).push(s);
        }
        // Keep the minimum.
        let live = pool.workers().len() + pool.inner.launching.load(Ordering::SeqCst);
        if live < c.min_workers && !pool.inner.cancel.is_cancelled() {
            // The kind the pool is short of (a killed Firefox comes back as a Firefox).
            let have: Vec<BrowserKind> = pool.workers().iter().map(|s| s.kind).collect();
            let wanted = c
                .initial
                .iter()
                .copied()
                .cycle()
                .take(c.min_workers.max(c.initial.len()))
                .collect::<Vec<_>>();
            let short = wanted
                .iter()
                .copied()
                .find(|k| {
                    wanted.iter().filter(|w| *w == k).count()
                        > have.iter().filter(|h| *h == k).count()
                })
                .or_else(|| c.initial.first().copied());
            if let Some(kind) = short {
                // In the background: upkeep keeps watching the other workers meanwhile.
                // (launch counts itself in `launching` from its first poll, within the tick.)
                let p = pool.clone();
                tokio::spawn(async move {
                    if let Err(e) = p.launch(kind, "keeping the minimum").await {
                        p.event("launch_failed", "", e.to_string());
                    }
                });
            }
        }
    }
}

mod recover;
use recover::Cause;

/// Counts a launch in progress for as long as it lives.
struct Launching<'a>(&'a AtomicUsize);

impl<'a> Launching<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
