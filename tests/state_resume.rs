//! The run's state survives the harness dying: a real SIGKILL of the harness mid-run, then
//! `resume` finishes the run with every request of both parts accounted for and no browser of
//! the first part left; a torn last record is dropped with a warning; a planned migration that
//! fails half way rolls back and the model keeps serving from its source. Also (issue #4): a
//! browser SIGKILLed from outside the harness, by the pid the run's state lists, is recovered.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{assert_accounted, stderr, Sandbox};
use serde_json::Value;

/// Starts `webgpu-pool ARGS --results-dir` in the sandbox, with stderr lines on a channel.
fn spawn(sb: &Sandbox, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webgpu-pool"))
        .args(args)
        .arg("--results-dir")
        .arg(sb.results())
        .env("TMPDIR", sb.tmp())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits (bounded) until the run prints that its workload started, then `extra` more.
fn wait_running(rx: &Receiver<String>, extra: Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let go = line.starts_with("running ");
            seen.push(line);
            if go {
                std::thread::sleep(extra);
                return;
            }
        }
    }
    panic!("the workload never started: {seen:?}");
}

fn run_dir(sb: &Sandbox) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(sb.results())
        .expect("results")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// `state show --json` of a run folder.
fn state(sb: &Sandbox, dir: &Path) -> Value {
    let a = sb
        .cmd(30)
        .args(["state", "show", "--json"])
        .arg(dir)
        .assert();
    assert!(a.get_output().status.success(), "{}", stderr(&a));
    serde_json::from_slice(&a.get_output().stdout).expect("state JSON")
}

fn alive(pid: u64) -> bool {
    webgpu_pool::browser::process::pid_alive(pid as u32)
}

fn scenario_file(sb: &Sandbox, yaml: &str) -> String {
    let f = sb.dir.path().join("scenario.yaml");
    std::fs::write(&f, yaml).expect("scenario");
    f.display().to_string()
}

#[test]
fn harness_sigkilled_mid_run_is_resumed_to_the_end() {
    let sb = Sandbox::new();
    // A long sync interval: the log is not compacted during the run, so it has a tail to tear.
    let file = scenario_file(
        &sb,
        "name: resume-test\n\
         pool: {browsers: [chromium, firefox], min_connections: 2, max_connections: 3}\n\
         models: [{name: bert-tiny}, {name: whisper-micro}]\n\
         workload: {mode: closed, concurrency: 2, duration: 16s, warmup: 1, request_timeout: 20s}\n\
         state: {sync_interval: 60s}\n",
    );
    let (mut child, rx) = spawn(&sb, &["scenario", &file]);
    wait_running(&rx, Duration::from_secs(5));
    let dir = run_dir(&sb);
    let before = state(&sb, &dir);
    let pids: Vec<u64> = before["state"]["workers"]
        .as_object()
        .expect("workers")
        .values()
        .filter_map(|w| w["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 2, "{before}");
    child.kill().expect("SIGKILL the harness");
    let _ = child.wait();
    assert!(
        pids.iter().all(|&p| alive(p)),
        "the dead harness's browsers live on"
    );

    // Committed so far, read after the kill; then tear the last record.
    let after_kill = state(&sb, &dir);
    let committed = after_kill["state"]["progress"]["succeeded"]
        .as_u64()
        .unwrap();
    assert!(committed > 0, "{after_kill}");
    let log = dir.join("txlog.log");
    let len = std::fs::metadata(&log).expect("txlog").len();
    assert!(len > 64, "log too short to tear: {len}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(len - 3))
        .expect("truncate");

    let a = sb.cmd(300).arg("resume").arg(&dir).assert();
    let err = stderr(&a);
    assert!(a.get_output().status.success(), "resume failed: {err}");
    assert!(
        err.contains("warning") && err.contains("torn"),
        "no warning about the torn record: {err}"
    );
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "the first part's browsers were not reaped"
    );
    let run = sb.run_json();
    assert_accounted(&run);
    let earlier = &run["resumed"];
    // The requests the dead harness had in flight are lost, not failed, and named as such.
    let in_flight = earlier["interrupted"].as_u64().unwrap();
    assert_eq!(
        earlier["issued"].as_u64().unwrap(),
        earlier["succeeded"].as_u64().unwrap() + earlier["failed"].as_u64().unwrap() + in_flight,
        "{earlier}"
    );
    let q = &run["requests"];
    assert_eq!(q["lost"].as_u64(), Some(in_flight), "{q}");
    assert_eq!(q["lost_with_harness"].as_u64(), Some(in_flight), "{q}");
    assert_eq!(
        q["issued"].as_u64().unwrap(),
        q["succeeded"].as_u64().unwrap() + q["failed"].as_u64().unwrap() + in_flight,
        "{q}"
    );
    let earlier_ok = earlier["succeeded"].as_u64().unwrap();
    // Every committed transaction was recovered: at most the torn record (one progress op) is
    // missing, and progress ops are absolute, so the earlier count is the last one's or the one
    // before. One op covers the requests that ended while the last was synced: a handful at
    // bert-tiny's ~10 ms a run on 2 clients, never 20. A resume that invents progress fails
    // the upper bound; one that drops more than the torn record fails the lower.
    assert!(
        earlier_ok > 0 && earlier_ok <= committed && earlier_ok + 20 >= committed,
        "{earlier} vs {committed}"
    );
    let total = run["requests"]["succeeded"].as_u64().unwrap();
    assert!(
        total > earlier_ok,
        "the second part ran nothing: {}",
        run["requests"]
    );
    assert_eq!(run["run_id"], before["state"]["run_id"]);
    sb.assert_clean();
}

#[test]
fn a_migration_that_fails_half_way_rolls_back() {
    let sb = Sandbox::new();
    // The target is hung when the load arrives: the load times out, the half-loaded model is
    // dropped from it, and the source keeps serving. Without recovery, so the pool neither keeps
    // a standby copy on Firefox nor watches the page's heartbeat: either would take the hung
    // Firefox out of the pool before the migration reaches it (which is what they are for).
    // The load bound also bounds bert-tiny's first placement, which takes 1.3-2.5 s here and
    // passed 3 s beside another test's browsers on the 2 cores: 5 s leaves it room, and the
    // migration's load (sent at 4 s into a hang from 3 s to 11 s) still times out at about 9 s,
    // inside the hang.
    let file = scenario_file(
        &sb,
        "name: migration-rollback\n\
         pool: {browsers: [chromium, firefox], min_connections: 2, max_connections: 3, heartbeat_interval: 1s, heartbeat_timeout: 3s}\n\
         models: [{name: bert-tiny}]\n\
         workload: {mode: closed, concurrency: 2, duration: 14s, warmup: 1, request_timeout: 20s, load_timeout: 5s}\n\
         recovery: {strategy: none}\n\
         faults: [{kind: hang, at: 3s, duration: 8s, target: {browser: firefox}}]\n\
         state: {sync_interval: 1s, migrations: [{model: bert-tiny, to: firefox, at: 4s}]}\n\
         thresholds: {lost_requests: 0}\n",
    );
    let a = sb
        .cmd(300)
        .args(["scenario", &file, "--results-dir"])
        .arg(sb.results())
        .assert();
    assert!(a.get_output().status.success(), "{}", stderr(&a));
    let run = sb.run_json();
    assert_accounted(&run);
    assert_eq!(run["requests"]["failed"], 0, "{}", run["requests"]);
    let events = run["pool_events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "migration_rolled_back"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e["kind"] == "migrated"),
        "{events:?}"
    );
    // It kept serving from Chromium only.
    let rows = run["results"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["browser"] == "chromium"), "{rows:?}");
    let st = state(&sb, &run_dir(&sb));
    let rollbacks = st["state"]["rollbacks"].as_array().expect("rollbacks");
    assert_eq!(rollbacks.len(), 1, "{st}");
    assert!(rollbacks[0]["reason"]
        .as_str()
        .unwrap()
        .contains("keeps serving from chromium"));
    sb.assert_clean();
}

#[test]
fn a_browser_killed_from_outside_is_recovered_with_nothing_lost() {
    let sb = Sandbox::new();
    let (mut child, rx) = spawn(
        &sb,
        &[
            "stress",
            "--models",
            "bert-tiny,whisper-micro",
            "--duration",
            "20s",
            "--concurrency",
            "2",
        ],
    );
    wait_running(&rx, Duration::from_secs(4));
    let dir = run_dir(&sb);
    let st = state(&sb, &dir);
    let victim = st["state"]["workers"]["chromium#1"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no chromium#1 pid in the state: {st}"));
    // SAFETY: kill(2) on a browser pid our run's state lists.
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(200);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "exit {status:?}");
    let run = sb.run_json();
    assert_accounted(&run);
    assert_eq!(run["requests"]["failed"], 0, "{}", run["requests"]);
    let events = run["recovery_events"].as_array().unwrap();
    let ours = events
        .iter()
        .find(|e| e["worker"] == "chromium#1")
        .unwrap_or_else(|| panic!("no recovery of chromium#1: {events:?}"));
    assert_eq!(ours["fault_kind"], "external", "{ours}");
    assert_eq!(ours["succeeded"], true, "{ours}");
    sb.assert_clean();
}

#[test]
fn test_state_management_migrates_and_verifies_the_log() {
    let sb = Sandbox::new();
    let a = sb.run(
        &[
            "--models",
            "bert-tiny",
            "--browsers",
            "chromium,firefox",
            "--test-state-management",
            "--sync-interval",
            "1",
            "--duration",
            "8s",
        ],
        300,
    );
    let err = stderr(&a);
    assert!(a.get_output().status.success(), "{err}");
    assert!(err.contains("state: ok"), "the log was not verified: {err}");
    let run = sb.run_json();
    assert_accounted(&run);
    let events = run["pool_events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "migrated"), "{events:?}");
    let st = state(&sb, &run_dir(&sb));
    assert_eq!(st["state"]["finished"], true, "{st}");
    assert_eq!(
        st["state"]["progress"]["succeeded"], run["requests"]["succeeded"],
        "the log's progress matches the report"
    );
    sb.assert_clean();
}

/// A sharded model's workers launch through the pool's membership, so they are in the run's
/// journal like any other: a harness SIGKILLed mid-stream leaves the log naming each shard's
/// worker and its pid, and `resume` reaps them (a sharded run is then refused, exit 2) so the
/// dead harness leaves nothing running. When sharding launched its own workers, the journal
/// named none and their browsers outlived the harness.
/// See: issue 24 (one engine).
#[test]
fn a_sharded_run_journals_its_workers_and_resume_reaps_them_after_the_harness_dies() {
    let sb = Sandbox::new();
    let (mut child, rx) = spawn(
        &sb,
        &[
            "shard",
            "--model",
            "llama-micro",
            "--shards",
            "2",
            "--browsers",
            "chromium,firefox",
            "--transfer",
            "harness",
            "--duration",
            "60s",
        ],
    );
    wait_running(&rx, Duration::from_secs(2));
    let dir = run_dir(&sb);
    let before = state(&sb, &dir);
    let workers = before["state"]["workers"].as_object().expect("workers");
    let ids: Vec<&str> = workers.keys().map(String::as_str).collect();
    assert_eq!(ids, ["chromium#1", "firefox#1"], "{before}");
    let pids: Vec<u64> = workers.values().filter_map(|w| w["pid"].as_u64()).collect();
    assert_eq!(pids.len(), 2, "{before}");
    let plan: Vec<&str> = before["state"]["shard_plans"]["llama-micro"]
        .as_array()
        .expect("the shard plan is journaled")
        .iter()
        .map(|s| s["worker"].as_str().expect("worker"))
        .collect();
    assert_eq!(plan, ["chromium#1", "firefox#1"], "{before}");
    child.kill().expect("SIGKILL the harness");
    let _ = child.wait();
    assert!(
        pids.iter().all(|&p| alive(p)),
        "the dead harness's browsers live on"
    );
    let a = sb.cmd(120).arg("resume").arg(&dir).assert();
    let err = stderr(&a);
    assert_eq!(a.get_output().status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be resumed"), "{err}");
    for id in ["chromium#1", "firefox#1"] {
        assert!(
            err.contains(&format!("reaped {id}")),
            "{id} not reaped: {err}"
        );
    }
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "the sharded run's browsers were not reaped"
    );
    sb.assert_clean();
}
