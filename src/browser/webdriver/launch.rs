//! Launching a WebDriver browser: the driver server first (`driver_server.rs`), then the session
//! (which starts the browser) with its capabilities, then the worker page until it is ready.
//!
//! Inputs: a [`LaunchSpec`] with a driver executable. Output: a [`WebDriverBrowser`]; on failure
//! everything started so far is closed and the driver's last log lines join the error. Must not
//! import `report`, `cli` or terminal crates.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};
use thirtyfour::common::config::WebDriverConfig;
use thirtyfour::WebDriver;

use thirtyfour::error::WebDriverErrorInner;

use super::driver_server::{find_browser_child, start_driver};
use super::firefox::{self, start_firefox};
use super::relay::Relay;
use super::{Owned, WebDriverBrowser, POLL};
use crate::browser::discovery::version_of_async;
use crate::browser::grid::{self, HubUrl};
use crate::browser::{flags, page, Browser, BrowserKind, LaunchSpec, WorkerError};

/// Script timeout given to the driver. Each call is bounded by its own `timeout` with
/// `tokio::time::timeout`; this only keeps the driver from cutting a long call short.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// HTTP timeout of thirtyfour's client, for the same reason.
const HTTP_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The browser's full version as a user-agent token: Chromium's user agent says only
/// `Chrome/156.0.0.0`, so its full version comes from the user-agent client hints (the
/// returned promise is awaited by the driver).
const FULL_VERSION_SCRIPT: &str = "const d = navigator.userAgentData; \
    if (!d) { return navigator.userAgent; } \
    return d.getHighEntropyValues(['fullVersionList']).then((v) => { \
      const b = (v.fullVersionList || []).find((x) => /Chrom/.test(x.brand)); \
      return b ? 'Chrome/' + b.version : navigator.userAgent; });";
/// First wait before asking the Grid for a session again; it doubles up to the next.
const GRID_BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two session requests to the Grid.
const GRID_BACKOFF_MOST: Duration = Duration::from_secs(8);

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
            node: None,
            relay: None,
            grid_said: None,
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
            let log = this.log_tails();
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
        // Firefox is ours to start, so that a crashed tab does not take the browser down (see
        // `firefox.rs`); other browsers are started by their driver.
        let marionette = if spec.kind == BrowserKind::Firefox {
            self.stage = "starting Firefox";
            let (firefox, port) = start_firefox(&spec.executable, &dir)
                .await
                .map_err(|e| fail(e.to_string()))?;
            self.pid = firefox.id();
            self.lock_owned().browser = Some(firefox);
            self.stage = "starting the driver";
            Some(port)
        } else {
            None
        };
        let (child, port) = start_driver(spec.kind, driver_exe, &dir, marionette)
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
        if marionette.is_none() {
            self.pid = self
                .driver_pid
                .and_then(|d| find_browser_child(d, &spec.executable));
        }
        self.open_page(&session, spec).await
    }

    /// Opens `spec.page_url` in `session` and waits until the page reports ready.
    ///
    /// # Errors
    /// [`WorkerError::Launch`] naming the step that failed.
    async fn open_page(
        &mut self,
        session: &WebDriver,
        spec: &LaunchSpec,
    ) -> Result<(), WorkerError> {
        let fail = |message: String| WorkerError::Launch {
            browser: spec.kind,
            message,
        };
        self.stage = "loading the page";
        session
            .set_script_timeout(SCRIPT_TIMEOUT)
            .await
            .map_err(|e| fail(format!("cannot set the script timeout: {e}")))?;
        session.goto(spec.page_url.as_str()).await.map_err(|e| {
            fail(format!(
                "cannot open {}: {}",
                spec.page_url,
                super::first_line(&e)
            ))
        })?;
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

    /// Requests a session for `spec.kind` from the Selenium Grid hub `spec.grid`, through a
    /// relay of our own (see `relay.rs`), opens the worker page and waits until it is ready.
    /// A Grid that has no free slot, times the request out in its queue or fails to create the
    /// session is asked again with backoff (0.5 s doubling to 8 s) until `spec.launch_timeout`.
    ///
    /// # Errors
    /// [`WorkerError::Launch`] with the Grid's last answer when no session was ready in time;
    /// the session is ended first.
    pub async fn connect(spec: &LaunchSpec) -> Result<Self, WorkerError> {
        let fail = |message: String| WorkerError::Launch {
            browser: spec.kind,
            message,
        };
        let grid = spec
            .grid
            .clone()
            .ok_or_else(|| fail("no Grid URL in the launch spec".into()))?;
        let hub = HubUrl::parse(&grid).map_err(|e| fail(e.to_string()))?;
        let relay = Relay::start(hub.authority.clone())
            .await
            .map_err(|e| fail(format!("cannot open a relay to {grid}: {e}")))?;
        let via = format!("http://{}{}", relay.addr(), hub.prefix);
        let mut this = Self {
            kind: spec.kind,
            version: String::new(),
            pid: None,
            driver_pid: None,
            profile: PathBuf::new(),
            page_url: spec.page_url.clone(),
            owned: Mutex::new(Owned::default()),
            broken: Mutex::new(None),
            closed: AtomicBool::new(false),
            stage: "requesting a session from the Grid",
            node: None,
            relay: Some(relay),
            grid_said: None,
        };
        let started =
            tokio::time::timeout(spec.launch_timeout, this.start_remote(spec, &via, &grid))
                .await
                .unwrap_or_else(|_| {
                    Err(fail(format!(
                        "not ready within {:?} while {} ({grid}){}",
                        spec.launch_timeout,
                        this.stage,
                        this.grid_said
                            .take()
                            .map(|m| format!("; the Grid said: {m}"))
                            .unwrap_or_default()
                    )))
                });
        if let Err(e) = started {
            let _ = this.close().await;
            return Err(e);
        }
        Ok(this)
    }

    /// The remote launch steps; failures leave the session in `self.owned` for close().
    async fn start_remote(
        &mut self,
        spec: &LaunchSpec,
        via: &str,
        grid: &str,
    ) -> Result<(), WorkerError> {
        let fail = |message: String| WorkerError::Launch {
            browser: spec.kind,
            message,
        };
        let config = WebDriverConfig::builder()
            .reqwest_timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| fail(format!("WebDriver config: {e}")))?;
        let caps = remote_capabilities(spec);
        let mut backoff = GRID_BACKOFF_FIRST;
        let session = loop {
            match WebDriver::new_with_config(via, caps.clone(), config.clone()).await {
                Ok(s) => break s,
                Err(e) if matches!(e.as_inner(), WebDriverErrorInner::InvalidArgument(_)) => {
                    return Err(fail(format!(
                        "the Grid refused the capabilities: {}",
                        super::first_line(&e)
                    )));
                }
                Err(e) => {
                    self.grid_said = Some(super::first_line(&e));
                    self.stage = "waiting for the Grid to create a session (retrying)";
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(GRID_BACKOFF_MOST);
                }
            }
        };
        self.lock_owned().session = Some(session.clone());
        let id = session.session_id().to_string();
        self.open_page(&session, spec).await?;
        self.stage = "reading the browser version";
        let ua = session
            .execute(FULL_VERSION_SCRIPT, Vec::new())
            .await
            .map_err(|e| fail(format!("cannot read the user agent: {e}")))?;
        self.version = ua
            .json()
            .as_str()
            .and_then(|ua| grid::version_from_user_agent(spec.kind, ua))
            .unwrap_or_else(|| "unknown".to_owned());
        self.stage = "asking the hub which node holds the session";
        let grid = grid.to_owned();
        let status = tokio::task::spawn_blocking(move || grid::status(&grid)).await;
        // The node is for the report; a hub that does not say is no reason to fail.
        if let Ok(Ok(st)) = status {
            self.node = st.node_of(&id).map(str::to_owned);
            // The session's browserVersion is the build the browser reports (geckodriver:
            // `153.8.0`), where Firefox's user agent says only `153.0`: one build, one version,
            // on a node or on this machine (`--version`, `153.8.0esr`; the history drops
            // `esr`). The user agent stays the fallback for a hub that does not list it.
            if let Some(v) = st.version_of(&id) {
                self.version = v.to_owned();
            }
        }
        Ok(())
    }

    /// The last lines of the driver's log and of the browser's own (a Firefox we started), for
    /// launch errors: the directory holding them is gone once the launch has failed.
    fn log_tails(&self) -> String {
        [("driver", "driver.log"), ("browser", firefox::LOG)]
            .iter()
            .map(|(what, file)| {
                let text = std::fs::read_to_string(self.profile.join(file)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().rev().take(8).collect();
                if lines.is_empty() {
                    return String::new();
                }
                let tail: Vec<&str> = lines.into_iter().rev().collect();
                format!("\n  {what} log (last lines):\n    {}", tail.join("\n    "))
            })
            .collect()
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
        // Firefox is already running with its prefs in its profile (`firefox.rs`): geckodriver
        // attaches to it, and a binary, arguments or prefs here would be refused or ignored.
        BrowserKind::Firefox => json!({
            "browserName": "firefox",
            "acceptInsecureCerts": true,
        }),
        BrowserKind::Edge => json!({
            "browserName": "MicrosoftEdge",
            "ms:edgeOptions": { "binary": binary, "args": flags::chromium_args_with_profile(spec, &dir.join("profile")) },
        }),
        BrowserKind::Chromium | BrowserKind::ChromiumShell | BrowserKind::Chrome => json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": binary, "args": flags::chromium_args_with_profile(spec, &dir.join("profile")) },
        }),
    };
    match caps {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The capabilities of a remote session: as a local one's, without anything naming this
/// machine's paths (the node has its own binary and makes its own profile), and accepting the
/// asset server's self-signed certificate (`--tls`).
fn remote_capabilities(spec: &LaunchSpec) -> Map<String, Value> {
    let caps = match spec.kind {
        BrowserKind::Firefox => json!({
            "browserName": "firefox",
            "acceptInsecureCerts": true,
            "moz:firefoxOptions": {
                "args": ["-headless"],
                "prefs": Value::Object(flags::firefox_prefs()),
            },
        }),
        BrowserKind::Edge => json!({
            "browserName": "MicrosoftEdge",
            "acceptInsecureCerts": true,
            "ms:edgeOptions": { "args": flags::chromium_args(spec) },
        }),
        BrowserKind::Chromium | BrowserKind::ChromiumShell | BrowserKind::Chrome => json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "args": flags::chromium_args(spec) },
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
    fn firefox_capabilities_attach_to_the_firefox_we_started() {
        let spec = LaunchSpec {
            kind: BrowserKind::Firefox,
            driver: DriverKind::WebDriver,
            executable: "/usr/bin/firefox-esr".into(),
            driver_executable: Some("geckodriver".into()),
            page_url: "http://127.0.0.1:1/".into(),
            enable_webnn: false,
            launch_timeout: Duration::from_secs(1),
            grid: None,
        };
        let caps = Value::Object(capabilities(&spec, Path::new("/tmp/x")));
        assert_eq!(caps.pointer("/browserName"), Some(&json!("firefox")));
        assert!(caps.pointer("/moz:firefoxOptions").is_none(), "{caps}");
        // A Grid node starts its own Firefox: its capabilities carry the WebGPU prefs.
        let caps = Value::Object(remote_capabilities(&spec));
        assert_eq!(
            caps.pointer("/moz:firefoxOptions/prefs/dom.webgpu.enabled"),
            Some(&Value::Bool(true))
        );
    }
}
