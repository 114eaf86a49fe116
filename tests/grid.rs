//! Selenium Grid: a real hub and two real nodes (`scripts/grid.sh`: Chromium with chromedriver,
//! Firefox with geckodriver, on loopback), remote workers mixed with local ones, the pages over
//! http and over HTTPS, remote faults, and a node lost mid-run.
//!
//! Each test starts its own Grid on its own ports and stops it on drop, even when an assertion
//! fails; `scripts/grid.sh stop` kills each node's whole process group.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_accounted, fault, stderr, Sandbox};
use serde_json::Value;

/// A running local Grid; stopped on drop.
struct Grid {
    port: u16,
    dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/grid.sh")
}

impl Grid {
    /// Starts a hub on `port` and its nodes on the ports after it, state in `sb`'s folder.
    fn start(sb: &Sandbox, port: u16) -> Self {
        let dir = sb.dir.path().join(format!("grid-{port}"));
        let out = Command::new(script())
            .args(["start", "--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .output()
            .expect("scripts/grid.sh runs");
        let grid = Self { port, dir };
        assert!(
            out.status.success(),
            "scripts/grid.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        grid
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs a node's whole process group (java, its driver, its browsers): a lost machine.
    fn kill_node(&self, which: &str) {
        let out = Command::new(script())
            .args([
                "kill-node",
                which,
                "--port",
                &self.port.to_string(),
                "--dir",
            ])
            .arg(&self.dir)
            .output()
            .expect("scripts/grid.sh runs");
        assert!(out.status.success(), "kill-node {which} failed: {out:?}");
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", "--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir)
            .output();
    }
}

/// Every result row passed its correctness check, which includes native onnxruntime (oracle).
fn assert_oracle_checked(run: &Value) {
    let rows = run["results"].as_array().expect("results");
    assert!(!rows.is_empty(), "no results");
    for r in rows {
        let c = &r["correctness"];
        assert_eq!(c["passed"], true, "{} on {}: {c}", r["model"], r["browser"]);
        assert!(
            c["check"].as_str().unwrap_or("").contains("oracle"),
            "not checked against native onnxruntime: {c}"
        );
    }
}

/// The browsers of the run, by kind: (node, cross-origin isolated).
fn browsers(run: &Value) -> Vec<(String, Option<String>, bool)> {
    run["environment"]["browsers"]
        .as_array()
        .expect("browsers")
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap_or("").to_owned(),
                b["node"].as_str().map(str::to_owned),
                b["cross_origin_isolated"] == true,
            )
        })
        .collect()
}

#[test]
fn bert_and_whisper_run_on_grid_nodes_beside_a_local_browser_over_http_and_https() {
    let sb = Sandbox::new();
    let grid = Grid::start(&sb, 4444);
    let url = grid.url();

    // Plain http on loopback (the default); chromium-shell is CDP-only, so it runs here.
    let a = sb.run(
        &[
            "--grid",
            &url,
            "--models",
            "bert,whisper",
            "--browsers",
            "chromium,firefox,chromium-shell",
            "-n",
            "2",
            "--warmup",
            "0",
            "--no-history",
        ],
        900,
    );
    let run = sb.run_json();
    assert!(a.get_output().status.success(), "{}", stderr(&a));
    assert_accounted(&run);
    assert_eq!(run["requests"]["failed"], 0, "{}", run["requests"]);
    assert_oracle_checked(&run);
    let origin = run["environment"]["page_origin"].as_str().unwrap_or("");
    assert!(origin.starts_with("http://127.0.0.1:"), "{origin}");
    let seen = browsers(&run);
    for (kind, node, isolated) in &seen {
        assert!(isolated, "{kind} is not cross-origin isolated");
        match kind.as_str() {
            "chromium" | "firefox" => assert!(
                node.as_deref()
                    .is_some_and(|n| n.starts_with("http://127.0.0.1:")),
                "{kind} did not run on a Grid node: {node:?}"
            ),
            _ => assert_eq!(node, &None, "{kind} ran here, not on a node"),
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The two remote browsers were served by the two different nodes, and say which.
    let nodes: Vec<&String> = seen.iter().filter_map(|(_, n, _)| n.as_ref()).collect();
    assert_eq!(nodes.len(), 2);
    assert_ne!(nodes[0], nodes[1]);
    for w in run["workers"].as_array().expect("workers") {
        let remote = w["browser"] != "chromium-shell";
        assert_eq!(w["node"].is_string(), remote, "{w}");
    }
    std::fs::remove_dir_all(sb.results()).expect("results cleared");

    // The same over HTTPS with the certificate made for the run.
    let a = sb.run(
        &[
            "--grid",
            &url,
            "--tls",
            "--serve-addr",
            "127.0.0.1:0",
            "--models",
            "bert,whisper",
            "--browsers",
            "chromium,firefox",
            "-n",
            "2",
            "--warmup",
            "0",
            "--no-history",
        ],
        900,
    );
    let run = sb.run_json();
    assert!(a.get_output().status.success(), "{}", stderr(&a));
    assert_accounted(&run);
    assert_oracle_checked(&run);
    let origin = run["environment"]["page_origin"].as_str().unwrap_or("");
    assert!(origin.starts_with("https://127.0.0.1:"), "{origin}");
    for (kind, node, isolated) in browsers(&run) {
        assert!(isolated, "{kind} over https is not cross-origin isolated");
        assert!(node.is_some(), "{kind} did not run on a node");
    }
    drop(grid);
    sb.assert_clean();
}

#[test]
fn a_node_lost_mid_run_loses_no_request() {
    let sb = Sandbox::new();
    let grid = Grid::start(&sb, 4454);
    let (url, results) = (grid.url(), sb.results());
    let mut child = sb.spawn(&[
        "stress".as_ref(),
        "--grid".as_ref(),
        url.as_ref(),
        "--models".as_ref(),
        "bert-tiny,vit-micro".as_ref(),
        "--browsers".as_ref(),
        "chromium,firefox".as_ref(),
        "--duration".as_ref(),
        "40s".as_ref(),
        "--no-history".as_ref(),
        "--results-dir".as_ref(),
        results.as_os_str(),
    ]);
    // The progress lines ("ok 57  failed 0 ...") say when every model is placed and served;
    // after 30 requests the Chromium node goes away with its driver and browsers.
    let stderr_pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in
            std::io::BufRead::lines(std::io::BufReader::new(stderr_pipe)).map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let started = Instant::now();
    let mut serving = false;
    while !serving && started.elapsed() < Duration::from_secs(180) {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        serving = line
            .strip_prefix("ok ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 30);
    }
    if serving {
        grid.kill_node("chromium");
    }
    let deadline = Instant::now() + Duration::from_secs(400);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = reader.join().unwrap_or_default();
    assert!(serving, "the run never started serving: {err}");
    let status = status.expect("the run ended within its bound");
    let run = sb.run_json();
    assert!(status.success(), "{err}");
    assert_accounted(&run);
    // Independently of run.json's counters: samples.csv has one row per request issued, each
    // either ok or failed with a class, and its failures are the ones run.json counts. A
    // request in flight on the node when it died may fail (its attempts can run out while the
    // ladder migrates); none may vanish.
    let mut csv = csv::Reader::from_path(sb.run_dir().join("samples.csv")).expect("samples.csv");
    let headers = csv.headers().expect("header").clone();
    let ok = headers.iter().position(|h| h == "ok").expect("ok column");
    let worker = headers.iter().position(|h| h == "worker").expect("worker");
    let error = headers.iter().position(|h| h == "error").expect("error");
    let (mut rows, mut failed, mut on_chromium) = (0u64, 0u64, 0u64);
    for row in csv.records() {
        let row = row.expect("row");
        match &row[ok] {
            "true" => assert!(row[error].is_empty(), "{row:?}"),
            _ => {
                assert!(!row[error].is_empty(), "a failure without a class: {row:?}");
                failed += 1;
            }
        }
        rows += 1;
        on_chromium += u64::from(row[worker].starts_with("chromium"));
    }
    assert_eq!(Some(rows), run["requests"]["issued"].as_u64());
    assert_eq!(Some(failed), run["requests"]["failed"].as_u64());
    assert!(
        on_chromium > 0,
        "the Chromium node served nothing before it was lost"
    );
    // The loss was seen on a Chromium worker and recovered from by moving its models.
    let events = run["recovery_events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["worker"]
            .as_str()
            .is_some_and(|w| w.starts_with("chromium"))
            && e["succeeded"] == true
            && e["level"] == "migrate"),
        "no migration away from the lost node: {events:?}"
    );
    drop(grid);
    sb.assert_clean();
}

#[test]
fn remote_faults_through_webdriver_are_recovered_and_pid_faults_are_skipped_with_the_reason() {
    let sb = Sandbox::new();
    let grid = Grid::start(&sb, 4464);
    // 45 s of workload: a fault due while no worker of its kind serves waits until one does (in
    // one CI run the crash_tab, due at 14 s, waited until 38 s of a 50 s run for the standby
    // promoted onto chromium#2), and a remote Chromium's crashed tab recovers only by a rebuild
    // (chromedriver answers every command in it with "tab crashed"), which at 30 s was cut by
    // the end of the workload. `hang_after: 1s`: with three Grid tests, a hub, two nodes and
    // their browsers on 2 cores, a remote Firefox page's beat once went 473 ms silent just as the
    // injector asked it to hang, so the 450 ms default took it for hung and the planned hang
    // failed; this test is about remote faults being recovered, not about detection latency.
    let yaml = format!(
        "name: remote-faults\n\
         pool: {{browsers: [chromium, firefox], grid: [\"{}\"], min_connections: 2, max_connections: 3, heartbeat_interval: 1s, heartbeat_timeout: 3s, hang_after: 1s}}\n\
         models: [{{name: bert-tiny, browser: chromium}}, {{name: whisper-micro, browser: firefox}}]\n\
         workload: {{mode: closed, concurrency: 2, duration: 45s, warmup: 1, request_timeout: 40s, run_timeout: 3s}}\n\
         recovery: {{strategy: progressive, timeout: 30s, max_attempts: 4}}\n\
         thresholds: {{lost_requests: 0}}\n\
         faults:\n\
         \x20 - {{kind: kill_browser, at: 10s, target: {{browser: firefox}}}}\n\
         \x20 - {{kind: disconnect, at: 6s, duration: 2s, target: {{browser: chromium}}}}\n\
         \x20 - {{kind: crash_tab, at: 14s, target: {{browser: chromium}}}}\n\
         \x20 - {{kind: hang, at: 20s, target: {{browser: firefox}}}}\n",
        grid.url()
    );
    let file = sb.dir.path().join("scenario.yaml");
    std::fs::write(&file, yaml).expect("scenario written");
    let a = sb
        .cmd(600)
        .arg("scenario")
        .arg(&file)
        .args(["--no-history", "--results-dir"])
        .arg(sb.results())
        .assert();
    let run = sb.run_json();
    assert!(a.get_output().status.success(), "{}", stderr(&a));
    assert_accounted(&run);
    assert_eq!(
        run["requests"]["failed"],
        0,
        "{}\nfailed: {}\nrecovery events: {}\nevents: {}\n{}",
        run["requests"],
        failed_rows(&sb),
        run["recovery_events"],
        run["pool_events"],
        stderr(&a)
    );
    let of = |kind: &str| fault(&run, kind);
    // A remote browser has no pid here: skipped, and the record says why.
    let kill = of("kill_browser");
    assert_eq!(kill["injected"], false, "{kill}");
    assert!(
        kill["detail"]
            .as_str()
            .unwrap_or("")
            .contains("browser pid"),
        "{kill}"
    );
    for kind in ["disconnect", "crash_tab", "hang"] {
        assert_eq!(
            of(kind)["injected"],
            true,
            "{}\nrecovery events: {}\npool events: {}",
            of(kind),
            run["recovery_events"],
            run["pool_events"]
        );
        let events = run["recovery_events"].as_array().expect("events");
        assert!(
            events
                .iter()
                .any(|e| e["fault_kind"] == kind && e["succeeded"] == true),
            "{kind} not recovered: {events:?}"
        );
    }
    assert!(of("crash_tab")["detail"]
        .as_str()
        .unwrap_or("")
        .contains("chrome://crash"));
    // Each model is pinned to the only worker of its kind: no standby can be loaded, and the
    // workload starts at once instead of waiting out the load timeout (300 s) for one.
    let events = run["pool_events"].as_array().expect("pool_events");
    for model in ["bert-tiny", "whisper-micro"] {
        assert!(
            events.iter().any(|e| e["kind"] == "standby_no_spare"
                && e["detail"].as_str().unwrap_or("").starts_with(model)),
            "no standby_no_spare for {model}: {events:?}"
        );
    }
    drop(grid);
    sb.assert_clean();
}

/// The failed rows of the run's `samples.csv`, one per line, for a failure message.
fn failed_rows(sb: &Sandbox) -> String {
    let Ok(mut csv) = csv::Reader::from_path(sb.run_dir().join("samples.csv")) else {
        return "no samples.csv".into();
    };
    let headers = csv.headers().cloned().unwrap_or_default();
    let ok = headers.iter().position(|h| h == "ok");
    csv.records()
        .flatten()
        .filter(|r| ok.is_some_and(|i| &r[i] != "true"))
        .map(|r| {
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| format!("{h}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
