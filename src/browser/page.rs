//! The driver side of the worker page API (`docs/page-api.md`): the JavaScript both drivers
//! inject to call `window.webgpuPool.call`, and the parsing of its JSON string envelope.
//!
//! Inputs: a page method name and its JSON arguments. Outputs: the script text for CDP
//! `Runtime.evaluate` or WebDriver `execute_async_script`, and a `serde_json::Value` or a
//! [`WorkerError`] from the envelope. Keeping this in one file keeps both drivers identical.
//! Must not import `report`, `cli` or terminal crates.

use serde_json::Value;

use super::WorkerError;

/// Evaluates to `true` once the page module ran and installed the API.
pub(crate) const READY_EXPR: &str = "!!(window.webgpuPool && window.webgpuPool.ready === true)";

/// An async JS function `(method, argsJson) -> Promise<string>` that never rejects: a thrown
/// exception or a non-string answer becomes an `ok: false` envelope, so a page bug reads as a
/// page error and never as a driver failure.
const CALL_FN: &str = r#"async function (m, a) {
  const fail = (name, message) => JSON.stringify({ok: false, error: {name, message, stage: "driver"}});
  try {
    if (!window.webgpuPool || typeof window.webgpuPool.call !== "function") {
      return fail("NotReady", "window.webgpuPool.call is not installed on " + location.href);
    }
    const r = await window.webgpuPool.call(m, a);
    return typeof r === "string" ? r : fail("ProtocolError", "call returned " + typeof r + ", not a JSON string");
  } catch (e) {
    return fail((e && e.name) || "Error", String((e && e.message) || e));
  }
}"#;

/// The CDP `Runtime.evaluate` expression (awaited as a promise) for one call.
pub(crate) fn cdp_call_expression(method: &str, args_json: &str) -> String {
    // serde_json string literals are valid JS string literals (ES2019 allows U+2028/9).
    let m = Value::String(method.to_owned());
    let a = Value::String(args_json.to_owned());
    format!("({CALL_FN})({m}, {a})")
}

/// The WebDriver `execute_async_script` body; arguments are `[method, argsJson]`.
pub(crate) fn webdriver_call_script() -> String {
    format!(
        "const done = arguments[arguments.length - 1];\n({CALL_FN})(arguments[0], arguments[1]).then(done);"
    )
}

/// Parses the page's reply envelope.
///
/// # Errors
/// [`WorkerError::Page`] for `ok: false`; [`WorkerError::Driver`] when the reply is not an
/// envelope at all.
pub(crate) fn parse_envelope(method: &str, raw: &str) -> Result<Value, WorkerError> {
    let malformed = |why: &str| WorkerError::Driver {
        method: method.to_owned(),
        message: format!(
            "malformed reply from the page ({why}): {}",
            truncate(raw, 200)
        ),
    };
    let mut v: Value = serde_json::from_str(raw).map_err(|e| malformed(&e.to_string()))?;
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(v.get_mut("value").map(Value::take).unwrap_or(Value::Null)),
        Some(false) => {
            let err = v.get("error").cloned().unwrap_or(Value::Null);
            let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let name = field("name");
            Err(WorkerError::Page {
                method: method.to_owned(),
                name: if name.is_empty() {
                    "Error".to_owned()
                } else {
                    name
                },
                message: field("message"),
            })
        }
        None => Err(malformed("no boolean `ok`")),
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_ok_and_error() {
        let v = parse_envelope("echo", r#"{"ok":true,"value":{"x":1}}"#).unwrap();
        assert_eq!(v["x"], 1);
        let e = parse_envelope(
            "load",
            r#"{"ok":false,"error":{"name":"NotSupportedError","message":"no"}}"#,
        )
        .unwrap_err();
        assert!(e.is_page_error());
        assert!(e.to_string().contains("NotSupportedError"), "{e}");
        assert!(matches!(
            parse_envelope("x", "nope"),
            Err(WorkerError::Driver { .. })
        ));
        assert!(matches!(
            parse_envelope("x", "{}"),
            Err(WorkerError::Driver { .. })
        ));
    }

    #[test]
    fn call_expression_quotes_arguments() {
        let e = cdp_call_expression("ec\"ho", r#"{"a":"</script>"}"#);
        assert!(e.ends_with(r#"("ec\"ho", "{\"a\":\"</script>\"}")"#), "{e}");
        assert_eq!(truncate("abcdef", 3), "abc...");
        assert_eq!(truncate("ab", 3), "ab");
    }
}
