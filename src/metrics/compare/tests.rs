//! Unit tests of [`super::compare`] over hand-made samples. A sibling file (STYLE.md section 7)
//! so that `compare.rs` stays under 500 lines as the suite grows.

use super::*;
use crate::metrics::ResultRow;

fn sample(seq: u64, page_ms: f64) -> Sample {
    Sample {
        seq,
        model: "m".into(),
        browser: "chromium".into(),
        worker: "chromium#1".into(),
        backend: "wasm".into(),
        phase: Phase::Measure,
        scheduled_ms: seq as f64 * 100.0,
        started_ms: seq as f64 * 100.0,
        latency_ms: page_ms + 1.0,
        service_ms: page_ms + 1.0,
        page_ms,
        ok: true,
        error: String::new(),
        attempt: 1,
        cause: None,
    }
}

/// A run of no rows, measured isolated (a matrix run).
fn summary() -> RunSummary {
    serde_json::from_value(serde_json::json!({
        "schema_version": 1, "run_id": "r", "command": "c", "started_at": "", "finished_at": "",
        "complete": true, "environment": {"harness_version": "", "os": "", "cpus": 2, "browsers": []},
        "load": {"context": "isolated", "clients": 1},
        "requests": {"issued": 0, "succeeded": 0, "failed": 0, "lost": 0},
        "results": [], "faults": [], "recovery_events": [], "thresholds": []
    }))
    .unwrap()
}

/// Deterministic jittered values around `centre` (a Fake* stand-in for measured times in a
/// unit test of pure statistics).
fn jittered(centre: f64, n: u64, seed: u64) -> Vec<Sample> {
    let mut next = super::significance::test_rng(seed);
    (0..n)
        .map(|i| {
            let u = (next() % 1000) as f64 / 1000.0;
            sample(i, centre * (0.9 + 0.2 * u))
        })
        .collect()
}

#[test]
fn identical_runs_are_unchanged() {
    let s = summary();
    let a = jittered(12.0, 30, 1);
    let run = RunData {
        summary: &s,
        samples: &a,
    };
    let c = compare(run, run, &CompareOptions::default());
    assert_eq!(c.deltas.len(), 3);
    assert!(
        c.deltas.iter().all(|d| d.verdict == Verdict::Unchanged),
        "{c:#?}"
    );
    assert!(c.deltas.iter().all(|d| d.change == 0.0 && d.p_value > 0.3));
    assert!(c.passed());
}

#[test]
fn a_shifted_run_is_a_regression_naming_the_metric() {
    let s = summary();
    let (a, b) = (jittered(12.0, 30, 1), jittered(15.0, 30, 2));
    let c = compare(run(&s, &a), run(&s, &b), &CompareOptions::default());
    let reg: Vec<String> = c.regressions().map(MetricDelta::describe).collect();
    assert!(
        reg.iter()
            .any(|r| r.starts_with("m/chromium/wasm page run time p50 +")),
        "{reg:?}"
    );
    assert!(c
        .regressions()
        .all(|d| d.p_value < 1e-3 && d.direction == Direction::Worse));
    assert!(reg.iter().all(|r| r.contains("(p_worse=")), "{reg:?}");
    assert!(!c.passed());
    // ...and the other way round it is an improvement, never a regression.
    let c = compare(run(&s, &b), run(&s, &a), &CompareOptions::default());
    assert_eq!(c.regressions().count(), 0);
    assert!(c.deltas.iter().any(|d| d.verdict == Verdict::Improvement));
}

#[test]
fn a_small_shift_under_the_threshold_passes() {
    let s = summary();
    let a: Vec<Sample> = (0..40).map(|i| sample(i, 10.0 + i as f64 * 0.01)).collect();
    let b: Vec<Sample> = (0..40).map(|i| sample(i, 10.3 + i as f64 * 0.01)).collect();
    let c = compare(run(&s, &a), run(&s, &b), &CompareOptions::default());
    // Significant (every sample moved) but only 3%: not a regression.
    let p50 = &c.deltas[0];
    assert!(p50.p_value < 0.01 && p50.change < 0.05, "{p50:?}");
    assert_eq!(c.regressions().count(), 0);
}

#[test]
fn too_few_samples_give_no_verdict() {
    let s = summary();
    let (a, b) = (jittered(10.0, 3, 1), jittered(30.0, 3, 2));
    let c = compare(run(&s, &a), run(&s, &b), &CompareOptions::default());
    assert!(c.deltas.iter().all(|d| d.verdict == Verdict::Insufficient));
}

#[test]
fn p_values_format_compactly() {
    assert_eq!(format_p(0.4321), "0.43");
    assert_eq!(format_p(0.0031), "0.0031");
    assert_eq!(format_p(1.23e-9), "1.2e-9");
}

/// One sample per value of `page_ms`, in order.
fn at(page_ms: &[f64]) -> Vec<Sample> {
    page_ms
        .iter()
        .enumerate()
        .map(|(i, &v)| sample(i as u64, v))
        .collect()
}

fn run<'a>(summary: &'a RunSummary, samples: &'a [Sample]) -> RunData<'a> {
    RunData { summary, samples }
}

#[test]
fn an_improvement_reports_the_p_of_the_test_for_better() {
    // Seen in CI: "improvement" beside p=1.00, the p of the test for worse.
    let s = summary();
    let (base, cur) = (jittered(15.0, 30, 1), jittered(12.0, 30, 2));
    let c = compare(run(&s, &base), run(&s, &cur), &CompareOptions::default());
    let latency: Vec<&MetricDelta> = c
        .deltas
        .iter()
        .filter(|d| d.metric != Metric::Throughput)
        .collect();
    assert_eq!(latency.len(), 2);
    for d in latency {
        assert_eq!(d.verdict, Verdict::Improvement, "{d:?}");
        assert!(d.p_value < 1e-3, "{d:?}");
        assert_eq!(d.direction, Direction::Better);
        assert!(d.describe().contains("% (p_better="), "{}", d.describe());
    }
}

#[test]
fn an_improvement_needs_the_mirror_test_not_the_complement() {
    // Five against five, every current value below every baseline value. The mirror
    // Mann-Whitney test for "better" gives p = 0.0061, the same p the test for "worse" gives on
    // the swapped runs. The complement of the test for worse, 1 - 0.9967 = 0.0033, would call
    // it an improvement at alpha = 0.005 while the swapped runs are no regression.
    let s = summary();
    let (slow, fast) = (
        at(&[20.0, 21.0, 22.0, 23.0, 24.0]),
        at(&[10.0, 11.0, 12.0, 13.0, 14.0]),
    );
    let options = CompareOptions {
        alpha: 0.005,
        ..CompareOptions::default()
    };
    let better = compare(run(&s, &slow), run(&s, &fast), &options).deltas[0].clone();
    let worse = compare(run(&s, &fast), run(&s, &slow), &options).deltas[0].clone();
    assert_eq!(
        (better.metric, worse.metric),
        (Metric::PageRunP50, Metric::PageRunP50)
    );
    assert_eq!(better.verdict, Verdict::Unchanged, "{better:?}");
    assert_eq!(better.direction, Direction::Better);
    assert_eq!(worse.direction, Direction::Worse);
    assert_eq!(worse.verdict, Verdict::Unchanged, "{worse:?}");
    assert!((worse.p_value - 0.00609).abs() < 1e-4, "{worse:?}");
    assert!((better.p_value - worse.p_value).abs() < 1e-12, "{better:?}");
}

#[test]
fn an_unchanged_verdict_shows_the_p_of_the_observed_direction() {
    // 3% better: under the threshold, but every sample moved, so the test for better is
    // significant. The p shown must be that one, not the test for worse (p near 1).
    let s = summary();
    let base: Vec<Sample> = (0..40).map(|i| sample(i, 10.3 + i as f64 * 0.01)).collect();
    let cur: Vec<Sample> = (0..40).map(|i| sample(i, 10.0 + i as f64 * 0.01)).collect();
    let c = compare(run(&s, &base), run(&s, &cur), &CompareOptions::default());
    let p50 = &c.deltas[0];
    assert_eq!(p50.verdict, Verdict::Unchanged, "{p50:?}");
    assert!(p50.change < -0.02 && p50.p_value < 0.01, "{p50:?}");
    assert_eq!(p50.direction, Direction::Better);
}

/// A measured request of `model` that failed with `error`.
fn failed(seq: u64, model: &str, error: &str) -> Sample {
    Sample {
        model: model.into(),
        page_ms: 0.0,
        ok: false,
        error: error.into(),
        ..sample(seq, 0.0)
    }
}

fn cell(model: &str, backend: &str) -> CellKey {
    CellKey::of_cell(&summary(), model, "chromium", backend)
}

#[test]
fn a_cell_that_now_fails_every_request_fails_the_gate() {
    // The model failed on every request tonight: its row has runs = 0, so it has nothing to
    // test, and it used to pass as a note.
    let s = summary();
    let base = jittered(12.0, 40, 1);
    let cur: Vec<Sample> = (0..40).map(|i| failed(i, "m", "timeout")).collect();
    let c = compare(run(&s, &base), run(&s, &cur), &CompareOptions::default());
    assert_eq!(
        c.lost_cells,
        [LostCell {
            cell: cell("m", "wasm"),
            baseline_runs: 40,
            current_failed: 40,
            current_error: None,
        }]
    );
    assert_eq!(
        c.lost_cells[0].describe(),
        "m/chromium/wasm: 40 successful runs in the baseline, none now: 40 measured requests failed"
    );
    assert_eq!(c.regressions().count(), 0);
    assert!(!c.passed(), "{c:#?}");
}

#[test]
fn a_cell_missing_from_the_current_run_fails_the_gate() {
    // Tonight's run has only another model: m's cell is gone, not merely new or renamed.
    let s = summary();
    let base = jittered(12.0, 30, 1);
    let cur: Vec<Sample> = jittered(12.0, 30, 2)
        .into_iter()
        .map(|x| Sample {
            model: "n".into(),
            ..x
        })
        .collect();
    let c = compare(run(&s, &base), run(&s, &cur), &CompareOptions::default());
    assert_eq!(c.only_in_current, [cell("n", "wasm")]);
    assert_eq!(c.lost_cells.len(), 1, "{c:#?}");
    assert_eq!(
        c.lost_cells[0].describe(),
        "m/chromium/wasm: 30 successful runs in the baseline, none now: not in the current run"
    );
    assert!(!c.passed());
}

#[test]
fn a_lost_cell_says_why_from_the_current_rows() {
    // A load failure leaves a row with the error and no backend (none was chosen); a cell whose
    // requests all failed has its own row. Each lost cell quotes the row that explains it.
    let base_summary = summary();
    let base: Vec<Sample> = jittered(12.0, 20, 1)
        .into_iter()
        .chain(jittered(12.0, 20, 2).into_iter().map(|x| Sample {
            model: "n".into(),
            ..x
        }))
        .collect();
    let mut s = summary();
    s.results = vec![
        ResultRow {
            model: "m".into(),
            browser: "chromium".into(),
            error: Some("load: session create failed: out of memory".into()),
            ..ResultRow::default()
        },
        ResultRow {
            model: "n".into(),
            browser: "chromium".into(),
            backend: "wasm".into(),
            failed: 3,
            error: Some("3 of 3 requests failed (3 crash)".into()),
            ..ResultRow::default()
        },
    ];
    let cur: Vec<Sample> = (0..3).map(|i| failed(i, "n", "crash")).collect();
    let c = compare(
        run(&base_summary, &base),
        run(&s, &cur),
        &CompareOptions::default(),
    );
    let lines: Vec<String> = c.lost_cells.iter().map(LostCell::describe).collect();
    assert_eq!(
        lines,
        [
            "m/chromium/wasm: 20 successful runs in the baseline, none now: load: session create \
             failed: out of memory",
            "n/chromium/wasm: 20 successful runs in the baseline, none now: 3 of 3 requests \
             failed (3 crash)",
        ]
    );
    assert_eq!(c.lost_cells[1].current_failed, 3);
}

#[test]
fn a_cell_without_successes_in_either_run_is_not_lost() {
    // Nothing was lost: it never worked. That is `run`'s failure to report, not a regression.
    let s = summary();
    let base: Vec<Sample> = (0..10).map(|i| failed(i, "m", "page")).collect();
    let cur: Vec<Sample> = (0..10).map(|i| failed(i, "m", "page")).collect();
    let c = compare(run(&s, &base), run(&s, &cur), &CompareOptions::default());
    assert!(c.lost_cells.is_empty() && c.deltas.is_empty(), "{c:#?}");
    assert!(c.passed());
}

#[test]
fn a_cell_measured_alone_and_under_load_is_not_compared() {
    // Issue 25: the same cell alone (matrix) in the baseline and beside other models
    // (`--concurrent-models`) now: 2.6x slower, and no regression can be told from that.
    let base_summary = summary();
    let mut cur_summary = summary();
    cur_summary.load = crate::metrics::LoadContext::closed(crate::metrics::LoadKind::Routed, 4);
    let (base, cur) = (jittered(12.0, 30, 1), jittered(31.0, 30, 2));
    let c = compare(
        run(&base_summary, &base),
        run(&cur_summary, &cur),
        &CompareOptions::default(),
    );
    assert!(c.deltas.is_empty(), "{c:#?}");
    assert!(
        c.lost_cells.is_empty() && c.only_in_current.is_empty(),
        "{c:#?}"
    );
    assert_eq!(c.unlike.len(), 1);
    assert_eq!(
        c.unlike[0].describe(),
        "m/chromium/wasm: measured unlike, not compared (baseline vs current): load isolated vs \
         routed x4"
    );
    assert!(!c.alike() && !c.passed());
    // Two runs that did not record their load (run.json from before it) are not alike either.
    let mut old = summary();
    old.load = crate::metrics::LoadContext::UNKNOWN;
    let c = compare(
        run(&old, &base),
        run(&old, &base),
        &CompareOptions::default(),
    );
    assert_eq!(c.unlike.len(), 1, "{c:#?}");
}

#[test]
fn the_timing_chooses_the_time_the_tests_read() {
    // The page got no slower; each request waited 40% longer before its answer.
    let s = summary();
    let base = jittered(12.0, 30, 1);
    let cur: Vec<Sample> = base
        .iter()
        .map(|x| Sample {
            latency_ms: x.latency_ms * 1.4,
            ..x.clone()
        })
        .collect();
    let page = compare(run(&s, &base), run(&s, &cur), &CompareOptions::default());
    assert_eq!(page.timing, Timing::PageRun);
    assert_eq!(
        page.deltas.iter().map(|d| d.metric).collect::<Vec<_>>(),
        [Metric::PageRunP50, Metric::PageRunP95, Metric::Throughput]
    );
    assert!(page.passed(), "{page:#?}");
    let options = CompareOptions {
        timing: Timing::EndToEnd,
        ..CompareOptions::default()
    };
    let e2e = compare(run(&s, &base), run(&s, &cur), &options);
    let reg: Vec<String> = e2e.regressions().map(MetricDelta::describe).collect();
    assert!(
        reg.iter()
            .any(|r| r.starts_with("m/chromium/wasm end-to-end latency p50 +40.0%")),
        "{reg:?}"
    );
    assert_eq!(e2e.deltas[0].test, "mann-whitney u (latency_ms)");
    // A latency that was never recorded (a history sample from schema version 1) is no time.
    let unknown: Vec<Sample> = base
        .iter()
        .map(|x| Sample {
            latency_ms: f64::NAN,
            ..x.clone()
        })
        .collect();
    let c = compare(run(&s, &base), run(&s, &unknown), &options);
    assert_eq!(c.deltas[0].verdict, Verdict::Insufficient, "{c:#?}");
}
