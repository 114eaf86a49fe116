//! The records events carry: a placement with its first run, a recovery episode, and what an
//! episode did to a worker's pipeline shards. Plain data.

use crate::browser::BrowserKind;
use crate::faults::Kind;
use crate::recovery::{Level, ShardRecovery};

use super::super::attribution::Detection;
use super::super::correctness::CellOutput;
use super::super::worker::LoadReply;

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

/// One recovery episode: a worker failed, the ladder ran.
#[derive(Debug, Clone)]
pub struct RecoveryRecord {
    /// When the failure was detected, ms since the pool started.
    pub at_ms: u64,
    /// The worker that failed.
    pub worker: String,
    /// The models it served then (ledger names): whose first answers after the failure end
    /// its time to recover.
    pub models: Vec<String>,
    /// The injected fault it is attributed to; `None` for a failure nobody injected.
    pub fault: Option<Kind>,
    /// How it was noticed.
    pub detected_by: Detection,
    /// Fault to detection, ms. For a failure nobody injected: the failing call's time in
    /// flight, or the time since the worker's last answer (heartbeat) or since its process was
    /// last seen alive (pid check). Always measured.
    pub detection_ms: u64,
    /// Highest ladder level tried.
    pub level: Option<Level>,
    /// Detection to serving again (or to giving up), ms.
    pub recovery_ms: u64,
    /// Whether service was restored.
    pub succeeded: bool,
    /// What each level did.
    pub steps: Vec<String>,
    /// For a worker that held pipeline shards: what happened to them.
    pub shards: Option<ShardRepair>,
}

/// What a recovery did to a failed worker's pipeline shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRepair {
    /// The sharded model.
    pub model: String,
    /// The ladder step it took.
    pub strategy: ShardRecovery,
    /// The shard whose call failed (the first the worker held when no request named one).
    pub shard: usize,
    /// The workers the shards were loaded on.
    pub to: Vec<String>,
    /// The shards loaded again.
    pub reloaded: Vec<usize>,
}

impl RecoveryRecord {
    /// The fault's name, `external` when nobody injected it.
    pub fn fault_name(&self) -> &'static str {
        self.fault.map_or("external", Kind::as_str)
    }
}
