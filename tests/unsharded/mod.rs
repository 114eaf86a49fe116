//! The checks of a sharded run's comparison with the same model unsharded (issue 25, item 5),
//! read from run.json and the terminal: the baseline on a page of its own with as many wasm
//! threads as the shard pages together, alternating rounds, every answer on both sides checked,
//! and the median of the rounds' ratios recomputed. Used by `tests/sharding.rs`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{shards, workers};

/// The comparison with the unsharded model is like for like (issue 25, item 5):
/// - the baseline has a worker of its own, of shard 0's browser kind and backend, whose page
///   reported as many wasm threads as the shard pages reported together (each page once);
/// - every baseline answer was checked and none was wrong;
/// - at least 2 rounds, each a sharded and an unsharded batch of the same size one after the
///   other (never overlapping, rounds in order), the side that went first (by the recorded
///   start times) alternating from sharded, as each round records;
/// - every answer of both sides in the rounds was right, each round's ratio is its two
///   throughputs', and `throughput_vs_unsharded` is the median of those ratios, recomputed here,
///   with their min and max as its range.
///
/// See: issue 25.
pub fn assert_like_for_like(run: &Value) {
    let s = &run["sharding"];
    let b = &s["baseline"];
    let worker = b["worker"].as_str().expect("baseline.worker");
    let shard_workers = workers(run);
    assert!(
        !shard_workers.contains(&worker),
        "the baseline ran on a shard's worker {worker}: {shard_workers:?}"
    );
    let kind = |w: &str| w.split('#').next().unwrap_or_default().to_string();
    assert_eq!(kind(worker), kind(shard_workers[0]), "{b}");
    assert_eq!(b["backend"], shards(run)[0]["backend"], "{b}");
    let mut pages = BTreeMap::new();
    for sh in shards(run) {
        let threads = sh["wasm_threads"]
            .as_u64()
            .unwrap_or_else(|| panic!("the shard's page reported no wasm threads: {sh}"));
        pages.insert(sh["worker"].as_str().expect("worker"), threads);
    }
    let sharded_threads: u64 = pages.values().sum();
    assert_eq!(
        b["wasm_threads"].as_u64(),
        Some(sharded_threads),
        "the baseline's page reported other wasm threads than the shard pages together ({pages:?}): {b}"
    );
    assert_eq!(
        b["checked"], b["runs"],
        "every baseline answer is checked: {b}"
    );
    assert_eq!(b["mismatched"], 0, "{b}");

    let rounds = s["rounds"].as_array().expect("sharding.rounds");
    assert!(rounds.len() >= 2, "{} round(s): {rounds:?}", rounds.len());
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k}: {v}"));
    let mut last_end = 0.0;
    let mut ratios = Vec::new();
    let mut unsharded_requests = 0;
    for (i, r) in rounds.iter().enumerate() {
        assert_eq!(r["round"], i, "{r}");
        let (sh, un) = (&r["sharded"], &r["unsharded"]);
        let ran_first = if f(sh, "start_ms") < f(un, "start_ms") {
            "sharded"
        } else {
            "unsharded"
        };
        assert_eq!(
            r["first"], ran_first,
            "round {i} records another order: {r}"
        );
        let expected = ["sharded", "unsharded"][i % 2];
        assert_eq!(
            ran_first, expected,
            "round {i}: the sides do not alternate: {r}"
        );
        let (a, z) = if ran_first == "sharded" {
            (sh, un)
        } else {
            (un, sh)
        };
        assert!(
            last_end <= f(a, "start_ms")
                && f(a, "start_ms") < f(a, "end_ms")
                && f(a, "end_ms") <= f(z, "start_ms")
                && f(z, "start_ms") < f(z, "end_ms"),
            "round {i}: batches overlap or run out of order (previous end {last_end}): {r}"
        );
        last_end = f(z, "end_ms");
        assert_eq!(sh["requests"], un["requests"], "batches of one size: {r}");
        for side in [sh, un] {
            assert!(side["requests"].as_u64().unwrap_or(0) > 0, "{r}");
            assert_eq!(side["checked"], side["requests"], "round {i}: {r}");
            assert_eq!(side["mismatched"], 0, "round {i}: {r}");
            assert!(f(side, "throughput_per_s") > 0.0, "{r}");
        }
        unsharded_requests += un["requests"].as_u64().unwrap_or(0);
        let ratio = f(sh, "throughput_per_s") / f(un, "throughput_per_s");
        assert!(
            (f(r, "ratio") - ratio).abs() <= 1e-9 * ratio,
            "round {i}: {r}"
        );
        ratios.push(ratio);
    }
    assert_eq!(b["runs"], unsharded_requests, "{b}");
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    let reported = s["throughput_vs_unsharded"]
        .as_f64()
        .expect("throughput_vs_unsharded");
    assert!(
        (reported - median).abs() <= 1e-9 * median,
        "throughput_vs_unsharded {reported} is not the median {median} of the rounds' ratios {ratios:?}"
    );
    assert_eq!(
        s["throughput_vs_unsharded_range"],
        serde_json::json!([ratios[0], ratios[n - 1]]),
        "{ratios:?}"
    );
}

/// The terminal shows both sides' threads and the median ratio, as run.json has them.
pub fn assert_table_compares(run: &Value, out: &str) {
    let s = &run["sharding"];
    let threads = s["baseline"]["wasm_threads"]
        .as_u64()
        .expect("baseline threads");
    let unsharded = format!("unsharded: 1 page x {threads} thread");
    assert!(
        out.contains(&unsharded),
        "stdout does not say {unsharded:?}:\n{out}"
    );
    let x = s["throughput_vs_unsharded"].as_f64().expect("x unsharded");
    let line = format!("x unsharded: {x:.2}x");
    assert!(out.contains(&line), "stdout does not say {line:?}:\n{out}");
}
