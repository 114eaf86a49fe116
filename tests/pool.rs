//! The pool in real browsers: routing by model type, fallback when the preferred browser is
//! absent, growing under load and shrinking when idle, and models loaded once and reused.

mod common;

use common::{assert_accounted, stderr, stdout, Sandbox};
use serde_json::Value;

fn rows_for<'a>(run: &'a Value, model: &str) -> Vec<&'a Value> {
    run["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["model"] == model)
        .collect()
}

#[test]
fn concurrent_models_are_routed_by_type_and_explained() {
    let sb = Sandbox::new();
    let a = sb
        .run(
            &[
                "--models",
                "bert-tiny,vit-micro,whisper-micro",
                // Without chromium-shell (in a default run's pool here), so bert-tiny's
                // preferred browser is missing and the fallback is explained.
                "--browsers",
                "chromium,firefox",
                "--concurrent-models",
                "--concurrency",
                "4",
                "--duration",
                "6s",
                "--max-connections",
                "2",
                "--explain-routing",
            ],
            600,
        )
        .success();
    let run = sb.run_json();
    assert_accounted(&run);
    // Default preferences: audio -> firefox, vision -> chromium, text_embedding -> chromium-shell -> chromium.
    for (model, browser) in [
        ("whisper-micro", "firefox"),
        ("vit-micro", "chromium"),
        ("bert-tiny", "chromium"),
    ] {
        let rows = rows_for(&run, model);
        assert_eq!(rows.len(), 1, "{model}: {rows:?}");
        assert_eq!(rows[0]["browser"], browser, "{model}");
        assert!(rows[0]["runs"].as_u64().unwrap() > 0, "{model}");
        // Its output was checked against native onnxruntime, not only against other browsers.
        let c = &rows[0]["correctness"];
        assert!(
            c["passed"] == true && c["check"].as_str().unwrap_or("").contains("oracle"),
            "{model}: {c}"
        );
    }
    let bert = run["routing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "bert-tiny")
        .unwrap();
    let why = bert["reasons"].to_string();
    assert!(
        why.contains("chromium-shell") && why.contains("using chromium,"),
        "{why}"
    );
    let out = stdout(&a);
    assert!(out.contains("routing:") && out.contains("because"), "{out}");
    // Resource metrics per worker.
    for w in run["workers"].as_array().unwrap() {
        assert!(w["pss_peak_mb"].as_f64().unwrap() > 50.0, "{w}");
        assert!(w["utilization"].as_f64().unwrap() > 0.0, "{w}");
    }
    sb.assert_clean();
}

#[test]
fn routing_falls_back_when_the_preferred_browser_is_missing() {
    let sb = Sandbox::new();
    sb.run(
        &[
            "--models",
            "whisper-micro",
            "--browsers",
            "chromium",
            "--concurrent-models",
            "-n",
            "3",
            "--max-connections",
            "1",
        ],
        300,
    )
    .success();
    let run = sb.run_json();
    assert_accounted(&run);
    assert_eq!(rows_for(&run, "whisper-micro")[0]["browser"], "chromium");
    let reasons = run["routing"][0]["reasons"].to_string();
    assert!(
        reasons.contains("firefox") && reasons.contains("not in the pool"),
        "{reasons}"
    );
    sb.assert_clean();
}

#[test]
fn pool_grows_to_max_under_load_and_shrinks_when_idle() {
    let sb = Sandbox::new();
    sb.run(
        &[
            "--models",
            "bert-tiny",
            "--browsers",
            "chromium",
            "--concurrent-models",
            "--concurrency",
            "4",
            "--min-connections",
            "1",
            "--max-connections",
            "2",
            "--duration",
            "10s",
            "--idle-timeout",
            "2s",
            "--cooldown",
            "6s",
        ],
        600,
    )
    .success();
    let run = sb.run_json();
    assert_accounted(&run);
    assert_eq!(run["peak_workers"], 2, "{}", run["pool_events"]);
    let events = run["pool_events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"launched"), "{kinds:?}");
    assert!(
        kinds.iter().filter(|k| **k == "launched").count() >= 2,
        "grew: {kinds:?}"
    );
    assert!(kinds.contains(&"closed_idle"), "shrank: {kinds:?}");
    sb.assert_clean();
}

#[test]
fn a_model_is_loaded_once_and_reused() {
    let sb = Sandbox::new();
    sb.run(
        &[
            "--models",
            "vit-micro",
            "--browsers",
            "chromium",
            "--concurrent-models",
            "--concurrency",
            "3",
            "-n",
            "40",
            "--max-connections",
            "1",
        ],
        300,
    )
    .success();
    let run = sb.run_json();
    assert_accounted(&run);
    let w = &run["workers"][0];
    // The page's own counters: one session created, every request served by it, and every
    // run it received one the harness sent as a request.
    assert_eq!(w["page_load_count"], 1, "{w}");
    let page = &w["runs"]["page"];
    assert_eq!(
        run["requests"]["succeeded"].as_u64(),
        page["request"].as_u64(),
        "{w}"
    );
    assert_eq!(page, &w["runs"]["asked"], "{w}");
    sb.assert_clean();
}

/// `run` of bert-tiny on one Chromium with `WEBGPU_POOL_BREAK=<name>` (a debug build's switch
/// that breaks one guarantee once): the run must fail (exit 1), and its run.json says how.
fn broken_run(name: &str) -> (serde_json::Value, String) {
    let sb = Sandbox::new();
    let a = sb
        .cmd(300)
        .env("WEBGPU_POOL_BREAK", name)
        .args([
            "run",
            "--models",
            "bert-tiny",
            "--browsers",
            "chromium",
            "-n",
            "5",
        ])
        .arg("--results-dir")
        .arg(sb.results())
        .assert();
    let out = format!("{}{}", stdout(&a), stderr(&a));
    assert_eq!(a.get_output().status.code(), Some(1), "{out}");
    let run = sb.run_json();
    sb.assert_clean();
    (run, out)
}

#[test]
fn a_request_whose_outcome_is_dropped_is_lost_and_fails_the_run() {
    let (run, out) = broken_run("drop-outcome");
    let q = &run["requests"];
    assert_eq!(q["lost"], 1, "{q}");
    assert_eq!(
        q["issued"].as_u64().unwrap(),
        q["succeeded"].as_u64().unwrap() + q["failed"].as_u64().unwrap() + 1,
        "{q}"
    );
    assert!(out.contains("1 lost"), "{out}");
    // The page ran it and the harness sent it: only the ledger lost it.
    let w = &run["workers"][0]["runs"];
    assert_eq!(w["page"], w["asked"], "{w}");
}

/// The run's one worker: its pages counted one request more than the harness sent, and the
/// output says so in `said`'s words (`page counted` or `page counted at least`).
fn assert_one_unasked_request(run: &serde_json::Value, out: &str, said: &str) {
    let w = &run["workers"][0]["runs"];
    let (asked, page) = (
        w["asked"]["request"].as_u64().unwrap(),
        w["page"]["request"].as_u64().unwrap(),
    );
    assert_eq!(page, asked + 1, "{w}");
    assert!(
        out.contains(&format!("request: harness sent {asked}, {said} {page}")),
        "{out}"
    );
}

#[test]
fn a_page_run_the_harness_did_not_send_fails_the_run() {
    let (run, out) = broken_run("unasked-run");
    assert_eq!(run["requests"]["lost"], 0, "{}", run["requests"]);
    assert_one_unasked_request(&run, &out, "page counted");
}

#[test]
fn a_page_lost_unasked_still_shows_a_run_the_harness_did_not_send() {
    // The page is not asked at close, as if lost: the count its later answers carried shows
    // the extra run.
    let (run, out) = broken_run("unasked-run,unread-at-close");
    let w = &run["workers"][0]["runs"];
    assert!(w["lower_bound"].is_string(), "{w}");
    assert_one_unasked_request(&run, &out, "page counted at least");
}
