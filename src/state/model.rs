//! What a run's state is ([`State`]) and the mutations that change it ([`Op`]).
//!
//! Pure data: no I/O. Kinds (browser, driver, fault, recovery level, worker status) are plain
//! strings so this module depends on nothing else in the crate; the pool writes the names it
//! uses in `run.json`. Every map is a `BTreeMap` and there are no floats, so the compact JSON of
//! a `State` is canonical and its SHA-256 is stable (the snapshot checksum relies on that).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything needed to resume a run: who is in the pool, what runs where, what went wrong and
/// how far the workload got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct State {
    /// The run's id (its folder name under `results/`); empty until [`Op::RunStarted`].
    pub run_id: String,
    /// Seed of generated weights and inputs.
    pub seed: u64,
    /// How long the workload runs; `None` until [`Op::RunStarted`].
    pub workload: Option<WorkloadBound>,
    /// Pool membership, by worker id (e.g. `chromium#1`).
    pub workers: BTreeMap<String, WorkerRecord>,
    /// Model name -> ids of the workers it is loaded on, in placement order.
    pub placements: BTreeMap<String, Vec<String>>,
    /// Model name -> its shards, by shard index.
    pub shard_plans: BTreeMap<String, Vec<ShardAssignment>>,
    /// Recovery events in the order they were recorded.
    pub recovery_events: Vec<RecoveryRecord>,
    /// How far the workload got.
    pub progress: Progress,
    /// True once [`Op::RunFinished`] was committed: there is nothing left to resume.
    pub finished: bool,
    /// Transactions that were rolled back, with why (kept here so compaction never hides one).
    #[serde(default)]
    pub rollbacks: Vec<Rollback>,
}

/// The bound of a run's workload, to compute what is left on resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkloadBound {
    /// Run for this many milliseconds of measured time.
    DurationMs(u64),
    /// Run this many iterations per model.
    Iterations(u64),
}

/// One worker of the pool, with what is needed to reap its processes after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Worker id, e.g. `chromium#1`.
    pub id: String,
    /// Browser kind, e.g. `chromium`, `firefox`.
    pub browser: String,
    /// Driver, e.g. `cdp`, `webdriver`.
    pub driver: String,
    /// The browser's process id, once launched.
    pub pid: Option<u32>,
    /// The driver's process id (geckodriver, chromedriver), when there is one.
    pub driver_pid: Option<u32>,
    /// The browser profile directory, to delete after reaping.
    pub profile_dir: Option<String>,
    /// Lifecycle status, e.g. `starting`, `ready`, `failed`, `closed`.
    pub status: String,
}

impl WorkerRecord {
    /// A worker with no processes yet and status `starting`.
    pub fn new(
        id: impl Into<String>,
        browser: impl Into<String>,
        driver: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            browser: browser.into(),
            driver: driver.into(),
            pid: None,
            driver_pid: None,
            profile_dir: None,
            status: "starting".into(),
        }
    }
}

/// A shard of a model: which layers it holds and the worker that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAssignment {
    /// Shard index, from 0.
    pub shard: u32,
    /// First layer of the shard (inclusive).
    pub layer_start: u32,
    /// End layer of the shard (exclusive).
    pub layer_end: u32,
    /// The worker running it.
    pub worker: String,
}

impl ShardAssignment {
    /// Shard `shard` holding layers `layers` on `worker`.
    pub fn new(shard: u32, layers: std::ops::Range<u32>, worker: impl Into<String>) -> Self {
        Self {
            shard,
            layer_start: layers.start,
            layer_end: layers.end,
            worker: worker.into(),
        }
    }
}

/// One fault and what recovery did about it (the `recovery_events` of `run.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    /// The fault, e.g. `kill_browser`.
    pub fault_kind: String,
    /// The ladder level that resolved it, e.g. `retry`, `restart`, `migrate`.
    pub level: String,
    /// Time from the fault to its detection, in milliseconds.
    pub detection_ms: u64,
    /// Time from detection to service restored, in milliseconds.
    pub recovery_ms: u64,
    /// Whether service was restored.
    pub succeeded: bool,
    /// The worker the fault hit, when known.
    pub worker: Option<String>,
}

/// Request accounting and workload position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Requests issued.
    pub issued: u64,
    /// Requests that succeeded.
    pub succeeded: u64,
    /// Requests that failed with a reason.
    pub failed: u64,
    /// Model name -> measured iterations completed.
    pub per_model: BTreeMap<String, u64>,
    /// Measured workload time elapsed, in milliseconds.
    pub elapsed_ms: u64,
}

/// One mutation of [`State`]. Ops are recorded inside transactions and applied in commit order.
///
/// Serialized as JSON with an `op` tag, e.g. `{"op":"placed","model":"bert","worker":"chromium#1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// The run began: its id, seed and workload bound.
    RunStarted {
        /// The run id.
        run_id: String,
        /// Seed of generated weights and inputs.
        seed: u64,
        /// How long the workload runs.
        workload: Option<WorkloadBound>,
    },
    /// A worker joined the pool (or its record is replaced, e.g. once its pids are known).
    WorkerAdded {
        /// The worker.
        worker: WorkerRecord,
    },
    /// A worker's status changed.
    WorkerStatus {
        /// The worker id.
        id: String,
        /// The new status.
        status: String,
    },
    /// A worker left the pool; its placements go with it. Shard assignments naming it stay until
    /// a [`Op::ShardAssigned`] moves them, so an orphaned shard stays visible.
    WorkerRemoved {
        /// The worker id.
        id: String,
    },
    /// A model is loaded and serving on a worker.
    Placed {
        /// The model name.
        model: String,
        /// The worker id.
        worker: String,
    },
    /// A model no longer serves from a worker.
    Unplaced {
        /// The model name.
        model: String,
        /// The worker id.
        worker: String,
    },
    /// A model's whole shard plan (replaces any previous plan).
    ShardPlanned {
        /// The model name.
        model: String,
        /// Its shards.
        shards: Vec<ShardAssignment>,
    },
    /// One shard moved to another worker.
    ShardAssigned {
        /// The model name.
        model: String,
        /// The shard index.
        shard: u32,
        /// The new worker.
        worker: String,
    },
    /// A recovery event happened.
    RecoveryRecorded {
        /// The event.
        event: RecoveryRecord,
    },
    /// The workload's counts as of now (absolute values, not deltas, so an op is idempotent).
    Progress {
        /// Requests issued.
        issued: u64,
        /// Requests that succeeded.
        succeeded: u64,
        /// Requests that failed.
        failed: u64,
        /// Model name -> measured iterations completed.
        per_model: BTreeMap<String, u64>,
        /// Measured workload time elapsed, in milliseconds.
        elapsed_ms: u64,
    },
    /// The workload is done; nothing is left to resume.
    RunFinished,
    /// Transaction `tx` was aborted and its effects undone (committed right after the Abort
    /// record, so the state keeps the fact after the log is compacted).
    RolledBack {
        /// The aborted transaction's id.
        tx: u64,
        /// Why, and what was undone.
        reason: String,
    },
}

/// A transaction that was rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// The aborted transaction's id.
    pub tx: u64,
    /// Why, and what was undone.
    pub reason: String,
}

impl State {
    /// Applies one op. Total: every op applies to every state (an op naming an unknown worker or
    /// model records what it says), so replay is deterministic and never fails on content.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::RunStarted {
                run_id,
                seed,
                workload,
            } => {
                self.run_id.clone_from(run_id);
                self.seed = *seed;
                self.workload = *workload;
            }
            Op::WorkerAdded { worker } => {
                self.workers.insert(worker.id.clone(), worker.clone());
            }
            Op::WorkerStatus { id, status } => {
                if let Some(w) = self.workers.get_mut(id) {
                    w.status.clone_from(status);
                }
            }
            Op::WorkerRemoved { id } => {
                self.workers.remove(id);
                for workers in self.placements.values_mut() {
                    workers.retain(|w| w != id);
                }
                self.placements.retain(|_, workers| !workers.is_empty());
            }
            Op::Placed { model, worker } => {
                let on = self.placements.entry(model.clone()).or_default();
                if !on.contains(worker) {
                    on.push(worker.clone());
                }
            }
            Op::Unplaced { model, worker } => {
                if let Some(on) = self.placements.get_mut(model) {
                    on.retain(|w| w != worker);
                    if on.is_empty() {
                        self.placements.remove(model);
                    }
                }
            }
            Op::ShardPlanned { model, shards } => {
                let mut shards = shards.clone();
                shards.sort_by_key(|s| s.shard);
                self.shard_plans.insert(model.clone(), shards);
            }
            Op::ShardAssigned {
                model,
                shard,
                worker,
            } => {
                if let Some(s) = self
                    .shard_plans
                    .get_mut(model)
                    .and_then(|plan| plan.iter_mut().find(|s| s.shard == *shard))
                {
                    s.worker.clone_from(worker);
                }
            }
            Op::RecoveryRecorded { event } => self.recovery_events.push(event.clone()),
            Op::Progress {
                issued,
                succeeded,
                failed,
                per_model,
                elapsed_ms,
            } => {
                self.progress = Progress {
                    issued: *issued,
                    succeeded: *succeeded,
                    failed: *failed,
                    per_model: per_model.clone(),
                    elapsed_ms: *elapsed_ms,
                };
            }
            Op::RunFinished => self.finished = true,
            Op::RolledBack { tx, reason } => self.rollbacks.push(Rollback {
                tx: *tx,
                reason: reason.clone(),
            }),
        }
    }

    /// The canonical JSON of this state (compact, keys in `BTreeMap` order): what the snapshot
    /// checksum covers.
    ///
    /// # Errors
    /// Only if serde_json fails on plain data, which it does not; kept as a `Result` rather than
    /// an `expect` on the write path.
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_worker_drops_its_placements_but_not_its_shards() {
        let mut s = State::default();
        s.apply(&Op::WorkerAdded {
            worker: WorkerRecord::new("chromium#1", "chromium", "cdp"),
        });
        s.apply(&Op::Placed {
            model: "bert".into(),
            worker: "chromium#1".into(),
        });
        s.apply(&Op::ShardPlanned {
            model: "llama".into(),
            shards: vec![ShardAssignment::new(0, 0..4, "chromium#1")],
        });
        s.apply(&Op::WorkerRemoved {
            id: "chromium#1".into(),
        });
        assert!(s.workers.is_empty() && s.placements.is_empty());
        assert_eq!(s.shard_plans["llama"][0].worker, "chromium#1");
    }

    #[test]
    fn op_json_is_tagged() {
        let op = Op::Placed {
            model: "bert".into(),
            worker: "firefox#2".into(),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(
            text,
            r#"{"op":"placed","model":"bert","worker":"firefox#2"}"#
        );
        assert_eq!(serde_json::from_str::<Op>(&text).unwrap(), op);
    }
}
