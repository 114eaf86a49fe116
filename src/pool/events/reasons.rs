//! Why a worker joined, left or was closed, and which of its processes exited: the reasons
//! events carry. Their words are the report's, but for [`RetireReason`], which is also the
//! worker's recorded fault.

/// Why a worker was launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchReason {
    /// One of the pool's first workers.
    Initial,
    /// To place this model.
    Place(String),
    /// Every placement of this model had a queue.
    ScaleUp(String),
    /// A recovery rebuilt this model elsewhere.
    Rebuild(String),
    /// A recovery replaced a failed worker that held nothing.
    Replace,
    /// Upkeep keeps `min_workers` live.
    Minimum,
    /// Adaptive routing times this model on a browser the pool had no worker of.
    Probe(String),
    /// A pipeline shard runs here.
    Shard(usize),
    /// This sharded model runs unsharded here, the baseline it is compared with.
    Baseline(String),
}

/// Why a worker was taken out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireReason {
    /// Every model it served went to hot standbys (its browser is gone, so no repair aside).
    ToStandbys,
    /// The recovery ladder could not restore it.
    GaveUp,
    /// Its models were moved to other workers.
    Migrating,
    /// Its models were rebuilt on new workers.
    Rebuilding,
    /// A repair aside failed, for this reason.
    NotRepaired(String),
}

impl std::fmt::Display for RetireReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ToStandbys => f.write_str("its models went to hot standbys"),
            Self::GaveUp => f.write_str("recovery gave up on it"),
            Self::Migrating => f.write_str("migrating its models"),
            Self::Rebuilding => f.write_str("rebuilding elsewhere"),
            Self::NotRepaired(why) => write!(f, "not repaired aside: {why}"),
        }
    }
}

/// Why upkeep closed a live worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Idle past `idle_timeout` above `min_workers`.
    Idle,
    /// Unhealthy in a pool that does not recover.
    Unhealthy,
}

/// Which process of a worker exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The browser's main process.
    Browser,
    /// Its WebDriver server.
    Driver,
}
