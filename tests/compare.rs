//! `compare` on real runs in real Chromium: the same run against itself passes, two normal runs
//! pass, and a run made slower on purpose (its browser throttled to 40% of the time) fails
//! naming the metric; a saved baseline is found by name.
// See: issue 6 ("compare: two identical runs -> exit 0; a run made 20% slower on purpose ->
// exit 1 naming the metric; two normal runs -> exit 0").
//
// The threshold is 20% (the "20% slower"). This machine shares its 2 cores with other
// work. An earlier version slowed its run with a CPU hog, and CI then saw the *next* runs as
// slow as the hogged one, 2-3x the baseline (the machine stays slow for a while after a burst
// of load, as a burstable VM does). The slowed run's browser is now throttled the way a CPU
// quota does it, SIGSTOP for 3 ms and SIGCONT for 2 ms, which starves it without loading the
// machine. Runs go one at a time (two browsers running onnxruntime-web's threads at once on 2
// cores slow each other unevenly), the baseline and the normal run back to back, the slowed
// run last.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{stdout, Sandbox};
use webgpu_pool::browser::process::{kill, tree_of, Signal};

const RUN: [&str; 10] = [
    "--models",
    "bert-tiny",
    "--browsers",
    "chromium",
    "-n",
    "200",
    "--warmup",
    "5",
    "--quiet",
    "--backends=wasm",
];

fn run_dirs(results: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .expect("results dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("run.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn compare(sb: &Sandbox, args: &[&str]) -> (i32, String) {
    let out = sb
        .cmd(60)
        .arg("compare")
        .args(args)
        .arg("--results-dir")
        .arg(sb.results())
        .arg("--threshold")
        .arg("20%")
        .assert();
    let code = out.get_output().status.code().unwrap_or(-1);
    let text = stdout(&out);
    eprintln!("compare {args:?} -> exit {code}\n{text}");
    (code, text)
}

/// `webgpu-pool run RUN` started in `sb` (its TMPDIR, its results folder), output to a log file
/// beside the sandbox's tmp (which must end empty).
fn start(sb: &Sandbox, log: &str) -> Child {
    let log = std::fs::File::create(sb.dir.path().join(log)).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_webgpu-pool"))
        .env("TMPDIR", sb.tmp())
        .env("NO_COLOR", "1")
        .arg("run")
        .args(RUN)
        .arg("--results-dir")
        .arg(sb.results())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start webgpu-pool")
}

/// Waits for `child` up to `bound`, killing it past that; its exit code, with its log.
fn finish(sb: &Sandbox, mut child: Child, log: &str, bound: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + bound;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(sb.dir.path().join(log)).unwrap_or_default();
    (code, text)
}

/// Throttles every process below `pid` (the browser a run launched, not the harness itself) to
/// at most 40% of the time until dropped: SIGSTOP, 3 ms, SIGCONT, 2 ms, as a CPU quota or
/// `cpulimit` does. Real starvation that, unlike a hog, puts no load on the machine. The period
/// is well under one inference (about 10 ms), so each one is stretched rather than slipping
/// whole into a running window. On drop every process is resumed, even when an assertion
/// failed.
struct Throttle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Throttle {
    fn below(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pids: Vec<u32> = Vec::new();
            let mut listed = Instant::now() - Duration::from_secs(1);
            while !flag.load(Ordering::Relaxed) {
                // Browsers start renderers as they go: look again five times a second.
                if listed.elapsed() > Duration::from_millis(200) {
                    pids = tree_of(pid).into_iter().filter(|&p| p != pid).collect();
                    listed = Instant::now();
                }
                for &p in &pids {
                    let _ = kill(p, Signal::Stop);
                }
                std::thread::sleep(Duration::from_millis(3));
                for &p in &pids {
                    let _ = kill(p, Signal::Cont);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            for p in tree_of(pid) {
                let _ = kill(p, Signal::Cont);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn compare_passes_same_and_normal_runs_and_fails_a_slowed_one() {
    let sb = Sandbox::new();
    let mut with_baseline = RUN.to_vec();
    with_baseline.extend(["--save-baseline", "main"]);
    // A burst of outside load (builds, other tests) can still fall on one run more than
    // another: slow the baseline (hiding the slowed run) or the normal run (failing the pair).
    // So a round whose verdicts do not hold is measured again, from a fresh baseline, up to
    // three rounds; a broken `compare` fails every round.
    let mut verdicts = Vec::new();
    for round in 0..3 {
        sb.run(&with_baseline, 300).success();
        let baseline = run_dirs(&sb.results()).pop().unwrap();
        sb.run(&RUN, 300).success();
        let normal = run_dirs(&sb.results()).pop().unwrap();
        // Started by hand rather than with `sb.run`: the throttle needs the harness's pid.
        let slowed = start(&sb, "slowed.log");
        let (code, text) = {
            let _throttle = Throttle::below(slowed.id());
            finish(&sb, slowed, "slowed.log", Duration::from_secs(300))
        };
        assert_eq!(code, Some(0), "the slowed run failed:\n{text}");
        let slowed = run_dirs(&sb.results()).pop().unwrap();
        assert!(sb.results().join("baselines/main/samples.csv").is_file());
        let (a, slow, b) = (
            baseline.to_str().unwrap(),
            slowed.to_str().unwrap(),
            normal.to_str().unwrap(),
        );

        // The same run twice: every delta 0, nothing significant (never noisy), on either
        // time, each named.
        let (code, out) = compare(&sb, &[a, a]);
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("regression:"), "{out}");
        assert!(out.starts_with("timing: page run time"), "{out}");
        let (code, out) = compare(&sb, &[a, a, "--timing", "end-to-end"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(" end-to-end latency p50 "), "{out}");
        assert!(
            out.contains("measured alike: bert-tiny/chromium/wasm on cpu x1, build "),
            "{out}"
        );

        // Two normal runs, the baseline found by name.
        let normal_pair = compare(&sb, &["--baseline", "main", b]);
        // The run whose browser was throttled.
        let slowed_pair = compare(&sb, &["--baseline", "main", slow]);
        let held = normal_pair.0 == 0
            && slowed_pair.0 == 1
            && slowed_pair
                .1
                .contains("regression: bert-tiny/chromium/wasm page run time p50 +");
        verdicts.push((round, normal_pair, slowed_pair));
        if held {
            break;
        }
    }
    let (round, (normal_code, normal_out), (slowed_code, slowed_out)) =
        verdicts.last().unwrap().clone();
    eprintln!("verdicts held in round {round} of {}", verdicts.len());
    assert_eq!(normal_code, 0, "{normal_out}");
    assert_eq!(slowed_code, 1, "{slowed_out}");
    assert!(
        slowed_out.contains("regression: bert-tiny/chromium/wasm page run time p50 +"),
        "{slowed_out}"
    );
    let a = run_dirs(&sb.results())[0].to_str().unwrap().to_owned();
    let a = a.as_str();

    // Bad input is exit 2, naming what is missing.
    let missing = sb.dir.path().join("no-such-run");
    let out = sb
        .cmd(30)
        .args(["compare", a, missing.to_str().unwrap()])
        .assert()
        .code(2);
    assert!(
        common::stderr(&out).contains("no-such-run/run.json"),
        "{}",
        common::stderr(&out)
    );
    sb.cmd(30)
        .args(["compare", "--baseline", "nope", a])
        .arg("--results-dir")
        .arg(sb.results())
        .assert()
        .code(2);
    sb.assert_clean();
}
