//! Launching a CDP browser: the owner thread that alone holds the `headless_chrome::Browser`
//! and `Tab` (it launches, opens the page, waits for ready, and later closes, reaps and removes
//! the profile), and the async side that spawns it, waits for its report and connects the
//! page-call socket.
//!
//! Inputs: a [`LaunchSpec`]. Outputs: a [`CdpBrowser`], or the owner thread's launch failure.
//! Used by `cdp.rs` only. Must not import `report`, `cli` or terminal crates.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headless_chrome::browser::ConnectionClosed;
use headless_chrome::{LaunchOptions, Tab};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{connect, CdpBrowser, HC_IDLE_TIMEOUT, READY_POLL};
use crate::browser::discovery::parse_version;
use crate::browser::{flags, page, Browser, LaunchSpec, WorkerError};

/// Extra time the async side gives the owner thread to report a failed launch.
const LAUNCH_SLACK: Duration = Duration::from_secs(2);
/// Bound on opening the page-call connection.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a timed-out launch waits for the owner thread to kill the process and remove the
/// profile (headless_chrome gives up on a silent process after 30 s).
const TEARDOWN_WAIT: Duration = Duration::from_secs(45);

/// What the owner thread reports after a successful launch.
#[derive(Debug)]
struct Launched {
    pid: Option<u32>,
    version: String,
    /// DevTools port, from the browser's WebSocket URL.
    port: u16,
    /// Target id of the tab with the worker page.
    target_id: String,
}

/// A command for the owner thread.
#[derive(Debug)]
pub(super) enum Cmd {
    /// Close the browser, reap it and remove the profile; then reply.
    Close { reply: oneshot::Sender<()> },
}

impl CdpBrowser {
    /// Launches the browser on its own owner thread, opens `spec.page_url`, waits until the
    /// page reports ready and connects the page-call socket.
    ///
    /// # Errors
    /// [`WorkerError::Launch`] when the process does not start, the page does not load or the
    /// API is not ready within `spec.launch_timeout`. The owner thread kills the process and
    /// removes the profile on every failure path (if Chromium hangs before printing its
    /// DevTools URL, that happens when headless_chrome's own 30 s wait ends).
    pub async fn launch(spec: &LaunchSpec) -> Result<Self, WorkerError> {
        let fail = |message: String| WorkerError::Launch {
            browser: spec.kind,
            message,
        };
        if !spec.kind.is_chromium_family() {
            return Err(fail(
                "the CDP driver only drives Chromium-family browsers".into(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("webgpu-pool-{}-", spec.kind))
            .tempdir()
            .map_err(|e| {
                fail(format!(
                    "cannot create a profile directory in {}: {e}",
                    std::env::temp_dir().display()
                ))
            })?;
        let dir_path = dir.path().to_path_buf();
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let (ready_tx, ready_rx) = oneshot::channel();
        let owner_spec = spec.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cdp-{}", spec.kind))
            .spawn(move || owner_main(owner_spec, dir, cmd_rx, ready_tx))
            .map_err(|e| fail(format!("cannot spawn the CDP owner thread: {e}")))?;

        let launched =
            match tokio::time::timeout(spec.launch_timeout + LAUNCH_SLACK, ready_rx).await {
                Ok(Ok(Ok(l))) => l,
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(_)) => return Err(fail("the CDP owner thread ended during launch".into())),
                // Dropping `ready_rx` tells the owner to give up; it tears down on its own.
                // Wait for that (bounded), so a failed launch has left nothing behind when it
                // returns, even if the process exits right after: found as profile folders
                // left in TMPDIR when a loaded machine timed a launch out.
                Err(_) => {
                    let joined = tokio::task::spawn_blocking(move || thread.join());
                    let _ = tokio::time::timeout(TEARDOWN_WAIT, joined).await;
                    return Err(fail(format!(
                        "{} did not start within {:?} (executable {})",
                        spec.kind,
                        spec.launch_timeout,
                        spec.executable.display()
                    )));
                }
            };
        let this = Self {
            kind: spec.kind,
            version: launched.version,
            pid: launched.pid,
            dir: dir_path,
            cmds: cmd_tx,
            port: launched.port,
            target: Mutex::new(launched.target_id.clone()),
            page_url: spec.page_url.clone(),
            drop_connection: tokio::sync::Notify::new(),
            drop_pending: AtomicBool::new(false),
            socket: tokio::sync::Mutex::new(None),
            broken: Mutex::new(None),
            closed: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
        };
        let connected =
            tokio::time::timeout(SOCKET_TIMEOUT, connect(launched.port, &launched.target_id)).await;
        match connected {
            Ok(Ok(sock)) => {
                *this.socket.lock().await = Some(sock);
                Ok(this)
            }
            other => {
                let why = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {SOCKET_TIMEOUT:?}"),
                };
                let _ = this.close().await;
                Err(fail(format!(
                    "cannot connect to the page's DevTools socket on port {}: {why}",
                    launched.port
                )))
            }
        }
    }
}

/// The owner thread: launch, then wait for Close or for the handle to be dropped.
fn owner_main(
    spec: LaunchSpec,
    dir: tempfile::TempDir,
    mut cmds: mpsc::Receiver<Cmd>,
    ready: oneshot::Sender<Result<Launched, WorkerError>>,
) {
    let session = match start(&spec, dir.path(), &ready) {
        Ok(s) => s,
        Err(e) => {
            // The browser (dropped inside `start`) is reaped; remove the directory before
            // answering, so a failed launch has left nothing behind when it returns.
            let _ = dir.close();
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(session.launched())).is_err() {
        // The launcher gave up (timeout) just as we finished: tear down.
        return;
    }
    // `None`: the handle was dropped without close().
    let close_reply = cmds.blocking_recv().map(|Cmd::Close { reply }| reply);
    // Dropping the Browser sends `Browser.close`, then kills and waits for the process.
    drop(session);
    let _ = dir.close();
    if let Some(r) = close_reply {
        let _ = r.send(());
    }
}

/// A launched browser with the page open, owned by the owner thread.
struct Session {
    // Field order matters: the tab handle goes before the browser that owns the process.
    tab: Arc<Tab>,
    browser: headless_chrome::Browser,
    version: String,
}

impl Session {
    fn launched(&self) -> Launched {
        let ws = self.browser.get_ws_url();
        // ws://127.0.0.1:<port>/devtools/browser/<id>
        let port = ws
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|hostport| hostport.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Launched {
            pid: self.browser.get_process_id(),
            version: self.version.clone(),
            port,
            target_id: self.tab.get_target_id().clone(),
        }
    }
}

/// Launches the browser, opens the worker page and waits until it is ready, on the owner thread.
///
/// # Errors
/// [`WorkerError::Launch`] naming the executable, the URL or the step that failed; also when
/// the caller gave up (`ready` closed) or `spec.launch_timeout` passed.
fn start(
    spec: &LaunchSpec,
    dir: &Path,
    ready: &oneshot::Sender<Result<Launched, WorkerError>>,
) -> Result<Session, WorkerError> {
    let fail = |message: String| WorkerError::Launch {
        browser: spec.kind,
        message,
    };
    let deadline = Instant::now() + spec.launch_timeout;
    // Chromium puts its singleton socket and shared-memory files under TMPDIR and leaves them
    // behind when killed; pointing TMPDIR into our directory removes them with the profile.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)
        .map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
    let args = flags::chromium_args(spec);
    let options = LaunchOptions {
        path: Some(spec.executable.clone()),
        // The flags carry `--headless=new`; headless_chrome's own `--headless` meant the old
        // mode on Chromium before 132.
        headless: false,
        // Root cannot use the sandbox; this adds `--no-sandbox --disable-setuid-sandbox`.
        sandbox: false,
        // Keeps headless_chrome from adding `--disable-gpu`, which would take WebGPU away.
        enable_gpu: true,
        user_data_dir: Some(dir.join("profile")),
        idle_browser_timeout: HC_IDLE_TIMEOUT,
        process_envs: Some(HashMap::from([
            ("TMPDIR".to_owned(), tmp.display().to_string()),
            // Crash dumps (a crashed tab writes one) go here, not to ~/.config/chromium.
            (
                "BREAKPAD_DUMP_LOCATION".to_owned(),
                tmp.display().to_string(),
            ),
        ])),
        // Its default `--enable-features=NetworkService,...` would override ours (last wins).
        ignore_default_args: vec![OsStr::new(
            "--enable-features=NetworkService,NetworkServiceInProcess",
        )],
        args: args.iter().map(OsStr::new).collect(),
        ..LaunchOptions::default()
    };
    let browser = headless_chrome::Browser::new(options)
        .map_err(|e| fail(format!("cannot start {}: {e:#}", spec.executable.display())))?;
    let version = browser
        .get_version()
        .ok()
        .and_then(|v| parse_version(&v.product))
        .unwrap_or_else(|| "unknown".to_owned());
    let tab = browser
        .new_tab()
        .map_err(|e| fail(format!("cannot open a tab: {e:#}")))?;
    tab.set_default_timeout(HC_IDLE_TIMEOUT);
    tab.navigate_to(&spec.page_url)
        .map_err(|e| fail(format!("cannot open {}: {e:#}", spec.page_url)))?;
    let mut last;
    loop {
        match tab.evaluate(page::READY_EXPR, false) {
            Ok(obj) if obj.value == Some(Value::Bool(true)) => break,
            Ok(obj) => last = format!("window.webgpuPool.ready is {:?}", obj.value),
            Err(e) if e.downcast_ref::<ConnectionClosed>().is_some() => {
                return Err(fail(format!(
                    "the browser went away while loading the page: {e}"
                )))
            }
            // e.g. the execution context is being replaced by the navigation
            Err(e) => last = format!("{e:#}"),
        }
        if ready.is_closed() {
            return Err(fail("launch abandoned by the caller".into()));
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "page {} not ready within {:?} ({last})",
                spec.page_url, spec.launch_timeout
            )));
        }
        std::thread::sleep(READY_POLL);
    }
    Ok(Session {
        tab,
        browser,
        version,
    })
}
