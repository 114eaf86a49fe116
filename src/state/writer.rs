//! The log writer: [`TxLog`] appends framed records to `txlog.log`, applies committed
//! transactions to its own copy of the [`State`], takes snapshots and compacts the log.
//!
//! Blocking file I/O (std, not tokio): a commit is a few hundred bytes and, with
//! [`CommitPolicy::Group`], one `write(2)`. Callers on the async runtime that use
//! [`CommitPolicy::FsyncEachCommit`] should commit from `spawn_blocking`, since an fsync can
//! take milliseconds.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::logfile::LoggedOp;
use super::record::{self, RecordKind, HEADER_LEN};
use super::replay::{replay, Replayed};
use super::transaction::Transaction;
use super::{snapshot, Op, State, StateError, TxId, LOG_FILE, SNAPSHOT_FILE};

/// When commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitPolicy {
    /// Every Commit and Abort is written and `fdatasync`ed before `commit` returns: a committed
    /// transaction survives a power cut. Costs one fsync per transaction.
    FsyncEachCommit,
    /// Every Commit and Abort is handed to the OS with one `write(2)` before `commit` returns
    /// (Begin and Op records sit in a user-space buffer until then), so a committed transaction
    /// survives the harness being SIGKILLed. The file is `fdatasync`ed when `interval` has passed
    /// since the last sync, on [`TxLog::sync`], [`TxLog::sync_if_due`], snapshots and close: a
    /// power cut loses at most `interval` of commits.
    ///
    /// Rejected alternative: keeping commits in the user-space buffer until the interval. It
    /// saves the `write(2)` per commit (already over 300,000 transactions/s here, see
    /// `benches/txlog.rs`), but a SIGKILL of the harness — the crash `resume` exists for — would
    /// lose up to `interval` of commits.
    Group {
        /// Longest time between fsyncs while commits arrive.
        interval: Duration,
    },
}

/// What [`TxLog::snapshot`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The sequence number the snapshot covers.
    pub seq: u64,
    /// Log size before compaction, in bytes.
    pub log_bytes_before: u64,
    /// Log size after compaction (only records of open transactions are kept).
    pub log_bytes_after: u64,
}

/// An open transaction's ops, kept to apply at commit and to rewrite at compaction.
#[derive(Debug, Default)]
struct OpenTx {
    ops: Vec<LoggedOp>,
}

/// The writer of a run's transaction log. One per run directory.
///
/// Dropping it flushes and fsyncs, ignoring errors; call [`TxLog::close`] to see them.
#[derive(Debug)]
pub struct TxLog {
    dir: PathBuf,
    path: PathBuf,
    file: BufWriter<File>,
    policy: CommitPolicy,
    next_seq: u64,
    state: State,
    open: BTreeMap<u64, OpenTx>,
    last_sync: Instant,
    last_snapshot: Instant,
    /// Bytes written (or buffered) since the file was opened or compacted, plus its size then.
    bytes: u64,
    /// Buffer each record is framed in, reused so the append path does not allocate.
    scratch: Vec<u8>,
    /// Records were written to the OS or buffered since the last fsync.
    pub(super) unsynced: bool,
    /// A write failed part way: the file may end in a partial record, so appending more would
    /// put good records after damage. Reopen with [`TxLog::open_append`] to truncate it.
    broken: bool,
    closed: bool,
}

/// User-space buffer: a commit of a typical transaction is one write.
const BUFFER: usize = 64 * 1024;

impl TxLog {
    /// Starts a new log in `dir` (created if needed).
    ///
    /// # Errors
    /// [`StateError::AlreadyExists`] when `dir` already holds a log or snapshot;
    /// [`StateError::Io`].
    pub fn create(dir: &Path, policy: CommitPolicy) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::io("create directory", dir, e))?;
        let snap = dir.join(SNAPSHOT_FILE);
        if snap.exists() {
            return Err(StateError::AlreadyExists { path: snap });
        }
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    StateError::AlreadyExists { path: path.clone() }
                }
                _ => StateError::io("create", &path, e),
            })?;
        snapshot::sync_dir(dir)?;
        Ok(Self::with_file(
            dir,
            path,
            file,
            policy,
            0,
            1,
            State::default(),
        ))
    }

    /// Reopens the log in `dir` to append to it, after a crash or to continue a run: replays it
    /// (see [`replay`]), truncates a torn last record, and carries on numbering after the
    /// highest sequence number. Transactions left incomplete stay open in the writer (listed
    /// by [`TxLog::open_transactions`]) so the caller can undo their effects and abort them.
    ///
    /// # Errors
    /// Whatever [`replay`] returns for the directory, or [`StateError::Io`] when the log cannot
    /// be truncated or opened.
    pub fn open_append(dir: &Path, policy: CommitPolicy) -> Result<(Self, Replayed), StateError> {
        let replayed = replay(dir)?;
        let path = dir.join(LOG_FILE);
        for stale in [
            format!("{SNAPSHOT_FILE}.tmp"),
            format!("{LOG_FILE}.compact"),
        ] {
            // Left by a crash mid-snapshot; the renamed files are the truth.
            let _ = std::fs::remove_file(dir.join(stale));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StateError::io("open", &path, e))?;
        if replayed.valid_bytes < replayed.log_bytes {
            file.set_len(replayed.valid_bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| StateError::io("truncate the torn tail of", &path, e))?;
        }
        file.seek(SeekFrom::Start(replayed.valid_bytes))
            .map_err(|e| StateError::io("seek in", &path, e))?;
        let mut log = Self::with_file(
            dir,
            path,
            file,
            policy,
            replayed.valid_bytes,
            replayed.last_seq + 1,
            replayed.state.clone(),
        );
        for tx in &replayed.incomplete {
            log.open.insert(
                tx.txid.0,
                OpenTx {
                    ops: tx.ops.clone(),
                },
            );
        }
        Ok((log, replayed))
    }

    fn with_file(
        dir: &Path,
        path: PathBuf,
        file: File,
        policy: CommitPolicy,
        bytes: u64,
        next_seq: u64,
        state: State,
    ) -> Self {
        let now = Instant::now();
        Self {
            dir: dir.to_path_buf(),
            path,
            file: BufWriter::with_capacity(BUFFER, file),
            policy,
            next_seq,
            state,
            open: BTreeMap::new(),
            last_sync: now,
            last_snapshot: now,
            bytes,
            scratch: Vec::with_capacity(1024),
            unsynced: false,
            broken: false,
            closed: false,
        }
    }

    /// The committed state (every committed transaction applied, in commit order).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number of the last record written, 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Size of the log in bytes, counting records still in the user-space buffer.
    pub fn len_bytes(&self) -> u64 {
        self.bytes
    }

    /// Ids of the transactions begun and not yet committed or aborted, oldest first.
    pub fn open_transactions(&self) -> Vec<TxId> {
        self.open.keys().map(|&t| TxId(t)).collect()
    }

    /// Begins a transaction and returns a guard that aborts it when dropped uncommitted, so an
    /// early `?` return rolls back in the log.
    ///
    /// # Errors
    /// [`StateError::Io`] when the Begin record cannot be written.
    pub fn begin(&mut self) -> Result<Transaction<'_>, StateError> {
        let id = self.begin_detached()?;
        Ok(Transaction::new(self, id))
    }

    /// Begins a transaction without a guard, for multi-step operations that outlive a borrow
    /// (a migration that awaits a model load between its ops). Several may be open at once.
    /// End it with [`TxLog::commit`] or [`TxLog::abort`].
    ///
    /// # Errors
    /// [`StateError::Io`] when the Begin record cannot be written.
    pub fn begin_detached(&mut self) -> Result<TxId, StateError> {
        let seq = self.next_seq;
        self.scratch.clear();
        self.scratch.resize(HEADER_LEN, 0);
        self.append(seq, seq, RecordKind::Begin)?;
        self.open.insert(seq, OpenTx::default());
        Ok(TxId(seq))
    }

    /// Records one op in open transaction `tx`. It takes effect when `tx` commits.
    ///
    /// # Errors
    /// [`StateError::NotOpen`] when `tx` is not open; [`StateError::Encode`] for an op over the
    /// record size limit; [`StateError::Io`].
    pub fn op(&mut self, tx: TxId, op: &Op) -> Result<u64, StateError> {
        if !self.open.contains_key(&tx.0) {
            return Err(StateError::NotOpen { txid: tx.0 });
        }
        let seq = self.next_seq;
        self.scratch.clear();
        self.scratch.resize(HEADER_LEN, 0);
        serde_json::to_writer(&mut self.scratch, op).map_err(|e| StateError::Encode {
            what: "an op",
            reason: e.to_string(),
        })?;
        self.append(seq, tx.0, RecordKind::Op)?;
        if let Some(t) = self.open.get_mut(&tx.0) {
            t.ops.push(LoggedOp {
                seq,
                op: op.clone(),
            });
        }
        Ok(seq)
    }

    /// Commits `tx`: writes its Commit record, makes it as durable as the [`CommitPolicy`]
    /// says, then applies its ops to [`TxLog::state`]. Returns the Commit's sequence number.
    ///
    /// # Errors
    /// [`StateError::NotOpen`]; [`StateError::Io`] (the transaction is then not applied and the
    /// writer refuses further records).
    pub fn commit(&mut self, tx: TxId) -> Result<u64, StateError> {
        if !self.open.contains_key(&tx.0) {
            return Err(StateError::NotOpen { txid: tx.0 });
        }
        let seq = self.end(tx, RecordKind::Commit, b"")?;
        if let Some(t) = self.open.remove(&tx.0) {
            for logged in &t.ops {
                self.state.apply(&logged.op);
            }
        }
        Ok(seq)
    }

    /// Aborts `tx`: writes an Abort record carrying `reason`; none of its ops are applied.
    ///
    /// # Errors
    /// [`StateError::NotOpen`]; [`StateError::Io`].
    pub fn abort(&mut self, tx: TxId, reason: &str) -> Result<u64, StateError> {
        if !self.open.contains_key(&tx.0) {
            return Err(StateError::NotOpen { txid: tx.0 });
        }
        let seq = self.end(tx, RecordKind::Abort, reason.as_bytes())?;
        self.open.remove(&tx.0);
        Ok(seq)
    }

    /// One op in its own transaction (Begin, Op, Commit). Returns the Commit's sequence number.
    ///
    /// # Errors
    /// As [`TxLog::op`] and [`TxLog::commit`].
    pub fn commit_one(&mut self, op: &Op) -> Result<u64, StateError> {
        let mut tx = self.begin()?;
        tx.op(op)?;
        tx.commit()
    }

    /// Writes the Commit or Abort of `tx` and applies the commit policy.
    fn end(&mut self, tx: TxId, kind: RecordKind, payload: &[u8]) -> Result<u64, StateError> {
        let seq = self.next_seq;
        self.scratch.clear();
        self.scratch.resize(HEADER_LEN, 0);
        self.scratch.extend_from_slice(payload);
        self.append(seq, tx.0, kind)?;
        match self.policy {
            CommitPolicy::FsyncEachCommit => self.sync()?,
            CommitPolicy::Group { interval } => {
                self.flush()?;
                if self.last_sync.elapsed() >= interval {
                    self.sync()?;
                }
            }
        }
        Ok(seq)
    }

    /// Frames the payload in `scratch` as record `seq` and hands it to the buffer.
    fn append(&mut self, seq: u64, txid: u64, kind: RecordKind) -> Result<(), StateError> {
        if self.broken {
            return Err(self.broken_error());
        }
        record::frame_in_place(&mut self.scratch, seq, txid, kind).map_err(|len| {
            StateError::Encode {
                what: "a record",
                reason: format!(
                    "payload of {len} bytes is over the {}-byte limit",
                    record::MAX_PAYLOAD
                ),
            }
        })?;
        if let Err(e) = self.file.write_all(&self.scratch) {
            self.broken = true;
            return Err(StateError::io("append to", &self.path, e));
        }
        self.next_seq = seq + 1;
        self.bytes += self.scratch.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    fn broken_error(&self) -> StateError {
        StateError::io(
            "append to",
            &self.path,
            std::io::Error::other("an earlier write failed; reopen the log to truncate it"),
        )
    }

    /// Hands buffered records to the OS (one `write(2)`), without fsync: they survive the
    /// harness dying but not a power cut.
    ///
    /// # Errors
    /// [`StateError::Io`]; the writer then refuses further records.
    pub fn flush(&mut self) -> Result<(), StateError> {
        if self.broken {
            return Err(self.broken_error());
        }
        if let Err(e) = self.file.flush() {
            self.broken = true;
            return Err(StateError::io("write", &self.path, e));
        }
        Ok(())
    }

    /// Flushes and `fdatasync`s: every record written so far survives a power cut.
    ///
    /// # Errors
    /// [`StateError::Io`]; the writer then refuses further records.
    pub fn sync(&mut self) -> Result<(), StateError> {
        self.flush()?;
        if self.unsynced {
            if let Err(e) = self.file.get_ref().sync_data() {
                self.broken = true;
                return Err(StateError::io("fsync", &self.path, e));
            }
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// For [`CommitPolicy::Group`]: syncs when the interval has passed since the last sync and
    /// something is unsynced, so a quiet spell does not leave commits unsynced. Call it from the
    /// engine's periodic tick. Returns whether it synced.
    ///
    /// # Errors
    /// As [`TxLog::sync`].
    pub fn sync_if_due(&mut self, now: Instant) -> Result<bool, StateError> {
        let interval = match self.policy {
            CommitPolicy::Group { interval } => interval,
            CommitPolicy::FsyncEachCommit => Duration::ZERO,
        };
        if self.unsynced && now.saturating_duration_since(self.last_sync) >= interval {
            self.sync()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Takes a snapshot when `every` has passed since the last one (or since the log was
    /// opened): the `sync_interval` tick of the engine.
    ///
    /// # Errors
    /// As [`TxLog::snapshot`].
    pub fn maybe_snapshot(
        &mut self,
        now: Instant,
        every: Duration,
    ) -> Result<Option<SnapshotInfo>, StateError> {
        if now.saturating_duration_since(self.last_snapshot) >= every {
            return self.snapshot().map(Some);
        }
        Ok(None)
    }

    /// Writes `snapshot.json` with the committed state as of the last record, then compacts
    /// the log: only the records of still-open transactions are kept (they commit or abort
    /// later). Order: sync the log, write the snapshot atomically, rewrite the log to
    /// `txlog.log.compact` and rename it over `txlog.log`. A crash at any point leaves files
    /// that replay to the same state.
    ///
    /// # Errors
    /// [`StateError::Io`] naming the file; after a failure past the snapshot the writer refuses
    /// further records (reopen it).
    pub fn snapshot(&mut self) -> Result<SnapshotInfo, StateError> {
        self.sync()?;
        let seq = self.last_seq();
        snapshot::write(&self.dir, seq, &self.state)?;
        let before = self.bytes;
        // Re-frame the open transactions' records: framing is deterministic, so these are the
        // same bytes as in the old file, without reading it back.
        let mut records: Vec<(u64, u64, Option<&Op>)> = Vec::new();
        for (&txid, tx) in &self.open {
            records.push((txid, txid, None));
            records.extend(tx.ops.iter().map(|l| (l.seq, txid, Some(&l.op))));
        }
        records.sort_by_key(|r| r.0);
        let mut kept = Vec::new();
        for (seq, txid, op) in records {
            let mut buf = vec![0u8; HEADER_LEN];
            let kind = match op {
                Some(op) => {
                    serde_json::to_writer(&mut buf, op).map_err(|e| StateError::Encode {
                        what: "an op",
                        reason: e.to_string(),
                    })?;
                    RecordKind::Op
                }
                None => RecordKind::Begin,
            };
            record::frame_in_place(&mut buf, seq, txid, kind).map_err(|len| {
                StateError::Encode {
                    what: "a record",
                    reason: format!("payload of {len} bytes is over the limit"),
                }
            })?;
            kept.extend_from_slice(&buf);
        }
        let tmp = self.dir.join(format!("{LOG_FILE}.compact"));
        let write = || -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            f.write_all(&kept)?;
            f.sync_all()?;
            Ok(f)
        };
        let file = write().map_err(|e| StateError::io("write", &tmp, e))?;
        // A failed rename leaves the old log in place and this writer still appending to it.
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| StateError::io("rename into place", &self.path, e))?;
        // From here on the old handle points at an unlinked file: switch at once. The new
        // handle is positioned at the end of the compacted records.
        self.file = BufWriter::with_capacity(BUFFER, file);
        self.bytes = kept.len() as u64;
        self.unsynced = false;
        self.last_snapshot = Instant::now();
        snapshot::sync_dir(&self.dir)?;
        Ok(SnapshotInfo {
            seq,
            log_bytes_before: before,
            log_bytes_after: self.bytes,
        })
    }

    /// Syncs and closes the log, reporting any error (dropping it syncs but ignores errors).
    ///
    /// # Errors
    /// As [`TxLog::sync`].
    pub fn close(mut self) -> Result<(), StateError> {
        self.closed = true;
        self.sync()
    }
}

impl Drop for TxLog {
    /// Best effort: flush and fsync what is buffered. Open transactions stay open in the file,
    /// as they would after a crash; replay does not apply them.
    fn drop(&mut self) {
        if !self.closed && !self.broken {
            let _ = self.sync();
        }
    }
}
