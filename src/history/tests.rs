use std::path::Path;

use super::*;
use crate::metrics::compare::Timing;
use crate::metrics::{LoadContext, LoadKind, Percentiles, Phase, ResultRow, RunSummary, Sample};

const ISOLATED: LoadContext = LoadContext {
    context: LoadKind::Isolated,
    clients: 1,
    rate_per_s: None,
};

/// Deterministic noise in [-1, 1): a 64-bit LCG, so every run of the test sees the same values.
fn noise(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

/// An isolated run of one cell: `n` samples around `ms` with +-5% relative noise.
fn run(
    id: &str,
    at: &str,
    cell: (&str, &str, &str),
    ms: f64,
    n: usize,
    seed: u64,
) -> (RunSummary, Vec<Sample>) {
    let mut s = seed;
    let samples: Vec<Sample> = (0..n)
        .map(|i| {
            let t = ms * (1.0 + 0.05 * noise(&mut s));
            Sample {
                seq: i as u64,
                model: cell.0.into(),
                browser: cell.1.into(),
                worker: format!("{}#1", cell.1),
                backend: cell.2.into(),
                phase: Phase::Measure,
                scheduled_ms: i as f64 * 100.0,
                started_ms: i as f64 * 100.0,
                latency_ms: t + 1.0,
                service_ms: t + 1.0,
                page_ms: t,
                ok: true,
                error: String::new(),
                attempt: 1,
                cause: None,
            }
        })
        .collect();
    let times: Vec<f64> = samples.iter().map(|s| s.page_ms).collect();
    let mut summary: RunSummary = serde_json::from_value(serde_json::json!({
        "schema_version": 1, "run_id": id, "command": "webgpu-pool run", "started_at": at,
        "finished_at": at, "complete": true,
        "environment": {"harness_version": "t", "os": "linux", "cpus": 2, "browsers": []},
        "load": ISOLATED,
        "requests": {"issued": n, "succeeded": n, "failed": 0, "lost": 0},
        "results": [], "faults": [], "recovery_events": [], "thresholds": []
    }))
    .expect("a minimal summary");
    let mut row: ResultRow = serde_json::from_value(serde_json::json!({
        "model": cell.0, "task": "text_embedding", "weights": "seeded", "weights_note": "",
        "browser": cell.1, "backend": cell.2, "load_ms": 1.0, "session_create_ms": 1.0,
        "first_run_ms": 1.0, "runs": n,
        "latency_ms": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "min": 0.0, "mean": 0.0},
        "round_trip_ms": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "min": 0.0, "mean": 0.0},
        "throughput_per_s": 1000.0 / ms, "failed": 0, "memory_added_mb": 0.0, "workers": [],
        "correctness": {"passed": true, "check": "finite", "max_abs_diff": 0.0, "tolerance": 0.0, "rtol": 0.0, "detail": ""}
    }))
    .expect("a minimal row");
    row.latency_ms = Percentiles::from_ms(&times).expect("samples");
    summary.results.push(row);
    (summary, samples)
}

fn record(h: &mut History, r: &(RunSummary, Vec<Sample>)) {
    h.record(&r.0, &r.1, Path::new("results").join(&r.0.run_id).as_path())
        .expect("recorded");
}

fn all(h: &History) -> Vec<(CellRun, Vec<Sample>)> {
    h.cells(i64::MIN)
        .expect("cells")
        .into_iter()
        .map(|c| {
            let s = h.samples(&c).expect("samples");
            (c, s)
        })
        .collect()
}

const BERT: (&str, &str, &str) = ("bert-tiny", "chromium", "wasm");

#[test]
fn records_and_reads_back_with_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let mut h = History::open(&path).unwrap();
    record(
        &mut h,
        &run("r1", "2026-12-01T10:00:00Z", BERT, 20.0, 30, 1),
    );
    drop(h);
    let h = History::open_read(&path).unwrap();
    let cells = all(&h);
    assert_eq!(cells.len(), 1);
    let (c, s) = &cells[0];
    assert_eq!(c.key.adapter, "cpu");
    assert_eq!((c.runs, s.len()), (30, 30));
    assert!((c.p50_ms - 20.0).abs() < 1.5, "{}", c.p50_ms);
    let v: u32 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema_version());
}

#[test]
fn recording_a_run_again_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    let r = run("r1", "2026-12-01T10:00:00Z", BERT, 20.0, 30, 1);
    record(&mut h, &r);
    record(&mut h, &r);
    assert_eq!(h.run_count().unwrap(), 1);
    assert_eq!(all(&h)[0].1.len(), 30);
}

#[test]
fn a_thirty_percent_slowdown_is_flagged_and_two_percent_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    record(
        &mut h,
        &run("r1", "2026-12-01T10:00:00Z", BERT, 20.0, 30, 1),
    );
    record(
        &mut h,
        &run("r2", "2026-12-01T11:00:00Z", BERT, 26.0, 30, 2),
    );
    record(
        &mut h,
        &run("r3", "2026-12-01T12:00:00Z", BERT, 26.52, 30, 3),
    );
    let report = trends(&all(&h), &TrendOptions::default());
    assert_eq!(report.steps.len(), 2);
    let flagged: Vec<&str> = report.regressions().map(|s| s.to_run.as_str()).collect();
    assert_eq!(flagged, ["r2"], "{report:#?}");
}

#[test]
fn an_improvement_is_flagged_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    record(
        &mut h,
        &run("r1", "2026-12-01T10:00:00Z", BERT, 26.0, 30, 1),
    );
    record(
        &mut h,
        &run("r2", "2026-12-01T11:00:00Z", BERT, 20.0, 30, 2),
    );
    let report = trends(&all(&h), &TrendOptions::default());
    assert_eq!(report.improvements().count(), 1);
    assert_eq!(report.regressions().count(), 0);
}

#[test]
fn a_run_far_from_the_usual_is_an_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    for (i, ms) in [20.0, 20.3, 19.8, 40.0, 20.1, 19.9].iter().enumerate() {
        let at = format!("2026-12-01T1{i}:00:00Z");
        record(&mut h, &run(&format!("r{i}"), &at, BERT, *ms, 20, i as u64));
    }
    let report = trends(&all(&h), &TrendOptions::default());
    let odd: Vec<&str> = report.anomalies.iter().map(|a| a.run_id.as_str()).collect();
    assert_eq!(odd, ["r3"], "{:#?}", report.anomalies);
}

#[test]
fn recommends_the_fastest_pair_with_enough_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    record(
        &mut h,
        &run(
            "r1",
            "2026-12-01T10:00:00Z",
            ("bert-tiny", "chromium", "webgpu"),
            200.0,
            20,
            1,
        ),
    );
    record(
        &mut h,
        &run(
            "r2",
            "2026-12-01T10:01:00Z",
            ("bert-tiny", "firefox", "wasm"),
            12.0,
            20,
            2,
        ),
    );
    record(
        &mut h,
        &run(
            "r3",
            "2026-12-01T10:02:00Z",
            ("bert-tiny", "chromium", "wasm"),
            22.0,
            20,
            3,
        ),
    );
    // Fastest of all, but too few samples to count.
    record(
        &mut h,
        &run(
            "r4",
            "2026-12-01T10:03:00Z",
            ("bert-tiny", "chromium-shell", "webnn"),
            5.0,
            3,
            4,
        ),
    );
    let recs = recommend(&all(&h), &RecommendOptions::default());
    let m = &recs.models[0];
    let best = m.best.as_ref().unwrap();
    assert_eq!(
        (best.config.browser.as_str(), best.config.backend.as_str()),
        ("firefox", "wasm")
    );
    assert_eq!(m.runner_up.as_ref().unwrap().config.browser, "chromium");
    assert_eq!(m.confidence, Confidence::High);
    assert_eq!(m.too_few.len(), 1);
    assert_eq!(recs.model_types[0].config.browser, "firefox");
    let profile = RoutingProfile::from_recommendations(&recs, "h.sqlite", "now".into());
    assert_eq!(
        profile
            .choice("bert-tiny", "text_embedding")
            .unwrap()
            .backend,
        "wasm"
    );
    assert_eq!(
        profile
            .choice("bert-base-uncased", "text_embedding")
            .unwrap()
            .browser,
        "firefox"
    );
    assert!(profile.choice("vit", "vision").is_none());
    let file = dir.path().join("p.json");
    profile.save(&file).unwrap();
    assert_eq!(RoutingProfile::load(&file).unwrap(), profile);
}

#[test]
fn since_keeps_only_recent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    record(
        &mut h,
        &run("old", "2026-11-01T10:00:00Z", BERT, 20.0, 10, 1),
    );
    record(
        &mut h,
        &run("new", "2026-12-01T10:00:00Z", BERT, 20.0, 10, 2),
    );
    let now = humantime::parse_rfc3339("2026-12-02T10:00:00Z").unwrap();
    let kept = h.cells(since_ms("7d", now).unwrap()).unwrap();
    assert_eq!(
        kept.iter().map(|c| c.run_id.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
    assert_eq!(h.cells(since_ms("all", now).unwrap()).unwrap().len(), 2);
    let bad = since_ms("a week", now).unwrap_err();
    assert!(matches!(bad, HistoryError::Since { .. }), "{bad:?}");
    assert!(bad.to_string().contains("'a week'"), "{bad}");
}

#[test]
fn a_file_that_is_not_a_database_is_named_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = History::open(&path).unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("h.sqlite"), "{e}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = History::open(&path).unwrap_err();
    assert!(matches!(e, HistoryError::Newer { found: 99, .. }), "{e:?}");
}

#[test]
fn a_locked_file_is_reported_not_waited_on_forever() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    drop(History::open(&path).unwrap());
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Reading waits on the exclusive lock too: opening or recording, the answer is Locked.
    let r = run("r1", "2026-12-01T10:00:00Z", BERT, 20.0, 5, 1);
    let e = History::open(&path)
        .and_then(|mut h| h.record(&r.0, &r.1, Path::new("x")))
        .unwrap_err();
    assert!(matches!(e, HistoryError::Locked { .. }), "{e:?}");
}

/// Like with like: the whole cell key, load contexts, timings, and the schema migration.
mod keys;
