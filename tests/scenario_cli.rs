//! Scenarios through the binary: `validate` on the malformed corpus (exit 2, file:line:col,
//! no panic), the built-ins, `schema`, `--print-scenario` round trips, and thresholds that
//! break the run (exit 1).

mod common;

use std::path::{Path, PathBuf};

use common::{stderr, stdout, Sandbox};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenarios")
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_malformed_scenario_exits_2_with_file_line_col() {
    let bad = fixtures("bad");
    assert!(bad.len() >= 25, "corpus has {} files", bad.len());
    let sb = Sandbox::new();
    for f in bad {
        let text = std::fs::read_to_string(&f).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("# line: "))
            .map(str::trim)
            .unwrap_or("");
        let a = sb.cmd(30).arg("validate").arg(&f).assert().code(2);
        let err = stderr(&a);
        assert!(!err.contains("panicked"), "{}: {err}", f.display());
        let prefix = format!("{}:{line}:", f.display());
        assert!(
            err.starts_with(&prefix),
            "{}: expected '{prefix}...', got:\n{err}",
            f.display()
        );
    }
    sb.assert_clean();
}

#[test]
fn builtins_validate_and_print_round_trips() {
    let sb = Sandbox::new();
    let builtins: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
    assert!(builtins.len() >= 7);
    sb.cmd(30)
        .arg("validate")
        .args(&builtins)
        .assert()
        .success();

    // Flags compile into a scenario; printed, it validates and prints the same again.
    let a = sb
        .cmd(30)
        .args([
            "run",
            "--models",
            "bert,vit",
            "--concurrent-models",
            "--duration",
            "30s",
            "--print-scenario",
        ])
        .assert()
        .success();
    let yaml = stdout(&a);
    let file = sb.dir.path().join("printed.yaml");
    std::fs::write(&file, &yaml).unwrap();
    sb.cmd(30).arg("validate").arg(&file).assert().success();
    let again = sb
        .cmd(30)
        .arg("scenario")
        .arg(&file)
        .arg("--print-scenario")
        .assert()
        .success();
    assert_eq!(stdout(&again), yaml);

    let schema = stdout(&sb.cmd(30).arg("schema").assert().success());
    let v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert!(v["properties"]["workload"].is_object(), "{v}");
    sb.assert_clean();
}

#[test]
fn bad_flags_name_the_flag() {
    let sb = Sandbox::new();
    let a = sb
        .run(
            &[
                "--models",
                "bert-tiny",
                "--browsers",
                "chromium,firefox",
                "--concurrent-models",
                "--max-connections",
                "1",
            ],
            30,
        )
        .code(2);
    let err = stderr(&a);
    assert!(err.contains("--max-connections"), "{err}");
    sb.assert_clean();
}

#[test]
fn a_broken_threshold_exits_1_and_is_recorded() {
    let sb = Sandbox::new();
    let file = sb.dir.path().join("tight.yaml");
    std::fs::write(
        &file,
        "name: tight\npool: {browsers: [chromium], min_connections: 1, max_connections: 1}\n\
         models: [{name: vit-micro}]\nworkload: {iterations: 5, warmup: 0}\n\
         thresholds: {lost_requests: 0, p95_ms: {vit-micro: 0.001}}\n",
    )
    .unwrap();
    let a = sb
        .cmd(300)
        .arg("scenario")
        .arg(&file)
        .arg("--results-dir")
        .arg(sb.results())
        .assert()
        .code(1);
    assert!(
        stderr(&a).contains("threshold broken: p95_ms.vit-micro"),
        "{}",
        stderr(&a)
    );
    let run = sb.run_json();
    let t = run["thresholds"].as_array().unwrap();
    assert!(
        t.iter()
            .any(|t| t["name"] == "lost_requests" && t["passed"] == true),
        "{t:?}"
    );
    assert!(
        t.iter().any(
            |t| t["name"].as_str().unwrap().starts_with("p95_ms.vit-micro") && t["passed"] == false
        ),
        "{t:?}"
    );
    sb.assert_clean();
}

#[test]
fn model_pins_and_weights_are_honoured() {
    let sb = Sandbox::new();
    let file = sb.dir.path().join("pins.yaml");
    // vit-micro would go to chromium by preference; the pin sends it to firefox. bert-tiny has
    // three times vit-micro's share of the 40 requests (20 per model x 2 models).
    std::fs::write(
        &file,
        "name: pins\npool: {browsers: [chromium, firefox], min_connections: 2, max_connections: 2}\n\
         models: [{name: vit-micro, browser: firefox}, {name: bert-tiny, weight: 3}]\n\
         workload: {concurrency: 2, iterations: 20, warmup: 0}\n",
    )
    .unwrap();
    sb.cmd(300)
        .arg("scenario")
        .arg(&file)
        .arg("--results-dir")
        .arg(sb.results())
        .assert()
        .success();
    let run = sb.run_json();
    common::assert_accounted(&run);
    let row = |m: &str| {
        run["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == m)
            .cloned()
            .unwrap()
    };
    assert_eq!(row("vit-micro")["browser"], "firefox", "{}", run["routing"]);
    assert_eq!(row("vit-micro")["runs"], 10, "{}", row("vit-micro"));
    assert_eq!(row("bert-tiny")["runs"], 30, "{}", row("bert-tiny"));
    sb.assert_clean();
}
