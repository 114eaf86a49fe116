//! `state verify`: checks a run's log and snapshot without changing them.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::logfile::{self, TxEnd};
use super::{snapshot, StateError, LOG_FILE};

/// The snapshot, as [`verify`] found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotSummary {
    /// The snapshot file.
    pub path: PathBuf,
    /// The sequence number it covers.
    pub seq: u64,
    /// Its SHA-256 (checked).
    pub sha256: String,
}

/// What [`verify`] checked and counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The log file.
    pub log: PathBuf,
    /// Its size in bytes.
    pub log_bytes: u64,
    /// Intact records (each CRC and frame checked).
    pub records: u64,
    /// The first record's sequence number, when there are records.
    pub first_seq: Option<u64>,
    /// The last record's sequence number (0 when there are none).
    pub last_seq: u64,
    /// Committed transactions in the log.
    pub committed: u64,
    /// Aborted transactions in the log.
    pub aborted: u64,
    /// Transactions neither committed nor aborted.
    pub incomplete: u64,
    /// The snapshot, when there is one.
    pub snapshot: Option<SnapshotSummary>,
    /// Damage that was tolerated (a torn last record), naming the file and byte offset.
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// True when nothing was tolerated: no warnings.
    pub fn is_clean(&self) -> bool {
        self.warnings.is_empty()
    }
}

/// Checks every record's CRC and framing, sequence monotonicity, the transaction structure,
/// that every op decodes, and the snapshot's SHA-256.
///
/// # Errors
/// The first problem that is not a torn tail: [`StateError::Corrupt`] naming the log, the
/// byte offset and seq of the bad record; [`StateError::BadSnapshot`]; [`StateError::Missing`]
/// when there is no log; [`StateError::Io`].
pub fn verify(dir: &Path) -> Result<VerifyReport, StateError> {
    let path = dir.join(LOG_FILE);
    if !path.exists() {
        return Err(StateError::Missing {
            dir: dir.to_path_buf(),
        });
    }
    let log = logfile::read(&path)?;
    let snap = snapshot::read(dir)?;
    let count = |f: fn(&TxEnd) -> bool| log.txs.iter().filter(|t| f(&t.end)).count() as u64;
    Ok(VerifyReport {
        warnings: log.torn_warning(&path).into_iter().collect(),
        log: path,
        log_bytes: log.bytes,
        records: log.records,
        first_seq: log.first_seq,
        last_seq: log.last_seq,
        committed: count(|e| matches!(e, TxEnd::Committed { .. })),
        aborted: count(|e| matches!(e, TxEnd::Aborted)),
        incomplete: count(|e| matches!(e, TxEnd::Open)),
        snapshot: snap.map(|s| SnapshotSummary {
            path: dir.join(super::SNAPSHOT_FILE),
            seq: s.seq,
            sha256: s.sha256,
        }),
    })
}
