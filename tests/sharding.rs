//! `webgpu-pool shard` splits one model's layers across real browsers and runs it as a pipeline:
//! the shards cover the model's layers in order, one worker each across Chromium and Firefox;
//! every answer matches the unsharded model; per-shard compute, per-hop bytes and transfer time,
//! latency and throughput are reported, and the unsharded baseline is compared like for like (its
//! own page with as many wasm threads as the shard pages together, sharded and unsharded batches
//! in alternating rounds, every answer on both sides checked); a model over a memory budget runs
//! only sharded; a killed shard's browser is recovered by each recovery strategy as documented
//! (only the failed shard reloaded on a relaunched browser, moved to a live worker, or every
//! shard reloaded) with no request lost or failed; the checked-in sharding scenario passes; bad
//! input exits 2 naming the bad value; and no run leaves a browser, driver or profile behind.

mod common;
mod unsharded;

use std::path::Path;

use common::{assert_accounted, assert_valid, stderr, stdout, Sandbox};
use serde_json::Value;
use unsharded::{assert_like_for_like, assert_table_compares};

/// Runs `shard args` in `sb`, whatever its outcome.
fn shard_run(sb: &Sandbox, args: &[&str], timeout_s: u64) -> assert_cmd::assert::Assert {
    sb.cmd(timeout_s)
        .arg("shard")
        .args(args)
        .arg("--results-dir")
        .arg(sb.results())
        .assert()
}

/// Runs `shard args` in `sb`; the run must pass. Returns its run.json and stdout.
fn run_shard(sb: &Sandbox, args: &[&str], timeout_s: u64) -> (Value, String) {
    let a = shard_run(sb, args, timeout_s);
    passed(sb, &a)
}

/// The run behind `a` passed (exit 0): its run.json and stdout.
fn passed(sb: &Sandbox, a: &assert_cmd::assert::Assert) -> (Value, String) {
    let code = a.get_output().status.code();
    let run = std::fs::read_dir(sb.results())
        .ok()
        .and_then(|mut d| d.next())
        .map(|_| sb.run_json());
    let sharding = run.as_ref().map(|r| {
        let mut s = r["sharding"].clone();
        s.as_object_mut().map(|o| o.remove("timeline"));
        s
    });
    assert_eq!(
        code,
        Some(0),
        "run did not pass\nstderr: {}\nstdout: {}\nrequests: {:?}\nfaults: {:?}\nsharding: {sharding:?}",
        stderr(a),
        stdout(a),
        run.as_ref().map(|r| &r["requests"]),
        run.as_ref().map(|r| &r["faults"]),
    );
    (run.expect("run.json"), stdout(a))
}

/// `shard args` exits 2 without a panic, its stderr mentioning each of `must_mention`, writes
/// no run folder, and leaves nothing running.
fn assert_bad_input(args: &[&str], must_mention: &[&str]) {
    let sb = Sandbox::new();
    let a = shard_run(&sb, args, 120);
    let err = stderr(&a);
    assert_eq!(
        a.get_output().status.code(),
        Some(2),
        "shard {args:?}: expected exit 2\nstderr: {err}\nstdout: {}",
        stdout(&a)
    );
    assert!(!err.contains("panicked"), "shard {args:?} panicked: {err}");
    for m in must_mention {
        assert!(
            err.contains(m),
            "shard {args:?}: stderr should mention {m:?}:\n{err}"
        );
    }
    let written: Vec<_> = std::fs::read_dir(sb.results())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        written.is_empty(),
        "shard {args:?}: bad input wrote {written:?}"
    );
    sb.assert_clean();
}

/// The run's shard rows.
fn shards(run: &Value) -> &Vec<Value> {
    run["sharding"]["shards"]
        .as_array()
        .expect("sharding.shards")
}

/// The worker id each shard ended on, in shard order.
fn workers(run: &Value) -> Vec<&str> {
    shards(run)
        .iter()
        .map(|s| s["worker"].as_str().expect("shard worker"))
        .collect()
}

/// A shard row's `earlier_workers` (absent means none).
fn earlier_workers(shard: &Value) -> Vec<&str> {
    shard["earlier_workers"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().expect("worker id")).collect())
        .unwrap_or_default()
}

/// Each shard's `loads`, in shard order.
fn loads(run: &Value) -> Vec<u64> {
    shards(run)
        .iter()
        .map(|s| s["loads"].as_u64().expect("loads"))
        .collect()
}

/// The shards are numbered from 0 and their layer ranges are non-empty, contiguous and cover
/// the model's `layers` layers exactly.
fn assert_layers_cover(run: &Value, layers: u64) {
    let mut next = 0;
    for (i, s) in shards(run).iter().enumerate() {
        assert_eq!(s["shard"], i, "shards out of order: {s}");
        let (a, b) = (
            s["layers"][0].as_u64().expect("layers[0]"),
            s["layers"][1].as_u64().expect("layers[1]"),
        );
        assert_eq!(
            a,
            next,
            "shard {i} does not start where shard {} ended: {s}",
            i as i64 - 1
        );
        assert!(b > a, "shard {i} holds no layer: {s}");
        assert!(s["parameters"].as_u64().unwrap_or(0) > 0, "{s}");
        assert!(s["onnx_bytes"].as_u64().unwrap_or(0) > 0, "{s}");
        next = b;
    }
    assert_eq!(next, layers, "the shards do not cover all {layers} layers");
}

/// No request lost or failed, and every answer checked against the unsharded model and within
/// tolerance.
fn assert_answers_checked(run: &Value) {
    assert_accounted(run);
    let q = &run["requests"];
    assert_eq!(q["failed"], 0, "{q}\nevents: {}", run["sharding"]["events"]);
    assert!(q["succeeded"].as_u64().unwrap_or(0) > 0, "{q}");
    let c = &run["sharding"]["correctness"];
    assert_eq!(c["passed"], true, "{c}");
    assert_eq!(c["mismatched"], 0, "{c}");
    assert_eq!(
        c["checked"], q["succeeded"],
        "every answer is checked: {c}\n{q}"
    );
    let diff = c["max_abs_diff"]
        .as_f64()
        .expect("correctness.max_abs_diff");
    assert!(diff <= 1e-3, "max abs diff {diff}: {c}");
}

/// The report of a sharded run with no fault: per-shard compute for every shard, every hop
/// carrying `hop_bytes` with its transfer time, latency, throughput, the unsharded baseline
/// compared like for like with the same answers, and a run.json that matches its schema.
fn assert_measured(run: &Value, hop_bytes: u64) {
    let s = &run["sharding"];
    let n = shards(run).len();
    for sh in shards(run) {
        assert_eq!(sh["loads"], 1, "{sh}");
        assert_eq!(sh["backend"], "wasm", "{sh}");
        assert!(sh["runs"].as_u64().unwrap_or(0) > 0, "{sh}");
        assert!(
            sh["compute_ms"]["p50"].as_f64().is_some_and(|x| x > 0.0),
            "no compute time for shard {}: {sh}",
            sh["shard"]
        );
    }
    let hops = s["hops"].as_array().expect("sharding.hops");
    assert_eq!(hops.len(), n - 1, "{hops:?}");
    for (i, h) in hops.iter().enumerate() {
        assert_eq!(
            (h["from"].as_u64(), h["to"].as_u64()),
            (Some(i as u64), Some(i as u64 + 1)),
            "{h}"
        );
        assert_eq!(h["bytes"], hop_bytes, "{h}");
        assert!(
            h["transfer_ms"]["p50"].as_f64().is_some_and(|x| x > 0.0),
            "no transfer time: {h}"
        );
    }
    assert!(
        s["latency_ms"]["p50"].as_f64().is_some_and(|x| x > 0.0),
        "{}",
        s["latency_ms"]
    );
    assert!(
        s["throughput_per_s"].as_f64().is_some_and(|x| x > 0.0),
        "{}",
        s["throughput_per_s"]
    );
    let b = &s["baseline"];
    assert!(b["skipped"].is_null(), "baseline skipped: {b}");
    assert!(b["runs"].as_u64().unwrap_or(0) > 0, "{b}");
    assert!(
        b["throughput_per_s"].as_f64().is_some_and(|x| x > 0.0),
        "{b}"
    );
    assert!(
        b["latency_ms"]["p50"].as_f64().is_some_and(|x| x > 0.0),
        "{b}"
    );
    assert!(b["max_abs_diff"].as_f64().is_some_and(|x| x <= 1e-3), "{b}");
    assert_like_for_like(run);
    assert_valid(run);
    assert!(
        s["events"].as_array().expect("events").is_empty(),
        "{}",
        s["events"]
    );
    assert!(
        run["faults"].as_array().expect("faults").is_empty(),
        "{}",
        run["faults"]
    );
}

/// The terminal table names each shard's worker.
fn assert_table_names_workers(run: &Value, out: &str) {
    assert!(out.contains("shard"), "stdout has no shard table:\n{out}");
    for w in workers(run) {
        assert!(out.contains(w), "stdout does not name {w}:\n{out}");
    }
}

/// llama-tiny in 3 shards over chromium and firefox, the middle shard's browser (firefox#1)
/// killed 2s into an 8 s stream and recovered by `recovery`. Returns the run (which must pass)
/// once the guarantees every strategy keeps hold: nothing lost or failed, every answer right,
/// the fault injected into firefox#1, one recovery of shard 1 that succeeded, and the recovered
/// shard serving again on its new worker.
fn kill_middle_shard(sb: &Sandbox, recovery: &str) -> Value {
    let (run, _) = run_shard(
        sb,
        &[
            "--model",
            "llama-tiny",
            "--shards",
            "3",
            "--browsers",
            "chromium,firefox",
            // A time, not a count: the kill lands mid-stream however fast requests go.
            "--duration",
            "8s",
            "--kill-shard",
            "1",
            "--kill-at",
            "2s",
            "--recovery",
            recovery,
        ],
        300,
    );
    assert_answers_checked(&run);
    let s = &run["sharding"];
    assert_eq!(s["recovery"], recovery, "{}", s["recovery"]);
    let faults = run["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{faults:?}");
    let f = &faults[0];
    assert_eq!(f["kind"], "kill_browser", "{f}");
    assert_eq!(f["injected"], true, "the kill did not land mid-stream: {f}");
    assert_eq!(f["target"], "firefox#1", "{f}");
    let events = s["events"].as_array().expect("sharding.events");
    assert_eq!(events.len(), 1, "one kill, one recovery: {events:?}");
    let e = &events[0];
    assert_eq!(e["succeeded"], true, "{e}");
    assert_eq!(e["strategy"], recovery, "{e}");
    assert_eq!(e["shard"], 1, "{e}");
    assert_eq!(e["from"], "firefox#1", "{e}");
    let middle = &shards(&run)[1];
    assert_ne!(
        middle["worker"], "firefox#1",
        "shard 1 still on the killed browser: {middle}"
    );
    assert_eq!(earlier_workers(middle), ["firefox#1"], "{middle}");
    assert!(
        e["to"]
            .as_array()
            .expect("event.to")
            .contains(&middle["worker"]),
        "shard 1 is on {} but the event moved it to {}",
        middle["worker"],
        e["to"]
    );
    // The kill landed mid-stream: shard 1 served requests on its new worker after recovering.
    let at = e["at_ms"].as_f64().expect("event.at_ms");
    let served_after = s["timeline"]
        .as_array()
        .expect("sharding.timeline")
        .iter()
        .filter(|t| {
            t["shard"] == 1
                && t["worker"] == middle["worker"]
                && t["ok"] == true
                && t["start_ms"].as_f64().is_some_and(|x| x > at)
        })
        .count();
    assert!(
        served_after > 0,
        "shard 1 never served after the recovery at {at} ms"
    );
    run
}

#[test]
fn llama_tiny_sharded_three_ways_over_chromium_and_firefox_matches_the_unsharded_model() {
    let sb = Sandbox::new();
    let (run, out) = run_shard(
        &sb,
        &[
            "--model",
            "llama-tiny",
            "--shards",
            "3",
            "--strategy",
            "layer_balanced",
            "--browsers",
            "chromium,firefox",
            "--iterations",
            "20",
        ],
        240,
    );
    let s = &run["sharding"];
    assert_eq!(s["model"], "llama-tiny");
    assert_eq!(s["strategy"], "layer_balanced");
    // transfer auto: both routes timed side by side, the faster one used for the stream.
    let probe = &s["transfer_probe"];
    let ms = |k: &str| probe[k].as_f64().unwrap_or_else(|| panic!("{k}: {probe}"));
    let faster = if ms("server_ms") < ms("harness_ms") {
        "server"
    } else {
        "harness"
    };
    assert_eq!(s["transfer"], faster, "{probe}");
    // One worker per shard, the browsers taken in turn.
    assert_eq!(workers(&run), ["chromium#1", "firefox#1", "chromium#2"]);
    assert_layers_cover(&run, 8);
    assert_answers_checked(&run);
    assert_eq!(
        s["correctness"]["argmax_mismatched"], 0,
        "{}",
        s["correctness"]
    );
    // One activation of [1, 64, 256] float32 crosses each hop.
    assert_measured(&run, 64 * 256 * 4);
    assert_table_names_workers(&run, &out);
    assert_table_compares(&run, &out);
    sb.assert_clean();
}

#[test]
fn bert_base_sharded_three_ways_over_chromium_and_firefox_matches_the_unsharded_model() {
    let sb = Sandbox::new();
    // About a second per request on wasm: a few requests are enough to check answers.
    let (run, out) = run_shard(
        &sb,
        &[
            "--model",
            "bert",
            "--shards",
            "3",
            "--browsers",
            "chromium,firefox",
            "--iterations",
            "4",
            "--warmup",
            "1",
        ],
        420,
    );
    let s = &run["sharding"];
    assert_eq!(s["model"], "bert-base-uncased", "the alias resolves");
    assert_eq!(workers(&run), ["chromium#1", "firefox#1", "chromium#2"]);
    assert_layers_cover(&run, 12);
    assert_answers_checked(&run);
    // An encoder has no next token to compare.
    assert!(
        s["correctness"]["argmax_mismatched"].is_null(),
        "{}",
        s["correctness"]
    );
    // One hidden state of [1, 128, 768] float32 crosses each hop.
    assert_measured(&run, 128 * 768 * 4);
    assert_table_names_workers(&run, &out);
    assert_table_compares(&run, &out);
    sb.assert_clean();
}

#[test]
fn retry_failed_shards_relaunches_the_killed_browser_and_reloads_only_its_shard() {
    let sb = Sandbox::new();
    let run = kill_middle_shard(&sb, "retry_failed_shards");
    let e = &run["sharding"]["events"][0];
    assert_eq!(e["reloaded"], serde_json::json!([1]), "{e}");
    assert_eq!(e["to"], serde_json::json!(["firefox#2"]), "{e}");
    // A browser of the same kind replaces the killed one; the other shards stay untouched.
    assert_eq!(workers(&run), ["chromium#1", "firefox#2", "chromium#2"]);
    assert_eq!(loads(&run), [1, 2, 1]);
    for i in [0, 2] {
        let sh = &shards(&run)[i];
        assert!(earlier_workers(sh).is_empty(), "{sh}");
    }
    sb.assert_clean();
}

#[test]
fn reassign_shards_moves_the_killed_shard_to_a_live_worker_without_a_new_browser() {
    let sb = Sandbox::new();
    let run = kill_middle_shard(&sb, "reassign_shards");
    let e = &run["sharding"]["events"][0];
    assert_eq!(e["reloaded"], serde_json::json!([1]), "{e}");
    let ws = workers(&run);
    assert!(
        ["chromium#1", "chromium#2"].contains(&ws[1]),
        "shard 1 moved to {}, not a live worker",
        ws[1]
    );
    assert_eq!((ws[0], ws[2]), ("chromium#1", "chromium#2"));
    assert_eq!(loads(&run), [1, 2, 1]);
    // No browser was launched: only the three first workers ever served.
    let live = ["chromium#1", "firefox#1", "chromium#2"];
    for t in run["sharding"]["timeline"].as_array().expect("timeline") {
        let w = t["worker"].as_str().expect("timeline worker");
        assert!(live.contains(&w), "a new worker {w} served: {t}");
    }
    sb.assert_clean();
}

#[test]
fn full_retry_relaunches_the_killed_browser_and_reloads_every_shard() {
    let sb = Sandbox::new();
    let run = kill_middle_shard(&sb, "full_retry");
    let e = &run["sharding"]["events"][0];
    assert_eq!(e["reloaded"], serde_json::json!([0, 1, 2]), "{e}");
    assert_eq!(workers(&run), ["chromium#1", "firefox#2", "chromium#2"]);
    assert_eq!(loads(&run), [2, 2, 2]);
    sb.assert_clean();
}

#[test]
fn a_model_over_the_memory_budget_runs_only_sharded_within_it() {
    let sb = Sandbox::new();
    // 86.6 MiB in all; two shards would hold 43.3 MiB each, so the fewest that fit is three,
    // one more than the browsers given.
    let budget_mib = 40;
    let (run, _) = run_shard(
        &sb,
        &[
            "--model",
            "llama-tiny",
            "--strategy",
            "memory_aware",
            "--memory-budget-mib",
            &budget_mib.to_string(),
            "--iterations",
            "10",
        ],
        240,
    );
    let s = &run["sharding"];
    assert_eq!(s["strategy"], "memory_aware");
    assert_answers_checked(&run);
    let n = shards(&run).len();
    assert_eq!(
        n, 3,
        "the fewest shards of llama-tiny within {budget_mib} MiB is 3: {n} shards"
    );
    assert_layers_cover(&run, 8);
    // The shard files as written, not the planner's own estimate of them, fit the budget.
    for sh in shards(&run) {
        let bytes = sh["onnx_bytes"].as_u64().expect("onnx_bytes");
        assert!(
            bytes <= budget_mib * 1024 * 1024,
            "shard {} is an ONNX file of {bytes} bytes, over {budget_mib} MiB: {sh}",
            sh["shard"]
        );
    }
    let why = s["reasons"][0].as_str().expect("reasons[0]");
    assert!(why.contains("runs only sharded"), "{why}");
    let b = &s["baseline"];
    let skipped = b["skipped"].as_str().expect("the baseline is skipped");
    assert!(
        skipped.contains("budget") && skipped.contains("runs only sharded"),
        "{skipped}"
    );
    assert_eq!(b["runs"], 0, "an over-budget baseline ran: {b}");
    assert!(
        s["throughput_vs_unsharded"].is_null(),
        "{}",
        s["throughput_vs_unsharded"]
    );
    sb.assert_clean();
}

#[test]
fn one_model_runs_over_webnn_and_wasm_in_two_engines() {
    let sb = Sandbox::new();
    let (run, _) = run_shard(
        &sb,
        &[
            "--model",
            "llama-micro",
            "--placement",
            "chromium-shell:webnn,firefox:wasm",
            "--iterations",
            "6",
        ],
        240,
    );
    assert_answers_checked(&run);
    assert_eq!(workers(&run), vec!["chromium-shell#1", "firefox#1"]);
    let backends: Vec<&str> = shards(&run)
        .iter()
        .map(|s| s["backend"].as_str().expect("backend"))
        .collect();
    assert_eq!(
        backends,
        vec!["webnn", "wasm"],
        "each shard on the backend it was given"
    );
    sb.assert_clean();
}

#[test]
fn each_transfer_route_carries_the_activations_and_the_answers_still_match() {
    for route in ["harness", "server"] {
        let sb = Sandbox::new();
        let (run, _) = run_shard(
            &sb,
            &[
                "--model",
                "llama-micro",
                "--shards",
                "2",
                "--transfer",
                route,
                "--iterations",
                "6",
            ],
            240,
        );
        assert_answers_checked(&run);
        let s = &run["sharding"];
        assert_eq!(s["transfer"], route);
        assert!(
            s["transfer_probe"].is_null(),
            "{route}: no probe when the route is given"
        );
        let hop_route = s["hops"][0]["route"].as_str().expect("route");
        let expect = if route == "server" {
            "asset server"
        } else {
            "harness"
        };
        assert!(hop_route.starts_with(expect), "{route}: {hop_route}");
        sb.assert_clean();
    }
}

#[test]
fn a_budget_no_split_fits_exits_2_naming_the_budget() {
    // llama-tiny's embedding table alone is about 31 MiB: no shard holding it fits 8 MiB.
    assert_bad_input(
        &[
            "--model",
            "llama-tiny",
            "--strategy",
            "memory_aware",
            "--memory-budget-mib",
            "8",
        ],
        &["budget", "8.0 MiB", "--memory-budget-mib"],
    );
}

#[test]
fn the_sharding_scenario_recovers_only_the_killed_shard() {
    let sb = Sandbox::new();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/sharding.yaml");
    let a = sb
        .cmd(300)
        .arg("scenario")
        .arg(&file)
        .arg("--results-dir")
        .arg(sb.results())
        .assert();
    let (run, _) = passed(&sb, &a);
    assert_answers_checked(&run);
    let s = &run["sharding"];
    assert_eq!(shards(&run).len(), 3, "{}", s["shards"]);
    assert_layers_cover(&run, 8);
    assert!(
        run["faults"]
            .as_array()
            .expect("faults")
            .iter()
            .any(|f| f["kind"] == "kill_browser" && f["injected"] == true),
        "no kill injected: {}",
        run["faults"]
    );
    let events = s["events"].as_array().expect("sharding.events");
    assert!(
        events.iter().any(|e| e["strategy"] == "retry_failed_shards"
            && e["succeeded"] == true
            && e["reloaded"] == serde_json::json!([1])),
        "no retry_failed_shards recovery that reloaded only shard 1: {events:?}"
    );
    assert_eq!(loads(&run), [1, 2, 1]);
    sb.assert_clean();
}

/// A sharded run's workers are the pool's own, bounded by its maximum: a plan that needs more
/// workers than `--max-connections` allows is refused before any browser starts, naming both.
/// See: issue 24 (one engine).
#[test]
fn more_shards_than_connections_is_refused_naming_both() {
    assert_bad_input(
        &[
            "--model",
            "llama-tiny",
            "--shards",
            "4",
            "--max-connections",
            "3",
        ],
        &["--shards", "'4'", "--max-connections 3"],
    );
}

#[test]
fn a_model_without_a_layer_stack_is_refused() {
    assert_bad_input(&["--model", "vit", "--shards", "2"], &["--model", "vit"]);
}

#[test]
fn more_shards_than_layers_is_refused() {
    // llama-micro has 4 layers.
    assert_bad_input(
        &["--model", "llama-micro", "--shards", "9"],
        &["--shards", "'9'", "(4)"],
    );
}

#[test]
fn a_strategy_missing_its_parameter_is_refused() {
    assert_bad_input(
        &["--model", "llama-micro", "--strategy", "memory_aware"],
        &["--memory-budget-mib", "memory_aware"],
    );
    assert_bad_input(
        &["--model", "llama-micro", "--strategy", "cost_balanced"],
        &["--shards", "cost_balanced"],
    );
    assert_bad_input(
        &["--model", "llama-micro", "--strategy", "layer_balanced"],
        &["--shards", "layer_balanced"],
    );
}

#[test]
fn killing_a_shard_that_does_not_exist_is_refused() {
    assert_bad_input(
        &[
            "--model",
            "llama-micro",
            "--shards",
            "3",
            "--kill-shard",
            "5",
        ],
        &["'5'", "shard", "--kill-shard"],
    );
}
