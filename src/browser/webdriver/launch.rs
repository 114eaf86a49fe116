//! Launching a WebDriver browser: the driver server first (`driver_server.rs`), then the session
//! (which starts the browser) with its capabilities, then the worker page until it is ready.
//!
//! Inputs: a [`LaunchSpec`] with a driver executable. Output: a [`WebDriverBrowser`]; on failure
//! everything started so far is closed and the driver's last log lines join the error. Must not
//! import `report`, `cli` or terminal crates.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};
use thirtyfour::common::config::WebDriverConfig;
use thirtyfour::WebDriver;

use super::driver_server::{find_browser_child, start_driver};
use super::{Owned, WebDriverBrowser, POLL};
use crate::browser::discovery::version_of_async;
use crate::browser::{flags, page, Browser, BrowserKind, LaunchSpec, WorkerError};

/// Script timeout given to the driver. Each call is bounded by its own `timeout` with
/// `tokio::time::timeout`; this only keeps the driver from cutting a long call short.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// HTTP timeout of thirtyfour's client, for the same reason.
const HTTP_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl WebDriverBrowser {
    /// Starts the driver server, creates a session (which starts the browser), opens
    /// `spec.page_url` and waits until the page reports ready.
    ///
    /// # Errors
    /// [`WorkerError::Launch`] when the driver or browser does not start or the page is not ready
    /// within `spec.launch_timeout`; everything started so far is killed and removed first.
    pub async fn launch(spec: &LaunchSpec) -> Result<Self, WorkerError> {
        let fail = |message: String| WorkerError::Launch {
            browser: spec.kind,
            message,
        };
        let driver_exe = spec.driver_executable.clone().ok_or_else(|| {
            fail("no driver executable in the launch spec (geckodriver/chromedriver)".into())
        })?;
        let temp = tempfile::Builder::new()
            .prefix(&format!("webgpu-pool-{}-wd-", spec.kind))
            .tempdir()
            .map_err(|e| fail(format!("cannot create a temporary directory: {e}")))?;
        let mut this = Self {
            kind: spec.kind,
            version: String::new(),
            pid: None,
            driver_pid: None,
            profile: temp.path().to_path_buf(),
            page_url: spec.page_url.clone(),
            owned: Mutex::new(Owned {
                temp: Some(temp),
                ..Owned::default()
            }),
            broken: Mutex::new(None),
            closed: AtomicBool::new(false),
            stage: "starting the driver",
        };
        // The version comes from `--version` (thirtyfour does not hand back the session's
        // capabilities), read while the driver starts; the child dies with its future.
        let (started, version) = tokio::join!(
            tokio::time::timeout(spec.launch_timeout, this.start(spec, &driver_exe)),
            version_of_async(&spec.executable, spec.launch_timeout),
        );
        let result = match started {
            Ok(r) => r,
            Err(_) => Err(fail(format!(
                "not ready within {:?} while {}",
                spec.launch_timeout, this.stage
            ))),
        };
        if let Err(e) = result {
            let log = this.driver_log_tail();
            let _ = this.close().await;
            return Err(with_log(e, &log));
        }
        this.version = version.unwrap_or_else(|| "unknown".to_owned());
        Ok(this)
    }

    /// The launch steps after the temporary directory exists; failures leave the parts already
    /// started in `self.owned` for close().
    ///
    /// # Errors
    /// [`WorkerError::Launch`] naming the step: the driver server, the session, the page.
    async fn start(&mut self, spec: &LaunchSpec, driver_exe: &Path) -> Result<(), WorkerError> {
        let fail = |message: String| WorkerError::Launch {
            browser: spec.kind,
            message,
        };
        let dir = self.profile.clone();
        let (child, port) = start_driver(spec.kind, driver_exe, &dir)
            .await
            .map_err(|e| fail(e.to_string()))?;
        self.driver_pid = child.id();
        self.lock_owned().driver = Some(child);
        self.stage = "creating the session (starting the browser)";

        let config = WebDriverConfig::builder()
            .reqwest_timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| fail(format!("WebDriver config: {e}")))?;
        let caps = capabilities(spec, &dir);
        let session = WebDriver::new_with_config(format!("http://127.0.0.1:{port}"), caps, config)
            .await
            .map_err(|e| fail(format!("the driver refused the session: {e}")))?;
        self.lock_owned().session = Some(session.clone());
        self.pid = self
            .driver_pid
            .and_then(|d| find_browser_child(d, &spec.executable));
        self.stage = "loading the page";

        session
            .set_script_timeout(SCRIPT_TIMEOUT)
            .await
            .map_err(|e| fail(format!("cannot set the script timeout: {e}")))?;
        session
            .goto(spec.page_url.as_str())
            .await
            .map_err(|e| fail(format!("cannot open {}: {e}", spec.page_url)))?;
        let script = format!("return {};", page::READY_EXPR);
        self.stage = "waiting for window.webgpuPool.ready";
        loop {
            if let Ok(ret) = session.execute(script.as_str(), Vec::new()).await {
                if ret.json() == &Value::Bool(true) {
                    return Ok(());
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The last lines of the driver's log, for launch errors.
    fn driver_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.profile.join("driver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(8).collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        format!("\n  driver log (last lines):\n    {}", tail.join("\n    "))
    }
}

/// `e` with the driver's last log lines appended to a launch message (they say why a driver
/// or browser did not start).
fn with_log(e: WorkerError, log: &str) -> WorkerError {
    match e {
        WorkerError::Launch { browser, message } => WorkerError::Launch {
            browser,
            message: format!("{message}{log}"),
        },
        other => other,
    }
}

/// The session capabilities for `spec`.
fn capabilities(spec: &LaunchSpec, dir: &Path) -> Map<String, Value> {
    let binary = spec.executable.display().to_string();
    let caps = match spec.kind {
        BrowserKind::Firefox => json!({
            "browserName": "firefox",
            "acceptInsecureCerts": true,
            "moz:firefoxOptions": {
                "binary": binary,
                "args": ["-headless"],
                "prefs": Value::Object(flags::firefox_prefs()),
            },
        }),
        BrowserKind::Edge => json!({
            "browserName": "MicrosoftEdge",
            "ms:edgeOptions": { "binary": binary, "args": flags::chromium_args_with_profile(spec, &dir.join("profile")) },
        }),
        BrowserKind::Chromium | BrowserKind::ChromiumShell | BrowserKind::Chrome => json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": binary, "args": flags::chromium_args_with_profile(spec, &dir.join("profile")) },
        }),
    };
    match caps {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::DriverKind;

    #[test]
    fn firefox_capabilities_carry_webgpu_prefs() {
        let spec = LaunchSpec {
            kind: BrowserKind::Firefox,
            driver: DriverKind::WebDriver,
            executable: "/usr/bin/firefox-esr".into(),
            driver_executable: Some("geckodriver".into()),
            page_url: "http://127.0.0.1:1/".into(),
            enable_webnn: false,
            launch_timeout: Duration::from_secs(1),
        };
        let caps = Value::Object(capabilities(&spec, Path::new("/tmp/x")));
        assert_eq!(
            caps.pointer("/moz:firefoxOptions/prefs/dom.webgpu.enabled"),
            Some(&Value::Bool(true))
        );
        assert_eq!(
            caps.pointer("/moz:firefoxOptions/args/0"),
            Some(&json!("-headless"))
        );
    }
}
