//! The pool: workers (a browser plus its page, each owned by one task), the models placed on
//! them, and the run engine that drives a workload through them.
//!
//! Each part owns its state behind private fields, and the others ask it:
//! - `members.rs`: [`Members`], live and retired workers, launches in progress, the peak;
//! - `placements.rs`: [`Placements`], the one index of which worker serves or holds a standby
//!   of which model, and each model's verified answers;
//! - `ledger.rs`: [`Ledger`], request accounting (tickets, samples, counts);
//! - `recover.rs`: [`Recovery`], recovery episodes and the faults awaiting their failure
//!   (`attribution.rs`), and `repair.rs`, repairing a worker whose models went to standbys;
//! - `pipelines.rs`: [`Pipelines`], which models are a sharded model's shards, in order, and
//!   what a failed shard's worker gets;
//! - `standby.rs`: [`StandbyState`], what keeping hot standbys needs;
//! - `events.rs`: [`Events`], the one typed event stream (journal, report, live progress).
//!
//! The work that crosses parts: `placing.rs` (route, place, replace, migrate, move shards),
//! `handle.rs` ([`ModelHandle`], a request's path), `pipeline.rs` ([`ShardedHandle`], a
//! sharded request's path), `upkeep.rs`, `adapt.rs`, `injector.rs`, and `engine/` (the run
//! loops: matrix, routed and pipeline). This file holds [`Pool`], the one `impl
//! Pool`: starting, launching, retiring and shutting down, which touch several parts at once.
//!
//! Rust API: `Pool::start(config, server, journal, cancel)`, then
//! `pool.get_model(task, name, hardware, fault_tolerance)` returns a [`ModelHandle`] and
//! `handle.infer(Input::Prepared).await` runs it on the least-loaded worker holding it; the CLI
//! uses the same API through the scheduler. Must not import `cli`, `report` or any terminal
//! crate: progress goes out through [`RunObserver`].

use std::sync::{Arc, Mutex};

pub(crate) use crate::sync::lock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::browser::BrowserKind;
use crate::models::{self, PreparedModel, Task};
use crate::server::AssetServer;

mod accounting;
mod adapt;
pub mod attribution;
pub mod config;
pub mod correctness;
mod coverage;
pub mod engine;
pub mod error;
pub mod events;
mod first_answer;
pub mod generation;
mod handle;
pub mod injector;
pub mod journal;
mod launching;
pub mod ledger;
mod members;
pub mod pipeline;
mod pipelines;
mod placements;
mod placing;
mod recover;
mod repair;
pub mod router;
pub mod scheduler;
mod shards;
mod standby;
mod upkeep;
pub mod worker;

pub use crate::backend::Backend;
pub use adapt::AdaptSettings;
pub use attribution::{Detection, FaultNote};
pub use config::{
    FaultTolerance, PageSettings, PoolConfig, RecoveryConfig, Standbys, WorkerTimeouts,
};
pub use engine::{
    execute, layer_ms, CellTensor, EngineOutput, Placement, RunEvent, RunObserver, RunPlan,
};
pub use error::{AnswerFault, ErrorClass, PoolError, ShardError};
pub use events::{PlacementRecord, PoolEvent, RecoveryRecord, Stamped};
pub use generation::{GenerationHandle, Stall, Step, StepRecord, Writing, Written};
pub use handle::{Inference, Input, ModelHandle};
pub use journal::Journal;
pub use members::WorkerReport;
pub use pipeline::{ShardedAnswer, ShardedHandle};
pub use pipelines::{PipelineId, ShardLoads};
pub use placing::MigrateError;
pub use router::{HardwarePreferences, Measured, Preferences};
pub use scheduler::{Bound, Schedule, Workload};
pub use shards::{in_place_order, place_pipeline, PipelineSpec};
pub use worker::{Page, Worker, BEAT_INTERVAL, HANG_AFTER};

use events::{Events, LaunchReason, RetireReason};
use ledger::Ledger;
use members::Members;
use pipelines::Pipelines;
use placements::Placements;
pub use placements::{CellCheckRecord, CellChecks};
use recover::Recovery;
use standby::StandbyState;
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
    cancel: CancellationToken,
    t0: Instant,
    members: Members,
    placements: Placements,
    pipelines: Pipelines,
    standbys: StandbyState,
    ledger: Ledger,
    recovery: Recovery,
    events: Events,
    upkeep: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Everything the pool observed, at shutdown.
#[derive(Debug, Clone, Default)]
pub struct PoolReport {
    /// Every worker that ever existed.
    pub workers: Vec<WorkerReport>,
    /// Every routing decision.
    pub decisions: Vec<router::Decision>,
    /// Every placement.
    pub placements: Vec<Arc<PlacementRecord>>,
    /// Every event, in order (the decisions, placements, recoveries and faults among them).
    pub events: Vec<Stamped>,
    /// Request accounting.
    pub requests: crate::metrics::Requests,
    /// Every request.
    pub samples: Vec<crate::metrics::Sample>,
    /// Largest number of live workers at once.
    pub peak_workers: usize,
    /// Every recovery episode.
    pub recoveries: Vec<RecoveryRecord>,
    /// Every fault injected, skipped or failed.
    pub faults: Vec<FaultNote>,
    /// Per model, browser kind and backend: placements verified against native or rejected
    /// before serving, answers digest-checked.
    pub checks: Vec<CellCheckRecord>,
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
                cancel: cancel.child_token(),
                t0,
                members: Members::default(),
                placements: Placements::default(),
                pipelines: Pipelines::default(),
                standbys: StandbyState::default(),
                ledger: Ledger::new(t0),
                recovery: Recovery::default(),
                events: Events::new(t0, journal),
                upkeep: Mutex::new(None),
            }),
        };
        let launches = kinds
            .into_iter()
            .map(|k| pool.launch(k, LaunchReason::Initial));
        let results = futures::future::join_all(launches).await;
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
        let no_task = |e: tokio::task::JoinError| PoolError::NoPlacement {
            model: name.into(),
            reason: format!("preparation task: {e}"),
        };
        let (prepared, oracle) = tokio::task::spawn_blocking(move || {
            let prepared = models::prepare(spec, &cache, seed)?;
            // The answer every placement's first run is judged against: one native run.
            let oracle = crate::oracle::run_model(&cache, &prepared, 1);
            Ok::<_, models::ModelError>((prepared, oracle))
        })
        .await
        .map_err(no_task)?
        .map_err(model_error)?;
        let oracle = oracle.map_err(|e| PoolError::NoPlacement {
            model: name.into(),
            reason: format!("the native reference its answers are checked against: {e}"),
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
        self.place_model(
            Arc::new(prepared),
            Some(Arc::new(oracle)),
            hardware,
            fault_tolerance,
        )
        .await
    }

    /// Places a model prepared by the caller (the engine prepares each model once, before the
    /// pool starts) and returns a handle to it. Loads it and runs it once unless a live
    /// placement exists; that first answer, and the first answer of every later placement of
    /// the model, must match `oracle` (the model run by native onnxruntime) over every value
    /// before the placement serves.
    ///
    /// # Errors
    /// Nowhere to place it, the load or first run failed, or the first answer was wrong.
    pub async fn place_model(
        &self,
        prepared: Arc<PreparedModel>,
        oracle: Option<Arc<crate::oracle::NativeResult>>,
        hardware: HardwarePreferences,
        fault_tolerance: FaultTolerance,
    ) -> Result<ModelHandle, PoolError> {
        let entry = self.inner.placements.entry(prepared, oracle, hardware);
        let handle = ModelHandle::new(self.clone(), entry, fault_tolerance);
        handle.place_first().await?;
        Ok(handle)
    }

    /// Milliseconds since the pool started (the time base of its samples and events).
    pub fn elapsed_ms(&self) -> f64 {
        self.inner.t0.elapsed().as_secs_f64() * 1e3
    }

    /// Whole milliseconds from the pool's start to `t`.
    pub fn ms(&self, t: Instant) -> u64 {
        self.inner.events.ms(t)
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
        while self.inner.members.launching() > 0 && waited.elapsed() < Duration::from_secs(90) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Take the handle first: the std mutex must not be held across the await.
        let upkeep = lock(&self.inner.upkeep).take();
        if let Some(h) = upkeep {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        // Episodes in flight end on their own (a launch sees the cancellation, every call has a
        // bound) and are recorded, succeeded or not.
        let bound = self.inner.config.recovery.timeout + Duration::from_secs(10);
        for h in self.inner.recovery.take_episodes() {
            let _ = tokio::time::timeout(bound, h).await;
        }
        self.close_all().await;
        for h in self.inner.members.take_closing() {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
        let books = self.inner.ledger.close();
        for (model, phase) in books.lost {
            self.emit(PoolEvent::Lost { model, phase });
        }
        let events = self.inner.events.all();
        let mut report = PoolReport {
            workers: self.inner.members.reports(),
            requests: books.requests,
            samples: books.samples,
            peak_workers: self.inner.members.peak(),
            checks: self.inner.placements.checks(),
            ..PoolReport::default()
        };
        for e in &events {
            match &e.event {
                PoolEvent::Routed(d) => report.decisions.push(d.clone()),
                PoolEvent::Placed(p) => report.placements.push(p.clone()),
                PoolEvent::Recovered(r) => report.recoveries.push(r.clone()),
                PoolEvent::Fault(f) => report.faults.push(f.clone()),
                _ => {}
            }
        }
        report.events = events;
        report
    }

    /// Live workers right now.
    pub fn workers(&self) -> Vec<Arc<Worker>> {
        self.inner.members.live()
    }

    /// Whether exactly `min_workers` are live.
    pub fn at_minimum(&self) -> bool {
        self.workers().len() == self.inner.config.min_workers
    }

    /// Whether one more worker fits under `max_workers`.
    fn has_room(&self) -> bool {
        self.inner.members.counted() < self.inner.config.max_workers
    }

    /// Launches one worker of `kind` and adds it to the pool.
    async fn launch(&self, kind: BrowserKind, why: LaunchReason) -> Result<Arc<Worker>, PoolError> {
        launching::launch(self, kind, why, self.inner.ctx.clone()).await
    }

    /// Launches one worker of `kind` whose page runs `wasm_threads` wasm threads
    /// ([`launching::with_threads`]).
    async fn launch_with_threads(
        &self,
        kind: BrowserKind,
        wasm_threads: u32,
        why: LaunchReason,
    ) -> Result<Arc<Worker>, PoolError> {
        launching::with_threads(self, kind, wasm_threads, why).await
    }

    /// Takes `worker` out of service: out of the live list and every placement, its browser
    /// closed in the background (shutdown waits for it).
    fn retire(&self, worker: &Arc<Worker>, why: RetireReason) {
        let removed = self.inner.members.retire(worker);
        let held = self.inner.placements.unplace_everywhere(worker);
        if !removed {
            return;
        }
        worker.mark_unhealthy(why.to_string());
        worker.abandon_calls();
        self.emit(PoolEvent::Retired {
            worker: worker.id.clone(),
            why,
            held,
        });
        let (w, pool) = (worker.clone(), self.clone());
        let handle = tokio::spawn(async move {
            w.close().await;
            pool.emit(PoolEvent::Removed {
                worker: w.id.clone(),
            });
        });
        self.inner.members.closing(handle);
    }

    /// Closes the live workers in `close` (idle or unhealthy ones upkeep chose).
    async fn close_members(&self, close: Vec<(Arc<Worker>, events::CloseReason)>) {
        for (w, reason) in close {
            w.close().await;
            self.emit(PoolEvent::Closed {
                worker: w.id.clone(),
                reason,
                live: self.workers().len(),
            });
            self.inner.members.keep_retired(w);
        }
    }

    /// Closes every live worker (shutdown, or a failed start).
    async fn close_all(&self) {
        let live = self.inner.members.take_all();
        futures::future::join_all(live.iter().map(|s| s.close())).await;
        for s in live {
            self.emit(PoolEvent::Removed {
                worker: s.id.clone(),
            });
            self.inner.members.keep_retired(s);
        }
    }

    /// Live counts while a workload runs: requests succeeded and failed so far, and workers in
    /// a recovery episode now.
    pub fn live(&self) -> LiveCounts {
        let recovering = self
            .workers()
            .iter()
            .filter(|s| s.status().lifecycle == Lifecycle::Recovering)
            .count();
        let (succeeded, failed) = self.inner.ledger.ended();
        LiveCounts {
            succeeded,
            failed,
            recovering,
        }
    }

    /// The live event channel: every event from now on, as it is emitted. Only the first
    /// caller gets it (the engine); `None` after.
    pub fn subscribe(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Stamped>> {
        self.inner.events.subscribe()
    }

    /// Records a fault the injector carried out, skipped or failed to carry out (an announced
    /// fault that failed stops waiting for a failure).
    pub fn note_fault(&self, note: FaultNote) {
        if let (false, false, Some(kind)) = (note.injected, note.target.is_empty(), note.kind) {
            self.inner.recovery.fault_absorbed(&note.target, kind);
        }
        self.emit(PoolEvent::Fault(note));
    }

    /// The run's journal, if it has one.
    pub fn journal(&self) -> Option<&Journal> {
        self.inner.events.journal()
    }

    /// The journal's progress op for now: requests started (in flight included), succeeded
    /// and failed, measured requests per model, and `elapsed` of measured time.
    pub fn progress(&self, elapsed: Duration) -> crate::state::Op {
        let (succeeded, failed) = self.inner.ledger.ended();
        crate::state::Op::Progress {
            issued: self.requests_started(),
            succeeded,
            failed,
            per_model: self.inner.ledger.per_model(),
            elapsed_ms: elapsed.as_millis() as u64,
        }
    }

    /// No launch in progress and no recovery running (a benchmark waits for this between
    /// faults).
    pub fn is_settled(&self) -> bool {
        let spares_ready =
            self.inner.config.standbys.copies == 0 || self.inner.placements.spares_ready();
        self.inner.members.launching() == 0
            && self.workers().iter().all(|s| s.episode.try_lock().is_ok())
            && self.workers().len() >= self.inner.config.min_workers
            && spares_ready
    }

    /// Requests started so far (in flight included).
    pub fn requests_started(&self) -> u64 {
        self.inner.ledger.started()
    }

    /// Moves `model` to a worker of kind `to` (see `placing::migrate`).
    ///
    /// # Errors
    /// [`MigrateError`]: why the migration did not happen (after its rollback).
    pub async fn migrate(&self, model: &str, to: BrowserKind) -> Result<String, MigrateError> {
        placing::migrate(self, model, to).await
    }

    /// Waits (up to `bound`) for every placed model's standby copies; returns how many each has.
    pub async fn standbys_ready(&self, bound: Duration) -> Vec<(String, usize)> {
        standby::ready(self, bound).await
    }

    /// Adaptive routing until `stop` (see `adapt.rs`).
    pub async fn adapt(
        &self,
        settings: AdaptSettings,
        stop: CancellationToken,
    ) -> Vec<crate::metrics::AdaptiveEvaluation> {
        adapt::adapt(self, settings, stop).await
    }

    /// Emits one event into the pool's stream.
    fn emit(&self, event: PoolEvent) {
        self.inner.events.emit(event);
    }

    /// Records which models have a live copy now (a pipeline's: every shard has one).
    fn record_coverage(&self) {
        let copies = self.placements().live_copies();
        let mut live = std::collections::BTreeMap::<String, bool>::new();
        for (name, has) in copies.values() {
            *live.entry(name.clone()).or_default() |= *has;
        }
        for (model, shards) in self.pipelines().shard_keys() {
            let all = shards
                .iter()
                .all(|k| copies.get(k).is_some_and(|(_, has)| *has));
            live.insert(model, all);
        }
        self.ledger().record_coverage(live);
    }

    fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    fn cancel(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    fn members(&self) -> &Members {
        &self.inner.members
    }

    fn placements(&self) -> &Placements {
        &self.inner.placements
    }

    fn pipelines(&self) -> &Pipelines {
        &self.inner.pipelines
    }

    fn ctx(&self) -> &WorkerContext {
        &self.inner.ctx
    }

    fn standby_state(&self) -> &StandbyState {
        &self.inner.standbys
    }

    fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    fn recovery(&self) -> &Recovery {
        &self.inner.recovery
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
}
