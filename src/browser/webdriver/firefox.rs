//! Starting a local Firefox ourselves, for geckodriver to attach to (`--connect-existing`).
//!
//! geckodriver starts Firefox with `MOZ_CRASHREPORTER_SHUTDOWN=1` and no way to unset it (its
//! `moz:firefoxOptions.env` is applied on Android only). With that variable, any content
//! process that dies takes the whole browser down ("A content process crashed and
//! MOZ_CRASHREPORTER_SHUTDOWN is set, shutting down"): a crashed or hung tab then costs a new
//! browser. Started by us without it, Firefox shows its tab-crashed page in the same window, and
//! navigating that window loads the worker page again in a new content process (measured here,
//! Firefox 153.8.0esr). Must not import `report`, `cli` or terminal crates.
//!
//! Inputs: the Firefox executable and the launch's temporary directory. Output: the running
//! Firefox and the port its Marionette server listens on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::driver_server::log_to;
use crate::browser::flags;

/// Firefox's own output, in the launch's directory (its last lines join a launch error).
pub(crate) const LOG: &str = "browser.log";
/// How often the port file is looked for.
const POLL: Duration = Duration::from_millis(50);

/// Why Firefox could not be started for geckodriver to attach to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FirefoxStartError {
    /// The profile could not be written.
    #[error("cannot write the Firefox profile {}: {source}", path.display())]
    Profile {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The executable could not be run.
    #[error("cannot run {}: {source}", exe.display())]
    Spawn {
        /// The Firefox executable.
        exe: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Firefox exited before its Marionette server listened (the launch error carries the
    /// last lines of its log).
    #[error("{} exited ({status}) before Marionette listened", exe.display())]
    Exited {
        /// The Firefox executable.
        exe: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
    },
}

/// The profile's `user.js`: the pool's prefs, and Marionette on a port of its own choosing
/// (port 0: it writes the port it took to `MarionetteActivePort`, so no two launches race for
/// one free port).
pub(crate) fn user_js() -> String {
    let mut out = String::new();
    for (name, value) in flags::firefox_prefs() {
        let _ = writeln!(out, "user_pref({}, {value});", Value::String(name));
    }
    out.push_str("user_pref(\"marionette.port\", 0);\n");
    out
}

/// Starts Firefox headless with Marionette on, its profile in `dir/profile` and its output in
/// `dir/browser.log`, and waits until Marionette says which port it listens on. The caller
/// bounds the wait (the launch timeout) and owns the child (`kill_on_drop`).
///
/// # Errors
/// [`FirefoxStartError`] naming the profile, the executable or the log.
pub(crate) async fn start_firefox(
    exe: &Path,
    dir: &Path,
) -> Result<(Child, u16), FirefoxStartError> {
    let profile = dir.join("profile");
    let written = std::fs::create_dir_all(&profile)
        .and_then(|()| std::fs::write(profile.join("user.js"), user_js()));
    written.map_err(|source| FirefoxStartError::Profile {
        path: profile.clone(),
        source,
    })?;
    let log_path = dir.join(LOG);
    let (out, err) = log_to(&log_path).map_err(|source| FirefoxStartError::Profile {
        path: log_path,
        source,
    })?;
    let mut child = Command::new(exe)
        .args(["--marionette", "-headless", "-no-remote", "-profile"])
        .arg(&profile)
        .env_remove("MOZ_CRASHREPORTER_SHUTDOWN")
        .env("MOZ_CRASHREPORTER_DISABLE", "1")
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| FirefoxStartError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
    let port_file = profile.join("MarionetteActivePort");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(FirefoxStartError::Exited {
                exe: exe.to_path_buf(),
                status,
            });
        }
        let port = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .filter(|&p| p > 0);
        if let Some(port) = port {
            return Ok((child, port));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::user_js;

    #[test]
    fn the_profile_turns_webgpu_on_and_lets_marionette_pick_its_port() {
        let js = user_js();
        assert!(
            js.contains("user_pref(\"dom.webgpu.enabled\", true);"),
            "{js}"
        );
        assert!(js.contains("user_pref(\"marionette.port\", 0);"), "{js}");
        assert!(js
            .lines()
            .all(|l| l.starts_with("user_pref(\"") && l.ends_with(");")));
    }
}
