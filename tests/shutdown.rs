//! Ctrl-C in the middle of a run: a real SIGINT stops issuing, closes every browser and driver,
//! writes the partial report with every request accounted for, and exits 130 — also while
//! faults are being injected and recovered.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_accounted, Sandbox};

/// Runs the binary with `args`, waits until a stderr line starts with `cue` (bounded), waits
/// `after` more, sends SIGINT, and checks the interrupted run. Returns its run.json.
fn interrupt(sb: &Sandbox, args: &[&str], cue: &str, after: Duration) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webgpu-pool"))
        .args(args)
        .arg("--results-dir")
        .arg(sb.results())
        .env("TMPDIR", sb.tmp())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let go = line.starts_with(cue);
            seen.push(line);
            if go {
                break;
            }
        }
    }
    assert!(
        seen.iter().any(|l| l.starts_with(cue)),
        "never saw '{cue}': {seen:?}"
    );
    std::thread::sleep(after);
    // SAFETY: kill(2) on the child we spawned; no memory is touched.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    let run = sb.run_json();
    assert_eq!(run["complete"], false);
    assert_eq!(run["stopped_early"], "interrupted");
    assert_accounted(&run);
    assert!(
        run["requests"]["succeeded"].as_u64().unwrap() > 0,
        "{}",
        run["requests"]
    );
    let dir = sb.run_dir();
    for f in [
        "samples.csv",
        "summary.md",
        "report.html",
        "junit.xml",
        "txlog.log",
    ] {
        assert!(dir.join(f).is_file(), "partial {f} missing");
    }
    run
}

#[test]
fn sigint_mid_run_writes_the_partial_report_and_closes_browsers() {
    let sb = Sandbox::new();
    interrupt(
        &sb,
        &[
            "run",
            "--models",
            "bert-tiny",
            "--browsers",
            "chromium,firefox",
            "--concurrent-models",
            "--concurrency",
            "2",
            "--duration",
            "120s",
        ],
        "running ",
        Duration::from_secs(3),
    );
    sb.assert_clean();
}

#[test]
fn sigint_during_fault_injection_closes_everything() {
    let sb = Sandbox::new();
    let run = interrupt(
        &sb,
        &[
            "stress",
            "--fault-injection",
            "--models",
            "bert-tiny,whisper-micro",
            "--fault-every",
            "3s",
            "--fault-kinds",
            "kill_browser,hang,crash_tab",
            "--duration",
            "120",
        ],
        "fault at ",
        Duration::from_millis(1500),
    );
    assert!(
        !run["faults"].as_array().unwrap().is_empty(),
        "no fault on record: {}",
        run["faults"]
    );
    sb.assert_clean();
}
