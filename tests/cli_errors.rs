//! Bad input exits 2 with a message naming the flag and the bad value, and never panics.

mod common;

use common::{stderr, Sandbox};

fn assert_usage_error(args: &[&str], must_mention: &[&str]) {
    let sb = Sandbox::new();
    let a = sb.run(args, 60).code(2);
    let err = stderr(&a);
    assert!(!err.contains("panicked"), "panic: {err}");
    for m in must_mention {
        assert!(err.contains(m), "stderr should mention {m:?}:\n{err}");
    }
    sb.assert_clean();
}

#[test]
fn unknown_model_lists_the_catalog() {
    assert_usage_error(
        &["--models", "nosuch"],
        &[
            "--models",
            "nosuch",
            "bert-base-uncased",
            "vit-base-patch16-224",
            "whisper-tiny",
            "all-minilm-l6-v2",
        ],
    );
}

#[test]
fn missing_browser_names_the_package() {
    // Edge cannot be installed on this machine, so this is a real missing browser.
    assert_usage_error(
        &["--models", "bert-tiny", "--browsers", "edge"],
        &["--browsers", "edge", "microsoft-edge"],
    );
}

#[test]
fn unknown_browser_and_backend_are_named() {
    assert_usage_error(
        &["--models", "bert-tiny", "--browsers", "safari"],
        &["safari"],
    );
    assert_usage_error(
        &["--models", "bert-tiny", "--backends", "cuda"],
        &["cuda", "webgpu, webnn, wasm"],
    );
}

#[test]
fn durations_need_a_unit() {
    assert_usage_error(
        &["--models", "bert-tiny", "--load-timeout", "30"],
        &["--load-timeout", "30"],
    );
}

#[test]
fn zero_iterations_refused() {
    assert_usage_error(
        &["--models", "bert-tiny", "--iterations", "0"],
        &["--iterations", "0"],
    );
}

/// `run --models bert-tiny ARGS` with one environment variable set exits 2, without a panic,
/// and its stderr mentions each of `must_mention`.
fn run_exits_2_mentioning(
    sb: &Sandbox,
    (key, value): (&str, &std::path::Path),
    args: &[&str],
    must_mention: &[&str],
) {
    let a = sb
        .cmd(120)
        .env(key, value)
        .args(["run", "--models", "bert-tiny"])
        .args(args)
        .arg("--results-dir")
        .arg(sb.results())
        .assert()
        .code(2);
    let err = stderr(&a);
    assert!(!err.contains("panicked"), "panic: {err}");
    for m in must_mention {
        assert!(err.contains(m), "stderr should mention {m:?}:\n{err}");
    }
}

#[test]
fn a_missing_native_onnxruntime_names_the_setup_step() {
    // The oracle is not optional: without the library the run stops before any browser starts,
    // and says how to get it.
    let sb = Sandbox::new();
    let missing = sb.dir.path().join("no-such/libonnxruntime.so.1");
    run_exits_2_mentioning(
        &sb,
        ("WEBGPU_POOL_ORT_LIB", &missing),
        &["--browsers", "chromium"],
        &["native onnxruntime", "scripts/setup.sh", "no-such"],
    );
    sb.assert_clean();
}

#[test]
fn a_missing_chromium_shell_names_the_setup_step() {
    // A cache without it (here: an empty one) is a machine where setup.sh never ran.
    let sb = Sandbox::new();
    let empty = sb.dir.path().join("empty-cache");
    std::fs::create_dir_all(&empty).expect("cache dir");
    run_exits_2_mentioning(
        &sb,
        ("WEBGPU_POOL_CACHE", &empty),
        &["--browsers", "chromium-shell"],
        &["--browsers", "chromium-shell", "scripts/setup.sh"],
    );
    let listed = sb
        .cmd(120)
        .env("WEBGPU_POOL_CACHE", &empty)
        .arg("browsers")
        .assert();
    let out = format!("{}{}", common::stdout(&listed), stderr(&listed));
    assert!(
        out.contains("chromium-shell") && out.contains("scripts/setup.sh"),
        "{out}"
    );
    sb.assert_clean();
}

#[test]
fn grid_and_serve_addr_errors_name_the_flag_and_the_value() {
    // Nothing listens on port 9 of loopback (discard, never run here).
    assert_usage_error(
        &["--models", "bert-tiny", "--grid", "http://127.0.0.1:9"],
        &["--grid", "http://127.0.0.1:9", "cannot reach"],
    );
    assert_usage_error(
        &["--models", "bert-tiny", "--grid", "127.0.0.1:4444"],
        &["--grid", "127.0.0.1:4444", "http://"],
    );
    assert_usage_error(
        &["--models", "bert-tiny", "--serve-addr", "10.1.2.3:0"],
        &["--serve-addr", "10.1.2.3:0", "--tls"],
    );
    assert_usage_error(
        &[
            "--models",
            "bert-tiny",
            "--serve-addr",
            "0.0.0.0:0",
            "--tls",
        ],
        &["--serve-addr", "0.0.0.0:0"],
    );
}

#[test]
fn an_unknown_timing_or_load_context_is_named() {
    // See: issue 25 (item 5): the gate's metric is a flag, and a bad name is a usage error.
    let sb = Sandbox::new();
    for (args, flag, value) in [
        (
            &["compare", "a", "b", "--timing", "wall"][..],
            "--timing",
            "wall",
        ),
        (
            &["history", "--timing", "session"][..],
            "--timing",
            "session",
        ),
        (&["history", "--load", "heavy"][..], "--load", "heavy"),
        (&["recommend", "--load", "heavy"][..], "--load", "heavy"),
    ] {
        let a = sb.cmd(30).args(args).assert().code(2);
        let err = stderr(&a);
        assert!(!err.contains("panicked"), "panic: {err}");
        assert!(
            err.contains(flag) && err.contains(&format!("'{value}'")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("page-run") || err.contains("isolated"),
            "{err}"
        );
    }
    sb.assert_clean();
}
