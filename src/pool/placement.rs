//! Placement: which workers serve which model. A [`ModelEntry`] holds a model's serving workers
//! and its warm spares; this file routes a model (through the pure `router`), places it (load
//! and first run), replaces a lost placement (promote a spare, or route again), keeps spares
//! loaded, and moves a model between browsers as one journaled transaction (`migrate`).
//! Must not import `report`, `cli` or terminal crates.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::backend::Backend;
use crate::browser::{BrowserKind, WorkerError};
use crate::metrics::Phase;
use crate::models::PreparedModel;
use crate::state::Op;

use super::correctness::CellOutput;
use super::ledger::{Ran, RequestEnd, Ticket};
use super::router::{self, Candidate, Decision, HardwarePreferences, Target};
use super::worker::{cell_output, LoadReply, OutputMode, Worker};
use super::{lock, ErrorClass, Pool, PoolError};

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

/// A model in the pool and the workers serving it.
#[derive(Debug)]
pub(super) struct ModelEntry {
    pub prepared: Arc<PreparedModel>,
    /// Where it should run: a pin, its backend order, its measured best (adaptive routing
    /// rewrites it when it moves the model).
    pub hardware: Mutex<HardwarePreferences>,
    /// Workers serving the model (warm spares excluded).
    pub placements: Mutex<Vec<Arc<Worker>>>,
    /// Serialises (re)placement so a burst of requests places a model once.
    pub placing: tokio::sync::Mutex<()>,
    /// A scale-up for this model is in flight.
    pub scaling: AtomicBool,
    /// Warm spares: workers with the model loaded that serve only once promoted.
    pub standby: Mutex<Vec<Arc<Worker>>>,
    /// A standby load is in flight.
    pub readying: AtomicBool,
    /// The model's measured memory cost on a worker (PSS growth across its load), KiB.
    pub memory_kib: AtomicU64,
    /// The standby memory budget kept a copy of this model from loading (said once).
    pub over_budget: AtomicBool,
    /// The first answer's digests per browser kind and backend (the first run after a load,
    /// whose every value the correctness checks judge): every later answer must equal it.
    pub verified: Mutex<std::collections::BTreeMap<(BrowserKind, Backend), Digests>>,
    /// The first placement's output, every value (what a standby on another browser kind is
    /// checked against before its answers count as verified).
    pub reference: Mutex<Option<Vec<f32>>>,
}

/// The digest of every output of one answer, by output name.
pub(super) type Digests = std::collections::BTreeMap<String, String>;

impl ModelEntry {
    pub fn new(prepared: Arc<PreparedModel>, hardware: HardwarePreferences) -> Self {
        Self {
            prepared,
            hardware: Mutex::new(hardware),
            placements: Mutex::default(),
            placing: tokio::sync::Mutex::new(()),
            scaling: AtomicBool::new(false),
            standby: Mutex::default(),
            readying: AtomicBool::new(false),
            memory_kib: AtomicU64::new(0),
            over_budget: AtomicBool::new(false),
            verified: Mutex::default(),
            reference: Mutex::default(),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.prepared.name
    }

    /// Where it should run, now.
    pub fn hardware(&self) -> HardwarePreferences {
        lock(&self.hardware).clone()
    }

    /// Whether `worker` serves this model.
    pub fn served_by(&self, worker: &Arc<Worker>) -> bool {
        lock(&self.placements)
            .iter()
            .any(|p| Arc::ptr_eq(p, worker))
    }

    /// Records a measured load cost (the largest seen).
    pub fn note_memory(&self, kib: u64) {
        self.memory_kib.fetch_max(kib, Ordering::SeqCst);
    }

    /// Whether a worker other than `worker` can serve the model at once: another live
    /// placement, or a ready standby.
    pub fn covered_without(&self, worker: &Arc<Worker>) -> bool {
        let other = |s: &Arc<Worker>| !Arc::ptr_eq(s, worker) && s.is_routable();
        lock(&self.placements).iter().any(other) || lock(&self.standby).iter().any(other)
    }

    /// Whether a warm spare is ready (or the model is not placed at all).
    pub fn spare_ready(&self) -> bool {
        lock(&self.placements).is_empty() || lock(&self.standby).iter().any(|s| s.is_routable())
    }
}

/// Why a lost placement could not be replaced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplaceError {
    /// Routing or placing failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Migration wants another live worker and there is none.
    #[error("no other live worker for {model} (the router wants a new {wanted})")]
    NoOtherWorker {
        /// The model.
        model: String,
        /// The kind the router would launch.
        wanted: BrowserKind,
    },
}

/// Why a planned migration did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The model is not in the pool.
    #[error("{model} is not placed in this pool")]
    NotPlaced {
        /// The model.
        model: String,
    },
    /// The model has no live placement.
    #[error("{model} has no live placement to move")]
    NoLivePlacement {
        /// The model.
        model: String,
    },
    /// It runs on that kind already.
    #[error("{model} already runs on {kind} ({worker})")]
    AlreadyThere {
        /// The model.
        model: String,
        /// The kind asked for.
        kind: BrowserKind,
        /// Its worker.
        worker: String,
    },
    /// No live worker of that kind.
    #[error("no live {kind} worker to move {model} to")]
    NoTarget {
        /// The model.
        model: String,
        /// The kind asked for.
        kind: BrowserKind,
    },
    /// The load on the target failed; the transaction was rolled back.
    #[error("load on {target} failed: {error}; rolled back: {undo}; {model} keeps serving from {source_worker}")]
    RolledBack {
        /// The model.
        model: String,
        /// The worker it was to move to.
        target: String,
        /// The worker it keeps serving from.
        source_worker: String,
        /// The load's error.
        error: Box<WorkerError>,
        /// What the rollback did.
        undo: String,
    },
}

impl Pool {
    fn candidates(&self, entry: &ModelEntry) -> Vec<Candidate> {
        self.workers()
            .iter()
            .filter(|s| s.is_routable())
            .map(|s| Candidate {
                id: s.id.clone(),
                kind: s.kind,
                backends: s.status().backends,
                queued: s.queued(),
                has_model: entry.served_by(s),
                score: self.live_score(entry.name(), s),
            })
            .collect()
    }

    /// Routes `entry` (recording the decision).
    pub(super) fn route(
        &self,
        entry: &ModelEntry,
        can_launch: bool,
    ) -> Result<Decision, PoolError> {
        let c = &self.inner.config;
        let launchable: Vec<BrowserKind> = c.launches.iter().map(|l| l.kind).collect();
        let hardware = entry.hardware();
        let req = router::Request {
            model: entry.name(),
            task: entry.prepared.task,
            hardware: &hardware,
            backends: &c.page.backends,
            preferences: &c.preferences,
            launchable: &launchable,
            can_launch,
        };
        let decision =
            router::route(&req, &self.candidates(entry)).map_err(|e| PoolError::NoPlacement {
                model: entry.name().to_string(),
                reason: e.to_string(),
            })?;
        lock(&self.inner.ledger).decision(decision.clone());
        Ok(decision)
    }

    /// The worker a decision names: an existing one, or a new one launched for `why` when
    /// `launch` allows.
    pub(super) async fn target_of(
        &self,
        entry: &ModelEntry,
        decision: Decision,
        launch: bool,
        why: &str,
    ) -> Result<Arc<Worker>, ReplaceError> {
        match decision.target {
            Target::Worker(id) => {
                self.workers()
                    .into_iter()
                    .find(|s| s.id == id)
                    .ok_or_else(|| {
                        ReplaceError::Pool(PoolError::NoPlacement {
                            model: entry.name().to_string(),
                            reason: format!("{id} went away"),
                        })
                    })
            }
            Target::Launch(kind) if launch => Ok(self.launch(kind, why).await?),
            Target::Launch(kind) => Err(ReplaceError::NoOtherWorker {
                model: entry.name().to_string(),
                wanted: kind,
            }),
        }
    }

    /// Loads the model on `worker`, runs it once, records the placement.
    pub(super) async fn place(
        &self,
        entry: &Arc<ModelEntry>,
        worker: Arc<Worker>,
    ) -> Result<(), PoolError> {
        let loaded = worker
            .load(entry.prepared.clone(), entry.hardware().backends)
            .await?;
        entry.note_memory(loaded.memory_added_kib);
        self.first_run(entry, &worker, &loaded).await?;
        self.journal(Op::Placed {
            model: entry.name().to_string(),
            worker: worker.id.clone(),
        });
        let mut placements = lock(&entry.placements);
        if !placements.iter().any(|p| Arc::ptr_eq(p, &worker)) {
            placements.push(worker);
        }
        Ok(())
    }

    /// The first run after a load, as a request of the ledger (phase `first`, every output
    /// value returned for the correctness checks), and the placement record it completes.
    pub(super) async fn first_run(
        &self,
        entry: &Arc<ModelEntry>,
        worker: &Arc<Worker>,
        loaded: &super::worker::Loaded,
    ) -> Result<(), PoolError> {
        let model = &entry.prepared;
        // The first run returns every value: the checks (finite, oracle, cross) see it all.
        let mode = OutputMode::Full;
        let backend = loaded.reply.backend;
        let mut ticket = FirstRun {
            pool: self,
            ticket: Some(lock(&self.inner.ledger).issue(&model.name, Phase::First)),
            model: &model.name,
            worker,
            backend,
            issued: Instant::now(),
        };
        let first = worker.run(&model.name, mode).await;
        ticket.end(first.as_ref().map(|r| r.run_ms).map_err(ErrorClass::of));
        let first = first?;
        lock(&self.inner.ledger).placement(PlacementRecord {
            model: model.name.clone(),
            worker: worker.id.clone(),
            browser: worker.kind,
            load: loaded.reply.clone(),
            memory_added_kib: loaded.memory_added_kib,
            first_run_ms: first.run_ms,
            output: {
                let cell = cell_output(worker.kind, model, backend, &first);
                if let Some(c) = cell.as_ref().filter(|c| !c.full.is_empty()) {
                    lock(&entry.reference).get_or_insert_with(|| c.full.clone());
                }
                cell
            },
        });
        lock(&entry.verified)
            .entry((worker.kind, backend))
            .or_insert_with(|| first.digests.clone());
        self.event("placed", &worker.id, format!("{} on {backend}", model.name));
        Ok(())
    }

    /// Places `entry` on another live worker (`launch` false: migrate) or on a new one if needed
    /// (`launch` true: rebuild). Returns what was done.
    pub(super) async fn replace(
        &self,
        entry: &Arc<ModelEntry>,
        launch: bool,
    ) -> Result<String, ReplaceError> {
        let _placing = entry.placing.lock().await;
        if let Some(s) = lock(&entry.placements)
            .iter()
            .find(|s| s.is_routable())
            .cloned()
        {
            return Ok(format!("{} (already placed)", s.id));
        }
        // A hot standby holds the model already: promote it, no load needed.
        if let Some(done) = self.promote(entry) {
            return Ok(done);
        }
        let decision = self.route(entry, launch && self.has_room())?;
        let why = format!("rebuild for {}", entry.name());
        let worker = self.target_of(entry, decision, launch, &why).await?;
        let id = worker.id.clone();
        self.place(entry, worker).await?;
        Ok(id)
    }

    /// Model entries with a placement on `worker`.
    pub(super) fn models_on(&self, worker: &Arc<Worker>) -> Vec<Arc<ModelEntry>> {
        lock(&self.inner.models)
            .values()
            .filter(|e| e.served_by(worker))
            .cloned()
            .collect()
    }

    /// Model entries left with no routable placement.
    pub(super) fn orphans(&self) -> Vec<Arc<ModelEntry>> {
        lock(&self.inner.models)
            .values()
            .filter(|e| !lock(&e.placements).iter().any(|p| p.is_routable()))
            .cloned()
            .collect()
    }

    /// Takes `worker` out of every placement and standby; returns the names of the models it
    /// served.
    pub(super) fn unplace_everywhere(&self, worker: &Arc<Worker>) -> Vec<String> {
        let mut held = Vec::new();
        for e in lock(&self.inner.models).values() {
            let mut placements = lock(&e.placements);
            if placements.iter().any(|p| Arc::ptr_eq(p, worker)) {
                held.push(e.name().to_string());
            }
            placements.retain(|p| !Arc::ptr_eq(p, worker));
            lock(&e.standby).retain(|p| !Arc::ptr_eq(p, worker));
        }
        held
    }

    /// Moves `model` to a worker of kind `to`, as one transaction of the run's journal: load on
    /// the target, switch the placement, unload from the source. A failure part way rolls back
    /// for real: the half-loaded model is unloaded from the target (or the target, if it cannot
    /// answer, is marked unhealthy so its page is reset without it), the source keeps serving,
    /// and the log records the abort with the reason. Returns what was done.
    ///
    /// # Errors
    /// [`MigrateError`]: why the migration did not happen (after its rollback).
    pub async fn migrate(&self, model: &str, to: BrowserKind) -> Result<String, MigrateError> {
        let entry = lock(&self.inner.models)
            .values()
            .find(|e| e.name() == model)
            .cloned()
            .ok_or_else(|| MigrateError::NotPlaced {
                model: model.into(),
            })?;
        let _placing = entry.placing.lock().await;
        let source = lock(&entry.placements)
            .iter()
            .find(|s| s.is_routable())
            .cloned()
            .ok_or_else(|| MigrateError::NoLivePlacement {
                model: model.into(),
            })?;
        if source.kind == to {
            return Err(MigrateError::AlreadyThere {
                model: model.into(),
                kind: to,
                worker: source.id.clone(),
            });
        }
        let target = self
            .workers()
            .into_iter()
            .find(|s| s.kind == to && s.is_routable())
            .ok_or_else(|| MigrateError::NoTarget {
                model: model.into(),
                kind: to,
            })?;
        let tx = super::journal::Tx::begin(self.inner.journal.as_ref());
        tx.op(Op::Placed {
            model: model.to_string(),
            worker: target.id.clone(),
        });
        self.event(
            "migrating",
            &target.id,
            format!("{model}: {} -> {}", source.id, target.id),
        );
        if let Err(e) = target
            .load(entry.prepared.clone(), entry.hardware().backends)
            .await
        {
            // Roll back: nothing of the model may stay on the target.
            let undo = match target.unload(model).await {
                Ok(()) => format!("unloaded {model} from {}", target.id),
                Err(u) => {
                    target.mark_unhealthy(format!("rollback of a migration: {u}"));
                    format!(
                        "{} could not unload ({u}); marked unhealthy so its page is reset without {model}",
                        target.id
                    )
                }
            };
            let why = MigrateError::RolledBack {
                model: model.into(),
                target: target.id.clone(),
                source_worker: source.id.clone(),
                error: Box::new(e),
                undo,
            };
            tx.abort(&why.to_string());
            self.event("migration_rolled_back", &target.id, why.to_string());
            return Err(why);
        }
        lock(&entry.placements).push(target.clone());
        lock(&entry.placements).retain(|s| !Arc::ptr_eq(s, &source));
        tx.op(Op::Unplaced {
            model: model.to_string(),
            worker: source.id.clone(),
        });
        let unloaded = source.unload(model).await;
        tx.commit();
        let done = format!(
            "{model}: {} -> {}{}",
            source.id,
            target.id,
            match unloaded {
                Ok(()) => String::new(),
                Err(e) => format!(" (unload from the source failed: {e})"),
            }
        );
        self.event("migrated", &target.id, done.clone());
        Ok(done)
    }
}

/// A first run's ticket, closed once: by its outcome, or as `deadline` when the future running
/// it is dropped first (a recovery episode past its timeout drops the placement it was making;
/// the request must still be accounted for).
struct FirstRun<'a> {
    pool: &'a Pool,
    ticket: Option<Ticket>,
    model: &'a str,
    worker: &'a Worker,
    backend: Backend,
    issued: Instant,
}

impl FirstRun<'_> {
    fn end(&mut self, outcome: Result<f64, ErrorClass>) {
        if let Some(ticket) = self.ticket.take() {
            self.pool.request_ended_as(RequestEnd {
                ticket,
                model: self.model,
                ran: Some(Ran {
                    worker: &self.worker.id,
                    browser: self.worker.kind,
                    backend: self.backend,
                }),
                phase: Phase::First,
                scheduled: self.issued,
                issued: self.issued,
                attempt: 1,
                outcome,
            });
        }
    }
}

impl Drop for FirstRun<'_> {
    fn drop(&mut self) {
        self.end(Err(ErrorClass::Deadline));
    }
}

/// The backend `model` runs on at `worker` (wasm when the worker no longer says).
pub(super) fn backend_at(worker: &Worker, model: &str) -> Backend {
    worker.backend_of(model).unwrap_or(Backend::Wasm)
}
