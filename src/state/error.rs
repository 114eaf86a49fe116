//! The one error type of the `state` layer.
//!
//! Every variant names the file it is about; damage names the byte offset (and the sequence
//! number when the record's header could be read), so an operator can look at the exact bytes.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong reading or writing a run's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file or directory could not be read, written, synced or renamed.
    #[error("cannot {action} '{}': {source}", path.display())]
    Io {
        /// What was being done ("open", "append to", "fsync", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record before the tail of the log is damaged (bad checksum, bad framing), or the log's
    /// records break the sequence or transaction rules. Never skipped: replay stops here.
    #[error("'{}': corrupt record at byte offset {offset} ({}): {reason}", path.display(), SeqLabel(*seq))]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the first byte of the bad record.
        offset: u64,
        /// The record's sequence number, when its header could be read.
        seq: Option<u64>,
        /// What is wrong, e.g. "CRC32C mismatch: stored 0x1234abcd, computed 0x99aa00ff".
        reason: String,
    },
    /// The snapshot cannot be parsed, or its SHA-256 does not match its state.
    #[error("'{}': bad snapshot: {reason}", path.display())]
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong, naming both digests for a mismatch.
        reason: String,
    },
    /// The run directory has no transaction log.
    #[error("'{}' has no state: {} is missing (is this a run folder written with state enabled?)", dir.display(), super::LOG_FILE)]
    Missing {
        /// The run directory.
        dir: PathBuf,
    },
    /// [`super::TxLog::create`] refuses to overwrite an existing log or snapshot.
    #[error("'{}' already exists; open it with TxLog::open_append instead of overwriting it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// An operation named a transaction that is not open (never begun, or already committed or
    /// aborted). A bug in the caller, reported instead of writing an invalid log.
    #[error("transaction {txid} is not open")]
    NotOpen {
        /// The transaction id given.
        txid: u64,
    },
    /// An operation's payload could not be encoded, or is larger than a record may hold.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why not.
        reason: String,
    },
}

impl StateError {
    /// True for damage found in the files (a corrupt record or a bad snapshot), as opposed to
    /// an I/O failure or a caller bug.
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::BadSnapshot { .. })
    }

    /// The byte offset of the bad record, for [`StateError::Corrupt`].
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Corrupt { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// "seq 42" or "seq unknown", for messages.
struct SeqLabel(Option<u64>);

impl fmt::Display for SeqLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, "seq {s}"),
            None => f.write_str("seq unknown"),
        }
    }
}
