//! `compare` on real runs in real Chromium: the same run against itself passes, two normal runs
//! pass, and a run made slower by real CPU contention fails naming the metric; a saved baseline
//! is found by name.
// See: issue 6 ("compare: two identical runs -> exit 0; a run made 20% slower on purpose ->
// exit 1 naming the metric; two normal runs -> exit 0").
//
// One test, run step by step: the slowed run hogs both cores, and a normal run measured at the
// same time would be slowed too. The threshold is 20% (the "20% slower"): this machine
// shares its 2 cores with other work, and a 5% gate between two runs minutes apart would flag
// that noise rather than the code.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{stdout, Sandbox};

const RUN: [&str; 10] = [
    "--models",
    "bert-tiny",
    "--browsers",
    "chromium",
    "-n",
    "30",
    "--warmup",
    "3",
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

/// Four threads, two per core, that keep both cores busy until dropped (or 5 minutes pass):
/// real contention for the browser's threads, nothing simulated. Two per core leave the browser
/// about a third of the CPU, a slowdown well clear of the noise a busy shared machine puts on the
/// baseline itself (with one per core a CI run once saw the baseline slower than the hogged run
/// three rounds in a row).
struct Hog {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Hog {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(300)
                    {
                        for i in 0..10_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005) ^ i);
                        }
                    }
                    x
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn compare_passes_same_and_normal_runs_and_fails_a_slowed_one() {
    let sb = Sandbox::new();
    let mut with_baseline = RUN.to_vec();
    with_baseline.extend(["--save-baseline", "main"]);
    // The 2 cores are shared with whatever else the machine runs (builds, other tests). A burst
    // of that load during one run is real contention too, indistinguishable from ours: it can
    // slow the baseline (hiding the slowed run) or a normal run (failing the pair). So a round
    // whose verdicts do not hold is measured again, from a fresh baseline, up to three rounds;
    // a broken `compare` fails every round.
    let mut verdicts = Vec::new();
    for round in 0..3 {
        sb.run(&with_baseline, 300).success();
        let baseline = run_dirs(&sb.results()).pop().unwrap();
        {
            let _hog = Hog::start();
            sb.run(&RUN, 300).success();
        }
        let slowed = run_dirs(&sb.results()).pop().unwrap();
        sb.run(&RUN, 300).success();
        let normal = run_dirs(&sb.results()).pop().unwrap();
        assert!(sb.results().join("baselines/main/samples.csv").is_file());
        let (a, slow, b) = (
            baseline.to_str().unwrap(),
            slowed.to_str().unwrap(),
            normal.to_str().unwrap(),
        );

        // The same run twice: every delta 0, nothing significant (never noisy).
        let (code, out) = compare(&sb, &[a, a]);
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("regression:"), "{out}");

        // Two normal runs, the baseline found by name.
        let normal_pair = compare(&sb, &["--baseline", "main", b]);
        // The run measured while four threads hogged both cores.
        let slowed_pair = compare(&sb, &["--baseline", "main", slow]);
        let held = normal_pair.0 == 0
            && slowed_pair.0 == 1
            && slowed_pair
                .1
                .contains("regression: bert-tiny/chromium/wasm latency p50 +");
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
        slowed_out.contains("regression: bert-tiny/chromium/wasm latency p50 +"),
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
