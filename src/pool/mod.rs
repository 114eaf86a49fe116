//! The pool: workers (a browser plus its page, each owned by one task), the models placed on
//! them, and the run engine that drives a workload through them.
//!
//! Split by the state each part owns:
//! - `config.rs`: [`PoolConfig`], one copy, shared read-only;
//! - `members.rs`: live and retired workers (launch, retire, room, peak);
//! - `placement.rs`: which worker serves which model (route, place, replace, migrate);
//! - `standby.rs`: hot standbys (keep, check, wait for, promote);
//! - `handle.rs`: [`ModelHandle`], a request's path (pick, run, retry by [`ErrorClass`]);
//! - `ledger.rs`: what was observed (samples, counts, events) -> [`PoolReport`];
//! - `attribution.rs`: injected faults waiting for the failure they cause;
//! - `recover.rs`: recovery episodes; `aside.rs`: repairing a worker whose models
//!   went to standbys, in the background; `upkeep.rs`: heartbeats, memory, reaping, the minimum;
//! - `worker/`: the worker handle, its task and the typed page API; `engine/`: the run loops.
//!
//! Rust API: `Pool::start(config, server, journal, cancel)`, then
//! `pool.get_model(task, name, hardware, fault_tolerance)` returns a [`ModelHandle`] and
//! `handle.infer(Input::Prepared).await` runs it on the least-loaded worker holding it; the CLI
//! uses the same API through the scheduler. Must not import `cli`, `report` or any terminal
//! crate: progress goes out through [`RunObserver`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::models::{self, PreparedModel, Task};
use crate::server::AssetServer;

mod adapt;
mod aside;
pub mod attribution;
pub mod config;
pub mod correctness;
pub mod engine;
pub mod error;
mod handle;
pub mod injector;
pub mod journal;
pub mod ledger;
mod members;
pub mod placement;
pub mod recover;
pub mod router;
pub mod scheduler;
mod standby;
mod upkeep;
pub mod worker;

pub use crate::backend::Backend;
pub use adapt::AdaptSettings;
pub use attribution::{Detection, FaultNote};
pub use config::{
    FaultTolerance, PageSettings, PoolConfig, RecoveryConfig, Standbys, WorkerTimeouts,
};
pub use engine::{execute, CellTensor, EngineOutput, Placement, RunEvent, RunObserver, RunPlan};
pub use error::{ErrorClass, PoolError};
pub use handle::{Inference, Input, ModelHandle};
pub use journal::Journal;
pub use ledger::{PoolEvent, PoolReport, WorkerReport};
pub use recover::RecoveryRecord;
pub use router::{HardwarePreferences, Measured, Preferences};
pub use scheduler::{Bound, Schedule, Workload};
pub use worker::{Page, Worker};

use attribution::Attribution;
use ledger::Ledger;
use members::Members;
use placement::ModelEntry;
use worker::{Lifecycle, WorkerContext};

/// A pool of browser workers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PoolConfig,
    /// What every worker task shares: the asset server, page settings, timeouts.
    ctx: Arc<WorkerContext>,
    /// Where changes of state are journaled (the run's transaction log), if anywhere.
    journal: Option<Journal>,
    cancel: CancellationToken,
    t0: Instant,
    members: Mutex<Members>,
    /// Launches in progress (counted against `max_workers`; shutdown waits for them).
    launching: AtomicUsize,
    peak: AtomicUsize,
    /// Models by name (and browser pin), each with its placements.
    models: Mutex<HashMap<String, Arc<ModelEntry>>>,
    ledger: Mutex<Ledger>,
    attribution: Mutex<Attribution>,
    upkeep: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Closes of retired workers in flight; shutdown waits for them.
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Recovery episodes in flight; shutdown waits for them so each is recorded.
    episodes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Requests started (each counted once, whatever its attempts).
    started: AtomicU64,
    /// Woken each time a request ends, for the engine to journal progress at once.
    ended: tokio::sync::Notify,
}

impl Pool {
    /// Starts the pool: launches the initial workers in parallel and the upkeep task.
    ///
    /// # Errors
    /// [`PoolError::Worker`] when an initial worker cannot be launched (the others are closed).
    pub async fn start(
        config: PoolConfig,
        server: Arc<AssetServer>,
        journal: Option<Journal>,
        cancel: CancellationToken,
    ) -> Result<Self, PoolError> {
        let t0 = Instant::now();
        let ctx = Arc::new(WorkerContext {
            server,
            page: config.page.clone(),
            timeouts: config.timeouts,
        });
        let kinds = config.initial_kinds();
        let pool = Self {
            inner: Arc::new(Inner {
                config,
                ctx,
                journal,
                cancel: cancel.child_token(),
                t0,
                members: Mutex::default(),
                launching: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                models: Mutex::default(),
                ledger: Mutex::new(Ledger::new(t0)),
                attribution: Mutex::default(),
                upkeep: Mutex::new(None),
                closing: Mutex::default(),
                episodes: Mutex::default(),
                started: AtomicU64::new(0),
                ended: tokio::sync::Notify::new(),
            }),
        };
        let results =
            futures::future::join_all(kinds.into_iter().map(|k| pool.launch(k, "initial"))).await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            pool.close_all().await;
            return Err(e);
        }
        let upkeep = tokio::spawn(upkeep::run(pool.clone()));
        *lock(&pool.inner.upkeep) = Some(upkeep);
        Ok(pool)
    }

    /// Prepares `name` (weights and ONNX file in the pool's cache), places it per the router
    /// and returns a handle to it: the Rust API's entry point.
    ///
    /// # Errors
    /// Unknown model, preparation failure, a model of another task, nowhere to place it, or
    /// the load failed everywhere.
    pub async fn get_model(
        &self,
        task: Task,
        name: &str,
        hardware: HardwarePreferences,
        fault_tolerance: FaultTolerance,
    ) -> Result<ModelHandle, PoolError> {
        let model_error = |e| PoolError::Model {
            model: name.into(),
            source: Box::new(e),
        };
        let spec = models::resolve(name).map_err(model_error)?;
        let (cache, seed) = (self.inner.config.cache.clone(), self.inner.config.seed);
        let prepared = tokio::task::spawn_blocking(move || models::prepare(spec, &cache, seed))
            .await
            .map_err(|e| PoolError::NoPlacement {
                model: name.into(),
                reason: format!("preparation task: {e}"),
            })?
            .map_err(model_error)?;
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
        self.place_model(Arc::new(prepared), hardware, fault_tolerance)
            .await
    }

    /// Places a model prepared by the caller (the engine prepares each model once, before the
    /// pool starts) and returns a handle to it. Loads it (and runs it once, keeping the output
    /// for the correctness checks) unless a live placement exists.
    ///
    /// # Errors
    /// Nowhere to place it, or the load or first run failed.
    pub async fn place_model(
        &self,
        prepared: Arc<PreparedModel>,
        hardware: HardwarePreferences,
        fault_tolerance: FaultTolerance,
    ) -> Result<ModelHandle, PoolError> {
        let key = format!("{}@{:?}", prepared.name, hardware.browser);
        let entry = lock(&self.inner.models)
            .entry(key)
            .or_insert_with(|| Arc::new(ModelEntry::new(prepared, hardware)))
            .clone();
        let handle = ModelHandle::new(self.clone(), entry, fault_tolerance);
        handle.place_first().await?;
        Ok(handle)
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
        // Episodes in flight end on their own (a launch sees the cancellation, every call has a
        // bound) and are recorded, succeeded or not.
        let episodes: Vec<_> = std::mem::take(&mut *lock(&self.inner.episodes));
        let bound = self.inner.config.recovery.timeout + Duration::from_secs(10);
        for h in episodes {
            let _ = tokio::time::timeout(bound, h).await;
        }
        self.close_all().await;
        let closing: Vec<_> = std::mem::take(&mut *lock(&self.inner.closing));
        for h in closing {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
        let workers = self.worker_reports();
        let ledger = std::mem::replace(&mut *lock(&self.inner.ledger), Ledger::new(self.inner.t0));
        ledger.into_report(workers, self.inner.peak.load(Ordering::SeqCst))
    }

    /// Requests finished so far `(succeeded, failed)`, workers in recovery, and the faults and
    /// recovery episodes after the first `seen_faults` / `seen_recoveries` (for live progress).
    pub fn live(&self, seen_faults: usize, seen_recoveries: usize) -> LiveCounts {
        let recovering = self
            .workers()
            .iter()
            .filter(|s| s.status().lifecycle == Lifecycle::Recovering)
            .count();
        let ledger = lock(&self.inner.ledger);
        let (succeeded, failed) = ledger.ended();
        LiveCounts {
            succeeded,
            failed,
            recovering,
            faults: ledger.faults_since(seen_faults),
            recoveries: ledger.recoveries_since(seen_recoveries),
        }
    }

    /// Announces a fault about to hit `worker`: from now on a failure detected there is
    /// matched with it (and timed from it). Announced before the fault acts, so a failure seen
    /// at once is not taken for an external one.
    pub fn fault_starting(&self, worker: &str, kind: crate::faults::Kind) {
        lock(&self.inner.attribution).starting(worker, kind);
    }

    /// The announced fault took effect now (a page fault answers once it has started).
    pub fn fault_effective(&self, worker: &str, kind: crate::faults::Kind) {
        lock(&self.inner.attribution).effective(worker, kind);
    }

    /// Records a fault the injector carried out, skipped or failed to carry out (an announced
    /// fault that failed stops waiting for a failure).
    pub fn note_fault(&self, note: FaultNote) {
        if let (false, false, Some(kind)) = (note.injected, note.target.is_empty(), note.kind) {
            self.fault_absorbed(&note.target, kind);
        }
        lock(&self.inner.ledger).fault(note);
    }

    /// Clears a pending fault that ended without a failure (a hang or slowdown absorbed by the
    /// timeouts).
    pub fn fault_absorbed(&self, worker: &str, kind: crate::faults::Kind) {
        lock(&self.inner.attribution).absorbed(worker, kind);
    }

    /// Commits `op` to the run's journal, if it has one.
    pub(crate) fn journal(&self, op: crate::state::Op) {
        if let Some(j) = &self.inner.journal {
            j.commit(op);
        }
    }

    /// The run's journal, if it has one.
    pub fn journal_handle(&self) -> Option<&Journal> {
        self.inner.journal.as_ref()
    }

    /// The journal's progress op for now: requests started (in flight included), succeeded
    /// and failed, measured requests per model, and `elapsed` of measured time.
    pub fn progress(&self, elapsed: Duration) -> crate::state::Op {
        let ledger = lock(&self.inner.ledger);
        let (succeeded, failed) = ledger.ended();
        crate::state::Op::Progress {
            issued: self.requests_started(),
            succeeded,
            failed,
            per_model: ledger.per_model().clone(),
            elapsed_ms: elapsed.as_millis() as u64,
        }
    }

    /// No launch in progress and no recovery running (a benchmark waits for this between
    /// faults).
    pub fn is_settled(&self) -> bool {
        let spares_ready = self.inner.config.standbys.copies == 0
            || lock(&self.inner.models).values().all(|e| e.spare_ready());
        self.inner.launching.load(Ordering::SeqCst) == 0
            && self.workers().iter().all(|s| s.episode.try_lock().is_ok())
            && self.workers().len() >= self.inner.config.min_workers
            && spares_ready
    }

    /// Requests started so far (in flight included).
    pub fn requests_started(&self) -> u64 {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// Resolves when a request has ended (succeeded or failed) since the last call returned;
    /// several endings in between wake it once.
    pub async fn request_ended(&self) {
        self.inner.ended.notified().await;
    }

    /// Records a scaling or health event.
    fn event(&self, kind: &str, worker: &str, detail: String) {
        lock(&self.inner.ledger).event(kind, worker, detail);
    }

    /// Accounts for one request that ended and wakes the progress journal.
    fn request_ended_as(&self, end: ledger::RequestEnd<'_>) {
        lock(&self.inner.ledger).request(end);
        self.inner.ended.notify_one();
    }
}

/// Live counts while a workload runs (see [`Pool::live`]).
#[derive(Debug, Clone)]
pub struct LiveCounts {
    /// Requests succeeded so far.
    pub succeeded: u64,
    /// Requests failed so far.
    pub failed: u64,
    /// Workers in a recovery episode now.
    pub recovering: usize,
    /// Faults recorded since the caller last looked.
    pub faults: Vec<FaultNote>,
    /// Recovery episodes recorded since the caller last looked.
    pub recoveries: Vec<RecoveryRecord>,
}

/// Locks a std mutex, recovering from poisoning (a panicked holder left plain data behind).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
