//! Rebuilds a run's [`State`] from `snapshot.json` and `txlog.log`: what `resume` and
//! `state show` start from.
//!
//! The snapshot (when there is one) holds every transaction committed at or before its `seq`.
//! On top of it, the committed transactions of the log whose Commit record comes after that
//! `seq` are applied in commit order. Aborted and unterminated transactions are never applied;
//! the unterminated ones are returned so the caller can undo their side effects (unload a
//! half-loaded model) and abort them.

use std::path::Path;

use serde::Serialize;

use super::logfile::{self, LoggedOp, TxEnd};
use super::{snapshot, State, StateError, TxId, LOG_FILE};

/// A transaction that began but neither committed nor aborted (the harness died in it, or its
/// Commit was the torn last record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncompleteTx {
    /// The transaction id.
    pub txid: TxId,
    /// Its ops so far, in log order; none of them was applied.
    pub ops: Vec<LoggedOp>,
}

/// The outcome of [`replay`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Replayed {
    /// The rebuilt state.
    pub state: State,
    /// Sequence number the snapshot covers, when there is a snapshot.
    pub snapshot_seq: Option<u64>,
    /// The highest sequence number in the snapshot or the log (0 for an empty log).
    pub last_seq: u64,
    /// Committed transactions applied from the log on top of the snapshot.
    pub applied: u64,
    /// Aborted transactions in the log (not applied).
    pub aborted: u64,
    /// Transactions still open at the end of the log (not applied).
    pub incomplete: Vec<IncompleteTx>,
    /// Damage that was tolerated (a torn last record), each naming the file and byte offset.
    pub warnings: Vec<String>,
    /// Size of the log in bytes.
    pub log_bytes: u64,
    /// Bytes of intact records: a writer truncates the log to this before appending.
    pub valid_bytes: u64,
}

/// Rebuilds the state of the run in `dir`.
///
/// # Errors
/// [`StateError::Missing`] when `dir` has no `txlog.log`; [`StateError::Corrupt`] naming the
/// file, byte offset and seq of a damaged record before the tail; [`StateError::BadSnapshot`]
/// when the snapshot does not parse or its checksum does not match; [`StateError::Io`].
pub fn replay(dir: &Path) -> Result<Replayed, StateError> {
    let path = dir.join(LOG_FILE);
    if !path.exists() {
        return Err(StateError::Missing {
            dir: dir.to_path_buf(),
        });
    }
    let snap = snapshot::read(dir)?;
    let log = logfile::read(&path)?;
    let covered = snap.as_ref().map_or(0, |s| s.seq);
    let mut out = Replayed {
        snapshot_seq: snap.as_ref().map(|s| s.seq),
        state: snap.map(|s| s.state).unwrap_or_default(),
        last_seq: log.last_seq.max(covered),
        applied: 0,
        aborted: 0,
        incomplete: Vec::new(),
        warnings: log.torn_warning(&path).into_iter().collect(),
        log_bytes: log.bytes,
        valid_bytes: log.valid_len,
    };
    for &i in &log.commit_order {
        let tx = &log.txs[i];
        // Commits at or before the snapshot are in it already (the log was not yet compacted
        // when the harness died between writing the snapshot and rewriting the log).
        if matches!(tx.end, TxEnd::Committed { seq } if seq > covered) {
            for logged in &tx.ops {
                out.state.apply(&logged.op);
            }
            out.applied += 1;
        }
    }
    for tx in log.txs {
        match tx.end {
            TxEnd::Aborted => out.aborted += 1,
            TxEnd::Open => out.incomplete.push(IncompleteTx {
                txid: TxId(tx.txid),
                ops: tx.ops,
            }),
            TxEnd::Committed { .. } => {}
        }
    }
    Ok(out)
}
