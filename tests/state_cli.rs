//! `state verify` and `state show` on logs written through the library. No browser needed.
//! See: issue #5 (damage: name the record's offset, exit 2; a torn tail warns and goes on).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{stderr, stdout, Sandbox};
use webgpu_pool::state::{self, record, CommitPolicy, Op, TxLog, WorkerRecord, WorkloadBound};

/// A run folder with a small, realistic log: a started run, a worker, a placement, progress.
fn write_run(dir: &Path) {
    let mut log = TxLog::create(
        dir,
        CommitPolicy::Group {
            interval: Duration::from_millis(5),
        },
    )
    .expect("create log");
    log.commit_one(&Op::RunStarted {
        run_id: "state-cli".into(),
        seed: 7,
        workload: Some(WorkloadBound::DurationMs(60_000)),
    })
    .expect("commit");
    let mut tx = log.begin().expect("begin");
    tx.op(&Op::WorkerAdded {
        worker: WorkerRecord::new("chromium#1", "chromium", "cdp"),
    })
    .expect("op");
    tx.op(&Op::Placed {
        model: "bert".into(),
        worker: "chromium#1".into(),
    })
    .expect("op");
    tx.commit().expect("commit");
    for i in 1..=5u64 {
        log.commit_one(&Op::Progress {
            issued: i,
            succeeded: i,
            failed: 0,
            per_model: [("bert".to_string(), i)].into(),
            elapsed_ms: i * 100,
        })
        .expect("commit");
    }
    log.close().expect("close");
}

fn records(dir: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(dir.join(state::LOG_FILE)).expect("log");
    record::scan(&bytes)
        .expect("intact")
        .records
        .iter()
        .map(|r| (r.offset, r.seq))
        .collect()
}

fn run_dir(sb: &Sandbox) -> std::path::PathBuf {
    let dir = sb.results().join("state-cli");
    write_run(&dir);
    dir
}

#[test]
fn verify_passes_on_a_sound_log() {
    let sb = Sandbox::new();
    let dir = run_dir(&sb);
    let a = sb
        .cmd(30)
        .args(["state", "verify"])
        .arg(&dir)
        .assert()
        .code(0);
    let out = stdout(&a);
    assert!(
        out.starts_with("ok: ") && out.contains("7 committed"),
        "{out}"
    );
}

#[test]
fn a_flipped_byte_exits_2_naming_the_record() {
    let sb = Sandbox::new();
    let dir = run_dir(&sb);
    let recs = records(&dir);
    let (offset, seq) = recs[recs.len() / 2];
    let path = dir.join(state::LOG_FILE);
    let mut bytes = std::fs::read(&path).expect("log");
    bytes[offset as usize + 30] ^= 0x01;
    std::fs::write(&path, bytes).expect("write");
    let a = sb
        .cmd(30)
        .args(["state", "verify"])
        .arg(&dir)
        .assert()
        .code(2);
    let err = stderr(&a);
    assert!(
        err.contains(&format!("byte offset {offset}"))
            && err.contains(&format!("seq {seq}"))
            && err.contains("txlog.log"),
        "{err}"
    );
    sb.cmd(30)
        .args(["state", "show"])
        .arg(&dir)
        .assert()
        .code(2);
}

#[test]
fn a_torn_tail_warns_and_exits_0() {
    let sb = Sandbox::new();
    let dir = run_dir(&sb);
    let (last, _) = *records(&dir).last().expect("records");
    let path = dir.join(state::LOG_FILE);
    let len = std::fs::metadata(&path).expect("log").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(len - 2).expect("truncate");
    let a = sb
        .cmd(30)
        .args(["state", "verify"])
        .arg(&dir)
        .assert()
        .code(0);
    let err = stderr(&a);
    assert!(
        err.contains("warning") && err.contains(&format!("byte offset {last}")),
        "{err}"
    );
}

#[test]
fn show_json_parses() {
    let sb = Sandbox::new();
    let dir = run_dir(&sb);
    let a = sb
        .cmd(30)
        .args(["state", "show", "--json"])
        .arg(&dir)
        .assert()
        .code(0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).expect("JSON");
    assert_eq!(v["state"]["run_id"], "state-cli");
    assert_eq!(v["state"]["placements"]["bert"][0], "chromium#1");
    assert_eq!(v["state"]["progress"]["issued"], 5);
    assert_eq!(v["applied"], 7);
    let a = sb
        .cmd(30)
        .args(["state", "show"])
        .arg(&dir)
        .assert()
        .code(0);
    assert!(stdout(&a).contains("bert -> chromium#1"));
}

#[test]
fn a_folder_without_a_log_exits_2() {
    let sb = Sandbox::new();
    let a = sb
        .cmd(30)
        .args(["state", "verify"])
        .arg(sb.dir.path())
        .assert()
        .code(2);
    assert!(
        stderr(&a).contains("txlog.log is missing"),
        "{}",
        stderr(&a)
    );
}
