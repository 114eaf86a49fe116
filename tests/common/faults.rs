//! Helpers for the fault tests: a one-browser scenario under a closed loop, run for real, and
//! the checks that a fault was injected, noticed and recovered.

use serde_json::Value;

use super::{assert_accounted, stderr, Sandbox};

/// Runs `yaml` as a scenario in `sb`, whatever its outcome.
pub fn scenario_run(sb: &Sandbox, yaml: &str) -> assert_cmd::assert::Assert {
    scenario_run_with(sb, yaml, &[])
}

/// As [`scenario_run`], with `env` set for the binary.
pub fn scenario_run_with(
    sb: &Sandbox,
    yaml: &str,
    env: &[(&str, &str)],
) -> assert_cmd::assert::Assert {
    let file = sb.dir.path().join("scenario.yaml");
    std::fs::write(&file, yaml).expect("scenario written");
    sb.cmd(300)
        .envs(env.iter().copied())
        .arg("scenario")
        .arg(&file)
        .arg("--results-dir")
        .arg(sb.results())
        .assert()
}

/// Runs `yaml` as a scenario in `sb` and returns its run.json (the run must pass).
pub fn run_scenario(sb: &Sandbox, yaml: &str) -> Value {
    run_scenario_with(sb, yaml, &[])
}

/// As [`run_scenario`], with `env` set for the binary.
pub fn run_scenario_with(sb: &Sandbox, yaml: &str, env: &[(&str, &str)]) -> Value {
    let a = scenario_run_with(sb, yaml, env);
    let run = sb.run_json();
    assert!(
        a.get_output().status.success(),
        "run failed: {}\nrecovery events: {}\nevents: {}",
        stderr(&a),
        run["recovery_events"],
        run["pool_events"]
    );
    run
}

/// The run lost and failed nothing, injected `kind`, and recovered from it at one of `levels`,
/// having noticed it as one of `seen_as`.
pub fn assert_recovered(run: &Value, kind: &str, levels: &[&str], seen_as: &[&str]) {
    assert_recovered_min(run, kind, levels, seen_as, 10);
}

/// As [`assert_recovered`], with at least `min` requests succeeded.
pub fn assert_recovered_min(run: &Value, kind: &str, levels: &[&str], seen_as: &[&str], min: u64) {
    assert_accounted(run);
    let errors: Vec<&Value> = run["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| &r["error"])
        .filter(|e| !e.is_null())
        .collect();
    assert_eq!(
        run["requests"]["failed"], 0,
        "{}\nerrors: {errors:?}\nrecovery events: {}\nevents: {}",
        run["requests"], run["recovery_events"], run["pool_events"]
    );
    let faults = run["faults"].as_array().expect("faults");
    assert!(
        faults
            .iter()
            .any(|f| f["kind"] == kind && f["injected"] == true),
        "no injected {kind}: {faults:?}"
    );
    let events = run["recovery_events"].as_array().expect("recovery_events");
    let ours: Vec<&Value> = events.iter().filter(|e| e["fault_kind"] == kind).collect();
    assert!(
        !ours.is_empty(),
        "no recovery attributed to {kind}: {events:?}\n{}",
        run["pool_events"]
    );
    for e in ours {
        assert_eq!(
            e["succeeded"], true,
            "{e}\nall recovery events: {events:?}\nevents: {}",
            run["pool_events"]
        );
        let level = e["level"].as_str().unwrap_or_default();
        assert!(levels.contains(&level), "{kind} recovered at {level}: {e}");
        let by = e["detected_by"].as_str().unwrap_or_default();
        assert!(seen_as.contains(&by), "{kind} noticed as {by}: {e}");
        // Service was back only when every model the worker served answered again: that takes
        // at least a page run, however fast the episode itself was. (A worker hit while it was
        // still being placed served nothing yet: it has no service to restore.)
        if e["models"].as_array().is_some_and(|m| !m.is_empty()) {
            assert!(
                e["served_ms"].as_u64().is_some_and(|ms| ms > 0),
                "no answer measured after the recovery: {e}"
            );
        }
    }
    // The requests that met the fault were re-run, not dropped.
    let measured = run["requests"]["succeeded"].as_u64().unwrap_or(0);
    assert!(measured > min, "too few requests: {}", run["requests"]);
}

/// A reset reloads the page's models in place: the worker serves bert-tiny again, and the model
/// was placed only once, not placed anew because its placement went missing during the episode.
pub fn assert_served_on(run: &Value) {
    let events = run["pool_events"].as_array().expect("pool_events");
    let placed = events.iter().filter(|e| e["kind"] == "placed").count();
    assert_eq!(
        placed, 1,
        "bert-tiny placed again after a reset: {events:?}"
    );
}

/// A one-browser routed run of bert-tiny under a closed loop, with `faults` (YAML list items),
/// and no hot standbys: each level of the ladder is what recovers.
pub fn scenario(browsers: &str, extra: &str, faults: &str) -> String {
    format!(
        "name: fault-test\n\
         pool: {{browsers: [{browsers}], min_connections: 1, max_connections: 3, heartbeat_interval: 1s, heartbeat_timeout: 3s, standbys: 0}}\n\
         models: [{{name: bert-tiny}}]\n\
         {extra}\
         workload: {{mode: closed, concurrency: 2, duration: 14s, warmup: 1, request_timeout: 40s, run_timeout: 3s}}\n\
         recovery: {{strategy: progressive, timeout: 30s, max_attempts: 4}}\n\
         thresholds: {{lost_requests: 0}}\n\
         faults:\n{faults}"
    )
}
