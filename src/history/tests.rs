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

/// `r` as if its run had loaded its cell otherwise.
fn under(mut r: (RunSummary, Vec<Sample>), load: LoadContext) -> (RunSummary, Vec<Sample>) {
    r.0.load = load;
    r
}

/// `r` with its cell run on `threads` wasm threads.
fn threads(mut r: (RunSummary, Vec<Sample>), threads: u32) -> (RunSummary, Vec<Sample>) {
    r.0.results[0].wasm_threads = Some(threads);
    r
}

#[test]
fn runs_differing_only_in_load_context_are_not_one_series() {
    // Issue 25: bert-base on Chromium's wasm alone (matrix) and then beside three other models
    // (`run --concurrent-models`) read as +160%, REGRESSION. Two series now, no step between.
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    let bert = ("bert-base-uncased", "chromium", "wasm");
    record(
        &mut h,
        &run("alone", "2026-12-01T10:00:00Z", bert, 1400.0, 30, 1),
    );
    let routed = LoadContext::closed(LoadKind::Routed, 4);
    record(
        &mut h,
        &under(
            run("loaded", "2026-12-01T11:00:00Z", bert, 3640.0, 30, 2),
            routed,
        ),
    );
    let cells = all(&h);
    assert_eq!(cells[1].0.key.load, routed);
    let report = trends(&cells, &TrendOptions::default());
    assert!(report.steps.is_empty(), "{report:#?}");
    // A second run under the same load is the next point of that series, and a slowdown there
    // is still found.
    record(
        &mut h,
        &under(
            run("loaded-2", "2026-12-01T12:00:00Z", bert, 4800.0, 30, 3),
            routed,
        ),
    );
    let report = trends(&all(&h), &TrendOptions::default());
    let steps: Vec<(&str, &str)> = report
        .steps
        .iter()
        .map(|s| (s.from_run.as_str(), s.to_run.as_str()))
        .collect();
    assert_eq!(steps, [("loaded", "loaded-2")]);
    assert_eq!(report.regressions().count(), 1);
}

#[test]
fn runs_differing_only_in_threads_or_adapter_are_not_pooled() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    record(
        &mut h,
        &run("one", "2026-12-01T10:00:00Z", BERT, 20.0, 20, 1),
    );
    record(
        &mut h,
        &threads(run("two", "2026-12-01T11:00:00Z", BERT, 12.0, 20, 2), 2),
    );
    let mut cells = all(&h);
    assert!(trends(&cells, &TrendOptions::default()).steps.is_empty());
    // Recommend: two candidates, each with its own 20 samples, not one with 40.
    let recs = recommend(&cells, &RecommendOptions::default());
    assert_eq!(recs.models.len(), 1);
    let m = &recs.models[0];
    let pooled: Vec<(u32, usize)> = m
        .candidates
        .iter()
        .map(|c| (c.config.threads, c.samples))
        .collect();
    assert_eq!(pooled, [(2, 20), (1, 20)], "{m:#?}");
    // Another adapter is another candidate too.
    cells[1].0.key.threads = 1;
    cells[1].0.key.adapter = "google/swiftshader".into();
    let recs = recommend(&cells, &RecommendOptions::default());
    assert_eq!(recs.models[0].candidates.len(), 2, "{recs:#?}");
}

#[test]
fn recommend_answers_per_load_context_and_the_profile_takes_the_isolated_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    let routed = LoadContext::closed(LoadKind::Routed, 4);
    let ff = ("bert-tiny", "firefox", "wasm");
    // Isolated, Chromium is faster; under load (as routed runs measured it), Firefox was.
    record(
        &mut h,
        &run("i1", "2026-12-01T10:00:00Z", BERT, 12.0, 20, 1),
    );
    record(&mut h, &run("i2", "2026-12-01T10:01:00Z", ff, 20.0, 20, 2));
    record(
        &mut h,
        &under(run("r1", "2026-12-01T10:02:00Z", BERT, 90.0, 20, 3), routed),
    );
    record(
        &mut h,
        &under(run("r2", "2026-12-01T10:03:00Z", ff, 30.0, 20, 4), routed),
    );
    let recs = recommend(&all(&h), &RecommendOptions::default());
    let answers: Vec<(String, &str)> = recs
        .models
        .iter()
        .map(|m| {
            (
                m.load.to_string(),
                m.best.as_ref().unwrap().config.browser.as_str(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("isolated".to_string(), "chromium"),
            ("routed x4".to_string(), "firefox")
        ]
    );
    // A model measured only under load has answers, but none the profile takes.
    let vit = ("vit-tiny", "firefox", "wasm");
    record(
        &mut h,
        &under(run("r3", "2026-12-01T10:04:00Z", vit, 30.0, 20, 5), routed),
    );
    let recs = recommend(&all(&h), &RecommendOptions::default());
    assert!(
        recs.models.iter().any(|m| m.model == "vit-tiny"),
        "{recs:#?}"
    );
    let profile = RoutingProfile::from_recommendations(&recs, "h.sqlite", "now".into());
    let choice = profile.choice("bert-tiny", "text_embedding").unwrap();
    assert_eq!(choice.browser, "chromium");
    assert!(choice.reason.contains("(isolated)"), "{}", choice.reason);
    assert_eq!(profile.model_types["text_embedding"].browser, "chromium");
    assert!(!profile.models.contains_key("vit-tiny"), "{profile:#?}");
}

#[test]
fn latency_service_and_page_time_read_back_as_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    let mut r = run("r1", "2026-12-01T10:00:00Z", BERT, 20.0, 10, 1);
    // Queued 30 ms behind schedule, 2 ms of driver round trip around the page's run.
    for (i, s) in r.1.iter_mut().enumerate() {
        s.scheduled_ms = i as f64 * 100.0;
        s.started_ms = s.scheduled_ms + 30.0;
        s.service_ms = s.page_ms + 2.0;
        s.latency_ms = 30.0 + s.service_ms;
    }
    r.0.results[0].round_trip_ms =
        Percentiles::from_ms(&r.1.iter().map(|s| s.latency_ms).collect::<Vec<_>>()).unwrap();
    record(&mut h, &r);
    let cells = all(&h);
    let (c, back) = &cells[0];
    for (sent, got) in r.1.iter().zip(back) {
        assert_eq!(
            (got.page_ms, got.service_ms, got.latency_ms),
            (sent.page_ms, sent.service_ms, sent.latency_ms)
        );
        assert_eq!(
            (got.scheduled_ms, got.started_ms),
            (sent.scheduled_ms, sent.started_ms)
        );
    }
    let e2e = c.e2e_p50_ms.unwrap();
    assert!((e2e - c.p50_ms - 32.0).abs() < 1.5, "{e2e} vs {}", c.p50_ms);
    assert_eq!(trends::p50_of(c, Timing::EndToEnd), Some(e2e));
}

#[test]
fn end_to_end_trends_test_latency_not_page_time() {
    // The page got no slower; the requests waited 40% longer (queueing): an end-to-end
    // regression, and no page run time one.
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.sqlite")).unwrap();
    let a = run("r1", "2026-12-01T10:00:00Z", BERT, 20.0, 30, 1);
    let mut b = run("r2", "2026-12-01T11:00:00Z", BERT, 20.0, 30, 1);
    for s in &mut b.1 {
        s.latency_ms = s.page_ms * 1.4;
    }
    record(&mut h, &a);
    record(&mut h, &b);
    let cells = all(&h);
    let page = trends(&cells, &TrendOptions::default());
    assert_eq!(page.regressions().count(), 0, "{page:#?}");
    let mut options = TrendOptions::default();
    options.compare.timing = Timing::EndToEnd;
    let e2e = trends(&cells, &options);
    let flagged: Vec<String> = e2e
        .regressions()
        .flat_map(|s| {
            s.deltas
                .iter()
                .filter(|d| d.verdict == crate::metrics::compare::Verdict::Regression)
        })
        .map(|d| d.describe())
        .collect();
    assert!(
        flagged
            .iter()
            .any(|d| d.starts_with("bert-tiny/chromium/wasm end-to-end latency p50 +")),
        "{flagged:?}"
    );
}

/// The schema as version 1 of this file wrote it, and one run in it (a bert-tiny cell of 3
/// samples, twice), as a history from before load contexts would be found on disk.
fn version_1_history(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE runs (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, started_at TEXT NOT NULL,
            started_ms INTEGER NOT NULL, command TEXT NOT NULL, run_dir TEXT NOT NULL,
            complete INTEGER NOT NULL);
        CREATE TABLE cells (
            id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            model TEXT NOT NULL, task TEXT NOT NULL, browser TEXT NOT NULL,
            browser_version TEXT NOT NULL, backend TEXT NOT NULL, adapter TEXT NOT NULL,
            threads INTEGER NOT NULL, weights TEXT NOT NULL, runs INTEGER NOT NULL,
            failed INTEGER NOT NULL, p50_ms REAL NOT NULL, p95_ms REAL NOT NULL,
            p99_ms REAL NOT NULL, throughput_per_s REAL NOT NULL, utilization REAL,
            samples_csv TEXT NOT NULL);
        CREATE INDEX cells_by_key ON cells(model, browser, backend);
        CREATE TABLE samples (
            cell INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
            page_ms REAL NOT NULL, service_ms REAL NOT NULL, started_ms REAL NOT NULL);
        CREATE INDEX samples_by_cell ON samples(cell);
        INSERT INTO runs VALUES (1, 'old-1', '2026-11-01T10:00:00Z', 1793527200000,
            'webgpu-pool run', 'results/old-1', 1);
        INSERT INTO runs VALUES (2, 'old-2', '2026-11-01T11:00:00Z', 1793530800000,
            'webgpu-pool run --concurrent-models', 'results/old-2', 1);
        INSERT INTO cells VALUES (1, 1, 'bert-tiny', 'text_embedding', 'firefox', '153.8.0esr',
            'wasm', 'cpu', 1, 'seeded', 3, 0, 20.0, 21.0, 21.0, 45.0, NULL, 'x');
        INSERT INTO cells VALUES (2, 2, 'bert-tiny', 'text_embedding', 'firefox', '153.8.0esr',
            'wasm', 'cpu', 1, 'seeded', 3, 0, 52.0, 55.0, 55.0, 18.0, NULL, 'y');
        INSERT INTO samples VALUES (1, 20.0, 21.0, 0.0), (1, 19.5, 20.5, 100.0),
            (1, 21.0, 22.0, 200.0), (2, 52.0, 53.0, 0.0), (2, 50.0, 51.0, 100.0),
            (2, 55.0, 56.0, 200.0);
        PRAGMA user_version = 1;",
    )
    .unwrap();
}

#[test]
fn a_version_1_history_is_migrated_and_its_runs_are_compared_with_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    version_1_history(&path);
    // Read first (`history` before any new run): migrated in place.
    let h = History::open_read(&path).unwrap();
    let cells = all(&h);
    assert_eq!(cells.len(), 2);
    let (c, samples) = &cells[0];
    assert_eq!(c.key.load, LoadContext::UNKNOWN);
    assert_eq!((c.key.build.as_str(), c.e2e_p50_ms), ("153.8.0", None));
    // Service time stays service time; the latency version 1 never stored is not made up.
    assert_eq!(samples[0].service_ms, 21.0);
    assert!(samples[0].latency_ms.is_nan(), "{:?}", samples[0]);
    // The two old runs (one of them routed, by its command line) are not a series.
    assert!(trends(&cells, &TrendOptions::default()).steps.is_empty());
    let recs = recommend(&cells, &RecommendOptions::default());
    assert_eq!((recs.models.len(), recs.unknown_load), (0, 2));
    drop(h);
    let v: u32 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema_version());
    // A run recorded after the migration has its context, and an old one is not its baseline.
    let mut h = History::open(&path).unwrap();
    let ff = ("bert-tiny", "firefox", "wasm");
    record(&mut h, &run("new", "2026-12-01T10:00:00Z", ff, 60.0, 10, 1));
    let cells = all(&h);
    assert_eq!(cells[2].0.key.load, ISOLATED);
    assert!(trends(&cells, &TrendOptions::default()).steps.is_empty());
}

#[test]
fn a_file_whose_tables_do_not_match_its_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // Says version 1, has none of its tables.
    let path = dir.path().join("v1-empty.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 1).unwrap();
    drop(c);
    let e = History::open(&path).unwrap_err();
    assert!(
        matches!(e, HistoryError::Schema { version: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("v1-empty.sqlite"), "{e}");
    // Says the current version, lacks a column of it.
    let path = dir.path().join("h.sqlite");
    drop(History::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("ALTER TABLE samples DROP COLUMN latency_ms")
        .unwrap();
    drop(c);
    let e = History::open_read(&path).unwrap_err();
    assert!(
        e.to_string()
            .contains("table 'samples' has no column latency_ms"),
        "{e}"
    );
    // A load context this version does not know.
    let path = dir.path().join("odd.sqlite");
    let mut h = History::open(&path).unwrap();
    record(&mut h, &run("r1", "2026-12-01T10:00:00Z", BERT, 20.0, 5, 1));
    drop(h);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("UPDATE cells SET load = 'sideways'")
        .unwrap();
    drop(c);
    let e = History::open_read(&path)
        .unwrap()
        .cells(i64::MIN)
        .unwrap_err();
    assert!(e.to_string().contains("load 'sideways'"), "{e}");
}
