//! The CDP driver: Chromium-family browsers through `headless_chrome`.
//!
//! Inputs: a [`LaunchSpec`] with `driver: Cdp`. Output: a [`CdpBrowser`] whose page answers
//! `window.webgpuPool.call`. `headless_chrome` is blocking, so each browser lives on its own
//! `std::thread` (the *owner*), which alone holds the `headless_chrome::Browser` and `Tab`;
//! async callers send it `(Cmd, oneshot::Sender)` pairs over a bounded channel (fantoccini's
//! session task, STYLE.md section 5). One owner means one place that closes the browser.
//! Rejected: `spawn_blocking` per call, which would share the `Tab` across pool threads and give
//! no single place to tear down. Must not import `report`, `cli` or terminal crates.
//!
//! Timeouts: `headless_chrome` uses its "idle browser timeout" both as the idle limit of the
//! event loops and as the bound of every protocol call, so it is set very large and every
//! caller-facing wait is bounded here with `tokio::time::timeout` instead.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use headless_chrome::browser::ConnectionClosed;
use headless_chrome::{LaunchOptions, Tab};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::discovery::parse_version;
use super::process::{self, Signal};
use super::{flags, page, Browser, BrowserKind, DriverKind, LaunchSpec, WorkerError};

/// Effectively "never" for headless_chrome's own timeouts (see the module docs).
const HC_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the launcher asks whether the page is ready.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long close() waits for an orderly `Browser.close` before it SIGKILLs.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long close() waits for the owner thread after a SIGKILL.
const CLOSE_AFTER_KILL: Duration = Duration::from_secs(5);
/// Extra time the async side gives the owner thread to report a failed launch.
const LAUNCH_SLACK: Duration = Duration::from_secs(2);

/// A failure on the owner thread, before classification.
#[derive(Debug)]
enum OwnerError {
    /// The DevTools socket is closed.
    Closed(String),
    /// Any other protocol error.
    Other(String),
}

impl OwnerError {
    fn from_anyhow(e: &anyhow::Error) -> Self {
        if e.downcast_ref::<ConnectionClosed>().is_some() {
            Self::Closed(e.to_string())
        } else {
            Self::Other(format!("{e:#}"))
        }
    }
}

/// What the owner thread reports after a successful launch.
#[derive(Debug)]
struct Launched {
    pid: Option<u32>,
    version: String,
}

/// A command for the owner thread.
#[derive(Debug)]
enum Cmd {
    /// Evaluate a page call; the reply is the raw envelope string.
    Call {
        expression: String,
        reply: oneshot::Sender<Result<String, OwnerError>>,
    },
    /// Close the browser, reap it and remove the profile; then reply.
    Close { reply: oneshot::Sender<()> },
}

/// Why later calls are refused.
#[derive(Debug, Clone)]
enum Broken {
    Crashed(String),
    Unusable(String),
}

/// A Chromium-family browser driven over CDP, with the worker page open.
#[derive(Debug)]
pub struct CdpBrowser {
    kind: BrowserKind,
    version: String,
    pid: Option<u32>,
    profile: PathBuf,
    cmds: mpsc::Sender<Cmd>,
    broken: Mutex<Option<Broken>>,
    closed: AtomicBool,
    /// The owner thread, joined by close().
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl CdpBrowser {
    /// Launches the browser on its own owner thread, opens `spec.page_url` and waits until the
    /// page reports ready.
    ///
    /// # Errors
    /// [`WorkerError::Launch`] when the process does not start, the page does not load or the
    /// API is not ready within `spec.launch_timeout`. The owner thread kills the process and
    /// removes the profile on every failure path (if Chromium hangs before printing its
    /// DevTools URL, that happens when headless_chrome's own 30 s wait ends).
    pub async fn launch(spec: &LaunchSpec) -> Result<Self, WorkerError> {
        let fail = |message: String| WorkerError::Launch { browser: spec.kind, message };
        if !spec.kind.is_chromium_family() {
            return Err(fail("the CDP driver only drives Chromium-family browsers".into()));
        }
        let profile = tempfile::Builder::new()
            .prefix(&format!("webgpu-pool-{}-", spec.kind))
            .tempdir()
            .map_err(|e| fail(format!("cannot create a profile directory in {}: {e}", std::env::temp_dir().display())))?;
        let profile_path = profile.path().to_path_buf();
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let (ready_tx, ready_rx) = oneshot::channel();
        let owner_spec = spec.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cdp-{}", spec.kind))
            .spawn(move || owner_main(owner_spec, profile, cmd_rx, ready_tx))
            .map_err(|e| fail(format!("cannot spawn the CDP owner thread: {e}")))?;

        let launched = match tokio::time::timeout(spec.launch_timeout + LAUNCH_SLACK, ready_rx).await {
            Ok(Ok(Ok(l))) => l,
            Ok(Ok(Err(message))) => return Err(fail(message)),
            Ok(Err(_)) => return Err(fail("the CDP owner thread ended during launch".into())),
            // Dropping `ready_rx` tells the owner to give up; it tears down on its own.
            Err(_) => {
                return Err(fail(format!(
                    "{} did not start within {:?} (executable {})",
                    spec.kind,
                    spec.launch_timeout,
                    spec.executable.display()
                )))
            }
        };
        Ok(Self {
            kind: spec.kind,
            version: launched.version,
            pid: launched.pid,
            profile: profile_path,
            cmds: cmd_tx,
            broken: Mutex::new(None),
            closed: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn broken(&self) -> Option<Broken> {
        self.broken.lock().map(|g| g.clone()).unwrap_or(None)
    }

    fn set_broken(&self, b: Broken) {
        if let Ok(mut g) = self.broken.lock() {
            g.get_or_insert(b);
        }
    }

    fn browser_alive(&self) -> bool {
        self.pid.is_some_and(process::pid_alive)
    }

    /// Maps an owner failure to a [`WorkerError`], deciding "crashed" from the socket state and
    /// the pid's liveness rather than from message text.
    fn classify(&self, method: &str, e: OwnerError) -> WorkerError {
        match e {
            OwnerError::Closed(message) => WorkerError::Crashed { method: method.to_owned(), message },
            OwnerError::Other(message) if !self.browser_alive() => WorkerError::Crashed {
                method: method.to_owned(),
                message: format!("browser pid {:?} is gone: {message}", self.pid),
            },
            OwnerError::Other(message) => WorkerError::Driver { method: method.to_owned(), message },
        }
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
        Some(&self.profile)
    }

    async fn call(&self, method: &str, args: Value, timeout: Duration) -> Result<Value, WorkerError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(WorkerError::Unusable { method: method.to_owned(), reason: "the session was closed".into() });
        }
        match self.broken() {
            Some(Broken::Crashed(message)) => {
                return Err(WorkerError::Crashed { method: method.to_owned(), message })
            }
            Some(Broken::Unusable(reason)) => {
                return Err(WorkerError::Unusable { method: method.to_owned(), reason })
            }
            None => {}
        }
        let args_json = serde_json::to_string(&args).map_err(|e| WorkerError::Driver {
            method: method.to_owned(),
            message: format!("cannot encode arguments: {e}"),
        })?;
        let (reply, answer) = oneshot::channel();
        let cmd = Cmd::Call { expression: page::cdp_call_expression(method, &args_json), reply };
        let exchange = async {
            self.cmds.send(cmd).await.ok()?;
            answer.await.ok()
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                self.set_broken(Broken::Unusable(format!("'{method}' timed out after {timeout:?}")));
                return Err(WorkerError::Timeout { method: method.to_owned(), after: timeout });
            }
            // The owner thread is gone: it only exits on close or after the connection died.
            Ok(None) => Err(OwnerError::Closed("the CDP owner thread has exited".into())),
            Ok(Some(r)) => r,
        };
        match result {
            Ok(raw) => page::parse_envelope(method, &raw),
            Err(e) => {
                let err = self.classify(method, e);
                if let WorkerError::Crashed { message, .. } = &err {
                    self.set_broken(Broken::Crashed(message.clone()));
                }
                Err(err)
            }
        }
    }

    async fn close(&self) -> Result<(), WorkerError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Snapshot the tree first: once the main process dies its children re-parent.
        let tree = self.pid.map(process::tree_of).unwrap_or_default();
        let (reply, done) = oneshot::channel();
        let sent = self.cmds.try_send(Cmd::Close { reply }).is_ok();
        let mut done = Some(done);
        let orderly = sent
            && match done.as_mut() {
                Some(d) => tokio::time::timeout(CLOSE_GRACE, d).await.is_ok(),
                None => false,
            };
        if !orderly {
            // A hung page keeps the owner inside `Runtime.evaluate`; killing the browser closes
            // the socket, which ends that call, and the owner then runs the queued Close.
            for &p in &tree {
                let _ = process::kill(p, Signal::Kill);
            }
            if let Some(d) = done.take().filter(|_| sent) {
                let _ = tokio::time::timeout(CLOSE_AFTER_KILL, d).await;
            }
        }
        // Whatever survived the orderly path (zygotes, GPU process) is killed by pid.
        let deadline = Instant::now() + CLOSE_AFTER_KILL;
        loop {
            let alive: Vec<u32> = tree.iter().copied().filter(|&p| process::pid_alive(p)).collect();
            if alive.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(WorkerError::Driver {
                    method: "close".into(),
                    message: format!("processes {alive:?} survived SIGKILL"),
                });
            }
            for p in alive {
                let _ = process::kill(p, Signal::Kill);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(t) = self.take_thread() {
            // The owner has replied or is about to exit: joining is quick, but never block here.
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The owner removes the profile; this covers an owner that never got to it.
        if tokio::fs::try_exists(&self.profile).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&self.profile).await.map_err(|e| WorkerError::Driver {
                method: "close".into(),
                message: format!("cannot remove profile {}: {e}", self.profile.display()),
            })?;
        }
        Ok(())
    }
}

impl Drop for CdpBrowser {
    /// Best effort without blocking: SIGKILL the browser tree; the owner thread sees its command
    /// channel close, drops the `headless_chrome::Browser` (which reaps the process) and removes
    /// the profile directory.
    fn drop(&mut self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        if let Some(pid) = self.pid {
            process::kill_tree(pid, Signal::Kill);
        }
    }
}

/// The owner thread: launch, then serve commands until Close or until the handle is dropped.
fn owner_main(
    spec: LaunchSpec,
    profile: tempfile::TempDir,
    mut cmds: mpsc::Receiver<Cmd>,
    ready: oneshot::Sender<Result<Launched, String>>,
) {
    let session = match start(&spec, profile.path(), &ready) {
        Ok(s) => s,
        Err(message) => {
            let _ = ready.send(Err(message));
            // `profile` drops here, after the browser (dropped inside `start`) is reaped.
            return;
        }
    };
    let launched = Launched { pid: session.browser.get_process_id(), version: session.version.clone() };
    if ready.send(Ok(launched)).is_err() {
        // The launcher gave up (timeout) just as we finished: tear down.
        drop(session);
        return;
    }
    let mut close_reply = None;
    while let Some(cmd) = cmds.blocking_recv() {
        match cmd {
            Cmd::Call { expression, reply } => {
                if reply.is_closed() {
                    continue; // the caller already timed out
                }
                let _ = reply.send(evaluate_string(&session.tab, &expression));
            }
            Cmd::Close { reply } => {
                close_reply = Some(reply);
                break;
            }
        }
    }
    // Dropping the Browser sends `Browser.close`, then kills and waits for the process.
    drop(session);
    let _ = profile.close();
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

fn start(
    spec: &LaunchSpec,
    profile: &Path,
    ready: &oneshot::Sender<Result<Launched, String>>,
) -> Result<Session, String> {
    let deadline = Instant::now() + spec.launch_timeout;
    let args = flags::chromium_args(spec);
    let options = LaunchOptions {
        path: Some(spec.executable.clone()),
        // The flags carry `--headless=new` and `--no-sandbox`; headless_chrome's own
        // `--headless` would pick the old mode on Chromium before 132.
        headless: false,
        sandbox: false,
        // Keeps headless_chrome from adding `--disable-gpu`, which would take WebGPU away.
        enable_gpu: true,
        user_data_dir: Some(profile.to_path_buf()),
        idle_browser_timeout: HC_IDLE_TIMEOUT,
        // Its default `--enable-features=NetworkService,...` would override ours (last wins).
        ignore_default_args: vec![OsStr::new("--enable-features=NetworkService,NetworkServiceInProcess")],
        args: args.iter().map(OsStr::new).collect(),
        ..LaunchOptions::default()
    };
    let browser = headless_chrome::Browser::new(options)
        .map_err(|e| format!("cannot start {}: {e:#}", spec.executable.display()))?;
    let version = browser
        .get_version()
        .ok()
        .and_then(|v| parse_version(&v.product))
        .unwrap_or_else(|| "unknown".to_owned());
    let tab = browser.new_tab().map_err(|e| format!("cannot open a tab: {e:#}"))?;
    tab.set_default_timeout(HC_IDLE_TIMEOUT);
    tab.navigate_to(&spec.page_url)
        .map_err(|e| format!("cannot open {}: {e:#}", spec.page_url))?;
    let mut last;
    loop {
        match tab.evaluate(page::READY_EXPR, false) {
            Ok(obj) if obj.value == Some(Value::Bool(true)) => break,
            Ok(obj) => last = format!("window.webgpuPool.ready is {:?}", obj.value),
            Err(e) => match OwnerError::from_anyhow(&e) {
                OwnerError::Closed(m) => return Err(format!("the browser went away while loading the page: {m}")),
                OwnerError::Other(m) => last = m, // e.g. the context is being replaced by navigation
            },
        }
        if ready.is_closed() {
            return Err("launch abandoned by the caller".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "page {} not ready within {:?} ({last})",
                spec.page_url, spec.launch_timeout
            ));
        }
        std::thread::sleep(READY_POLL);
    }
    Ok(Session { tab, browser, version })
}

/// Evaluates an expression that resolves to a string (the page envelope).
fn evaluate_string(tab: &Tab, expression: &str) -> Result<String, OwnerError> {
    let obj = tab.evaluate(expression, true).map_err(|e| OwnerError::from_anyhow(&e))?;
    match obj.value {
        Some(Value::String(s)) => Ok(s),
        // The wrapper never rejects, so this is an evaluation failure (e.g. a page mid-reload).
        _ => Err(OwnerError::Other(format!(
            "evaluation gave a {:?} instead of a string: {}",
            obj.Type,
            obj.description.unwrap_or_default()
        ))),
    }
}
