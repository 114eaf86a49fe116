//! Reads a whole `txlog.log`: frames ([`super::record::scan`]), then checks the sequence and
//! transaction rules and decodes every op. Shared by replay, verify and the writer's reopen.
//!
//! Rules, each an error naming the record's offset and seq:
//! - sequence numbers strictly increase through the file (compaction leaves gaps, never
//!   reversals);
//! - a Begin's transaction id equals its own sequence number, so ids never repeat;
//! - Op, Commit and Abort name a transaction that is open (begun, not yet ended);
//! - Begin and Commit carry no payload, an Abort's payload is UTF-8, an Op's is an [`Op`].

use std::collections::BTreeMap;
use std::path::Path;

use super::record::{self, Damage, RecordKind};
use super::{Op, StateError};

/// An op as logged: its record's sequence number and the op.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoggedOp {
    /// The Op record's sequence number.
    pub seq: u64,
    /// The op.
    pub op: Op,
}

/// How a transaction ended in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxEnd {
    Committed { seq: u64 },
    Aborted,
    Open,
}

/// One transaction as found in the log.
#[derive(Debug, Clone)]
pub(crate) struct LoggedTx {
    pub txid: u64,
    pub ops: Vec<LoggedOp>,
    pub end: TxEnd,
}

/// A parsed log.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParsedLog {
    /// Transactions in the order their Begin appears.
    pub txs: Vec<LoggedTx>,
    /// Indexes into `txs` of committed transactions, in commit order: the order to apply them.
    pub commit_order: Vec<usize>,
    /// Intact records.
    pub records: u64,
    /// First and last sequence numbers, when there are records.
    pub first_seq: Option<u64>,
    /// Highest sequence number, 0 when there are no records.
    pub last_seq: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Bytes up to the end of the last intact record.
    pub valid_len: u64,
    /// A damaged last record that was dropped.
    pub torn: Option<Damage>,
}

impl ParsedLog {
    /// The warning for a dropped torn tail, naming the file and offset.
    pub fn torn_warning(&self, path: &Path) -> Option<String> {
        self.torn.as_ref().map(|d| {
            format!(
                "'{}': torn last record at byte offset {} ({} bytes dropped): {}",
                path.display(),
                d.offset,
                self.bytes - d.offset,
                d.reason
            )
        })
    }
}

/// Reads and parses the log at `path`.
///
/// # Errors
/// [`StateError::Io`] when it cannot be read; [`StateError::Corrupt`] for damage before the
/// tail or a broken rule.
pub(crate) fn read(path: &Path) -> Result<ParsedLog, StateError> {
    let bytes = std::fs::read(path).map_err(|e| StateError::io("read", path, e))?;
    parse(path, &bytes)
}

/// Parses log bytes; `path` is only for messages.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<ParsedLog, StateError> {
    let corrupt = |offset: u64, seq: Option<u64>, reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        offset,
        seq,
        reason,
    };
    let scan = record::scan(bytes).map_err(|d| corrupt(d.offset, d.seq, d.reason))?;
    let mut out = ParsedLog {
        records: scan.records.len() as u64,
        first_seq: scan.records.first().map(|r| r.seq),
        bytes: bytes.len() as u64,
        valid_len: scan.valid_len,
        torn: scan.torn,
        ..ParsedLog::default()
    };
    // txid -> index in out.txs, for open transactions only.
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut prev: Option<u64> = None;
    for r in &scan.records {
        let bad = |reason: String| corrupt(r.offset, Some(r.seq), reason);
        if let Some(p) = prev {
            if r.seq <= p {
                return Err(bad(format!(
                    "sequence number {} does not follow {p}",
                    r.seq
                )));
            }
        }
        prev = Some(r.seq);
        match r.kind {
            RecordKind::Begin => {
                if r.txid != r.seq {
                    return Err(bad(format!(
                        "begin of transaction {} must carry its own sequence number as id",
                        r.txid
                    )));
                }
                if !r.payload.is_empty() {
                    return Err(bad("begin record with a payload".into()));
                }
                open.insert(r.txid, out.txs.len());
                out.txs.push(LoggedTx {
                    txid: r.txid,
                    ops: Vec::new(),
                    end: TxEnd::Open,
                });
            }
            RecordKind::Op => {
                let i = open_index(path, &open, r)?;
                let op: Op = serde_json::from_slice(r.payload)
                    .map_err(|e| bad(format!("op payload is not a known op: {e}")))?;
                out.txs[i].ops.push(LoggedOp { seq: r.seq, op });
            }
            RecordKind::Commit => {
                let i = open_index(path, &open, r)?;
                if !r.payload.is_empty() {
                    return Err(bad("commit record with a payload".into()));
                }
                out.txs[i].end = TxEnd::Committed { seq: r.seq };
                out.commit_order.push(i);
                open.remove(&r.txid);
            }
            RecordKind::Abort => {
                let i = open_index(path, &open, r)?;
                std::str::from_utf8(r.payload)
                    .map_err(|_| bad("abort reason is not UTF-8".into()))?;
                out.txs[i].end = TxEnd::Aborted;
                open.remove(&r.txid);
            }
        }
    }
    out.last_seq = prev.unwrap_or(0);
    Ok(out)
}

/// Index of the open transaction a non-Begin record belongs to.
///
/// # Errors
/// [`StateError::Corrupt`] at the record when its transaction is not open.
fn open_index(
    path: &Path,
    open: &BTreeMap<u64, usize>,
    r: &record::TxRecord<'_>,
) -> Result<usize, StateError> {
    open.get(&r.txid)
        .copied()
        .ok_or_else(|| StateError::Corrupt {
            path: path.to_path_buf(),
            offset: r.offset,
            seq: Some(r.seq),
            reason: format!(
                "{} record for transaction {}, which is not open",
                r.kind.as_str(),
                r.txid
            ),
        })
}
