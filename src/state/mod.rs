//! Crash-safe run state: a transaction log with checksums, snapshots, replay and verify.
//!
//! Inputs: [`Op`]s from the pool (workers joined and left, models placed, shards assigned,
//! recovery events, progress), grouped in transactions. Outputs: `txlog.log` and
//! `snapshot.json` in the run folder, and the [`State`] rebuilt from them by [`replay`] (for
//! `resume` and `state show`) or checked by [`verify`] (`state verify`).
//!
//! Imports only std, serde, serde_json, sha2, crc32c and thiserror: never `cli`, `report` or a
//! terminal crate, and nothing else of this crate, so its kinds are plain strings.
//!
//! # Files in a run folder
//! - `txlog.log`: append-only records, framed as described in [`record`]: a 28-byte header
//!   (magic `D7 57 54 58`, version, kind, payload length, sequence number, transaction id), the
//!   payload (the JSON of an [`Op`]; empty for Begin and Commit; the reason for Abort), and a
//!   CRC32C of header and payload.
//! - `snapshot.json`: the whole state as of a sequence number, with the SHA-256 of its canonical
//!   JSON (see [`snapshot`]). After a snapshot the log keeps only open transactions' records.
//!
//! # Transactions
//! A transaction is Begin, then Ops, then Commit or Abort. Its id is the sequence number of its
//! Begin. Replay applies only committed transactions, in commit order; aborted and unterminated
//! ones are never applied.
//!
//! # Damage
//! A damaged record with no intact record anywhere after it is a torn tail: dropped with a
//! warning naming the byte offset, and truncated when a writer reopens the log. A damaged record
//! followed by intact ones is [`StateError::Corrupt`], naming file, byte offset and seq: never
//! skipped. See `docs/state.md`.
//!
//! # Use during a run
//! ```no_run
//! # use std::time::{Duration, Instant};
//! # use webgpu_pool::state::{CommitPolicy, Op, TxLog, WorkerRecord};
//! # fn main() -> Result<(), webgpu_pool::state::StateError> {
//! let dir = std::path::Path::new("results/run-1");
//! let mut log = TxLog::create(dir, CommitPolicy::Group { interval: Duration::from_millis(100) })?;
//! log.commit_one(&Op::RunStarted { run_id: "run-1".into(), seed: 42, workload: None })?;
//! // A migration: several ops, all or nothing.
//! let mut tx = log.begin()?;
//! tx.op(&Op::Placed { model: "bert".into(), worker: "firefox#1".into() })?;
//! tx.op(&Op::Unplaced { model: "bert".into(), worker: "chromium#1".into() })?;
//! tx.commit()?; // or tx.abort("load failed on firefox#1")?, or drop it: an Abort is written
//! log.maybe_snapshot(Instant::now(), Duration::from_secs(5))?;
//! log.close()?;
//! # Ok(()) }
//! ```

pub mod error;
mod logfile;
pub mod model;
pub mod record;
pub mod render;
mod replay;
pub mod snapshot;
mod transaction;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use error::StateError;
pub use logfile::LoggedOp;
pub use model::{
    Op, Progress, RecoveryRecord, Rollback, ShardAssignment, State, WorkerRecord, WorkloadBound,
};
pub use render::{render_state, render_verify};
pub use replay::{replay, IncompleteTx, Replayed};
pub use snapshot::Snapshot;
pub use transaction::Transaction;
pub use verify::{verify, SnapshotSummary, VerifyReport};
pub use writer::{CommitPolicy, SnapshotInfo, TxLog};

/// The log's file name in a run folder.
pub const LOG_FILE: &str = "txlog.log";
/// The snapshot's file name in a run folder.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// A transaction id: the sequence number of the transaction's Begin record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxId(pub u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The state of the run in `dir` (as [`replay`]), for `state show`.
///
/// # Errors
/// As [`replay`].
pub fn show(dir: &std::path::Path) -> Result<Replayed, StateError> {
    replay(dir)
}
