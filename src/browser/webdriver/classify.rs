//! What a failed WebDriver call means, from thirtyfour's error variant and from whether the
//! browser and driver processes are still alive; and the liveness probes themselves.
//!
//! Inputs: a thirtyfour error, the browser and driver pids. Output: a [`WorkerError`]. The only
//! message inspection (chromedriver reports a dead tab as a generic "unknown error") is confined
//! to [`classify`]. Must not import `report`, `cli` or terminal crates.

use std::time::Duration;

use thirtyfour::error::{WebDriverError, WebDriverErrorInner};

use crate::browser::{page, process, WorkerError};

/// How often an in-flight call checks that the browser and driver processes are alive.
const PID_WATCH: Duration = Duration::from_millis(25);

/// Resolves once the browser or the driver process is gone; never when neither pid is known.
pub(super) async fn watch_until_dead(browser: Option<u32>, driver: Option<u32>) {
    if browser.is_none() && driver.is_none() {
        return std::future::pending().await;
    }
    loop {
        let dead = |p: Option<u32>| p.is_some_and(|p| !process::pid_alive(p));
        if dead(browser) || dead(driver) {
            return;
        }
        tokio::time::sleep(PID_WATCH).await;
    }
}

/// Decides what a thirtyfour error means, from its variant and from whether the browser and the
/// driver processes are still alive. This is the only place that looks at driver messages.
pub(super) fn classify(
    method: &str,
    after: Duration,
    e: &WebDriverError,
    browser_alive: bool,
    driver_alive: bool,
) -> WorkerError {
    let method = method.to_owned();
    let message = page::truncate(&e.to_string(), 600);
    if !driver_alive {
        return WorkerError::Crashed {
            method,
            message: format!("the driver process is gone: {message}"),
        };
    }
    if !browser_alive {
        return WorkerError::Crashed {
            method,
            message: format!("the browser process is gone: {message}"),
        };
    }
    match e.as_inner() {
        WebDriverErrorInner::InvalidSessionId(_) => WorkerError::Crashed { method, message },
        // The browser lives (checked above): the tab's content process went away.
        WebDriverErrorInner::NoSuchWindow(_) => WorkerError::TabCrashed { method, message },
        WebDriverErrorInner::ScriptTimeout(_) | WebDriverErrorInner::Timeout(_) => {
            WorkerError::Timeout { method, after }
        }
        // Firefox, whose content process died while the browser lives on: the tab shows its
        // crash page, a parent-process page, and every script there is refused ("ExecuteScript
        // and ExecuteAsyncScript are not supported for parent process browsing contexts").
        // Without this it read as a driver error, which a repair takes for a frozen driver and
        // waits out (30 s in a storm) before it resets the page.
        WebDriverErrorInner::UnsupportedOperation(info)
            if info
                .value
                .message
                .contains("parent process browsing context") =>
        {
            WorkerError::TabCrashed {
                method,
                message: page::truncate(info.value.message.lines().next().unwrap_or_default(), 300),
            }
        }
        WebDriverErrorInner::JavascriptError(info) => WorkerError::Page {
            method,
            name: "JavascriptError".into(),
            message: page::truncate(&info.value.message, 600),
        },
        // chromedriver: "session deleted because of page crash", "tab crashed",
        // "chrome not reachable", "disconnected: not connected to DevTools".
        WebDriverErrorInner::UnknownError(info) | WebDriverErrorInner::NotInSpec(info) => {
            // The driver's own first line, without the status and the Grid's Java stack trace.
            let first = info.value.message.lines().next().unwrap_or_default();
            let message = page::truncate(first, 300);
            let m = info.value.message.to_ascii_lowercase();
            // Selenium Grid, once a node is gone: "Unable to execute request for an existing
            // session: Connection error (POST http://<node>/session/...)".
            let dead = [
                "crash",
                "session deleted",
                "not reachable",
                "disconnected",
                "browser has closed",
                "unable to execute request for an existing session",
            ];
            if m.contains("crash") {
                // The browser lives (checked above): its renderer crashed.
                WorkerError::TabCrashed { method, message }
            } else if dead.iter().any(|d| m.contains(d)) {
                WorkerError::Crashed { method, message }
            } else {
                WorkerError::Driver { method, message }
            }
        }
        _ => WorkerError::Driver { method, message },
    }
}

/// The driver's own message, first line only (no status line, no Grid stack trace).
pub(super) fn first_line(e: &WebDriverError) -> String {
    let whole = match e.as_inner() {
        WebDriverErrorInner::UnknownError(info) | WebDriverErrorInner::NotInSpec(info) => {
            info.value.message.clone()
        }
        // Other variants carry the answer's body (JSON) after their own first line.
        _ => {
            return page::truncate(
                &e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                300,
            )
        }
    };
    page::truncate(whole.lines().next().unwrap_or_default(), 300)
}

/// Which of a session's processes exited, for an error message ("the driver (pid 13608)
/// exited", "the browser (pid 13624) and its driver (pid 13608) exited"); `None` while both
/// live.
pub(super) fn exited(browser: Option<u32>, driver: Option<u32>) -> Option<String> {
    let dead = |p: Option<u32>| p.filter(|&p| !process::pid_alive(p));
    match (dead(browser), dead(driver)) {
        (Some(b), Some(d)) => Some(format!(
            "the browser (pid {b}) and its driver (pid {d}) exited"
        )),
        (Some(b), None) => Some(format!("the browser (pid {b}) exited")),
        (None, Some(d)) => Some(format!("the driver (pid {d}) exited")),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thirtyfour::error::WebDriverErrorInfo;

    fn err(inner: WebDriverErrorInner) -> WebDriverError {
        WebDriverError::from_inner(inner)
    }

    #[test]
    fn classification() {
        let t = Duration::from_secs(1);
        let info = |m: &str| WebDriverErrorInfo::new(m.to_owned());
        let gone = err(WebDriverErrorInner::InvalidSessionId(info(
            "invalid session id",
        )));
        assert!(classify("run", t, &gone, true, true).is_browser_crash());
        let http500 = err(WebDriverErrorInner::UnknownError(info(
            "Failed to decode response from marionette",
        )));
        assert!(classify("run", t, &http500, false, true).is_browser_crash());
        assert!(matches!(
            classify("run", t, &http500, true, true),
            WorkerError::Driver { .. }
        ));
        let tab = err(WebDriverErrorInner::UnknownError(info(
            "session deleted because of page crash",
        )));
        assert!(classify("run", t, &tab, true, true).is_tab_crash());
        let refused = err(WebDriverErrorInner::RequestFailed(
            "connection refused".into(),
        ));
        assert!(classify("run", t, &refused, true, false).is_browser_crash());
        let node_gone = err(WebDriverErrorInner::UnknownError(info(
            "Unable to execute request for an existing session: Connection error (POST \
             http://127.0.0.1:4447/session/x/execute/async)",
        )));
        assert!(classify("run", t, &node_gone, true, true).is_browser_crash());
        let crash_page = err(WebDriverErrorInner::UnsupportedOperation(info(
            "ExecuteScript and ExecuteAsyncScript are not supported for parent process \
             browsing contexts: 14",
        )));
        assert!(classify("run", t, &crash_page, true, true).is_tab_crash());
        let other = err(WebDriverErrorInner::UnsupportedOperation(info("not here")));
        assert!(matches!(
            classify("run", t, &other, true, true),
            WorkerError::Driver { .. }
        ));
        let js = err(WebDriverErrorInner::JavascriptError(info("boom")));
        assert!(classify("run", t, &js, true, true).is_page_error());
        let st = err(WebDriverErrorInner::ScriptTimeout(info("late")));
        assert!(classify("run", t, &st, true, true).is_timeout());
    }
}
