//! Finds installed browsers and WebDriver servers, with their versions.
//!
//! Inputs: `PATH`, `CARGO_HOME` / `~/.cargo/bin`, and the vendors' known install paths.
//! Output: [`Installed`], which `browsers --json` prints and which turns a browser choice into a
//! [`LaunchSpec`] or into an error that says what to install. Versions come from running
//! `<binary> --version` with a time bound. Must not import `report`, `cli` or terminal crates.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{BrowserKind, DriverKind, LaunchSpec, WorkerError};

/// Bound on one `--version` run (Firefox can take a second on a cold cache).
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A WebDriver server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebDriverServer {
    /// `chromedriver`, for Chromium and Chrome.
    Chromedriver,
    /// `msedgedriver`, for Edge.
    Msedgedriver,
    /// `geckodriver`, for Firefox.
    Geckodriver,
}

impl WebDriverServer {
    /// The server that drives `kind`.
    pub fn for_browser(kind: BrowserKind) -> Self {
        match kind {
            BrowserKind::Chromium | BrowserKind::ChromiumShell | BrowserKind::Chrome => {
                Self::Chromedriver
            }
            BrowserKind::Edge => Self::Msedgedriver,
            BrowserKind::Firefox => Self::Geckodriver,
        }
    }

    /// The executable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chromedriver => "chromedriver",
            Self::Msedgedriver => "msedgedriver",
            Self::Geckodriver => "geckodriver",
        }
    }

    /// How to install it.
    pub fn install_hint(self) -> &'static str {
        match self {
            Self::Chromedriver => {
                "install the Debian package `chromium-driver` (scripts/setup.sh does)"
            }
            Self::Msedgedriver => "download msedgedriver matching your Edge version from Microsoft",
            Self::Geckodriver => "run `cargo install --locked geckodriver` (scripts/setup.sh does)",
        }
    }

    /// Executable names and absolute paths to look for, in preference order.
    fn candidates(self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = match self {
            Self::Chromedriver => vec![
                "chromedriver".into(),
                "/usr/lib/chromium/chromedriver".into(),
            ],
            Self::Msedgedriver => vec![
                "msedgedriver".into(),
                "/opt/microsoft/msedge/msedgedriver".into(),
            ],
            Self::Geckodriver => vec!["geckodriver".into()],
        };
        // `cargo install` puts geckodriver here, which is often not on a service's PATH.
        for dir in cargo_bin_dirs() {
            out.push(dir.join(self.as_str()));
        }
        out
    }
}

/// Where `scripts/setup.sh` unpacks chromium-shell.
pub fn chromium_shell_path() -> PathBuf {
    crate::models::Cache::from_env()
        .root()
        .join("chromium-shell/153.0.0/chromium")
}

/// Executable names and absolute paths for `kind`, in preference order.
fn browser_candidates(kind: BrowserKind) -> Vec<PathBuf> {
    let list: &[&str] = match kind {
        BrowserKind::ChromiumShell => return vec![chromium_shell_path()],
        // The real binary first: `/usr/bin/chromium` is a shell wrapper that adds flags and
        // execs it, so its pid would not be the browser's.
        BrowserKind::Chromium => &["/usr/lib/chromium/chromium", "chromium", "chromium-browser"],
        BrowserKind::Chrome => &[
            "/opt/google/chrome/chrome",
            "google-chrome-stable",
            "google-chrome",
        ],
        BrowserKind::Edge => &[
            "/opt/microsoft/msedge/msedge",
            "microsoft-edge-stable",
            "microsoft-edge",
        ],
        BrowserKind::Firefox => &["firefox-esr", "firefox", "/usr/lib/firefox-esr/firefox-esr"],
    };
    list.iter().map(PathBuf::from).collect()
}

fn cargo_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let d = PathBuf::from(home).join(".cargo/bin");
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// One installed program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// Absolute path of the executable.
    pub path: PathBuf,
    /// Version from `--version`, e.g. `156.0.8078.108`; `None` when it could not be read.
    pub version: Option<String>,
}

/// Browsers and WebDriver servers found on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Installed browsers by kind.
    pub browsers: BTreeMap<BrowserKind, Found>,
    /// Installed WebDriver servers by name.
    pub drivers: BTreeMap<WebDriverServer, Found>,
}

impl Installed {
    /// The browser of `kind`, if installed.
    pub fn browser(&self, kind: BrowserKind) -> Option<&Found> {
        self.browsers.get(&kind)
    }

    /// The kinds installed, in [`BrowserKind::ALL`] order.
    pub fn kinds(&self) -> Vec<BrowserKind> {
        BrowserKind::ALL
            .into_iter()
            .filter(|k| self.browsers.contains_key(k))
            .collect()
    }

    /// The WebDriver server for `kind`, if installed.
    pub fn driver_for(&self, kind: BrowserKind) -> Option<&Found> {
        self.drivers.get(&WebDriverServer::for_browser(kind))
    }

    /// The browser of `kind`.
    ///
    /// # Errors
    /// [`WorkerError::NotInstalled`] naming the package to install.
    pub fn require_browser(&self, kind: BrowserKind) -> Result<&Found, WorkerError> {
        self.browser(kind).ok_or_else(|| WorkerError::NotInstalled {
            browser: kind,
            program: kind.as_str().to_owned(),
            hint: kind.install_hint().to_owned(),
        })
    }

    /// The WebDriver server for `kind`.
    ///
    /// # Errors
    /// [`WorkerError::NotInstalled`] naming how to install it.
    pub fn require_driver_for(&self, kind: BrowserKind) -> Result<&Found, WorkerError> {
        let server = WebDriverServer::for_browser(kind);
        self.driver_for(kind)
            .ok_or_else(|| WorkerError::NotInstalled {
                browser: kind,
                program: server.as_str().to_owned(),
                hint: server.install_hint().to_owned(),
            })
    }

    /// A [`LaunchSpec`] for `kind` driven by `driver`, using the installed executables.
    ///
    /// # Errors
    /// [`WorkerError::NotInstalled`] when the browser (or, for WebDriver, its server) is
    /// missing; [`WorkerError::Launch`] when CDP is asked for a browser that does not speak it.
    pub fn launch_spec(
        &self,
        kind: BrowserKind,
        driver: DriverKind,
        page_url: &str,
        enable_webnn: bool,
        launch_timeout: Duration,
    ) -> Result<LaunchSpec, WorkerError> {
        let browser = self.require_browser(kind)?;
        let driver_executable = match driver {
            DriverKind::Cdp if !kind.is_chromium_family() => {
                return Err(WorkerError::Launch {
                    browser: kind,
                    message: "the CDP driver only drives Chromium-family browsers; use webdriver"
                        .into(),
                })
            }
            DriverKind::Cdp => None,
            DriverKind::WebDriver if kind == BrowserKind::ChromiumShell => {
                return Err(WorkerError::Launch {
                    browser: kind,
                    message: "chromium-shell is driven over CDP only: chromedriver drives only \
                              the Chromium release it was built for (156 here), and the shell is \
                              153; use --driver cdp"
                        .into(),
                })
            }
            DriverKind::WebDriver => Some(self.require_driver_for(kind)?.path.clone()),
        };
        Ok(LaunchSpec {
            kind,
            driver,
            executable: browser.path.clone(),
            driver_executable,
            page_url: page_url.to_owned(),
            enable_webnn,
            launch_timeout,
            grid: None,
        })
    }
}

/// Looks for every known browser and WebDriver server and reads their versions.
/// Never fails: what is missing is simply absent from the result.
pub fn discover() -> Installed {
    let browsers: Vec<(BrowserKind, PathBuf)> = BrowserKind::ALL
        .into_iter()
        .filter_map(|k| first_existing(&browser_candidates(k)).map(|p| (k, p)))
        .collect();
    let servers = [
        WebDriverServer::Chromedriver,
        WebDriverServer::Msedgedriver,
        WebDriverServer::Geckodriver,
    ];
    let drivers: Vec<(WebDriverServer, PathBuf)> = servers
        .into_iter()
        .filter_map(|s| first_existing(&s.candidates()).map(|p| (s, p)))
        .collect();

    // `--version` runs in parallel: Firefox alone can take most of a second.
    std::thread::scope(|scope| {
        let b: Vec<_> = browsers
            .iter()
            .map(|(k, p)| (*k, p.clone(), scope.spawn(move || version_of(p))))
            .collect();
        let d: Vec<_> = drivers
            .iter()
            .map(|(s, p)| (*s, p.clone(), scope.spawn(move || version_of(p))))
            .collect();
        let mut out = Installed::default();
        for (kind, path, h) in b {
            let version = h.join().ok().flatten();
            out.browsers.insert(kind, Found { path, version });
        }
        for (server, path, h) in d {
            let version = h.join().ok().flatten();
            out.drivers.insert(server, Found { path, version });
        }
        out
    })
}

/// The first candidate that exists as an executable file: absolute paths are checked as given,
/// bare names are looked up on `PATH`. Symlinks are resolved so the pid we later see is the
/// binary's own.
fn first_existing(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find_map(|c| {
        let found = if c.is_absolute() {
            is_executable(c).then(|| c.clone())
        } else {
            which(c)
        };
        found.map(|p| p.canonicalize().unwrap_or(p))
    })
}

fn which(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `<path> --version` with a time bound and extracts the version number.
/// Returns `None` when the program fails, times out or prints no number.
pub fn version_of(path: &Path) -> Option<String> {
    let mut child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    child.stdout.take()?.read_to_string(&mut text).ok()?;
    parse_version(&text)
}

/// Async [`version_of`]: the child is killed if the future is dropped (`kill_on_drop`), so a
/// launch that fails or times out leaves no `--version` process behind.
pub async fn version_of_async(path: &Path, bound: Duration) -> Option<String> {
    let child = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let out = tokio::time::timeout(bound, child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// The first whitespace-separated token of the first non-empty line that starts with a digit:
/// `Chromium 156.0.8078.108` -> `156.0.8078.108`, `Mozilla Firefox 153.8.0esr` -> `153.8.0esr`,
/// `ChromeDriver 156.0.8078.108 (730482a9...)` -> `156.0.8078.108`. Also accepts a CDP product
/// string such as `Chrome/156.0.8078.108` or `HeadlessChrome/156.0.8078.108`.
pub fn parse_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    line.split(|c: char| c.is_whitespace() || c == '/')
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("Chromium 156.0.8078.108 \n").as_deref(),
            Some("156.0.8078.108")
        );
        assert_eq!(
            parse_version("Mozilla Firefox 153.8.0esr").as_deref(),
            Some("153.8.0esr")
        );
        assert_eq!(
            parse_version(
                "ChromeDriver 156.0.8078.108 (730482a940ce-refs/branch-heads/8078@{#2244})"
            )
            .as_deref(),
            Some("156.0.8078.108")
        );
        assert_eq!(
            parse_version("geckodriver 0.37.1\n\nThe source code ...").as_deref(),
            Some("0.37.1")
        );
        assert_eq!(
            parse_version("HeadlessChrome/156.0.8078.108").as_deref(),
            Some("156.0.8078.108")
        );
        assert_eq!(parse_version("no digits here"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn installed_round_trips_and_explains_missing() {
        let mut inst = Installed::default();
        inst.browsers.insert(
            BrowserKind::Firefox,
            Found {
                path: "/usr/lib/firefox-esr/firefox-esr".into(),
                version: Some("153.8.0esr".into()),
            },
        );
        let json = serde_json::to_string(&inst).unwrap();
        assert!(json.contains("\"firefox\""), "{json}");
        let back: Installed = serde_json::from_str(&json).unwrap();
        assert_eq!(back, inst);

        let err = inst
            .require_driver_for(BrowserKind::Firefox)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cargo install --locked geckodriver"), "{err}");
        let err = inst
            .require_browser(BrowserKind::Chromium)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chromium"), "{err}");
        let err = inst
            .launch_spec(
                BrowserKind::Firefox,
                DriverKind::Cdp,
                "http://x/",
                false,
                Duration::from_secs(1),
            )
            .unwrap_err();
        assert!(matches!(err, WorkerError::Launch { .. }));
    }
}
