//! Browsers: the [`Browser`] trait that every driver implements, browser and driver discovery,
//! and launching.
//!
//! Inputs: a [`LaunchSpec`] (which browser, through which driver, which page). Output: a live
//! `Box<dyn Browser>` whose page exposes the worker API described in `docs/page-api.md`.
//! Drivers: `cdp.rs` (headless_chrome, Chromium family) and `webdriver.rs` (thirtyfour, for
//! geckodriver and chromedriver), each with its launch, transport and classification files in
//! `cdp/` and `webdriver/`. Must not import `report`, `cli` or terminal crates.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod cdp;
pub mod discovery;
mod flags;
pub mod grid;
mod page;
pub mod preferences;
pub mod process;
pub mod webdriver;

pub use discovery::{discover, Found, Installed, WebDriverServer};
pub use preferences::Preferences;

/// A browser product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrowserKind {
    /// Chromium (Debian's `chromium`).
    Chromium,
    /// Chromium 153's headless shell from the npm package `@sparticuz/chromium` (installed into
    /// the cache by `scripts/setup.sh`): the Chromium here whose WebNN works.
    #[serde(rename = "chromium-shell")]
    ChromiumShell,
    /// Google Chrome.
    Chrome,
    /// Microsoft Edge.
    Edge,
    /// Firefox (ESR or release).
    Firefox,
}

impl BrowserKind {
    /// Every kind, in display order.
    pub const ALL: [BrowserKind; 5] = [
        Self::Chromium,
        Self::ChromiumShell,
        Self::Chrome,
        Self::Edge,
        Self::Firefox,
    ];

    /// The lowercase name used in flags, scenarios and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chromium => "chromium",
            Self::ChromiumShell => "chromium-shell",
            Self::Chrome => "chrome",
            Self::Edge => "edge",
            Self::Firefox => "firefox",
        }
    }

    /// Whether this is a Chromium-family browser (CDP and chromedriver work with it).
    pub fn is_chromium_family(self) -> bool {
        !matches!(self, Self::Firefox)
    }

    /// Whether `scripts/setup.sh` installs it (so its absence is worth a word).
    pub fn installed_by_setup(self) -> bool {
        matches!(self, Self::Chromium | Self::ChromiumShell | Self::Firefox)
    }

    /// The Debian package (or vendor download) that provides this browser.
    pub fn install_hint(self) -> &'static str {
        match self {
            Self::Chromium => "install the Debian package `chromium` (scripts/setup.sh does)",
            Self::ChromiumShell => {
                "not installed: run scripts/setup.sh (it unpacks @sparticuz/chromium@153.0.0 from \
                 npm into the cache)"
            }
            Self::Chrome => {
                "install Google Chrome (`google-chrome-stable`); not available on this machine"
            }
            Self::Edge => {
                "install Microsoft Edge (`microsoft-edge-stable`); not available on this machine"
            }
            Self::Firefox => "install the Debian package `firefox-esr` (scripts/setup.sh does)",
        }
    }
}

impl fmt::Display for BrowserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A browser name that is not one of `chromium`, `chromium-shell`, `chrome`, `edge`, `firefox`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown browser '{0}' (known: chromium, chromium-shell, chrome, edge, firefox)")]
pub struct UnknownBrowser(pub String);

impl std::str::FromStr for BrowserKind {
    type Err = UnknownBrowser;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| UnknownBrowser(s.to_string()))
    }
}

/// How the harness talks to a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// Chrome DevTools Protocol through headless_chrome (Chromium family only).
    Cdp,
    /// W3C WebDriver through thirtyfour and a local driver (geckodriver, chromedriver, msedgedriver).
    WebDriver,
}

impl DriverKind {
    /// The lowercase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cdp => "cdp",
            Self::WebDriver => "webdriver",
        }
    }
}

/// Everything needed to launch one browser and open the worker page in it.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Which browser product.
    pub kind: BrowserKind,
    /// Which protocol drives it.
    pub driver: DriverKind,
    /// The browser executable.
    pub executable: PathBuf,
    /// The driver executable (geckodriver, chromedriver); `None` for CDP.
    pub driver_executable: Option<PathBuf>,
    /// Absolute URL of the worker page (carries the run token).
    pub page_url: String,
    /// Turn on the browser's WebNN flag where it has one.
    pub enable_webnn: bool,
    /// Bound on launch plus page ready.
    pub launch_timeout: Duration,
    /// A Selenium Grid hub (`http://host:4444`): the browser is a remote WebDriver session
    /// requested from it, and `executable`/`driver_executable` are not used.
    pub grid: Option<String>,
}

/// One live browser with the worker page open. One task owns it (see `pool::worker`), so the
/// methods take `&self` but are never called concurrently on the same session.
#[async_trait::async_trait]
pub trait Browser: Send + Sync + fmt::Debug {
    /// The browser product.
    fn kind(&self) -> BrowserKind;
    /// The protocol in use.
    fn driver(&self) -> DriverKind;
    /// The browser's version string, e.g. `156.0.8078.108`.
    fn version(&self) -> &str;
    /// The pid of the browser's main process, when known.
    fn pid(&self) -> Option<u32>;
    /// The pid of the driver process (geckodriver, chromedriver), when there is one.
    fn driver_pid(&self) -> Option<u32>;
    /// The temporary profile directory this launch created (removed on close).
    fn profile_dir(&self) -> Option<&std::path::Path>;
    /// The Selenium Grid node serving a remote session (`http://10.0.0.7:5555`); `None` for a
    /// local browser.
    fn node(&self) -> Option<&str> {
        None
    }
    /// Calls `window.webgpuPool.call(method, args)` in the page and returns its `value`.
    ///
    /// # Errors
    /// [`WorkerError::Page`] when the page answered `ok: false`; [`WorkerError::Timeout`] when no
    /// answer came within `timeout`; [`WorkerError::Crashed`] / [`WorkerError::Driver`] when the
    /// browser or the connection to it is gone.
    async fn call(
        &self,
        method: &str,
        args: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, WorkerError>;
    /// Closes the page, the browser and its driver, and removes the temporary profile.
    /// Idempotent; never blocks the async runtime.
    async fn close(&self) -> Result<(), WorkerError>;
    /// Makes a session that a timed-out call or a dropped connection left unusable usable again
    /// without touching the page, which keeps its models (CDP: a new DevTools connection to the
    /// same tab; WebDriver: the same session, taken up again). Returns false when there is
    /// nothing to take up again (not broken, or broken for good: a crash). Whether the page
    /// answers is the next call's to find out.
    ///
    /// # Errors
    /// [`WorkerError::Driver`] when the new connection cannot be opened.
    async fn reconnect(&self) -> Result<bool, WorkerError> {
        Ok(false)
    }
    /// Opens a fresh copy of the worker page in the same browser (CDP: a new tab, the old one
    /// closed; WebDriver: the page navigated again) and waits until it is ready. A session that
    /// an earlier timeout, crashed tab or dropped connection left unusable is usable again
    /// afterwards; models must be loaded again.
    ///
    /// # Errors
    /// [`WorkerError::Crashed`] when the browser or its driver is gone; [`WorkerError::Timeout`]
    /// when the page is not ready within `timeout`.
    async fn reset(&self, timeout: Duration) -> Result<(), WorkerError>;
    /// Ends the renderer process that hosts the worker page, before a reset throws the page
    /// away: a hung page keeps its renderer spinning a core and holds the call in flight until
    /// its bound, and Chromium may put the new tab of the same site in that same process, so
    /// the reset would wait out the hang. Returns what was done, or `None` where the harness
    /// cannot reach the page's process or should not (the default): a Grid node's processes
    /// are not ours, and chromedriver answers every command with "tab crashed" once the page's
    /// renderer is gone (only a new browser recovers it). A local Firefox is started by the
    /// harness so that it outlives a content process (`webdriver/firefox.rs`).
    async fn end_page(&self) -> Option<String> {
        None
    }
    /// Fault injection: crashes the renderer that hosts the worker page, for real (SIGKILL of
    /// the renderer processes: measured here, CDP `Page.crash` is reported only ~4.8 s later).
    /// Returns what was done.
    ///
    /// # Errors
    /// [`WorkerError::Driver`] when there is nothing to crash.
    async fn crash_tab(&self) -> Result<String, WorkerError>;
    /// Fault injection: drops the harness's connection to the page (CDP: the DevTools
    /// WebSocket is closed; WebDriver: the driver is frozen with SIGSTOP for `hold`, so its
    /// connection stalls, then resumed). Returns what was done.
    ///
    /// # Errors
    /// [`WorkerError::Driver`] when there is no connection to drop.
    async fn disconnect(&self, hold: Duration) -> Result<String, WorkerError>;
}

/// Launches a browser per `spec`, opens the worker page and waits until `window.webgpuPool.ready`.
///
/// # Errors
/// [`WorkerError::Launch`] when the process or driver does not start or the page is not ready
/// within `spec.launch_timeout`. Nothing is left running on error.
pub async fn launch(spec: &LaunchSpec) -> Result<Box<dyn Browser>, WorkerError> {
    if spec.grid.is_some() {
        return webdriver::WebDriverBrowser::connect(spec)
            .await
            .map(|b| Box::new(b) as Box<dyn Browser>);
    }
    match spec.driver {
        DriverKind::Cdp => cdp::CdpBrowser::launch(spec)
            .await
            .map(|b| Box::new(b) as Box<dyn Browser>),
        DriverKind::WebDriver => webdriver::WebDriverBrowser::launch(spec)
            .await
            .map(|b| Box::new(b) as Box<dyn Browser>),
    }
}

/// Crashes the renderer of the worker page in the browser with main process `pid`, by SIGKILL:
/// Chromium's `--type=renderer` children (not its WebUI or extension renderers); for Firefox,
/// the `-contentproc ... tab` child with the most resident memory. Firefox does not say which
/// content process hosts a tab, and killing its other content processes (about: pages,
/// extensions) can take the whole browser down; the page's process is the one holding
/// onnxruntime-web's heap, hundreds of MB against tens for the others. The browser lives on.
///
/// # Errors
/// [`WorkerError::Driver`] for `crash_tab` when the pid is unknown or no renderer is found.
pub(crate) fn kill_page_processes(pid: Option<u32>) -> Result<String, WorkerError> {
    let fail = |message: String| WorkerError::Driver {
        method: "crash_tab".into(),
        message,
    };
    let pid = pid.ok_or_else(|| fail("the browser's pid is unknown".into()))?;
    let mut firefox_tabs = Vec::new();
    let mut pages: Vec<u32> = Vec::new();
    for p in process::descendants_of(pid) {
        let Some(args) = process::cmdline(p) else {
            continue;
        };
        let has = |a: &str| args.iter().any(|x| x == a);
        if has("--type=renderer") && !has("--top-chrome-webui") && !has("--extension-process") {
            pages.push(p);
        } else if has("-contentproc") && args.last().is_some_and(|a| a == "tab") {
            firefox_tabs.push((process::pss_kib(&[p]).unwrap_or(0), p));
        }
    }
    if let Some(&(_, biggest)) = firefox_tabs.iter().max() {
        pages.push(biggest);
    }
    if pages.is_empty() {
        return Err(fail(format!("no renderer process found under pid {pid}")));
    }
    for &p in &pages {
        let _ = process::kill(p, process::Signal::Kill);
    }
    Ok(format!("SIGKILL to renderer processes {pages:?}"))
}

/// Errors from a browser or its page. Classify with the `is_*` methods, never by message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The browser or driver did not start, or the page never became ready.
    #[error("could not launch {browser}: {message}")]
    Launch {
        /// Which browser.
        browser: BrowserKind,
        /// What went wrong, with the path or flag involved.
        message: String,
    },
    /// The page answered `ok: false` (a JS exception or a refused request).
    #[error("page error in '{method}': {name}: {message}")]
    Page {
        /// The page method called.
        method: String,
        /// The JS error name, e.g. `NotSupportedError`.
        name: String,
        /// The JS error message.
        message: String,
    },
    /// No answer within the bound.
    #[error("'{method}' got no answer within {after:?}")]
    Timeout {
        /// The page method called.
        method: String,
        /// The bound that passed.
        after: Duration,
    },
    /// The browser process or its tab is gone (socket closed, invalid session, process exited).
    #[error("browser crashed or went away during '{method}': {message}")]
    Crashed {
        /// The page method called.
        method: String,
        /// What the driver said.
        message: String,
    },
    /// Any other driver or protocol failure.
    #[error("driver error during '{method}': {message}")]
    Driver {
        /// The page method called.
        method: String,
        /// What the driver said.
        message: String,
    },
    /// The session was closed, or an earlier call left it unusable (it timed out, so the page
    /// may still be busy with it). Nothing was sent to the browser.
    #[error("session unusable for '{method}': {reason}")]
    Unusable {
        /// The page method called.
        method: String,
        /// Why: closed, or the earlier failure.
        reason: String,
    },
    /// The renderer hosting the page crashed while the browser lives on (CDP
    /// `Inspector.targetCrashed`, or the tab's content process is gone).
    #[error("the tab crashed during '{method}': {message}")]
    TabCrashed {
        /// The page method called.
        method: String,
        /// What the driver said.
        message: String,
    },
    /// The connection to the page was dropped while the browser lives on.
    #[error("connection to the page dropped during '{method}': {message}")]
    Disconnected {
        /// The page method called.
        method: String,
        /// What happened.
        message: String,
    },
    /// A browser or driver program is not installed.
    #[error("{program} not found (needed for {browser}); {hint}")]
    NotInstalled {
        /// The browser that needs it.
        browser: BrowserKind,
        /// The missing program, e.g. `geckodriver`.
        program: String,
        /// How to install it, e.g. "run `cargo install --locked geckodriver`".
        hint: String,
    },
}

impl WorkerError {
    /// The browser or tab died; the session cannot be used again.
    pub fn is_browser_crash(&self) -> bool {
        matches!(self, Self::Crashed { .. })
    }
    /// The call timed out; the page may be hung.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
    /// The page itself refused or threw; the session is still usable.
    pub fn is_page_error(&self) -> bool {
        matches!(self, Self::Page { .. })
    }
    /// The renderer hosting the page crashed; the browser may live on (a new tab can help).
    pub fn is_tab_crash(&self) -> bool {
        matches!(self, Self::TabCrashed { .. })
    }
    /// The browser, or the tab hosting the page, crashed.
    pub fn is_crash(&self) -> bool {
        self.is_browser_crash() || self.is_tab_crash()
    }
    /// The connection to the page was dropped; the browser may live on.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Self::Disconnected { .. })
    }
    /// The page's WebGPU device was lost (or a run was abandoned because of it): the page
    /// must be reloaded before it runs a WebGPU model again.
    pub fn is_device_lost(&self) -> bool {
        matches!(self, Self::Page { name, .. } if name == "GpuDeviceLost" || name == "PageWedged")
    }
    /// The session cannot serve calls any more (crashed, closed, disconnected, or broken by a
    /// timeout): reset the page or replace the browser.
    pub fn is_session_lost(&self) -> bool {
        matches!(
            self,
            Self::Crashed { .. }
                | Self::Unusable { .. }
                | Self::TabCrashed { .. }
                | Self::Disconnected { .. }
        )
    }
    /// A browser or driver is missing from this machine (a setup error, not a run failure).
    pub fn is_not_installed(&self) -> bool {
        matches!(self, Self::NotInstalled { .. })
    }
}
