//! The CDP driver: Chromium-family browsers through `headless_chrome`.
//!
//! Inputs: a [`LaunchSpec`](super::LaunchSpec) with `driver: Cdp`. Output: a [`CdpBrowser`]
//! whose page answers `window.webgpuPool.call`. `headless_chrome` is blocking, so each browser
//! lives on its own `std::thread` (the *owner*), which alone holds the `headless_chrome::Browser`
//! and `Tab`: it launches, opens the page, waits for ready, and later closes, reaps and removes
//! the profile when it receives `Cmd::Close` over a bounded channel (fantoccini's one-owner
//! session, STYLE.md section 5), or when the handle is dropped. One owner means one place that
//! closes.
//!
//! Files: this one holds the handle and the [`Browser`] impl; `cdp/launch.rs` the owner thread
//! and launching, `cdp/socket.rs` the page-call connection, `cdp/classify.rs` what a failed
//! call means.
//!
//! Page calls do not go through `headless_chrome`: its transport adds about 100 ms to every
//! message (see `cdp/socket.rs`). They use a second, async DevTools connection to the same tab,
//! which also reports a dead browser as soon as its socket closes. Must not import `report`,
//! `cli` or terminal crates.
//!
//! Timeouts: `headless_chrome` uses its "idle browser timeout" both as the idle limit of its
//! event loops and as the bound of every protocol call, so it is set very large and every
//! caller-facing wait is bounded here with `tokio::time::timeout` instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use self::classify::{classify, envelope_of, Failure};
use self::launch::Cmd;
use self::socket::{CdpSocket, Reply};
use super::process::{self, Signal};
use super::{page, Browser, BrowserKind, DriverKind, WorkerError};

mod classify;
mod launch;
mod socket;

/// Effectively "never" for headless_chrome's own timeouts (see the module docs).
const HC_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the launcher asks whether the page is ready.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long close() waits for an orderly `Browser.close` before it SIGKILLs.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long close() waits for the owner thread, and for the processes, after a SIGKILL.
const CLOSE_AFTER_KILL: Duration = Duration::from_secs(5);

/// Why later calls are refused.
#[derive(Debug, Clone)]
enum Broken {
    Crashed(String),
    TabCrashed(String),
    Disconnected(String),
    Unusable(String),
}

/// A Chromium-family browser driven over CDP, with the worker page open.
#[derive(Debug)]
pub struct CdpBrowser {
    kind: BrowserKind,
    version: String,
    pid: Option<u32>,
    /// The temporary directory holding the profile (`profile/`) and the browser's TMPDIR
    /// (`tmp/`); removed on close.
    dir: PathBuf,
    cmds: mpsc::Sender<Cmd>,
    /// DevTools port (for new tabs and fault injection).
    port: u16,
    /// Target id of the tab with the worker page (changes on reset).
    target: Mutex<String>,
    /// The worker page's URL.
    page_url: String,
    /// Fault injection: wakes a call in flight so it drops the connection.
    drop_connection: tokio::sync::Notify,
    /// Fault injection: a drop asked for while a call held the socket but was not yet waiting
    /// on `drop_connection` (or between two calls); the next call to take the socket drops it.
    drop_pending: AtomicBool,
    /// The page-call connection; `None` once the session is lost or closed.
    socket: tokio::sync::Mutex<Option<CdpSocket>>,
    broken: Mutex<Option<Broken>>,
    closed: AtomicBool,
    /// The owner thread, joined by close().
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl CdpBrowser {
    fn refusal(&self, method: &str) -> Option<WorkerError> {
        if self.closed.load(Ordering::SeqCst) {
            return Some(WorkerError::Unusable {
                method: method.to_owned(),
                reason: "the session was closed".into(),
            });
        }
        let broken = self.broken.lock().ok()?.clone()?;
        Some(match broken {
            Broken::Crashed(message) => WorkerError::Crashed {
                method: method.to_owned(),
                message,
            },
            Broken::TabCrashed(message) => WorkerError::TabCrashed {
                method: method.to_owned(),
                message,
            },
            Broken::Disconnected(message) => WorkerError::Disconnected {
                method: method.to_owned(),
                message,
            },
            Broken::Unusable(reason) => WorkerError::Unusable {
                method: method.to_owned(),
                reason,
            },
        })
    }

    fn set_broken(&self, b: Broken) {
        if let Ok(mut g) = self.broken.lock() {
            g.get_or_insert(b);
        }
    }

    /// Fault injection: the socket is closed under a call.
    fn dropped_under(&self, method: &str, socket: &mut Option<CdpSocket>) -> WorkerError {
        *socket = None;
        let message = "the DevTools connection was dropped".to_owned();
        self.set_broken(Broken::Disconnected(message.clone()));
        WorkerError::Disconnected {
            method: method.to_owned(),
            message,
        }
    }

    fn browser_alive(&self) -> bool {
        self.pid.is_some_and(process::pid_alive)
    }

    fn target_id(&self) -> String {
        self.target.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Opens a new tab on the worker page, closes the old one, and connects to the new one.
    ///
    /// # Errors
    /// For `method`: [`WorkerError::Crashed`] when a step fails and the browser is gone,
    /// [`WorkerError::Driver`] when it fails while the browser lives.
    async fn open_fresh_tab(&self, method: &str, timeout: Duration) -> Result<(), WorkerError> {
        let fail = |message: String| {
            let method = method.to_owned();
            if self.browser_alive() {
                WorkerError::Driver { method, message }
            } else {
                WorkerError::Crashed { method, message }
            }
        };
        let created = socket::http(self.port, "PUT", &format!("/json/new?{}", self.page_url))
            .await
            .map_err(|e| fail(format!("cannot open a new tab: {e}")))?;
        let id = serde_json::from_str::<Value>(&created)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .ok_or_else(|| fail(format!("no target id in {}", page::truncate(&created, 200))))?;
        let old = std::mem::replace(
            &mut *self.target.lock().map_err(|e| fail(e.to_string()))?,
            id.clone(),
        );
        // The old tab may be crashed or hung; closing it is the browser's job and never waits
        // for its renderer.
        let _ = socket::http(self.port, "GET", &format!("/json/close/{old}")).await;
        let mut sock = connect(self.port, &id)
            .await
            .map_err(|e| fail(format!("cannot connect to the new tab: {e}")))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Reply::Result(r)) = sock.evaluate(page::READY_EXPR).await {
                if r.pointer("/result/value") == Some(&Value::Bool(true)) {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "the new tab's page was not ready within {timeout:?}"
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
        *self.socket.lock().await = Some(sock);
        Ok(())
    }

    fn take_thread(&self) -> Option<std::thread::JoinHandle<()>> {
        self.thread.lock().ok().and_then(|mut g| g.take())
    }
}

#[async_trait]
impl Browser for CdpBrowser {
    fn kind(&self) -> BrowserKind {
        self.kind
    }

    fn driver(&self) -> DriverKind {
        DriverKind::Cdp
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn driver_pid(&self) -> Option<u32> {
        None
    }

    fn profile_dir(&self) -> Option<&Path> {
        Some(&self.dir)
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
        let args_json = serde_json::to_string(&args).map_err(|e| WorkerError::Driver {
            method: method.to_owned(),
            message: format!("cannot encode arguments: {e}"),
        })?;
        let expression = page::cdp_call_expression(method, &args_json);
        let mut guard = self.socket.lock().await;
        // Registered before the pending flag is read, so a drop asked for from here on either
        // wakes this wait or was already flagged: none falls between the two.
        let dropped = self.drop_connection.notified();
        tokio::pin!(dropped);
        dropped.as_mut().enable();
        if self.drop_pending.swap(false, Ordering::SeqCst) {
            return Err(self.dropped_under(method, &mut guard));
        }
        let Some(sock) = guard.as_mut() else {
            return Err(WorkerError::Unusable {
                method: method.to_owned(),
                reason: "no DevTools connection".into(),
            });
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, sock.evaluate(&expression)) => r,
            () = dropped => {
                self.drop_pending.store(false, Ordering::SeqCst);
                return Err(self.dropped_under(method, &mut guard));
            }
        };
        let err = match outcome {
            Ok(Ok(Reply::Result(result))) => return envelope_of(method, &result),
            Ok(Ok(Reply::TargetCrashed(why))) => {
                *guard = None;
                let message = format!("the renderer is gone ({why})");
                self.set_broken(Broken::TabCrashed(message.clone()));
                return Err(WorkerError::TabCrashed {
                    method: method.to_owned(),
                    message,
                });
            }
            Err(_) => {
                // The request is still in flight on this socket; the session cannot be reused.
                self.set_broken(Broken::Unusable(format!(
                    "'{method}' timed out after {timeout:?}"
                )));
                *guard = None;
                return Err(WorkerError::Timeout {
                    method: method.to_owned(),
                    after: timeout,
                });
            }
            Ok(Ok(Reply::Error(message))) => {
                classify(method, Failure::Protocol(message), self.browser_alive())
            }
            Ok(Err(e)) => classify(method, Failure::Io(e), self.browser_alive()),
        };
        if let WorkerError::Crashed { message, .. } = &err {
            self.set_broken(Broken::Crashed(message.clone()));
            *guard = None;
        }
        Err(err)
    }

    async fn close(&self) -> Result<(), WorkerError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        *self.socket.lock().await = None;
        // Snapshot the tree first: once the main process dies its children re-parent.
        let mut tree = self.pid.map(process::tree_of).unwrap_or_default();
        // Crashpad handlers re-parent to init but carry our directory in their arguments.
        for p in process::mentioning(&self.dir) {
            if !tree.contains(&p) {
                tree.push(p);
            }
        }
        let (reply, done) = oneshot::channel();
        let sent = self.cmds.try_send(Cmd::Close { reply }).is_ok();
        let mut done = sent.then_some(done);
        let mut orderly = false;
        if let Some(d) = done.as_mut() {
            orderly = tokio::time::timeout(CLOSE_GRACE, d).await.is_ok();
        }
        if !orderly {
            // A frozen browser never answers `Browser.close`; killing it closes the socket,
            // which ends that wait, and the owner then reaps and removes the profile.
            for &p in &tree {
                let _ = process::kill(p, Signal::Kill);
            }
            if let Some(d) = done.take() {
                let _ = tokio::time::timeout(CLOSE_AFTER_KILL, d).await;
            }
        }
        // Whatever survived the orderly path (zygotes, GPU process) is killed by pid.
        process::kill_until_dead(&tree, CLOSE_AFTER_KILL)
            .await
            .map_err(|alive| WorkerError::Driver {
                method: "close".into(),
                message: format!("processes {alive:?} survived SIGKILL"),
            })?;
        if let Some(t) = self.take_thread() {
            // The owner has replied or is about to exit: joining is quick, but never block here.
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The owner removes the directory; this covers an owner that never got to it.
        if tokio::fs::try_exists(&self.dir).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&self.dir)
                .await
                .map_err(|e| WorkerError::Driver {
                    method: "close".into(),
                    message: format!("cannot remove profile {}: {e}", self.dir.display()),
                })?;
        }
        Ok(())
    }

    async fn reset(&self, timeout: Duration) -> Result<(), WorkerError> {
        let method = "reset";
        if self.closed.load(Ordering::SeqCst) || !self.browser_alive() {
            return Err(WorkerError::Crashed {
                method: method.into(),
                message: match self.pid {
                    Some(pid) => format!("the browser (pid {pid}) is gone"),
                    None => "the browser is gone".to_owned(),
                },
            });
        }
        *self.socket.lock().await = None;
        match tokio::time::timeout(timeout, self.open_fresh_tab(method, timeout)).await {
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
        let broken = self.broken.lock().ok().and_then(|b| b.clone());
        let resumable = matches!(broken, Some(Broken::Disconnected(_) | Broken::Unusable(_)));
        if !resumable || self.closed.load(Ordering::SeqCst) || !self.browser_alive() {
            return Ok(false);
        }
        let mut guard = self.socket.lock().await;
        let target = self.target_id();
        let sock = connect(self.port, &target)
            .await
            .map_err(|e| WorkerError::Driver {
                method: "reconnect".into(),
                message: format!("cannot connect to tab {target} again: {e}"),
            })?;
        *guard = Some(sock);
        if let Ok(mut b) = self.broken.lock() {
            *b = None;
        }
        Ok(true)
    }

    async fn end_page(&self) -> Option<String> {
        // The worker's browser holds this one page: its renderers are the page's.
        super::kill_page_processes(self.pid).ok()
    }

    async fn crash_tab(&self) -> Result<String, WorkerError> {
        // Not `Page.crash`: measured here, Chromium reports a tab crashed that way only after
        // about 4.8 s (the renderer sits in its crash handler); a renderer killed by the OS
        // (what an OOM kill does) is reported within about 60 ms.
        super::kill_page_processes(self.pid)
    }

    async fn disconnect(&self, _hold: Duration) -> Result<String, WorkerError> {
        // A call holding the socket drops it itself: woken if it waits, else at its next look
        // at the flag (its own, or the next call's). With the socket free, drop it here.
        self.drop_pending.store(true, Ordering::SeqCst);
        let unheard = crate::breaks::once(crate::breaks::Break::UnheardDrop);
        if !unheard {
            self.drop_connection.notify_waiters();
        }
        if let Some(mut g) = self.socket.try_lock().ok().filter(|_| !unheard) {
            if self.drop_pending.swap(false, Ordering::SeqCst) && g.take().is_some() {
                self.set_broken(Broken::Disconnected(
                    "the DevTools connection was dropped".into(),
                ));
            }
        }
        Ok(format!(
            "closed the DevTools connection to tab {}",
            self.target_id()
        ))
    }
}

/// Connects the page-call socket and turns on crash notices.
async fn connect(port: u16, target_id: &str) -> std::io::Result<CdpSocket> {
    let mut sock = CdpSocket::connect(port, target_id).await?;
    match sock.watch_crashes().await? {
        Reply::Result(_) => Ok(sock),
        Reply::Error(m) | Reply::TargetCrashed(m) => Err(std::io::Error::other(format!(
            "Inspector.enable failed: {m}"
        ))),
    }
}

impl Drop for CdpBrowser {
    /// Best effort without blocking: SIGKILL the browser tree; the owner thread sees its command
    /// channel close, drops the `headless_chrome::Browser` (which reaps the process) and removes
    /// the profile directory.
    fn drop(&mut self) {
        if !self.closed.load(Ordering::SeqCst) {
            if let Some(pid) = self.pid {
                process::kill_tree(pid, Signal::Kill);
            }
        }
    }
}
