//! The history compares like with like: runs differing in load context, threads or adapter
//! are not one series, each timing reads back as itself, and an older schema is migrated.

use super::*;

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
