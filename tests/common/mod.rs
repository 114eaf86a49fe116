//! Shared helpers for tests that drive the real binary and real browsers.
//!
//! Each test gets a [`Sandbox`]: its own `TMPDIR` and results folder. Every browser profile and
//! driver temp dir of the run lands under that `TMPDIR`, and every process the run starts
//! inherits it, so the sandbox can tell — and on drop, kill — exactly the processes its run
//! left, without touching anyone else's (tests run in parallel).
#![allow(dead_code)]

pub mod faults;

use std::path::PathBuf;
use std::time::Duration;

use assert_cmd::Command;

/// A test's private temp dir and results dir, with leak checks.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wgp-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("tmp dir");
        Self { dir }
    }

    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    pub fn results(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    /// The binary, with this sandbox's TMPDIR and a bound on how long it may run.
    pub fn cmd(&self, timeout_s: u64) -> Command {
        let mut c = Command::cargo_bin("webgpu-pool").expect("binary built");
        c.env("TMPDIR", self.tmp())
            .env("NO_COLOR", "1")
            .timeout(Duration::from_secs(timeout_s));
        c
    }

    /// The binary started with `args`, this sandbox's TMPDIR, stdout dropped and stderr piped,
    /// for a test that reads the run's progress as it comes (and acts on it).
    pub fn spawn(&self, args: &[&std::ffi::OsStr]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("webgpu-pool"))
            .env("TMPDIR", self.tmp())
            .env("NO_COLOR", "1")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("binary starts")
    }

    /// `run` with the results folder in the sandbox.
    pub fn run(&self, args: &[&str], timeout_s: u64) -> assert_cmd::assert::Assert {
        let mut c = self.cmd(timeout_s);
        c.arg("run")
            .args(args)
            .arg("--results-dir")
            .arg(self.results());
        c.assert()
    }

    /// The `run.json` of the only run in the sandbox.
    pub fn run_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.run_dir().join("run.json")).expect("run.json");
        serde_json::from_str(&text).expect("run.json is JSON")
    }

    /// The one run folder under [`Sandbox::results`] (which also holds the history file and
    /// any `baselines/`).
    pub fn run_dir(&self) -> PathBuf {
        let dirs: Vec<_> = std::fs::read_dir(self.results())
            .expect("results dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && !p.ends_with("baselines"))
            .collect();
        assert_eq!(dirs.len(), 1, "expected exactly one run folder: {dirs:?}");
        dirs[0].clone()
    }

    /// Pids of live processes started under this sandbox (by TMPDIR or a path in their command line).
    pub fn leftover_pids(&self) -> Vec<u32> {
        // The same sweep the drivers use on close (command line or environment names the dir).
        webgpu_pool::browser::process::mentioning(self.dir.path())
    }

    /// Asserts nothing of this run is left: no process, no profile or driver temp dir.
    pub fn assert_clean(&self) {
        let pids = self.leftover_pids();
        assert!(
            pids.is_empty(),
            "processes left running: {}",
            describe(&pids)
        );
        let left: Vec<_> = std::fs::read_dir(self.tmp())
            .expect("tmp")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "temp dirs left behind: {left:?}");
    }
}

impl Drop for Sandbox {
    /// Kills whatever the run left, even when an assertion failed (fantoccini's "close even if an
    /// assertion fails"): only processes that carry this sandbox's path.
    fn drop(&mut self) {
        for pid in self.leftover_pids() {
            // SAFETY: kill(2) with a pid we found under our own sandbox; no memory is touched.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
}

fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            format!("{p} {}", cmd.chars().take(120).collect::<String>())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first record of a `kind` fault in run.json's `faults`.
pub fn fault<'a>(run: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    let faults = run["faults"].as_array().expect("faults");
    faults
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {faults:?}"))
}

/// Every request ended succeeded or failed: no ticket was left open (`lost`, counted apart from
/// the outcomes, so `issued = succeeded + failed` follows and is not asserted again) or closed
/// twice.
pub fn assert_accounted(run: &serde_json::Value) {
    let q = &run["requests"];
    // Only a resumed run may have lost requests: those its dead harness took with it.
    assert_eq!(
        q["lost"].as_u64(),
        Some(q["lost_with_harness"].as_u64().unwrap_or(0)),
        "lost requests: {q}"
    );
    assert_eq!(q["closed_twice"], 0, "outcomes recorded twice: {q}");
}

/// `run` matches the checked-in run.json schema.
pub fn assert_valid(run: &serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/run.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(run)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "run.json does not match the schema: {errors:#?}"
    );
}

/// The stdout of an assertion, as text.
pub fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

/// The stderr of an assertion, as text.
pub fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}
