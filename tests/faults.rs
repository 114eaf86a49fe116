//! Each fault kind, injected for real into a real browser under load, is detected and recovered
//! from: the run loses no request, records the fault and a successful recovery at the expected
//! ladder level, and leaves no browser, driver or profile behind.

mod common;

use common::{assert_accounted, fault, stderr, Sandbox};
use serde_json::Value;

/// Runs `yaml` as a scenario in `sb`, whatever its outcome.
fn scenario_run(sb: &Sandbox, yaml: &str) -> assert_cmd::assert::Assert {
    scenario_run_with(sb, yaml, &[])
}

/// As [`scenario_run`], with `env` set for the binary.
fn scenario_run_with(sb: &Sandbox, yaml: &str, env: &[(&str, &str)]) -> assert_cmd::assert::Assert {
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
fn run_scenario(sb: &Sandbox, yaml: &str) -> Value {
    let a = scenario_run(sb, yaml);
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
fn assert_recovered(run: &Value, kind: &str, levels: &[&str], seen_as: &[&str]) {
    assert_recovered_min(run, kind, levels, seen_as, 10);
}

/// As [`assert_recovered`], with at least `min` requests succeeded.
fn assert_recovered_min(run: &Value, kind: &str, levels: &[&str], seen_as: &[&str], min: u64) {
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
fn assert_served_on(run: &Value) {
    let events = run["pool_events"].as_array().expect("pool_events");
    let placed = events.iter().filter(|e| e["kind"] == "placed").count();
    assert_eq!(
        placed, 1,
        "bert-tiny placed again after a reset: {events:?}"
    );
}

/// A one-browser routed run of bert-tiny under a closed loop, with `faults` (YAML list items),
/// and no hot standbys: each level of the ladder is what recovers.
fn scenario(browsers: &str, extra: &str, faults: &str) -> String {
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

#[test]
fn kill_browser_is_rebuilt() {
    let sb = Sandbox::new();
    let run = run_scenario(
        &sb,
        &scenario("chromium", "", "  - {kind: kill_browser, at: 4s}\n"),
    );
    // One browser: nowhere to migrate, so a new one is launched.
    assert_recovered(
        &run,
        "kill_browser",
        &["rebuild"],
        &["crash", "process_exit"],
    );
    sb.assert_clean();
}

/// A fault due while its target is being rebuilt from the last one waits for the new worker
/// and hits it, instead of being skipped because nothing was routable at that instant.
#[test]
fn a_fault_due_while_its_target_is_rebuilt_waits_for_it() {
    let sb = Sandbox::new();
    let run = run_scenario(
        &sb,
        &scenario(
            "chromium",
            "",
            "  - {kind: kill_browser, at: 3s}\n  - {kind: crash_tab, at: 3500ms, target: {browser: chromium}}\n",
        ),
    );
    let crash = fault(&run, "crash_tab");
    assert_eq!(crash["injected"], true, "{crash}");
    assert!(
        crash["detail"]
            .as_str()
            .unwrap_or("")
            .contains("waiting for a routable target"),
        "{crash}"
    );
    assert_ne!(
        crash["target"], "chromium#1",
        "hit the killed worker: {crash}"
    );
    assert_recovered(
        &run,
        "crash_tab",
        &["reset", "migrate", "rebuild"],
        &["tab_crash", "page", "heartbeat", "crash", "session_lost"],
    );
    sb.assert_clean();
}

#[test]
fn crash_tab_is_recovered_in_chromium_and_firefox() {
    let sb = Sandbox::new();
    let run = run_scenario(
        &sb,
        &scenario(
            "chromium, firefox",
            "",
            "  - {kind: crash_tab, at: 3s, target: {browser: chromium}}\n  - {kind: crash_tab, at: 8s, target: {browser: firefox}}\n",
        )
        .replace("min_connections: 1", "min_connections: 2")
        .replace(
            "models: [{name: bert-tiny}]",
            "models: [{name: bert-tiny, browser: chromium}, {name: whisper-micro, browser: firefox}]",
        ),
    );
    // Firefox drops the crashed tab's window from the WebDriver session altogether, so only a
    // new browser context helps there: migrate (or rebuild). Chromium gets a new tab: reset.
    assert_recovered(
        &run,
        "crash_tab",
        &["reset", "migrate", "rebuild"],
        // session_lost: the page's heartbeat went silent first, and the request in flight
        // stopped waiting for the dead tab.
        &[
            "tab_crash",
            "page",
            "heartbeat",
            "driver",
            "crash",
            "session_lost",
        ],
    );
    let events = run["recovery_events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["fault_kind"] == "crash_tab"
            && e["level"] == "reset"
            && e["worker"].as_str().unwrap_or("").starts_with("chromium")),
        "a crashed Chromium tab is recovered by a reset: {events:?}"
    );
    // The crashed page could not be asked its run count: the count its answers carried stands
    // in for it, a lower bound the run's verdict still checked (the run passed).
    let reset = events
        .iter()
        .find(|e| e["fault_kind"] == "crash_tab" && e["level"] == "reset")
        .unwrap();
    let runs = &run["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == reset["worker"])
        .unwrap()["runs"];
    assert!(runs["lower_bound"].is_string(), "{runs}");
    assert!(runs["page"]["request"].as_u64().unwrap_or(0) > 0, "{runs}");
    let workers: Vec<&str> = run["recovery_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["worker"].as_str())
        .collect();
    assert!(
        workers.iter().any(|w| w.starts_with("chromium")),
        "{workers:?}"
    );
    assert!(
        workers.iter().any(|w| w.starts_with("firefox")),
        "{workers:?}"
    );
    sb.assert_clean();
}

#[test]
fn hang_is_caught_by_the_page_heartbeat_and_reset() {
    let sb = Sandbox::new();
    // run_timeout bounds one page run at 6s; the hang lasts 8s; a page silent for 1s is hung.
    // (At 3 s the bound raced the watcher: on a loaded CI machine a run timed out at 2987 ms,
    // `session_lost`, before the silence was judged.)
    let run = run_scenario(
        &sb,
        &scenario("chromium", "", "  - {kind: hang, at: 3s, duration: 8s}\n")
            .replace("standbys: 0}", "standbys: 0, hang_after: 1s}")
            .replace("run_timeout: 3s", "run_timeout: 6s"),
    );
    assert_recovered(
        &run,
        "hang",
        &["reset"],
        &["timeout", "session_lost", "heartbeat"],
    );
    assert_served_on(&run);
    let e = &run["recovery_events"][0];
    // The page's own heartbeat went silent: noticed before the run bound (else `timeout`), and
    // only once the silence had lasted `hang_after` (the default, 450 ms, would be sooner).
    assert_eq!(e["detected_by"], "heartbeat", "{e}");
    let events = run["pool_events"].as_array().expect("pool_events");
    let why = events
        .iter()
        .filter(|e| e["kind"] == "unhealthy")
        .find_map(|e| {
            e["detail"]
                .as_str()?
                .strip_prefix("the page's heartbeat has been silent for ")
        })
        .unwrap_or_else(|| panic!("no silent-heartbeat event: {events:?}"));
    let silent: u64 = why
        .split(' ')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no silence in '{why}'"));
    assert!(
        silent >= 1000 && why.ends_with("(limit 1000 ms)"),
        "taken for hung before pool.hang_after (1s) of silence: {why}"
    );
    sb.assert_clean();
}

#[test]
fn a_recovery_outlives_the_request_whose_deadline_passed_and_is_recorded() {
    let sb = Sandbox::new();
    // The hung run is noticed at 1s and its request's deadline passes at 1.5s, long before the
    // reset (a new page and a model load) is done: the request fails `deadline`, and the
    // episode it started must still finish, be recorded and leave the worker serving.
    let run = run_scenario(
        &sb,
        &scenario("chromium", "", "  - {kind: hang, at: 3s, duration: 8s}\n")
            .replace(
                "request_timeout: 40s, run_timeout: 3s",
                "request_timeout: 1500ms, run_timeout: 1s",
            )
            .replace("max_connections: 3", "max_connections: 1"),
    );
    assert_accounted(&run);
    let events = run["recovery_events"].as_array().expect("recovery_events");
    assert!(
        events
            .iter()
            .any(|e| e["fault_kind"] == "hang" && e["succeeded"] == true),
        "the episode was dropped with its request: {events:?}\n{}",
        run["pool_events"]
    );
    assert!(
        run["requests"]["failed"].as_u64().unwrap_or(0) >= 1,
        "no request passed its deadline: {}",
        run["requests"]
    );
    sb.assert_clean();
}

#[test]
fn gpu_device_lost_is_reset_and_the_model_reloaded_on_webgpu() {
    let sb = Sandbox::new();
    let run = run_scenario(
        &sb,
        &scenario(
            "chromium",
            "backends: [webgpu]\nallow_fallback_adapter: true\n",
            "  - {kind: gpu_device_lost, at: 4s}\n",
        )
        .replace("run_timeout: 3s", "run_timeout: 15s"),
    );
    // bert-tiny on a software adapter runs a few times a second at best.
    assert_recovered_min(
        &run,
        "gpu_device_lost",
        &["reset"],
        &["device_lost", "page", "timeout", "session_lost"],
        2,
    );
    assert_eq!(run["results"][0]["backend"], "webgpu", "{}", run["results"]);
    sb.assert_clean();
}

#[test]
fn kill_driver_is_rebuilt() {
    let sb = Sandbox::new();
    let run = run_scenario(
        &sb,
        &scenario("firefox", "", "  - {kind: kill_driver, at: 4s}\n"),
    );
    assert_recovered(
        &run,
        "kill_driver",
        &["rebuild"],
        &[
            "crash",
            "heartbeat",
            "process_exit",
            "driver",
            "session_lost",
        ],
    );
    sb.assert_clean();
}

#[test]
fn disconnect_is_reset_over_cdp_and_webdriver() {
    let sb = Sandbox::new();
    let run = run_scenario(
        &sb,
        &scenario(
            "chromium, firefox",
            "",
            "  - {kind: disconnect, at: 3s, target: {browser: chromium}}\n  - {kind: disconnect, at: 6s, duration: 5s, target: {browser: firefox}}\n",
        )
        .replace("min_connections: 1", "min_connections: 2")
        .replace(
            "models: [{name: bert-tiny}]",
            "models: [{name: bert-tiny, browser: chromium}, {name: whisper-micro, browser: firefox}]",
        )
        .replace("duration: 14s", "duration: 20s"),
    );
    assert_recovered(
        &run,
        "disconnect",
        &["reset"],
        &["disconnect", "timeout", "session_lost", "heartbeat"],
    );
    sb.assert_clean();
}

#[test]
fn a_disconnect_that_wakes_no_call_is_still_noticed() {
    // A drop can land while a call holds the CDP socket but no longer waits on it (its answer is
    // in, it has not let go): its wake-up reaches no one and the socket is not free to drop.
    // `unheard-drop` (a debug build's switch) makes the first drop land that way; the call that
    // next takes the socket must drop it, so the disconnect is noticed and reset.
    let sb = Sandbox::new();
    let yaml = scenario("chromium", "", "  - {kind: disconnect, at: 3s}\n")
        .replace("duration: 14s", "duration: 10s");
    let a = scenario_run_with(&sb, &yaml, &[("WEBGPU_POOL_BREAK", "unheard-drop")]);
    let run = sb.run_json();
    assert!(
        a.get_output().status.success(),
        "run failed: {}\nrecovery events: {}\nevents: {}",
        stderr(&a),
        run["recovery_events"],
        run["pool_events"]
    );
    assert_recovered(&run, "disconnect", &["reset"], &["disconnect"]);
    sb.assert_clean();
}

#[test]
fn slow_past_the_run_bound_is_reset() {
    let sb = Sandbox::new();
    // Each run delayed 5s against a 3s run bound: runs time out until the page is reloaded.
    let run = run_scenario(
        &sb,
        &scenario(
            "chromium",
            "",
            "  - {kind: slow, at: 3s, duration: 10s, delay: 5s}\n",
        ),
    );
    assert_recovered(
        &run,
        "slow",
        &["reset"],
        &["timeout", "session_lost", "heartbeat"],
    );
    assert_served_on(&run);
    sb.assert_clean();
}

#[test]
fn a_run_without_recovery_fails_requests_but_loses_none_and_leaves_nothing() {
    let sb = Sandbox::new();
    let a = scenario_run(
        &sb,
        &scenario("chromium", "", "  - {kind: kill_browser, at: 3s}\n")
            .replace("strategy: progressive", "strategy: none")
            .replace("concurrency: 2", "concurrency: 1"),
    );
    let run = sb.run_json();
    assert_accounted(&run);
    assert!(
        run["requests"]["failed"].as_u64().unwrap_or(0) >= 1,
        "the request on the killed browser fails without recovery: {} ({})",
        run["requests"],
        stderr(&a)
    );
    assert!(
        run["recovery_events"].as_array().unwrap().is_empty(),
        "{}",
        run["recovery_events"]
    );
    sb.assert_clean();
}

/// A page that throws fails the request, not the worker: every request that met the thrown
/// error fails after one attempt with class `page`, and no recovery episode starts (a retry
/// throws the same way; a reset would only hide the error by reloading the page).
// See: issue #10 (typed error classes; retry only what is transient)
#[test]
fn a_page_error_fails_at_once_with_class_page_and_no_recovery() {
    let sb = Sandbox::new();
    let a = scenario_run(
        &sb,
        &scenario(
            "chromium",
            "",
            "  - {kind: page_error, at: 3s, duration: 3s}\n",
        ),
    );
    // The thrown requests failed, so the run did: its cell names them.
    let code = a.get_output().status.code();
    assert_eq!(code, Some(1), "{}", stderr(&a));
    let run = sb.run_json();
    assert_accounted(&run);
    let error = run["results"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains(" page)"), "{}", run["results"][0]);
    assert!(
        run["faults"]
            .as_array()
            .expect("faults")
            .iter()
            .any(|f| f["kind"] == "page_error" && f["injected"] == true),
        "no injected page_error: {}",
        run["faults"]
    );
    assert!(
        run["recovery_events"]
            .as_array()
            .expect("events")
            .is_empty(),
        "a page error started a recovery: {}\n{}",
        run["recovery_events"],
        run["pool_events"]
    );
    let dir = sb.run_dir();
    let mut csv = csv::Reader::from_path(dir.join("samples.csv")).expect("samples.csv");
    let headers = csv.headers().expect("header").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (error, attempt) = (col("error"), col("attempt"));
    let mut page = 0;
    for row in csv.records() {
        let row = row.expect("row");
        if !row[error].is_empty() {
            assert_eq!(&row[error], "page", "only the page error may fail: {row:?}");
            assert_eq!(&row[attempt], "1", "a page error was retried: {row:?}");
            page += 1;
        }
    }
    assert!(page > 0, "no request met the page error");
    assert_eq!(run["requests"]["failed"], page, "{}", run["requests"]);
    // Before and after the fault the same worker served: it was never taken for broken.
    assert!(run["requests"]["succeeded"].as_u64().unwrap_or(0) > 10);
    sb.assert_clean();
}

#[test]
fn every_fault_that_fits_chromium_shell_is_recovered_on_it() {
    // The WebNN browser is a pool member like the others: each fault kind that fits it (it has
    // no WebDriver session, so no kill_driver; its WebGPU is not counted by default, so no
    // gpu_device_lost) is injected into it, one after the other, and recovered.
    let sb = Sandbox::new();
    let run = run_scenario(
        &sb,
        &scenario(
            "chromium-shell",
            "",
            "  - {kind: kill_browser, at: 3s}\n  - {kind: crash_tab, at: 10s}\n  - {kind: hang, at: 17s, duration: 6s}\n  - {kind: disconnect, at: 27s}\n  - {kind: slow, at: 33s, duration: 8s, delay: 5s}\n",
        )
        .replace("duration: 14s", "duration: 44s"),
    );
    assert_accounted(&run);
    assert_eq!(run["requests"]["failed"], 0, "{}", run["requests"]);
    let rows = run["results"].as_array().expect("results");
    assert!(
        rows.iter()
            .all(|r| r["browser"] == "chromium-shell" && r["backend"] == "webnn"),
        "{rows:?}"
    );
    let events = run["recovery_events"].as_array().expect("recovery_events");
    for kind in ["kill_browser", "crash_tab", "hang", "disconnect", "slow"] {
        assert!(
            run["faults"]
                .as_array()
                .expect("faults")
                .iter()
                .any(|f| f["kind"] == kind && f["injected"] == true),
            "{kind} not injected: {}",
            run["faults"]
        );
        assert!(
            events
                .iter()
                .any(|e| e["fault_kind"] == kind && e["succeeded"] == true),
            "{kind} not recovered: {events:?}\n{}",
            run["pool_events"]
        );
    }
    sb.assert_clean();
}

#[test]
fn a_corrupted_answer_is_one_wrong_answer_failure() {
    let sb = Sandbox::new();
    let a = scenario_run(
        &sb,
        &scenario("chromium", "", "  - {kind: corrupt_answer, at: 4s}\n"),
    );
    // A wrong answer is never a pass, whatever the thresholds.
    let code = a.get_output().status.code();
    assert_eq!(code, Some(1), "{}", stderr(&a));
    let run = sb.run_json();
    assert_accounted(&run);
    let cell = &run["results"][0]["correctness"];
    assert_eq!(cell["passed"], false, "{cell}");
    assert_eq!(cell["wrong_answers"], 1, "{cell}");
    assert!(
        run["faults"]
            .as_array()
            .expect("faults")
            .iter()
            .any(|f| f["kind"] == "corrupt_answer" && f["injected"] == true),
        "no injected corrupt_answer: {}",
        run["faults"]
    );
    // The independent ledger: one row per request, and exactly one failed, as wrong_answer.
    let mut csv = csv::Reader::from_path(sb.run_dir().join("samples.csv")).expect("samples.csv");
    let headers = csv.headers().expect("header").clone();
    let error = headers.iter().position(|h| h == "error").expect("error");
    let failed: Vec<String> = csv
        .records()
        .map(|r| r.expect("row")[error].to_string())
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(failed, ["wrong_answer"], "{}", run["pool_events"]);
    assert_eq!(run["requests"]["failed"], 1, "{}", run["requests"]);
    assert!(
        run["pool_events"]
            .as_array()
            .expect("pool_events")
            .iter()
            .any(|e| e["kind"] == "wrong_answer"),
        "no wrong_answer event: {}",
        run["pool_events"]
    );
    assert!(run["requests"]["succeeded"].as_u64().unwrap_or(0) > 10);
    sb.assert_clean();
}

/// A placement whose first answer is wrong never serves. Firefox's page is told to corrupt its
/// next answer while it serves nothing; the planned migration of bert-tiny to it then loads the
/// model there, and that first answer is judged against native onnxruntime before the move:
/// rejected, unloaded, rolled back. Chromium keeps serving (every warm answer digest-checked) and
/// the run fails (exit 1) on the rejected placement, although every answer served was right.
#[test]
fn a_placement_whose_first_answer_is_wrong_never_serves() {
    let sb = Sandbox::new();
    let a = scenario_run(
        &sb,
        "name: rejected-placement\n\
         pool: {browsers: [chromium, firefox], min_connections: 2, max_connections: 2, heartbeat_interval: 1s, heartbeat_timeout: 3s, standbys: 0}\n\
         models: [{name: bert-tiny}]\n\
         workload: {mode: closed, concurrency: 2, duration: 10s, warmup: 1, request_timeout: 20s}\n\
         recovery: {strategy: progressive, timeout: 30s, max_attempts: 4}\n\
         faults: [{kind: corrupt_answer, at: 2s, target: {browser: firefox}}]\n\
         state: {sync_interval: 1s, migrations: [{model: bert-tiny, to: firefox, at: 4s}]}\n",
    );
    let run = sb.run_json();
    assert_eq!(
        a.get_output().status.code(),
        Some(1),
        "{}\n{}",
        stderr(&a),
        run["pool_events"]
    );
    assert_accounted(&run);
    let events = run["pool_events"].as_array().expect("pool_events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for want in ["placement_rejected", "migration_rolled_back"] {
        assert!(kinds.contains(&want), "no {want}: {events:?}");
    }
    assert!(!kinds.contains(&"migrated"), "{events:?}");
    let row = |browser: &str| {
        run["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["browser"] == browser && r["model"] == "bert-tiny")
            .unwrap_or_else(|| panic!("no {browser} row: {}", run["results"]))
            .clone()
    };
    let firefox = row("firefox")["correctness"].clone();
    assert_eq!(firefox["placements_rejected"], 1, "{firefox}");
    assert_eq!(firefox["placements_verified"], 0, "{firefox}");
    assert_eq!(firefox["passed"], false, "{firefox}");
    let chromium = row("chromium");
    let c = &chromium["correctness"];
    assert_eq!(c["passed"], true, "{chromium}");
    assert_eq!(c["placements_rejected"], 0, "{c}");
    assert_eq!(c["placements_verified"], 1, "{c}");
    assert_eq!(c["wrong_answers"], 0, "{c}");
    // The one failed request is the rejected first answer; every answer served was checked.
    let mut csv = csv::Reader::from_path(sb.run_dir().join("samples.csv")).expect("samples.csv");
    let h = csv.headers().expect("header").clone();
    let col = |name: &str| h.iter().position(|x| x == name).expect(name);
    let (worker, phase, ok, error) = (col("worker"), col("phase"), col("ok"), col("error"));
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.expect("row")).collect();
    let failed: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| &r[ok] != "true")
        .map(|r| (&r[worker][..7], &r[phase], &r[error]))
        .collect();
    assert_eq!(failed, [("firefox", "first", "wrong_answer")], "{events:?}");
    let warm_served = rows
        .iter()
        .filter(|r| &r[ok] == "true" && &r[phase] != "first")
        .count() as u64;
    assert!(warm_served > 10, "{warm_served}");
    assert_eq!(c["answers_digest_checked"], warm_served, "{c}");
    sb.assert_clean();
}

#[test]
fn a_hung_worker_hands_over_to_its_standby_and_rejoins_without_a_launch() {
    let sb = Sandbox::new();
    // Two workers: one serves bert-tiny, the other holds its standby. The hang ends by itself
    // after 6 s, past the 2 s run bound: the hung worker must be kept (repaired aside), not
    // closed and replaced, and its DevTools connection, left unusable by the timed-out call,
    // taken up again rather than the page reopened.
    let yaml = "name: aside-test\n\
         pool: {browsers: [chromium], min_connections: 2, max_connections: 2, standbys: 1}\n\
         models: [{name: bert-tiny}]\n\
         workload: {mode: closed, concurrency: 2, duration: 16s, warmup: 1, request_timeout: 40s, \
         run_timeout: 2s}\n\
         recovery: {strategy: progressive, timeout: 30s, max_attempts: 4}\n\
         thresholds: {lost_requests: 0}\n\
         faults:\n  - {kind: hang, at: 3s, duration: 6s, target: {model: bert-tiny}}\n";
    let run = run_scenario(&sb, yaml);
    assert_accounted(&run);
    let events = run["pool_events"].as_array().expect("pool_events");
    assert_eq!(run["requests"]["failed"], 0, "{events:?}");
    let e = run["recovery_events"]
        .as_array()
        .and_then(|r| r.iter().find(|e| e["fault_kind"] == "hang"))
        .unwrap_or_else(|| panic!("no hang recovery: {events:?}"));
    assert_eq!(e["level"], "migrate", "{e}");
    assert!(e["steps"].to_string().contains("repaired aside"), "{e}");
    let hung = e["worker"].as_str().unwrap_or_default();
    let of = |kind: &'static str| events.iter().filter(move |v| v["kind"] == kind);
    let rejoined: Vec<_> = of("rejoined").filter(|v| v["worker"] == hung).collect();
    assert_eq!(rejoined.len(), 1, "{events:?}");
    // Taken up again once the hang ended, with its model still loaded: no reset, no reload.
    let detail = rejoined[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("standby of [bert-tiny]"), "{events:?}");
    assert!(detail.contains("the page answered again"), "{events:?}");
    // The two initial workers only: nothing was launched to replace the hung one.
    assert_eq!(of("launched").count(), 2, "{events:?}");
    assert_eq!(of("retired").count(), 0, "{events:?}");
    sb.assert_clean();
}

#[test]
fn a_hot_standby_takes_over_a_killed_browser_without_a_load() {
    let sb = Sandbox::new();
    let yaml = "name: standby-test\n\
         pool: {browsers: [chromium], min_connections: 1, max_connections: 3, standbys: 1}\n\
         models: [{name: bert-tiny}]\n\
         workload: {mode: closed, concurrency: 2, duration: 10s, warmup: 1, request_timeout: 40s}\n\
         recovery: {strategy: progressive, timeout: 30s, max_attempts: 4}\n\
         thresholds: {lost_requests: 0}\n\
         faults:\n  - {kind: kill_browser, at: 3s, target: {model: bert-tiny}}\n";
    let run = run_scenario(&sb, yaml);
    assert_accounted(&run);
    assert_eq!(run["requests"]["failed"], 0, "{}", run["pool_events"]);
    let events = run["recovery_events"].as_array().expect("recovery_events");
    let e = events
        .iter()
        .find(|e| e["fault_kind"] == "kill_browser")
        .unwrap_or_else(|| panic!("no recovery: {events:?}\n{}", run["pool_events"]));
    assert_eq!(e["succeeded"], true, "{e}");
    // Without standbys this is a rebuild (kill_browser_is_rebuilt): a launch and a load.
    assert_eq!(e["level"], "migrate", "{e}");
    let steps = e["steps"].to_string();
    assert!(steps.contains("hot standby promoted"), "{e}");
    let by = e["detected_by"].as_str().unwrap_or_default();
    assert!(
        ["crash", "process_exit", "session_lost"].contains(&by),
        "noticed as {by}: {e}"
    );
    // The promotion itself is in memory; service is back at the promoted copy's first answer,
    // which is what the run's time to recover counts.
    assert_eq!(e["models"], serde_json::json!(["bert-tiny"]), "{e}");
    let served = e["served_ms"].as_u64().unwrap_or(0);
    assert!(served > 0, "{e}");
    let detection = e["detection_ms"].as_u64().expect("detection_ms");
    // summary.md's time to recover for the one kill_browser is detection + served.
    let md = std::fs::read_to_string(sb.run_dir().join("summary.md")).expect("summary.md");
    let row: Vec<&str> = md
        .lines()
        .find(|l| l.starts_with("| kill_browser |"))
        .unwrap_or_else(|| panic!("no kill_browser row in summary.md:\n{md}"))
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(row[8], (detection + served).to_string(), "{row:?}\n{e}");
    sb.assert_clean();
}

#[test]
fn a_browser_killed_during_the_first_placement_is_recovered_and_the_model_still_runs() {
    let sb = Sandbox::new();
    // No scheduled fault: the test itself kills the browser as soon as the run says it is
    // placing bert-tiny, so the load or first run of the model's first placement fails.
    let file = sb.dir.path().join("scenario.yaml");
    std::fs::write(
        &file,
        "name: first-placement\n\
         pool: {browsers: [chromium], min_connections: 1, max_connections: 2, standbys: 0}\n\
         models: [{name: bert-tiny}]\n\
         workload: {mode: closed, concurrency: 2, duration: 6s, warmup: 1, request_timeout: 40s}\n\
         recovery: {strategy: progressive, timeout: 30s, max_attempts: 4}\n\
         thresholds: {lost_requests: 0}\n",
    )
    .expect("scenario written");
    let results = sb.results();
    let mut child = sb.spawn(&[
        "scenario".as_ref(),
        file.as_os_str(),
        "--results-dir".as_ref(),
        results.as_os_str(),
    ]);
    let pipe = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok);
    let mut err = String::new();
    let mut killed = Vec::new();
    for line in lines.by_ref() {
        err.push_str(&line);
        err.push('\n');
        if line.starts_with("placing bert-tiny") {
            // The browser's main process: it has the profile dir and no `--type=` (renderer,
            // GPU and utility processes carry one).
            for pid in sb.leftover_pids() {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.contains("--user-data-dir") && !cmd.contains("--type=") {
                    // SAFETY: kill(2) on a browser this test's run started; no memory touched.
                    unsafe {
                        libc::kill(pid as i32, libc::SIGKILL);
                    }
                    killed.push(pid);
                }
            }
            break;
        }
    }
    for line in lines {
        err.push_str(&line);
        err.push('\n');
    }
    let status = child.wait().expect("the run ends");
    assert!(!killed.is_empty(), "no browser found to kill:\n{err}");
    let run = sb.run_json();
    let events = &run["pool_events"];
    // Without the retry, bert-tiny is left out of the run: a result with an error, exit 1.
    assert!(
        status.success(),
        "{err}\nevents: {events}\nrecovery: {}",
        run["recovery_events"]
    );
    assert_accounted(&run);
    let result = &run["results"][0];
    assert_eq!(result["model"], "bert-tiny", "{result}");
    assert!(result["error"].is_null(), "{result}");
    assert!(
        events
            .as_array()
            .expect("pool_events")
            .iter()
            .any(|e| e["kind"] == "placement_retried"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("bert-tiny"))),
        "{events}"
    );
    assert!(
        run["requests"]["succeeded"].as_u64().unwrap_or(0) > 10,
        "{}",
        run["requests"]
    );
    sb.assert_clean();
}
