//! Unit tests of [`super::compare`] over hand-made samples. A sibling file (STYLE.md section 7)
//! so that `compare.rs` stays under 500 lines as the suite grows.

use super::*;

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
    }
}

fn summary() -> RunSummary {
    serde_json::from_value(serde_json::json!({
        "schema_version": 1, "run_id": "r", "command": "c", "started_at": "", "finished_at": "",
        "complete": true, "environment": {"harness_version": "", "os": "", "cpus": 2, "browsers": []},
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
}

#[test]
fn a_shifted_run_is_a_regression_naming_the_metric() {
    let s = summary();
    let (a, b) = (jittered(12.0, 30, 1), jittered(15.0, 30, 2));
    let c = compare(
        RunData {
            summary: &s,
            samples: &a,
        },
        RunData {
            summary: &s,
            samples: &b,
        },
        &CompareOptions::default(),
    );
    let reg: Vec<String> = c.regressions().map(MetricDelta::describe).collect();
    assert!(
        reg.iter()
            .any(|r| r.starts_with("m/chromium/wasm latency p50 +")),
        "{reg:?}"
    );
    assert!(c.regressions().all(|d| d.p_value < 1e-3));
    // ...and the other way round it is an improvement, never a regression.
    let c = compare(
        RunData {
            summary: &s,
            samples: &b,
        },
        RunData {
            summary: &s,
            samples: &a,
        },
        &CompareOptions::default(),
    );
    assert_eq!(c.regressions().count(), 0);
    assert!(c.deltas.iter().any(|d| d.verdict == Verdict::Improvement));
}

#[test]
fn a_small_shift_under_the_threshold_passes() {
    let s = summary();
    let a: Vec<Sample> = (0..40).map(|i| sample(i, 10.0 + i as f64 * 0.01)).collect();
    let b: Vec<Sample> = (0..40).map(|i| sample(i, 10.3 + i as f64 * 0.01)).collect();
    let c = compare(
        RunData {
            summary: &s,
            samples: &a,
        },
        RunData {
            summary: &s,
            samples: &b,
        },
        &CompareOptions::default(),
    );
    // Significant (every sample moved) but only 3%: not a regression.
    let p50 = &c.deltas[0];
    assert!(p50.p_value < 0.01 && p50.change < 0.05, "{p50:?}");
    assert_eq!(c.regressions().count(), 0);
}

#[test]
fn too_few_samples_give_no_verdict() {
    let s = summary();
    let (a, b) = (jittered(10.0, 3, 1), jittered(30.0, 3, 2));
    let c = compare(
        RunData {
            summary: &s,
            samples: &a,
        },
        RunData {
            summary: &s,
            samples: &b,
        },
        &CompareOptions::default(),
    );
    assert!(c.deltas.iter().all(|d| d.verdict == Verdict::Insufficient));
}

#[test]
fn p_values_format_compactly() {
    assert_eq!(format_p(0.4321), "0.43");
    assert_eq!(format_p(0.0031), "0.0031");
    assert_eq!(format_p(1.23e-9), "1.2e-9");
}
