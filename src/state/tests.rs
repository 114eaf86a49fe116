//! The state layer's suite: round trips, transaction semantics, damage, snapshots, policies.
//! Pure file logic in temp dirs; no browsers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::record::{self, RecordKind, HEADER_LEN};
use super::*;

const GROUP: CommitPolicy = CommitPolicy::Group {
    interval: Duration::from_millis(100),
};

fn dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wgp-state-")
        .tempdir()
        .unwrap()
}

fn placed(model: &str, worker: &str) -> Op {
    Op::Placed {
        model: model.into(),
        worker: worker.into(),
    }
}

fn progress(issued: u64) -> Op {
    Op::Progress {
        issued,
        succeeded: issued.saturating_sub(1),
        failed: u64::from(issued > 0),
        per_model: BTreeMap::from([("bert".to_string(), issued / 2), ("vit".into(), issued / 3)]),
        elapsed_ms: issued * 40,
    }
}

fn event(kind: &str) -> Op {
    Op::RecoveryRecorded {
        event: RecoveryRecord {
            fault_kind: kind.into(),
            level: "migrate".into(),
            detection_ms: 60,
            recovery_ms: 900,
            succeeded: true,
            worker: Some("chromium#1".into()),
        },
    }
}

/// A log with a started run, two workers, a placement, a shard plan and `n` progress commits.
fn populated(dir: &Path, policy: CommitPolicy, n: u64) -> TxLog {
    let mut log = TxLog::create(dir, policy).unwrap();
    log.commit_one(&Op::RunStarted {
        run_id: "r1".into(),
        seed: 42,
        workload: Some(WorkloadBound::Iterations(100)),
    })
    .unwrap();
    let mut tx = log.begin().unwrap();
    let mut w = WorkerRecord::new("chromium#1", "chromium", "cdp");
    w.pid = Some(4242);
    w.profile_dir = Some("/tmp/profile-1".into());
    tx.op(&Op::WorkerAdded { worker: w }).unwrap();
    tx.op(&Op::WorkerAdded {
        worker: WorkerRecord::new("firefox#1", "firefox", "webdriver"),
    })
    .unwrap();
    tx.op(&placed("bert", "chromium#1")).unwrap();
    tx.op(&Op::ShardPlanned {
        model: "llama-tiny".into(),
        shards: vec![
            ShardAssignment::new(1, 2..4, "firefox#1"),
            ShardAssignment::new(0, 0..2, "chromium#1"),
        ],
    })
    .unwrap();
    tx.commit().unwrap();
    for i in 1..=n {
        log.commit_one(&progress(i)).unwrap();
    }
    log
}

fn offsets(dir: &Path) -> Vec<(u64, u64, RecordKind)> {
    let bytes = std::fs::read(dir.join(LOG_FILE)).unwrap();
    record::scan(&bytes)
        .unwrap()
        .records
        .iter()
        .map(|r| (r.offset, r.seq, r.kind))
        .collect()
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn truncate_by(path: &Path, n: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len - n).unwrap();
}

#[test]
fn round_trip() {
    let d = dir();
    let log = populated(d.path(), GROUP, 5);
    let expected = log.state().clone();
    log.close().unwrap();
    let r = replay(d.path()).unwrap();
    assert_eq!(r.state, expected);
    assert_eq!(r.state.run_id, "r1");
    assert_eq!(r.state.placements["bert"], vec!["chromium#1"]);
    assert_eq!(
        r.state.shard_plans["llama-tiny"][0].shard, 0,
        "shards sorted"
    );
    assert_eq!(r.state.progress.issued, 5);
    assert_eq!(r.state.workers["chromium#1"].pid, Some(4242));
    assert_eq!((r.applied, r.aborted, r.incomplete.len()), (7, 0, 0));
    assert_eq!(r.last_seq, 3 + 6 + 5 * 3);
    assert!(r.warnings.is_empty() && r.snapshot_seq.is_none());
    let v = verify(d.path()).unwrap();
    assert_eq!((v.records, v.committed, v.last_seq), (24, 7, 24));
    assert!(v.is_clean());
}

#[test]
fn aborted_dropped_and_unterminated_transactions_are_not_applied() {
    let d = dir();
    let mut log = populated(d.path(), GROUP, 0);
    let mut tx = log.begin().unwrap();
    tx.op(&placed("vit", "firefox#1")).unwrap();
    tx.abort("load failed on firefox#1").unwrap();
    {
        let mut tx = log.begin().unwrap();
        tx.op(&placed("whisper", "firefox#1")).unwrap();
        // Dropped without commit: an early `?` return.
    }
    let open = log.begin_detached().unwrap();
    log.op(open, &placed("llama", "chromium#1")).unwrap();
    log.op(open, &Op::RunFinished).unwrap();
    assert_eq!(log.state().placements.len(), 1);
    drop(log); // the open transaction stays open, as after a crash
    let r = replay(d.path()).unwrap();
    assert_eq!(
        r.state.placements.keys().collect::<Vec<_>>(),
        vec!["bert"],
        "only committed placements"
    );
    assert!(!r.state.finished);
    assert_eq!((r.applied, r.aborted), (2, 2));
    assert_eq!(r.incomplete.len(), 1);
    assert_eq!(r.incomplete[0].txid, open);
    assert_eq!(r.incomplete[0].ops[1].op, Op::RunFinished);
    // Reopened, the incomplete transaction can be rolled back for real.
    let (mut log, _) = TxLog::open_append(d.path(), GROUP).unwrap();
    assert_eq!(log.open_transactions(), vec![open]);
    log.abort(open, "harness died mid-transaction; rolled back on resume")
        .unwrap();
    assert!(matches!(
        log.commit(open),
        Err(StateError::NotOpen { txid }) if txid == open.0
    ));
    log.close().unwrap();
    let r = replay(d.path()).unwrap();
    assert_eq!((r.aborted, r.incomplete.len()), (3, 0));
}

#[test]
fn flipped_byte_in_a_middle_record_names_its_offset_and_seq() {
    let d = dir();
    populated(d.path(), GROUP, 6).close().unwrap();
    let records = offsets(d.path());
    let (offset, seq, kind) = records[records.len() / 2];
    assert_eq!(kind, RecordKind::Op, "a record with a payload");
    let path = d.path().join(LOG_FILE);
    flip(&path, offset + HEADER_LEN as u64 + 3);
    let err = verify(d.path()).unwrap_err();
    assert_eq!(err.offset(), Some(offset));
    assert!(err.is_damage());
    let text = err.to_string();
    assert!(
        text.contains(&format!("byte offset {offset}"))
            && text.contains(&format!("seq {seq}"))
            && text.contains("txlog.log")
            && text.contains("CRC32C mismatch"),
        "{text}"
    );
    assert_eq!(replay(d.path()).unwrap_err().offset(), Some(offset));
    assert!(
        TxLog::open_append(d.path(), GROUP).is_err(),
        "never appends past damage"
    );
}

#[test]
fn flipped_byte_in_a_middle_header_is_an_error_too() {
    let d = dir();
    populated(d.path(), GROUP, 6).close().unwrap();
    let records = offsets(d.path());
    let path = d.path().join(LOG_FILE);
    // Every header field of a middle record: magic, kind, length, seq, txid.
    for field in [0u64, 5, 9, 13, 21] {
        let (offset, _, _) = records[7];
        flip(&path, offset + field);
        let err = verify(d.path()).unwrap_err();
        assert_eq!(err.offset(), Some(offset), "field at {field}: {err}");
        flip(&path, offset + field);
    }
    verify(d.path()).unwrap();
}

#[test]
fn torn_last_record_warns_and_the_writer_continues_after_it() {
    let d = dir();
    populated(d.path(), GROUP, 3).close().unwrap();
    let records = offsets(d.path());
    let (last_offset, last_seq, kind) = records[records.len() - 1];
    assert_eq!(kind, RecordKind::Commit);
    let path = d.path().join(LOG_FILE);
    truncate_by(&path, 3);
    let r = replay(d.path()).unwrap();
    assert_eq!(r.warnings.len(), 1);
    assert!(
        r.warnings[0].contains(&format!("byte offset {last_offset}")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.state.progress.issued, 2, "the torn commit is not applied");
    assert_eq!(r.incomplete.len(), 1);
    let v = verify(d.path()).unwrap();
    assert!(!v.is_clean() && v.records == records.len() as u64 - 1);

    let (mut log, replayed) = TxLog::open_append(d.path(), GROUP).unwrap();
    assert_eq!(replayed.warnings.len(), 1);
    assert_eq!(log.last_seq(), last_seq - 1);
    assert_eq!(log.len_bytes(), last_offset);
    for tx in log.open_transactions() {
        log.abort(tx, "commit record was torn").unwrap();
    }
    log.commit_one(&progress(10)).unwrap();
    log.close().unwrap();
    let r = replay(d.path()).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.state.progress.issued, 10);
    assert!(verify(d.path()).unwrap().is_clean());
}

#[test]
fn bad_crc_on_the_very_last_record_is_a_torn_tail() {
    let d = dir();
    populated(d.path(), GROUP, 2).close().unwrap();
    let records = offsets(d.path());
    let (offset, ..) = records[records.len() - 1];
    flip(&d.path().join(LOG_FILE), offset + 14);
    let r = replay(d.path()).unwrap();
    assert!(r.warnings[0].contains(&format!("byte offset {offset}")));
    assert_eq!(r.state.progress.issued, 1);
}

#[test]
fn zero_filled_tail_after_a_power_cut_is_a_torn_tail() {
    let d = dir();
    populated(d.path(), GROUP, 2).close().unwrap();
    let path = d.path().join(LOG_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend([0u8; 100]);
    std::fs::write(&path, bytes).unwrap();
    let r = replay(d.path()).unwrap();
    assert!(r.warnings[0].contains(&format!("byte offset {len}")));
    assert_eq!(r.state.progress.issued, 2);
}

#[test]
fn snapshot_and_compaction_preserve_state_and_shrink_the_log() {
    let d = dir();
    let mut log = populated(d.path(), GROUP, 50);
    log.commit_one(&event("kill_browser")).unwrap();
    // A transaction open across the snapshot: its records must survive compaction.
    let open = log.begin_detached().unwrap();
    log.op(open, &placed("vit", "firefox#1")).unwrap();
    let before = log.state().clone();
    let info = log.snapshot().unwrap();
    assert_eq!(info.seq, log.last_seq());
    assert!(
        info.log_bytes_after < info.log_bytes_before / 10,
        "{info:?}"
    );
    let size = std::fs::metadata(d.path().join(LOG_FILE)).unwrap().len();
    assert_eq!(size, info.log_bytes_after);
    let r = replay(d.path()).unwrap();
    assert_eq!(r.state, before);
    assert_eq!(r.snapshot_seq, Some(info.seq));
    assert_eq!(r.incomplete.len(), 1, "the open transaction was kept");
    // It commits after the snapshot and is applied on top of it.
    log.commit(open).unwrap();
    log.commit_one(&progress(60)).unwrap();
    let after = log.state().clone();
    log.close().unwrap();
    let r = replay(d.path()).unwrap();
    assert_eq!(r.state, after);
    assert_eq!(r.state.placements["vit"], vec!["firefox#1"]);
    assert_eq!(r.applied, 2);
    let v = verify(d.path()).unwrap();
    assert_eq!(v.snapshot.as_ref().map(|s| s.seq), Some(info.seq));
    // Numbering goes on after reopening a compacted log.
    let (mut log, _) = TxLog::open_append(d.path(), GROUP).unwrap();
    let seq = log.commit_one(&progress(61)).unwrap();
    assert!(seq > info.seq + 4);
}

#[test]
fn crash_between_snapshot_and_compaction_applies_nothing_twice() {
    let d = dir();
    let mut log = populated(d.path(), GROUP, 3);
    log.commit_one(&event("kill_browser")).unwrap();
    log.sync().unwrap();
    let uncompacted = std::fs::read(d.path().join(LOG_FILE)).unwrap();
    let state = log.state().clone();
    log.snapshot().unwrap();
    drop(log);
    // The snapshot is in place but the old, uncompacted log is still there.
    std::fs::write(d.path().join(LOG_FILE), uncompacted).unwrap();
    let r = replay(d.path()).unwrap();
    assert_eq!(r.state, state);
    assert_eq!(r.state.recovery_events.len(), 1, "not applied twice");
    assert_eq!(r.applied, 0);
}

#[test]
fn snapshot_checksum_mismatch_is_an_error_naming_the_file() {
    let d = dir();
    let mut log = populated(d.path(), GROUP, 3);
    log.snapshot().unwrap();
    drop(log);
    let path = d.path().join(SNAPSHOT_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"seed\": 42", "\"seed\": 43")).unwrap();
    for err in [replay(d.path()).unwrap_err(), verify(d.path()).unwrap_err()] {
        assert!(matches!(err, StateError::BadSnapshot { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("snapshot.json") && msg.contains("SHA-256 mismatch"),
            "{msg}"
        );
    }
}

#[test]
fn both_policies_are_durable_after_sync_and_group_survives_a_kill() {
    for policy in [CommitPolicy::FsyncEachCommit, GROUP] {
        let d = dir();
        let mut log = populated(d.path(), policy, 20);
        log.sync().unwrap();
        let state = log.state().clone();
        // SIGKILL: no Drop, no flush.
        std::mem::forget(log);
        assert_eq!(replay(d.path()).unwrap().state, state, "{policy:?}");
    }
    // Group commit hands each commit to the OS even without a sync: a killed harness keeps it.
    let d = dir();
    let log = populated(
        d.path(),
        CommitPolicy::Group {
            interval: Duration::from_secs(3600),
        },
        5,
    );
    let state = log.state().clone();
    assert!(log.unsynced);
    std::mem::forget(log);
    assert_eq!(replay(d.path()).unwrap().state, state);
}

#[test]
fn group_commit_syncs_when_the_interval_is_due() {
    let d = dir();
    let mut log = populated(
        d.path(),
        CommitPolicy::Group {
            interval: Duration::from_secs(3600),
        },
        2,
    );
    let now = Instant::now();
    assert!(!log.sync_if_due(now).unwrap());
    assert!(log.sync_if_due(now + Duration::from_secs(3601)).unwrap());
    assert!(!log.unsynced);
    let d2 = dir();
    let mut every = populated(
        d2.path(),
        CommitPolicy::Group {
            interval: Duration::ZERO,
        },
        1,
    );
    every.commit_one(&progress(3)).unwrap();
    assert!(!every.unsynced, "a zero interval syncs every commit");
}

#[test]
fn maybe_snapshot_waits_for_the_interval() {
    let d = dir();
    let mut log = populated(d.path(), GROUP, 2);
    let every = Duration::from_secs(5);
    assert!(log.maybe_snapshot(Instant::now(), every).unwrap().is_none());
    let later = Instant::now() + Duration::from_secs(6);
    assert!(log.maybe_snapshot(later, every).unwrap().is_some());
    assert!(d.path().join(SNAPSHOT_FILE).exists());
}

#[test]
fn structure_violations_are_corrupt() {
    fn rec(seq: u64, txid: u64, kind: RecordKind) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        record::frame_in_place(&mut b, seq, txid, kind).unwrap();
        b
    }
    let cases: [(&str, Vec<Vec<u8>>, &str); 4] = [
        (
            "commit of a transaction never begun",
            vec![rec(1, 1, RecordKind::Begin), rec(2, 9, RecordKind::Commit)],
            "not open",
        ),
        (
            "sequence going backwards",
            vec![rec(5, 5, RecordKind::Begin), rec(4, 5, RecordKind::Commit)],
            "does not follow",
        ),
        (
            "begin with a foreign id",
            vec![rec(1, 7, RecordKind::Begin)],
            "own sequence number",
        ),
        (
            "op that is not an op",
            vec![rec(1, 1, RecordKind::Begin), rec(2, 1, RecordKind::Op)],
            "not a known op",
        ),
    ];
    for (name, records, reason) in cases {
        let d = dir();
        let bytes = records.concat();
        std::fs::write(d.path().join(LOG_FILE), bytes).unwrap();
        let err = verify(d.path()).unwrap_err();
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }
}

#[test]
fn create_refuses_to_overwrite_and_missing_log_is_named() {
    let d = dir();
    populated(d.path(), GROUP, 1).close().unwrap();
    assert!(matches!(
        TxLog::create(d.path(), GROUP),
        Err(StateError::AlreadyExists { .. })
    ));
    let empty = dir();
    let err = replay(empty.path()).unwrap_err();
    assert!(err.to_string().contains("txlog.log is missing"), "{err}");
}

#[test]
fn renderings_name_what_matters() {
    let d = dir();
    let mut log = populated(d.path(), GROUP, 4);
    log.commit_one(&event("kill_browser")).unwrap();
    log.close().unwrap();
    let text = render_state(&show(d.path()).unwrap());
    for needle in [
        "run r1",
        "seed 42",
        "chromium#1",
        "pid 4242",
        "bert -> chromium#1",
        "kill_browser -> migrate",
        "4 issued",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
    let summary = render_verify(&verify(d.path()).unwrap());
    assert!(
        summary.starts_with("ok: ") && summary.contains("7 committed"),
        "{summary}"
    );
}
