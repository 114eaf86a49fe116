//! `webgpu-pool bench overhead` end to end in real Chromium (CDP and chromedriver) and Firefox
//! (geckodriver): the JSON has every figure, the figures are sane, and nothing is left running.
//! No timing target is asserted: the machine is shared and noisy; the targets are read from the
//! benchmark's own output by people, not by tests.

mod common;

use common::{stderr, stdout, Sandbox};
use serde_json::Value;

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn assert_series(s: &Value, n: u64) {
    assert_eq!(s["n"].as_u64(), Some(n), "{s}");
    // Only what a wrong measurement can break: a series of real timings is positive (p99 >= p50
    // holds for any sorted data, so it is not checked).
    assert!(num(s, "p50_ms") > 0.0, "p50 must be positive: {s}");
    assert!(num(s, "mean_ms") > 0.0, "{s}");
}

#[test]
fn bench_overhead_reports_latency_and_throughput() {
    let sb = Sandbox::new();
    let a = sb
        .cmd(600)
        .args([
            "bench",
            "overhead",
            "--iterations",
            "30",
            "--warmup",
            "5",
            "--duration",
            "3s",
            "--json",
        ])
        .assert();
    let a = a.success();
    let out: Value = serde_json::from_str(&stdout(&a))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {}", stderr(&a)));
    assert_eq!(out["schema_version"], 1);
    assert!(out["stopped_early"].is_null(), "{out}");
    assert_eq!(out["target_added_p50_ms"], 0.5);
    assert_eq!(out["target_ratio"], 1.6);

    let rows = out["latency"].as_array().expect("latency rows");
    let paths: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["browser"].as_str().unwrap_or_default().to_string(),
                r["driver"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("chromium".into(), "cdp".into()),
            ("chromium".into(), "webdriver".into()),
            ("firefox".into(), "webdriver".into()),
        ],
        "one row per driver path"
    );
    for r in rows {
        assert_series(&r["bare"], 30);
        assert_series(&r["pool"], 30);
        // `added_p50_ms` is pool p50 minus bare p50: recomputing it here would check the
        // code's arithmetic against itself, so only its presence is asserted.
        num(r, "added_p50_ms");
        assert!(r["same_page"].is_boolean(), "{r}");
    }

    let tp = &out["throughput"];
    assert_eq!(tp["model"], "bert-tiny", "{tp}");
    assert_eq!(tp["backend"], "wasm", "{tp}");
    assert_eq!(tp["concurrency"], 2, "{tp}");
    for (leg, workers) in [(&tp["one"], 1), (&tp["two"], 2)] {
        assert_eq!(leg["workers"], workers, "{leg}");
        assert_eq!(
            leg["placed_on"], workers,
            "model placed on every worker: {leg}"
        );
        assert!(leg["succeeded"].as_u64().unwrap_or(0) > 0, "{leg}");
        assert_eq!(leg["failed"], 0, "{leg}");
        assert!(num(leg, "measured_s") >= 3.0, "{leg}");
        assert!(num(leg, "requests_per_s") > 0.0, "{leg}");
        let served = leg["per_worker"].as_object().expect("per_worker");
        assert_eq!(served.len(), workers, "every worker served requests: {leg}");
        let total: u64 = served.values().filter_map(Value::as_u64).sum();
        assert_eq!(Some(total), leg["succeeded"].as_u64(), "{leg}");
        for threads in leg["wasm_threads"]
            .as_object()
            .expect("wasm_threads")
            .values()
        {
            assert_eq!(threads, 1, "wasm is one thread per worker here: {leg}");
        }
        let lat = &leg["latency"];
        assert!(num(lat, "p50_ms") > 0.0, "{lat}");
        // The page's own session.run time is part of the round trip.
        let page = &leg["page"];
        assert!(num(page, "p50_ms") > 0.0 && num(page, "p50_ms") <= num(lat, "p50_ms"));
        // The browsers' CPU time comes from /proc, apart from the page's timings: it can be 0
        // only if it was not measured.
        let cpu = &leg["cpu"];
        assert!(
            num(cpu, "browsers_cpus") > 0.0,
            "the browsers ran the model: {cpu}"
        );
    }
    assert!(num(tp, "ratio") > 0.0, "{tp}");
    sb.assert_clean();
}

#[test]
fn bench_overhead_table_names_every_path() {
    let sb = Sandbox::new();
    let a = sb
        .cmd(300)
        .args([
            "bench",
            "overhead",
            "--browsers",
            "chromium",
            "--driver",
            "cdp",
            "--iterations",
            "10",
            "--warmup",
            "2",
            "--no-throughput",
        ])
        .assert()
        .success();
    let table = stdout(&a);
    assert!(table.contains("chromium / cdp"), "{table}");
    assert!(!table.contains("webdriver"), "{table}");
    assert!(table.contains("added p50 ms"), "{table}");
    assert!(!table.contains("Throughput"), "{table}");
    sb.assert_clean();
}
