//! The pool's one event stream: every change the pool makes or sees (a launch, a placement, a
//! fault, a recovery episode, a request that ended) is one typed [`PoolEvent`], emitted once.
//!
//! [`Events`] stamps each with the time since the pool started and hands it to the three
//! readers, in this order: the run's journal (the events that change the pool's state map to
//! one transaction each, committed before `emit` returns, so a harness killed right after a
//! change has it on disk), the record the report is built from, and the live channel the
//! engine drains for progress. Events are data: the words a person reads are the report's
//! (`crate::report::events`). Must not import `report`, `cli` or terminal crates.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::faults::Kind;
use crate::metrics::Phase;
use crate::recovery::Level;
use crate::state::{Op, ShardAssignment, WorkerRecord};

use super::attribution::{Detection, FaultNote};
use super::journal::Journal;
use super::lock;
use super::router::Decision;

mod reasons;
mod records;

pub use reasons::{CloseReason, LaunchReason, Process, RetireReason};
pub use records::{PlacementRecord, RecoveryRecord, ShardRepair};

/// One thing the pool did or saw.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A worker joined the pool.
    Launched {
        /// Its journal record (id, kind, pids, profile).
        record: WorkerRecord,
        /// Why.
        why: LaunchReason,
        /// Launch to page ready.
        ready_ms: u64,
        /// Live workers now.
        live: usize,
    },
    /// A launch failed.
    LaunchFailed {
        /// Why it was launched.
        why: LaunchReason,
        /// The error.
        error: String,
    },
    /// A worker was taken out of service (its browser closes in the background).
    Retired {
        /// The worker.
        worker: String,
        /// Why.
        why: RetireReason,
        /// The models it served, now unplaced.
        held: Vec<String>,
    },
    /// A retired worker's browser is closed.
    Removed {
        /// The worker.
        worker: String,
    },
    /// Upkeep closed a live worker.
    Closed {
        /// The worker.
        worker: String,
        /// Why.
        reason: CloseReason,
        /// Live workers now.
        live: usize,
    },
    /// A worker's browser or driver process exited.
    ProcessExit {
        /// The worker.
        worker: String,
        /// Which process.
        process: Process,
    },
    /// A worker was found unhealthy (a silent heartbeat, an unanswered health check).
    Unhealthy {
        /// The worker.
        worker: String,
        /// What was seen.
        why: String,
    },
    /// The router decided where a model goes.
    Routed(Decision),
    /// A model was loaded on a worker and its first run answered.
    Placed(Arc<PlacementRecord>),
    /// A sharded model's shards are loaded, each on its worker.
    ShardsPlanned {
        /// The sharded model.
        model: String,
        /// Each shard's layers and worker.
        shards: Vec<ShardAssignment>,
    },
    /// A recovery loaded shards on other workers.
    ShardsAssigned {
        /// The sharded model.
        model: String,
        /// Each shard moved and its new worker.
        moves: Vec<(u32, String)>,
    },
    /// A model was unloaded from a worker it served.
    Unloaded {
        /// The model.
        model: String,
        /// The worker.
        worker: String,
    },
    /// A model's first placement failed on a worker fault and is made again after the recovery.
    PlacementRetried {
        /// The model.
        model: String,
        /// The worker it failed on.
        worker: String,
        /// The error.
        error: String,
    },
    /// A scale-up for a model failed.
    ScaleUpFailed {
        /// The model.
        model: String,
        /// The error.
        error: String,
    },
    /// An answer's digests differ from the verified answer.
    WrongAnswer {
        /// The model.
        model: String,
        /// The worker.
        worker: String,
        /// Which outputs differ.
        detail: String,
    },
    /// A placement's first answer did not match native onnxruntime: the model was unloaded
    /// there and never served from it.
    PlacementRejected {
        /// The model.
        model: String,
        /// The worker.
        worker: String,
        /// Its browser.
        browser: BrowserKind,
        /// Its backend.
        backend: Backend,
        /// What differed.
        detail: String,
    },
    /// A worker stopped serving a model it still holds (a recovery moved the model off it).
    Unplaced {
        /// The model.
        model: String,
        /// The worker.
        worker: String,
    },
    /// A hot standby now serves its model.
    Promoted {
        /// The model.
        model: String,
        /// The worker.
        worker: String,
    },
    /// A hot standby copy was loaded (and checked).
    StandbyLoaded {
        /// The model.
        model: String,
        /// The worker.
        worker: String,
        /// Load (and check) time, ms.
        ms: u64,
        /// PSS growth across the load, MiB.
        added_mib: u64,
    },
    /// A hot standby copy could not be loaded or did not pass its check.
    StandbyFailed {
        /// The worker.
        worker: String,
        /// Why.
        why: String,
    },
    /// Another standby copy of a model would pass the standby memory budget.
    StandbyOverBudget {
        /// The model.
        model: String,
        /// What one more copy costs, MiB.
        cost_mib: u64,
        /// Taken by standbys already, MiB.
        taken_mib: u64,
        /// The budget, MiB.
        budget_mib: u64,
    },
    /// Before the workload: a model has fewer standby copies than wanted, and no live worker
    /// can take another (each one serves or holds it, or is not of its pinned browser), nor
    /// is one launching. The pool launches no worker for a standby.
    StandbyNoSpare {
        /// The model.
        model: String,
        /// Copies it has.
        copies: usize,
        /// Copies wanted.
        wanted: usize,
        /// The browser kind the model is pinned to, if any.
        pin: Option<crate::browser::BrowserKind>,
    },
    /// A recovery episode started.
    Recovering {
        /// The worker.
        worker: String,
        /// How the failure was noticed.
        seen: Detection,
        /// The injected fault it is attributed to.
        fault: Option<Kind>,
        /// The ladder it will climb.
        levels: Vec<Level>,
    },
    /// A recovery episode ended (succeeded or not).
    Recovered(RecoveryRecord),
    /// A worker set aside after a failure serves again, as a standby.
    Rejoined {
        /// The worker.
        worker: String,
        /// How it was repaired.
        how: String,
        /// Failure to serving again, ms.
        after_ms: u64,
        /// The models it holds as a standby.
        standby_of: Vec<String>,
    },
    /// A planned migration started.
    Migrating {
        /// The model.
        model: String,
        /// From this worker.
        from: String,
        /// To this one.
        to: String,
    },
    /// A planned migration was made.
    Migrated {
        /// The model.
        model: String,
        /// From this worker.
        from: String,
        /// To this one.
        to: String,
        /// An unload from the source that failed, if one did.
        unload_error: Option<String>,
    },
    /// A planned migration failed and was rolled back.
    MigrationRolledBack {
        /// The model.
        model: String,
        /// The worker it was to move to.
        target: String,
        /// What failed and what the rollback did.
        detail: String,
    },
    /// Adaptive routing started timing a model's other placements.
    AdaptProbe {
        /// The model.
        model: String,
        /// Where it runs now.
        worker: String,
        /// Its browser there.
        browser: BrowserKind,
        /// Its backend there.
        backend: Backend,
        /// Its live p50 there, ms.
        p50_ms: f64,
        /// Warm requests the p50 is of.
        samples: usize,
    },
    /// Adaptive routing decided about a model.
    AdaptDecided {
        /// The model.
        model: String,
        /// Where it ran when evaluated.
        worker: String,
        /// The decision, as the report states it.
        decision: String,
    },
    /// An adaptive move failed and was rolled back.
    AdaptRolledBack {
        /// The worker it was to move to.
        worker: String,
        /// Why.
        why: String,
    },
    /// An adaptive move was made.
    Adapted {
        /// The model.
        model: String,
        /// The workers it left.
        from: Vec<String>,
        /// The worker it went to.
        to: String,
        /// Its browser.
        browser: BrowserKind,
        /// Its backend.
        backend: Backend,
        /// Unloads from the old placements that failed.
        notes: Vec<String>,
    },
    /// The injector carried out (or skipped) a fault.
    Fault(FaultNote),
    /// A request ended (not kept in the record: the ledger has its sample).
    RequestEnded {
        /// Whether it succeeded.
        ok: bool,
    },
    /// A request was issued and never ended (found when the books closed).
    Lost {
        /// The model.
        model: String,
        /// Its phase.
        phase: Phase,
    },
}

impl PoolEvent {
    /// The event's kind as run.json's `pool_events` name it (`launched`, `placed`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Launched { .. } => "launched",
            Self::LaunchFailed { .. } => "launch_failed",
            Self::Retired { .. } => "retired",
            Self::Removed { .. } => "removed",
            Self::Closed {
                reason: CloseReason::Idle,
                ..
            } => "closed_idle",
            Self::Closed {
                reason: CloseReason::Unhealthy,
                ..
            } => "closed_unhealthy",
            Self::ProcessExit { .. } => "process_exit",
            Self::Unhealthy { .. } => "unhealthy",
            Self::Routed(_) => "routed",
            Self::Placed(_) => "placed",
            Self::ShardsPlanned { .. } => "shards_planned",
            Self::ShardsAssigned { .. } => "shards_assigned",
            Self::Unloaded { .. } => "unloaded",
            Self::Unplaced { .. } => "unplaced",
            Self::PlacementRetried { .. } => "placement_retried",
            Self::ScaleUpFailed { .. } => "scale_up_failed",
            Self::WrongAnswer { .. } => "wrong_answer",
            Self::PlacementRejected { .. } => "placement_rejected",
            Self::Promoted { .. } => "promoted",
            Self::StandbyLoaded { .. } => "standby",
            Self::StandbyFailed { .. } => "standby_failed",
            Self::StandbyOverBudget { .. } => "standby_over_budget",
            Self::StandbyNoSpare { .. } => "standby_no_spare",
            Self::Recovering { .. } => "recovering",
            Self::Recovered(r) if r.succeeded => "recovered",
            Self::Recovered(_) => "recovery_failed",
            Self::Rejoined { .. } => "rejoined",
            Self::Migrating { .. } => "migrating",
            Self::Migrated { .. } => "migrated",
            Self::MigrationRolledBack { .. } => "migration_rolled_back",
            Self::AdaptProbe { .. } => "adapt_probe",
            Self::AdaptDecided { .. } => "adapt_decided",
            Self::AdaptRolledBack { .. } => "adapt_rolled_back",
            Self::Adapted { .. } => "adapted",
            Self::Fault(_) => "fault",
            Self::RequestEnded { .. } => "request_ended",
            Self::Lost { .. } => "lost",
        }
    }

    /// The worker the event is about (empty when none).
    pub fn worker(&self) -> &str {
        match self {
            Self::Launched { record, .. } => &record.id,
            Self::Retired { worker, .. }
            | Self::Removed { worker }
            | Self::Closed { worker, .. }
            | Self::ProcessExit { worker, .. }
            | Self::Unhealthy { worker, .. }
            | Self::Unloaded { worker, .. }
            | Self::Unplaced { worker, .. }
            | Self::PlacementRetried { worker, .. }
            | Self::WrongAnswer { worker, .. }
            | Self::PlacementRejected { worker, .. }
            | Self::Promoted { worker, .. }
            | Self::StandbyLoaded { worker, .. }
            | Self::StandbyFailed { worker, .. }
            | Self::Recovering { worker, .. }
            | Self::Rejoined { worker, .. }
            | Self::AdaptProbe { worker, .. }
            | Self::AdaptDecided { worker, .. }
            | Self::AdaptRolledBack { worker, .. } => worker,
            Self::Placed(p) => &p.worker,
            Self::Recovered(r) => &r.worker,
            Self::Migrating { to, .. } | Self::Migrated { to, .. } | Self::Adapted { to, .. } => to,
            Self::MigrationRolledBack { target, .. } => target,
            Self::Fault(f) => &f.target,
            Self::LaunchFailed { .. }
            | Self::Routed(_)
            | Self::ScaleUpFailed { .. }
            | Self::ShardsPlanned { .. }
            | Self::ShardsAssigned { .. }
            | Self::StandbyOverBudget { .. }
            | Self::StandbyNoSpare { .. }
            | Self::RequestEnded { .. }
            | Self::Lost { .. } => "",
        }
    }

    /// Whether run.json lists it under `pool_events` (faults, recovery episodes and routing
    /// decisions have lists of their own; ended requests are samples).
    pub fn is_pool_event(&self) -> bool {
        !matches!(
            self,
            Self::Routed(_) | Self::Fault(_) | Self::RequestEnded { .. } | Self::Removed { .. }
        )
    }

    /// The journal transaction this event is, if it changes the pool's recorded state.
    fn ops(&self) -> Vec<Op> {
        match self {
            Self::Launched { record, .. } => vec![Op::WorkerAdded {
                worker: record.clone(),
            }],
            // The worker stays a member, `closing` and serving nothing, until its browser is
            // gone: a harness killed while the close runs leaves a record to reap it by.
            Self::Retired { worker, held, .. } => std::iter::once(Op::WorkerStatus {
                id: worker.clone(),
                status: "closing".into(),
            })
            .chain(held.iter().map(|model| Op::Unplaced {
                model: model.clone(),
                worker: worker.clone(),
            }))
            .collect(),
            Self::Removed { worker } | Self::Closed { worker, .. } => {
                vec![Op::WorkerRemoved { id: worker.clone() }]
            }
            Self::Placed(p) => vec![Op::Placed {
                model: p.model.clone(),
                worker: p.worker.clone(),
            }],
            Self::ShardsPlanned { model, shards } => vec![Op::ShardPlanned {
                model: model.clone(),
                shards: shards.clone(),
            }],
            Self::ShardsAssigned { model, moves } => moves
                .iter()
                .map(|(shard, worker)| Op::ShardAssigned {
                    model: model.clone(),
                    shard: *shard,
                    worker: worker.clone(),
                })
                .collect(),
            Self::Promoted { model, worker } => vec![Op::Placed {
                model: model.clone(),
                worker: worker.clone(),
            }],
            Self::Unloaded { model, worker } | Self::Unplaced { model, worker } => {
                vec![Op::Unplaced {
                    model: model.clone(),
                    worker: worker.clone(),
                }]
            }
            Self::Recovered(r) => vec![Op::RecoveryRecorded {
                event: crate::state::RecoveryRecord {
                    fault_kind: r.fault_name().to_string(),
                    level: r.level.map_or("none", Level::as_str).to_string(),
                    detection_ms: r.detection_ms,
                    recovery_ms: r.recovery_ms,
                    succeeded: r.succeeded,
                    worker: Some(r.worker.clone()),
                },
            }],
            _ => Vec::new(),
        }
    }
}

/// An event with the time it was emitted.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Since the pool started, ms.
    pub at_ms: u64,
    /// The event.
    pub event: PoolEvent,
}

/// The stream: stamps, journals, records and forwards every event.
#[derive(Debug)]
pub(super) struct Events {
    t0: Instant,
    journal: Option<Journal>,
    record: Mutex<Vec<Stamped>>,
    /// The live channel, once someone subscribed (a pool used without the engine keeps
    /// nothing queued for nobody).
    /// Set once, read without a lock on every event (a request end is one).
    live: OnceLock<mpsc::UnboundedSender<Stamped>>,
}

impl Events {
    /// A stream whose times count from `t0`, journaling into `journal`.
    pub fn new(t0: Instant, journal: Option<Journal>) -> Self {
        Self {
            t0,
            journal,
            record: Mutex::default(),
            live: OnceLock::new(),
        }
    }

    /// Emits `event`: journaled (when it changes state), recorded (unless it is a request's
    /// end, which the ledger keeps), and sent to the live channel.
    pub fn emit(&self, event: PoolEvent) {
        let stamped = Stamped {
            at_ms: self.ms(Instant::now()),
            event,
        };
        if let Some(j) = &self.journal {
            let ops = stamped.event.ops();
            match ops.len() {
                0 => {}
                1 => j.commit(ops.into_iter().next().expect("one op")),
                _ => {
                    if let Some(tx) = j.begin() {
                        for op in ops {
                            j.op(tx, op);
                        }
                        j.commit_tx(tx);
                    }
                }
            }
        }
        if !matches!(stamped.event, PoolEvent::RequestEnded { .. }) {
            lock(&self.record).push(stamped.clone());
        }
        if let Some(live) = self.live.get() {
            // A receiver dropped early (the engine is done) is fine.
            let _ = live.send(stamped);
        }
    }

    /// The live channel: every event from now on. Only the first caller gets it; `None` after.
    pub fn subscribe(&self) -> Option<mpsc::UnboundedReceiver<Stamped>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.live.set(tx).ok().map(|()| rx)
    }

    /// Ms from the pool's start to `t`.
    pub fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.t0).as_millis() as u64
    }

    /// Every recorded event, in order.
    pub fn all(&self) -> Vec<Stamped> {
        lock(&self.record).clone()
    }

    /// The run's journal, if it has one.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }
}
