//! `webgpu-pool run` end to end in real Chromium and Firefox: real onnxruntime-web sessions,
//! backend fallback, correctness checks, and nothing left running afterwards.

mod common;

use common::{assert_accounted, stdout, Sandbox};
use serde_json::Value;

/// A float32 `.npy` file's shape and values, read without the harness's code.
fn read_npy_f32(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

fn rows(run: &Value) -> &Vec<Value> {
    run["results"].as_array().expect("results array")
}

/// Without `--browsers`, `run` uses every browser kind installed: here chromium-shell's WebNN
/// beside Chromium's and Firefox's wasm, each cell with the cores it used.
#[test]
fn tiny_models_run_in_every_installed_browser() {
    let sb = Sandbox::new();
    let a = sb.run(
        &[
            "--models",
            "bert-tiny,vit-micro,whisper-micro",
            "-n",
            "3",
            "--warmup",
            "1",
            "--save-outputs",
        ],
        600,
    );
    let a = a.success();
    let table = stdout(&a);
    let run = sb.run_json();
    assert_eq!(run["schema_version"], 1);
    assert_accounted(&run);
    assert_eq!(
        rows(&run).len(),
        9,
        "3 models x 3 browsers (chromium, chromium-shell, firefox): {}",
        run["results"]
    );
    // Every kind is either in the run or named as not installed, with its setup step.
    let env = &run["environment"];
    let none = Vec::new();
    let mut kinds: Vec<&str> = env["browsers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(env["not_installed"].as_array().unwrap_or(&none))
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["chrome", "chromium", "chromium-shell", "edge", "firefox"],
        "{env}"
    );
    for r in rows(&run) {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["runs"], 3, "{r}");
        assert_eq!(r["weights"], "seeded");
        // Default priority, software adapter not counted as WebGPU; WebNN works in
        // chromium-shell only.
        let webnn = r["browser"] == "chromium-shell";
        assert_eq!(r["backend"], if webnn { "webnn" } else { "wasm" }, "{r}");
        let why = r["backend_fallback_reason"].as_str().unwrap_or_default();
        assert!(
            why.contains("webgpu") && (webnn || why.contains("webnn")),
            "fallback reason: {why}"
        );
        // Every placement was judged against native before it served, and every warm answer
        // (1 warm-up + 3 measured) was digest-checked against that verified first answer.
        let c = &r["correctness"];
        assert_eq!(c["placements_verified"], 1, "{r}");
        assert_eq!(c["placements_rejected"], 0, "{r}");
        assert_eq!(c["answers_digest_checked"], 4, "{r}");
        if webnn {
            // WebNN did the work, as the WebNN API saw it: the graph built, every run
            // dispatched; and onnxruntime's log says it took every node of these graphs.
            let w = &r["webnn"];
            let g = &w["graph"];
            assert!(g["graphs_built"].as_u64().unwrap_or(0) >= 1, "{w}");
            assert!(g["supported"].as_u64().unwrap_or(0) > 0, "{w}");
            assert_eq!(g["supported"], g["nodes"], "{w}");
            assert_eq!(w["runs"], 4, "{w}");
            assert_eq!(w["runs_dispatched"], 4, "{w}");
            assert!(w["failure"].is_null(), "{w}");
        }
        // The browser's processes did the work: a sampler reading the wrong processes, or
        // none, reads 0; more than the machine's cores cannot be one cell's.
        let cores = r["cores_used"].as_f64().expect("cores_used");
        let cpus = env["cpus"].as_f64().unwrap();
        assert!(cores > 0.05 && cores <= cpus + 0.5, "{r}");
        assert!(r["correctness"]["passed"].as_bool().unwrap(), "{r}");
        assert!(
            r["correctness"]["check"]
                .as_str()
                .unwrap()
                .contains("cross"),
            "{r}"
        );
        assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert!(r["load_ms"].as_f64().unwrap() > 0.0);
        // The page loaded the graph native onnxruntime optimized once, and on wasm did not
        // optimize it again; its answers still matched native's on the model's own graph
        // (checked above), so the saved graph computes the same function.
        let page = if webnn { "all" } else { "disabled" };
        assert_eq!(
            r["graph_optimization"],
            format!("native basic, page {page}"),
            "{r}"
        );
        // Checked over every value against native onnxruntime, which computes with its own
        // kernels: the difference is measured (not a copy compared with itself) and small.
        let c = &r["correctness"];
        assert_eq!(c["check"], "finite+transfer+oracle+cross", "{r}");
        let d = c["oracle_max_abs_diff"].as_f64().expect("oracle diff");
        assert!(d < 1e-3, "{r}");
        let n = &r["native"];
        let one = n["p50_ms_1_thread"].as_f64().expect("native p50");
        let x = n["x_native"].as_f64().expect("x native");
        assert!(
            one > 0.0 && n["p50_ms_all_threads"].as_f64().unwrap() > 0.0,
            "{n}"
        );
        // x native is the cell's warm p50 over native's p50 at the thread count it names, not
        // the other way round. (No bound on its size: both sides are timings on a shared
        // machine, and a slow native round once put a Firefox wasm cell at 0.79x.)
        let threads = n["x_native_threads"].as_u64().expect("x_native_threads");
        let at = if threads == 1 {
            one
        } else {
            n["p50_ms_all_threads"].as_f64().unwrap()
        };
        let p50 = r["latency_ms"]["p50"].as_f64().unwrap();
        assert!(x > 0.0 && (x - p50 / at).abs() <= 1e-9 * x, "{r}");
        // The saved output is the cell's, and matches the saved native output.
        let outputs = sb.run_dir().join("outputs");
        let model = r["model"].as_str().unwrap();
        let name = format!(
            "{model}.{}.{}.npy",
            r["browser"].as_str().unwrap(),
            r["backend"].as_str().unwrap()
        );
        let (shape, got) = read_npy_f32(&outputs.join(name));
        let (native_shape, want) = read_npy_f32(&outputs.join(format!("{model}.native.npy")));
        assert_eq!(shape, native_shape, "{model}");
        assert!(!got.is_empty() && got.len() == want.len(), "{model}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-3 + 1e-3 * w.abs(),
                "{model}: {g} vs {w}"
            );
        }
    }
    // Two wasm cells run the same onnxruntime-web code, so cross is exactly 0; native
    // onnxruntime's kernels differ, so the oracle sees a difference somewhere (measured 6e-7 to
    // 2e-5). All zeros would mean the oracle compared a browser output with itself.
    assert!(
        rows(&run)
            .iter()
            .any(|r| r["correctness"]["oracle_max_abs_diff"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0),
        "{}",
        run["results"]
    );
    assert!(
        table.contains("x native") && table.contains("cores") && table.contains("x @"),
        "{table}"
    );
    let browsers = run["environment"]["browsers"].as_array().unwrap();
    assert_eq!(browsers.len(), 3);
    for b in browsers {
        assert_eq!(b["cross_origin_isolated"], true, "{b}");
        assert!(!b["version"].as_str().unwrap().is_empty());
    }
    assert!(
        table.contains("bert-tiny")
            && table.contains("firefox")
            && table.contains("chromium-shell")
            && table.contains("webnn"),
        "{table}"
    );
    sb.assert_clean();
}

/// A graph with an operator the WebNN EP does not take (`LogSoftmax`): onnxruntime runs that
/// node on wasm and the rest on WebNN, and the row shows the partial count, from the log and
/// from the WebNN API (graphs built, every run dispatching).
#[test]
fn a_graph_webnn_takes_only_part_of_shows_its_partial_coverage() {
    let sb = Sandbox::new();
    let a = sb
        .run(
            &[
                "--models",
                "vit-micro-logprobs",
                "--browsers",
                "chromium-shell",
                "-n",
                "3",
                "--warmup",
                "1",
            ],
            300,
        )
        .success();
    let table = stdout(&a);
    let run = sb.run_json();
    let r = &rows(&run)[0];
    assert_eq!(r["backend"], "webnn", "{r}");
    let w = &r["webnn"];
    let g = &w["graph"];
    let (took, of) = (
        g["supported"].as_u64().expect("supported"),
        g["nodes"].as_u64().expect("nodes"),
    );
    assert!(
        took > 0 && took < of,
        "WebNN should take all but LogSoftmax: {w}"
    );
    assert!(g["graphs_built"].as_u64().unwrap_or(0) >= 1, "{w}");
    assert_eq!(w["runs_dispatched"], w["runs"], "{w}");
    assert!(w["failure"].is_null(), "{w}");
    assert_eq!(r["correctness"]["passed"], true, "{r}");
    assert!(
        table.contains(&format!("webnn (cpu) {took}/{of}")),
        "{table}"
    );
    sb.assert_clean();
}

#[test]
fn minilm_golden_check_passes_in_both_browsers_on_wasm() {
    let sb = Sandbox::new();
    sb.run(
        &[
            "--models",
            "all-minilm-l6-v2",
            "--browsers",
            "chromium,firefox",
            "--backends",
            "wasm",
            "-n",
            "2",
            "--warmup",
            "0",
        ],
        600,
    )
    .success();
    let run = sb.run_json();
    assert_accounted(&run);
    assert_eq!(rows(&run).len(), 2);
    for r in rows(&run) {
        assert_eq!(r["weights"], "real", "{r}");
        assert_eq!(r["backend"], "wasm");
        let c = &r["correctness"];
        assert!(c["check"].as_str().unwrap().contains("golden"), "{c}");
        assert!(c["passed"].as_bool().unwrap(), "{c}");
        assert!(c["max_abs_diff"].as_f64().unwrap() < 1e-4, "{c}");
    }
    sb.assert_clean();
}

#[test]
fn naming_webgpu_runs_on_the_software_adapter_in_both_browsers() {
    let sb = Sandbox::new();
    sb.run(
        &[
            "--models",
            "bert-tiny",
            "--browsers",
            "chromium,firefox",
            "--backends",
            "webgpu",
            "-n",
            "2",
            "--warmup",
            "0",
        ],
        600,
    )
    .success();
    let run = sb.run_json();
    assert_accounted(&run);
    for r in rows(&run) {
        assert_eq!(r["backend"], "webgpu", "{r}");
        assert!(r["correctness"]["passed"].as_bool().unwrap(), "{r}");
    }
    for b in run["environment"]["browsers"].as_array().unwrap() {
        assert_eq!(b["webgpu"]["available"], true, "{b}");
        assert_eq!(b["webgpu"]["adapter"]["fallback"], true, "{b}");
    }
    sb.assert_clean();
}

#[test]
fn webnn_falls_back_to_wasm_and_records_why() {
    let sb = Sandbox::new();
    sb.run(
        &[
            "--models",
            "bert-tiny",
            "--browsers",
            "chromium",
            "--backends",
            "webnn,wasm",
            "-n",
            "1",
            "--warmup",
            "0",
        ],
        300,
    )
    .success();
    let run = sb.run_json();
    let r = &rows(&run)[0];
    assert_eq!(r["backend"], "wasm", "{r}");
    let why = r["backend_fallback_reason"]
        .as_str()
        .expect("fallback reason");
    assert!(
        why.starts_with("webnn:") && why.len() > "webnn: ".len(),
        "{why}"
    );
    let webnn = &run["environment"]["browsers"][0]["webnn"];
    assert_eq!(webnn["available"], false, "{webnn}");
    assert!(
        !webnn["reason"].as_str().unwrap_or_default().is_empty(),
        "{webnn}"
    );
    sb.assert_clean();
}

#[test]
fn chromium_through_chromedriver() {
    let sb = Sandbox::new();
    sb.run(
        &[
            "--models",
            "vit-micro",
            "--browsers",
            "chromium",
            "--driver",
            "webdriver",
            "-n",
            "2",
            "--warmup",
            "0",
        ],
        300,
    )
    .success();
    let run = sb.run_json();
    assert_eq!(run["environment"]["browsers"][0]["driver"], "webdriver");
    assert_eq!(rows(&run)[0]["runs"], 2);
    sb.assert_clean();
}
