//! The run's journal: the pool's changes of state written to the transaction log
//! (`crate::state`) in the run folder as they happen, so the run can be inspected
//! (`state show`) and resumed (`resume`) after the harness itself died.
//!
//! Writes are group-committed (each commit reaches the OS at once; fsync every sync interval),
//! so a SIGKILLed harness loses no committed transaction and a commit costs microseconds on the
//! runtime. A failing write never stops the run: the first error is kept and reported.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::{CommitPolicy, Op, StateError, TxId, TxLog};
use crate::sync::lock;

/// A shared handle on the run's transaction log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    log: Option<TxLog>,
    sync_interval: Duration,
    error: Option<String>,
}

impl Journal {
    /// A new log in `dir`, synced and snapshotted every `sync_interval`.
    ///
    /// # Errors
    /// When the log cannot be created (e.g. one exists already).
    pub fn create(dir: &Path, sync_interval: Duration) -> Result<Self, StateError> {
        let log = TxLog::create(dir, policy(sync_interval))?;
        Ok(Self::wrap(log, sync_interval))
    }

    /// Wraps a log reopened for a resume.
    pub fn wrap(log: TxLog, sync_interval: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                log: Some(log),
                sync_interval,
                error: None,
            })),
        }
    }

    /// Commits one op as its own transaction.
    pub fn commit(&self, op: Op) {
        self.with(|log| log.commit_one(&op).map(drop));
    }

    /// Starts a multi-step transaction (a migration); `None` when the log is unusable.
    pub fn begin(&self) -> Option<TxId> {
        let mut id = None;
        self.with(|log| {
            id = Some(log.begin_detached()?);
            Ok(())
        });
        id
    }

    /// One op of transaction `tx`.
    pub fn op(&self, tx: TxId, op: Op) {
        self.with(|log| log.op(tx, &op).map(drop));
    }

    /// Commits transaction `tx`.
    pub fn commit_tx(&self, tx: TxId) {
        self.with(|log| log.commit(tx).map(drop));
    }

    /// Aborts transaction `tx`, saying why: the log shows the Abort record, and the state
    /// keeps the rollback (so a later compaction does not hide it).
    pub fn abort(&self, tx: TxId, reason: &str) {
        self.with(|log| {
            log.abort(tx, reason)?;
            log.commit_one(&Op::RolledBack {
                tx: tx.0,
                reason: reason.to_string(),
            })
            .map(drop)
        });
    }

    /// Periodic upkeep: fsync when the interval passed, snapshot and compact when due.
    pub fn tick(&self) {
        let now = Instant::now();
        let every = lock(&self.inner).sync_interval;
        self.with(|log| {
            log.sync_if_due(now)?;
            log.maybe_snapshot(now, every).map(drop)
        });
    }

    /// Syncs, snapshots and closes the log; later writes are ignored. Returns the first error
    /// the journal met, if any.
    pub fn close(&self) -> Option<String> {
        let mut g = lock(&self.inner);
        if let Some(mut log) = g.log.take() {
            let done = log.snapshot().map(drop).and_then(|()| log.close());
            if let Err(e) = done {
                g.error.get_or_insert(e.to_string());
            }
        }
        g.error.clone()
    }

    /// The state as the log has it now.
    pub fn state(&self) -> Option<crate::state::State> {
        lock(&self.inner).log.as_ref().map(|l| l.state().clone())
    }

    fn with(&self, f: impl FnOnce(&mut TxLog) -> Result<(), StateError>) {
        let mut g = lock(&self.inner);
        let Some(log) = g.log.as_mut() else {
            return;
        };
        if let Err(e) = f(log) {
            g.error.get_or_insert(e.to_string());
        }
    }
}

fn policy(sync_interval: Duration) -> CommitPolicy {
    CommitPolicy::Group {
        interval: sync_interval,
    }
}

/// One multi-step transaction of a run's journal, or nothing when the run has no journal (or
/// its log is unusable): a migration, an adaptive move.
#[derive(Debug)]
pub struct Tx {
    open: Option<(Journal, TxId)>,
}

impl Tx {
    /// Begins a transaction in `journal`, if there is one.
    pub fn begin(journal: Option<&Journal>) -> Self {
        Self {
            open: journal.and_then(|j| j.begin().map(|t| (j.clone(), t))),
        }
    }

    /// Adds one step.
    pub fn op(&self, op: Op) {
        if let Some((j, t)) = &self.open {
            j.op(*t, op);
        }
    }

    /// Commits every step.
    pub fn commit(self) {
        if let Some((j, t)) = self.open {
            j.commit_tx(t);
        }
    }

    /// Aborts, recording why.
    pub fn abort(self, why: &str) {
        if let Some((j, t)) = self.open {
            j.abort(t, why);
        }
    }
}
