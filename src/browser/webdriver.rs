//! The WebDriver driver: Firefox through geckodriver, Chromium/Chrome through chromedriver and
//! Edge through msedgedriver, using `thirtyfour`.
//!
//! Inputs: a [`LaunchSpec`](super::LaunchSpec) with `driver: WebDriver` and a driver
//! executable. Output: a [`WebDriverBrowser`] whose page answers `window.webgpuPool.call`. The
//! driver server is our own child process (`kill_on_drop`), on a free port, with its own
//! temporary directory that also holds the browser profile (see `webdriver/driver_server.rs`),
//! so close() removes everything it created. Must not import `report`, `cli` or terminal crates.
//!
//! Files: this one holds the handle and the [`Browser`] impl; `webdriver/launch.rs` launching
//! and the session's capabilities, `webdriver/driver_server.rs` the driver process,
//! `webdriver/classify.rs` what a failed call means.
//!
//! Error classification lives in one function, `classify::classify`: thirtyfour's error
//! variants plus the liveness of the browser and driver pids decide "crashed"; the only message
//! inspection (chromedriver reports a dead tab as a generic "unknown error") is confined there.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use thirtyfour::WebDriver;
use tokio::process::Child;

use self::classify::first_line;
use self::classify::{classify, exited, watch_until_dead};
use super::process::{self, Signal};
use super::{page, Browser, BrowserKind, DriverKind, WorkerError};

mod classify;
mod driver_server;
mod firefox;
mod launch;
mod relay;

/// How often the launcher polls the driver's `/status` and the page's ready flag.
const POLL: Duration = Duration::from_millis(50);
/// Bound on `DELETE /session` during close.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a remote `crash_tab`'s navigation to the crash URL.
const CRASH_NAVIGATION: Duration = Duration::from_secs(10);
/// Bound on the driver's exit after SIGKILL, and on the browser tree's.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything close() must tear down, taken out exactly once.
#[derive(Debug, Default)]
struct Owned {
    session: Option<WebDriver>,
    driver: Option<Child>,
    /// The browser, where we started it ourselves (local Firefox); else the driver did.
    browser: Option<Child>,
    temp: Option<tempfile::TempDir>,
}

/// A browser driven over W3C WebDriver, with the worker page open.
#[derive(Debug)]
pub struct WebDriverBrowser {
    kind: BrowserKind,
    version: String,
    pid: Option<u32>,
    driver_pid: Option<u32>,
    profile: PathBuf,
    /// The worker page's URL (for resets).
    page_url: String,
    owned: Mutex<Owned>,
    /// Why later calls are refused (set after a crash or a timeout).
    broken: Mutex<Option<WorkerError>>,
    closed: AtomicBool,
    /// The launch step in progress, for the launch-timeout message.
    stage: &'static str,
    /// A remote session: the Grid node that holds it.
    node: Option<String>,
    /// A remote session: the relay its commands go through (`disconnect` cuts it).
    relay: Option<relay::Relay>,
    /// A remote launch: the Grid's last refusal, for the launch-timeout message.
    grid_said: Option<String>,
}

impl WebDriverBrowser {
    fn lock_owned(&self) -> std::sync::MutexGuard<'_, Owned> {
        // A poisoned lock only means a panic elsewhere; the data is still the handles to clean.
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session(&self) -> Option<WebDriver> {
        self.lock_owned().session.clone()
    }

    fn set_broken(&self, e: &WorkerError) {
        let reason = match e {
            WorkerError::Crashed { method, message } => WorkerError::Crashed {
                method: method.clone(),
                message: message.clone(),
            },
            other => WorkerError::Unusable {
                method: String::new(),
                reason: other.to_string(),
            },
        };
        if let Ok(mut g) = self.broken.lock() {
            g.get_or_insert(reason);
        }
    }

    /// `crash_tab` on a remote session: there is no renderer pid here to kill, so the page is
    /// navigated to the browser's own crash URL (Chromium `chrome://crash`, Firefox
    /// `about:crashcontent`), which kills the tab's renderer on the node.
    async fn crash_remote_tab(&self) -> Result<String, WorkerError> {
        let url = match self.kind {
            BrowserKind::Firefox => "about:crashcontent",
            _ => "chrome://crash",
        };
        let Some(session) = self.session() else {
            return Err(WorkerError::Driver {
                method: "crash_tab".into(),
                message: "no session".into(),
            });
        };
        // The driver serves one command of a session at a time, so the navigation waits for a
        // run in flight; it never completes normally (the renderer dies under it).
        let answer = tokio::time::timeout(CRASH_NAVIGATION, session.goto(url)).await;
        let how = match answer {
            Ok(Ok(())) => "it loaded".to_owned(),
            Ok(Err(e)) => format!("the driver answered: {}", first_line(&e)),
            Err(_) => format!("no answer within {CRASH_NAVIGATION:?}"),
        };
        Ok(format!(
            "navigated the page to {url} through the Grid ({how})"
        ))
    }

    /// The refusal for `method` when the session is closed or broken.
    fn refusal(&self, method: &str) -> Option<WorkerError> {
        if self.closed.load(Ordering::SeqCst) {
            return Some(WorkerError::Unusable {
                method: method.to_owned(),
                reason: "the session was closed".into(),
            });
        }
        let g = self.broken.lock().ok()?;
        match g.as_ref()? {
            WorkerError::Crashed { message, .. } => Some(WorkerError::Crashed {
                method: method.to_owned(),
                message: message.clone(),
            }),
            WorkerError::Unusable { reason, .. } => Some(WorkerError::Unusable {
                method: method.to_owned(),
                reason: reason.clone(),
            }),
            _ => None,
        }
    }
}

#[async_trait]
impl Browser for WebDriverBrowser {
    fn kind(&self) -> BrowserKind {
        self.kind
    }

    fn driver(&self) -> DriverKind {
        DriverKind::WebDriver
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn driver_pid(&self) -> Option<u32> {
        self.driver_pid
    }

    fn profile_dir(&self) -> Option<&Path> {
        // A remote session's profile is on its node; the local directory holds only logs.
        self.relay.is_none().then_some(self.profile.as_path())
    }

    fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    async fn call(
        &self,
        method: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, WorkerError> {
        if let Some(e) = self.refusal(method) {
            return Err(e);
        }
        let Some(session) = self.session() else {
            return Err(WorkerError::Unusable {
                method: method.to_owned(),
                reason: "no session".into(),
            });
        };
        let args_json = serde_json::to_string(&args).map_err(|e| WorkerError::Driver {
            method: method.to_owned(),
            message: format!("cannot encode arguments: {e}"),
        })?;
        let script = page::webdriver_call_script();
        let params = vec![Value::String(method.to_owned()), Value::String(args_json)];
        // The driver reports a dead browser only when its own connection to it fails (about
        // 400 ms for geckodriver); watching the pids answers within one poll interval.
        let exchange = async {
            tokio::select! {
                r = session.execute_async(script.as_str(), params) => Some(r),
                () = watch_until_dead(self.pid, self.driver_pid) => None,
            }
        };
        let err = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => WorkerError::Timeout {
                method: method.to_owned(),
                after: timeout,
            },
            Ok(None) => WorkerError::Crashed {
                method: method.to_owned(),
                message: format!(
                    "{} during the call",
                    exited(self.pid, self.driver_pid)
                        .unwrap_or_else(|| "the browser or its driver exited".into())
                ),
            },
            Ok(Some(Ok(ret))) => {
                return match ret.json() {
                    Value::String(raw) => page::parse_envelope(method, raw),
                    // The page always answers a string. Marionette answers null for a script
                    // whose page went away under it: the tab's content process died (measured,
                    // Firefox 153, a SIGKILL mid-call); the next call meets the crash page.
                    Value::Null => Err(WorkerError::TabCrashed {
                        method: method.to_owned(),
                        message: "the page went away during the call (the script answered \
                                  null): its content process is gone"
                            .into(),
                    }),
                    other => Err(WorkerError::Driver {
                        method: method.to_owned(),
                        message: format!(
                            "script returned {} instead of a string",
                            page::truncate(&other.to_string(), 200)
                        ),
                    }),
                };
            }
            Ok(Some(Err(_))) if self.relay.as_ref().is_some_and(relay::Relay::is_cut) => {
                WorkerError::Disconnected {
                    method: method.to_owned(),
                    message: "the connection to the Grid was cut".into(),
                }
            }
            Ok(Some(Err(e))) => classify(
                method,
                timeout,
                &e,
                self.pid.is_none_or(process::pid_alive),
                self.driver_pid.is_none_or(process::pid_alive),
            ),
        };
        if err.is_browser_crash() || err.is_timeout() {
            self.set_broken(&err);
        }
        Err(err)
    }

    async fn reset(&self, timeout: Duration) -> Result<(), WorkerError> {
        let method = "reset";
        let gone = |message: String| WorkerError::Crashed {
            method: method.into(),
            message,
        };
        if self.closed.load(Ordering::SeqCst) {
            return Err(gone("the session was closed".into()));
        }
        if let Some(why) = exited(self.pid, self.driver_pid) {
            return Err(gone(why));
        }
        let Some(session) = self.session() else {
            return Err(gone("no session".into()));
        };
        let reload = async {
            if let Err(first) = session.goto(self.page_url.as_str()).await {
                // A crashed content process may discard the tab's browsing context: carry on
                // in another window of the session. A local Firefox keeps the window (its
                // tab-crashed page) and the first navigation works. A Firefox that geckodriver
                // started (a Grid node's) shuts down on a content crash; chromedriver keeps the
                // crashed tab as the only window and answers every command, a new window and
                // its CDP passthrough included, with "tab crashed" (measured through the Grid).
                // There the reset fails and the ladder moves on: only a new session (a
                // rebuild) recovers such a worker.
                let handles = session.windows().await.unwrap_or_default();
                let mut opened = false;
                for h in handles {
                    if session.switch_to_window(h).await.is_ok()
                        && session.goto(self.page_url.as_str()).await.is_ok()
                    {
                        opened = true;
                        break;
                    }
                }
                if !opened {
                    return Err(WorkerError::Driver {
                        method: method.into(),
                        message: format!("cannot open {}: {}", self.page_url, first_line(&first)),
                    });
                }
            }
            let script = format!("return {};", page::READY_EXPR);
            loop {
                if let Ok(ret) = session.execute(script.as_str(), Vec::new()).await {
                    if ret.json() == &Value::Bool(true) {
                        return Ok::<(), WorkerError>(());
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, reload) => r,
            () = watch_until_dead(self.pid, self.driver_pid) => {
                return Err(gone("the browser or its driver exited during the reset".into()));
            }
        };
        match outcome {
            Ok(Ok(())) => {
                if let Ok(mut b) = self.broken.lock() {
                    *b = None;
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(WorkerError::Timeout {
                method: method.into(),
                after: timeout,
            }),
        }
    }

    async fn reconnect(&self) -> Result<bool, WorkerError> {
        // A timed-out call leaves the session marked unusable, but the driver still holds it:
        // once the page (or a frozen driver) is free again, the same session answers.
        let mut broken = self.broken.lock().map_err(|e| WorkerError::Driver {
            method: "reconnect".into(),
            message: e.to_string(),
        })?;
        let resumable = matches!(*broken, Some(WorkerError::Unusable { .. }));
        let alive = self.pid.is_none_or(process::pid_alive)
            && self.driver_pid.is_none_or(process::pid_alive);
        if !resumable || !alive || self.closed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        *broken = None;
        Ok(true)
    }

    async fn end_page(&self) -> Option<String> {
        // Only a browser we started ourselves (a local Firefox, `webdriver/firefox.rs`) lives on
        // without its page's process: chromedriver answers everything with "tab crashed"
        // afterwards, a Firefox that geckodriver started shuts down, and a Grid node's
        // processes are not ours.
        let ours = self.lock_owned().browser.is_some();
        ours.then(|| super::kill_page_processes(self.pid).ok())
            .flatten()
    }

    async fn crash_tab(&self) -> Result<String, WorkerError> {
        if self.relay.is_some() {
            return self.crash_remote_tab().await;
        }
        super::kill_page_processes(self.pid)
    }

    async fn disconnect(&self, hold: Duration) -> Result<String, WorkerError> {
        if let Some(relay) = &self.relay {
            let open = relay.cut(hold);
            return Ok(format!(
                "cut the connection to the Grid ({open} open) and refused new ones for {hold:?}"
            ));
        }
        let Some(driver) = self.driver_pid else {
            return Err(WorkerError::Driver {
                method: "disconnect".into(),
                message: "no driver process".into(),
            });
        };
        process::kill(driver, Signal::Stop).map_err(|e| WorkerError::Driver {
            method: "disconnect".into(),
            message: format!("cannot stop the driver (pid {driver}): {e}"),
        })?;
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let _ = process::kill(driver, Signal::Cont);
        });
        Ok(format!("froze the driver (pid {driver}) for {hold:?}"))
    }

    async fn close(&self) -> Result<(), WorkerError> {
        self.closed.store(true, Ordering::SeqCst);
        let Owned {
            session,
            driver,
            browser,
            temp,
        } = std::mem::take(&mut *self.lock_owned());
        // Snapshot both trees before anything dies (children re-parent once a parent is gone).
        let mut tree: Vec<u32> = self.driver_pid.map(process::tree_of).unwrap_or_default();
        for p in self.pid.map(process::tree_of).unwrap_or_default() {
            if !tree.contains(&p) {
                tree.push(p);
            }
        }
        // Crashpad handlers re-parent to init but carry our temp dir in their arguments.
        if let Some(t) = &temp {
            for p in process::mentioning(t.path()) {
                if !tree.contains(&p) {
                    tree.push(p);
                }
            }
        }
        // A crashed browser cannot quit, and a timed-out one is still running the script the
        // driver waits on: skip the polite DELETE for both and go straight to the kill.
        let polite = self.broken.lock().map(|g| g.is_none()).unwrap_or(false);
        if let Some(s) = session {
            // A remote session is always ended: nothing here can kill its browser, and the
            // node would hold the slot until its own session timeout.
            if polite || self.relay.is_some() {
                // Quit a clone: if the bound expires, the clone is dropped while `s` still holds the
                // session handle, and `leak()` then stops thirtyfour's blocking quit-on-drop.
                let _ = tokio::time::timeout(QUIT_TIMEOUT, s.clone().quit()).await;
            }
            let _ = s.leak();
        }
        // The browser first (so the driver cannot respawn or wait on it), then the driver.
        for &p in tree.iter().rev() {
            if process::pid_alive(p) {
                let _ = process::kill(p, Signal::Kill);
            }
        }
        for mut child in [driver, browser].into_iter().flatten() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
        }
        process::kill_until_dead(&tree, EXIT_TIMEOUT)
            .await
            .map_err(|alive| WorkerError::Driver {
                method: "close".into(),
                message: format!("processes {alive:?} survived SIGKILL"),
            })?;
        if let Some(t) = temp {
            let path = t.path().to_path_buf();
            let removed = tokio::task::spawn_blocking(move || t.close()).await;
            if !matches!(removed, Ok(Ok(()))) && tokio::fs::try_exists(&path).await.unwrap_or(false)
            {
                tokio::fs::remove_dir_all(&path)
                    .await
                    .map_err(|e| WorkerError::Driver {
                        method: "close".into(),
                        message: format!("cannot remove {}: {e}", path.display()),
                    })?;
            }
        }
        Ok(())
    }
}

impl Drop for WebDriverBrowser {
    /// Best effort without blocking: stop thirtyfour's blocking quit-on-drop, SIGKILL the
    /// browser tree and the driver; the temporary directory is removed off-thread when a
    /// runtime is available.
    fn drop(&mut self) {
        let Owned {
            session,
            driver,
            browser,
            temp,
        } = std::mem::take(&mut *self.lock_owned());
        if let Some(s) = session {
            let _ = s.leak();
        }
        if let Some(pid) = self.pid {
            process::kill_tree(pid, Signal::Kill);
        }
        if let Some(pid) = self.driver_pid.filter(|_| driver.is_some()) {
            process::kill_tree(pid, Signal::Kill);
        }
        // `Child` has kill_on_drop; the directory removal is blocking I/O, so move it off-thread.
        drop(driver);
        drop(browser);
        if let (Some(t), Ok(rt)) = (temp, tokio::runtime::Handle::try_current()) {
            rt.spawn_blocking(move || drop(t));
        }
    }
}
