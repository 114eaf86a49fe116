//! What a failed CDP page call means: a disconnected socket or a dead browser process is a
//! crash, anything else a driver error; and the page envelope inside a `Runtime.evaluate`
//! result. No message text is inspected.
//!
//! Inputs: the socket's failure and the browser's liveness, or an evaluate result. Output: a
//! [`WorkerError`] or the page's value. Pure. Must not import `report`, `cli` or terminal crates.

use serde_json::Value;

use super::socket;
use crate::browser::{page, WorkerError};

/// A failed page call on the DevTools socket, before classification.
#[derive(Debug)]
pub(super) enum Failure {
    /// The socket failed (closed, reset, bad frame).
    Io(std::io::Error),
    /// Chromium answered the command with an error (e.g. the target navigated or crashed).
    Protocol(String),
}

/// Decides what a failed page call means: a disconnected socket or a dead browser process is a
/// crash; anything else is a driver error. No message text is inspected.
pub(super) fn classify(method: &str, failure: Failure, browser_alive: bool) -> WorkerError {
    let method = method.to_owned();
    match failure {
        Failure::Io(e) if socket::is_disconnect(&e) || !browser_alive => WorkerError::Crashed {
            method,
            message: format!("DevTools socket closed: {e}"),
        },
        Failure::Protocol(m) if !browser_alive => WorkerError::Crashed {
            method,
            message: format!("browser process is gone: {m}"),
        },
        Failure::Io(e) => WorkerError::Driver {
            method,
            message: e.to_string(),
        },
        Failure::Protocol(message) => WorkerError::Driver { method, message },
    }
}

/// The page envelope inside a `Runtime.evaluate` result.
pub(super) fn envelope_of(method: &str, result: &Value) -> Result<Value, WorkerError> {
    match result.pointer("/result/value") {
        Some(Value::String(raw)) => page::parse_envelope(method, raw),
        // The wrapper never rejects, so this is an evaluation failure (e.g. a page mid-reload).
        _ => Err(WorkerError::Driver {
            method: method.to_owned(),
            message: format!(
                "evaluation did not give a string: {}",
                page::truncate(&result.to_string(), 300)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classification() {
        let eof = || {
            Failure::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof",
            ))
        };
        assert!(classify("run", eof(), true).is_browser_crash());
        let proto = || Failure::Protocol("Inspected target navigated or closed".into());
        assert!(classify("run", proto(), false).is_browser_crash());
        assert!(matches!(
            classify("run", proto(), true),
            WorkerError::Driver { .. }
        ));
    }

    #[test]
    fn envelope_from_evaluate_result() {
        let ok = json!({"result": {"type": "string", "value": "{\"ok\":true,\"value\":3}"}});
        assert_eq!(envelope_of("echo", &ok).unwrap(), json!(3));
        let thrown =
            json!({"result": {"type": "object", "subtype": "error"}, "exceptionDetails": {}});
        assert!(matches!(
            envelope_of("echo", &thrown),
            Err(WorkerError::Driver { .. })
        ));
    }
}
