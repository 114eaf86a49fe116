//! The local WebDriver server process (geckodriver, chromedriver, msedgedriver): started on a
//! free port with its own temporary directory, polled on `/status` until ready, and asked which
//! child is the browser.
//!
//! Inputs: the browser kind, the driver executable and a temporary directory. Outputs: the
//! driver's `tokio::process::Child` (with `kill_on_drop`) and its port, or a
//! [`DriverServerError`]; the browser's pid.
//! Used by `webdriver/launch.rs` only. Must not import `report`, `cli` or terminal crates.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::browser::process;
use crate::browser::BrowserKind;

/// Attempts at starting the driver on a fresh port (another process may take the port between
/// our probe and the driver's bind; thirtyfour's manager retries the same way).
const PORT_ATTEMPTS: u32 = 3;
/// How often `/status` is polled.
const POLL: Duration = Duration::from_millis(50);
/// Bound on one `/status` request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a failed driver's exit after SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the driver server did not start. Each message names the path or executable involved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DriverServerError {
    /// The OS had no local port to give.
    #[error("no free local port: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// The driver's log file could not be created or shared between stdout and stderr.
    #[error("cannot create {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The executable did not start.
    #[error("cannot start {}: {source}", exe.display())]
    Spawn {
        /// The driver executable.
        exe: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The driver exited before `/status` said ready, on every port tried.
    #[error("{} did not become ready: exited with {status} before it was ready", exe.display())]
    ExitedEarly {
        /// The driver executable.
        exe: PathBuf,
        /// How it exited.
        status: ExitStatus,
    },
}

/// Starts the driver server on a free port and waits for `/status` to say ready. geckodriver
/// with `marionette` attaches to the Firefox already listening there instead of starting one.
///
/// # Errors
/// [`DriverServerError`] naming the port, log file or executable; for a driver that exits
/// early, the last of [`PORT_ATTEMPTS`] attempts.
pub(crate) async fn start_driver(
    kind: BrowserKind,
    exe: &Path,
    dir: &Path,
    marionette: Option<u16>,
) -> Result<(Child, u16), DriverServerError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port().map_err(DriverServerError::NoFreePort)?;
        let log_path = dir.join("driver.log");
        let (out, err) = log_to(&log_path).map_err(|source| DriverServerError::Log {
            path: log_path.clone(),
            source,
        })?;
        let mut cmd = Command::new(exe);
        match kind {
            BrowserKind::Firefox => {
                // The profile geckodriver writes goes to `dir`, and so do Firefox's temp files.
                cmd.arg("--host")
                    .arg("127.0.0.1")
                    .arg("--port")
                    .arg(port.to_string());
                match marionette {
                    // A Firefox we started (see `firefox.rs`): attach to it.
                    Some(m) => cmd
                        .arg("--connect-existing")
                        .arg("--marionette-port")
                        .arg(m.to_string()),
                    // BiDi's default port 9222 would collide between parallel geckodrivers.
                    None => cmd
                        .arg("--profile-root")
                        .arg(dir)
                        .arg("--websocket-port")
                        .arg("0"),
                };
            }
            _ => {
                cmd.arg(format!("--port={port}"));
            }
        }
        // Crash dumps of a crashed tab stay in our directory (Chromium reads this variable).
        cmd.env("TMPDIR", dir)
            .env("BREAKPAD_DUMP_LOCATION", dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| DriverServerError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
        match wait_ready(&mut child, port).await {
            Ok(()) => return Ok((child, port)),
            Err(status) => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
                if attempt >= PORT_ATTEMPTS {
                    return Err(DriverServerError::ExitedEarly {
                        exe: exe.to_path_buf(),
                        status,
                    });
                }
            }
        }
    }
}

/// Polls `/status` until `ready: true`; gives up early when the driver exits (port taken).
/// The overall bound is the caller's launch timeout.
///
/// # Errors
/// The driver's exit status when it exits before it is ready.
async fn wait_ready(child: &mut Child, port: u16) -> Result<(), ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        if let Ok(Ok(body)) = tokio::time::timeout(STATUS_TIMEOUT, http_get(port, "/status")).await
        {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v.pointer("/value/ready") == Some(&Value::Bool(true)) {
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 returning the body. thirtyfour has no way to ask a
/// driver for `/status` before a session exists, and a whole HTTP client dependency for one
/// readiness probe was the rejected alternative.
async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    // chromedriver keeps the connection open despite `Connection: close`, so read by
    // Content-Length instead of to EOF.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(body) = complete_body(&buf) {
            return Ok(body);
        }
        if n == 0 {
            let text = String::from_utf8_lossy(&buf);
            return Ok(text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default());
        }
    }
}

/// The body of a buffered HTTP response once all `Content-Length` bytes are in.
fn complete_body(buf: &[u8]) -> Option<String> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    let body = buf.get(end..end + len)?;
    Some(String::from_utf8_lossy(body).into_owned())
}

/// A new log file at `path` as a child's stdout and stderr.
pub(super) fn log_to(path: &Path) -> std::io::Result<(Stdio, Stdio)> {
    let log = std::fs::File::create(path)?;
    let err = log.try_clone()?;
    Ok((Stdio::from(log), Stdio::from(err)))
}

/// A port that was free a moment ago (the OS picks it; the driver binds it right after).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The browser's main process: the driver's child whose executable is `exe`, else its only or
/// first child (drivers start the browser directly).
pub(crate) fn find_browser_child(driver_pid: u32, exe: &Path) -> Option<u32> {
    let want = exe.canonicalize().unwrap_or_else(|_| exe.to_path_buf());
    let kids = process::children_of(driver_pid);
    kids.iter()
        .copied()
        .find(|k| std::fs::read_link(format!("/proc/{k}/exe")).is_ok_and(|p| p == want))
        .or_else(|| kids.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_body_by_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: x\r\n\r\nabcd";
        assert_eq!(complete_body(r).as_deref(), Some("abcd"));
        assert_eq!(complete_body(&r[..r.len() - 1]), None);
    }
}
