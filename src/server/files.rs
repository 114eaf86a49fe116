//! Request paths to files: the run-token check, path safety, content types and streamed bodies.
//!
//! Input: the raw request path as the client sent it (still percent-encoded) and the two
//! canonical roots. Output: an HTTP response whose headers always carry COOP/COEP/CORP and
//! `Cache-Control: no-store`. Imports nothing from the rest of the crate.
//!
//! Every check works on the raw path, before anything touches the file system, and the
//! canonicalized result is checked against its root again, so a symlink that leads outside is
//! refused too. Refusals are 403 and never say which rule fired: the client is not entitled to
//! learn the layout.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use tokio_util::io::ReaderStream;

/// Chunk size of streamed file bodies: large enough that a 500 MB model is few syscalls, small
/// enough that a request never holds more than this in memory.
const STREAM_CHUNK: usize = 256 * 1024;

/// The two trees the server hands out, canonicalized once at start.
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    /// Canonical root of `/t/<token>/web/...`.
    pub(crate) web: PathBuf,
    /// Canonical root of `/t/<token>/models/...`.
    pub(crate) models: PathBuf,
}

/// What a request path resolved to, before the file system is asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A safe relative path under the web root (`/t/<token>/web/<rel>`).
    Web(PathBuf),
    /// A safe relative path under the models root (`/t/<token>/models/<rel>`).
    Models(PathBuf),
    /// A relay slot (`/t/<token>/relay/<key>`): bytes one page PUTs for another page (or the
    /// harness) to read, e.g. a shard's activation.
    Relay(String),
    /// A page's heartbeat (`/t/<token>/beat/<key>`): POSTed by the page's main thread.
    Beat(String),
    /// Right token, but no such tree: 404.
    Unknown,
    /// Wrong or missing token, or an unsafe path: 403.
    Forbidden,
}

/// Resolves the raw (still percent-encoded) request path against the run token.
pub(crate) fn classify(raw_path: &str, token: &str) -> Target {
    let Some(rest) = raw_path.strip_prefix("/t/") else {
        return Target::Forbidden;
    };
    let (given, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !tokens_equal(given.as_bytes(), token.as_bytes()) {
        return Target::Forbidden;
    }
    let (tree, rel) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(rel) = safe_relative(rel) else {
        return Target::Forbidden;
    };
    match tree {
        "web" => Target::Web(rel),
        "models" => Target::Models(rel),
        "relay" if rel.components().count() == 1 => {
            Target::Relay(rel.to_string_lossy().into_owned())
        }
        "beat" if rel.components().count() == 1 => Target::Beat(rel.to_string_lossy().into_owned()),
        _ => Target::Unknown,
    }
}

/// Compares without an early exit, so response timing does not leak a token prefix.
fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The relative path a request names, or `None` when it must be refused: empty, absolute, with
/// `..`/`.` or empty segments, backslashes, NUL, drive letters, or any escape that decodes to
/// another escape (double encoding such as `%252e`).
fn safe_relative(raw: &str) -> Option<PathBuf> {
    let decoded = percent_decode(raw)?;
    if decoded.is_empty() || decoded.contains(['\\', '\0', '%', ':']) {
        return None;
    }
    let mut rel = PathBuf::new();
    for segment in decoded.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return None;
        }
        rel.push(segment);
    }
    // Belt and braces: a segment can never be absolute after the checks above.
    if rel.is_absolute() || rel.has_root() {
        return None;
    }
    Some(rel)
}

/// `Content-Type` by extension; unknown types are opaque bytes.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("css") => "text/css; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// How a file lookup ended, for the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A file was streamed.
    Served,
    /// Refused with 403.
    Forbidden,
    /// Answered 404.
    NotFound,
    /// Another status (405, 500).
    Other,
}

/// Opens `rel` under `root` and streams it, or says why not.
pub(crate) async fn serve_file(root: &Path, rel: &Path) -> (Outcome, Response<Body>) {
    let joined = root.join(rel);
    let canonical = match tokio::fs::canonicalize(&joined).await {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (Outcome::NotFound, status(StatusCode::NOT_FOUND));
        }
        Err(_) => return (Outcome::Forbidden, status(StatusCode::FORBIDDEN)),
    };
    if !canonical.starts_with(root) {
        return (Outcome::Forbidden, status(StatusCode::FORBIDDEN));
    }
    let file = match tokio::fs::File::open(&canonical).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (Outcome::NotFound, status(StatusCode::NOT_FOUND));
        }
        Err(_) => return (Outcome::Forbidden, status(StatusCode::FORBIDDEN)),
    };
    let len = match file.metadata().await {
        // Directories are never listed.
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return (Outcome::NotFound, status(StatusCode::NOT_FOUND)),
        Err(_) => return (Outcome::Other, status(StatusCode::INTERNAL_SERVER_ERROR)),
    };
    // Streamed, not read whole: model files reach 500 MB and several pages load at once.
    let body = Body::from_stream(ReaderStream::with_capacity(file, STREAM_CHUNK));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&canonical)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    (Outcome::Served, with_policy_headers(response))
}

/// An empty response with `code`, carrying the policy headers.
pub(crate) fn status(code: StatusCode) -> Response<Body> {
    let text = code.canonical_reason().unwrap_or("error");
    let mut response = Response::new(Body::from(format!("{} {text}\n", code.as_u16())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    with_policy_headers(response)
}

/// Adds the headers every response carries. COOP + COEP make the page `crossOriginIsolated`,
/// which onnxruntime-web needs for wasm threads (SharedArrayBuffer); CORP lets the page embed
/// its own files under COEP; `no-store` keeps a stale page or model out of a reused profile.
pub(crate) fn with_policy_headers(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-embedder-policy",
        HeaderValue::from_static("require-corp"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Percent-encodes a file name (or a `/`-separated relative path) for a URL path.
pub(crate) fn encode_path(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len());
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOK: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn classify_accepts_token_paths() {
        assert_eq!(
            classify(&format!("/t/{TOK}/web/worker.html"), TOK),
            Target::Web(PathBuf::from("worker.html"))
        );
        assert_eq!(
            classify(&format!("/t/{TOK}/models/a/b%20c.onnx"), TOK),
            Target::Models(PathBuf::from("a/b c.onnx"))
        );
        assert_eq!(classify(&format!("/t/{TOK}/other/x"), TOK), Target::Unknown);
    }

    #[test]
    fn classify_refuses_bad_tokens_and_paths() {
        let bad = [
            "/web/worker.html".to_string(),
            "/t/deadbeef/web/worker.html".to_string(),
            format!("/t/{TOK}x/web/worker.html"),
            format!("/t/{TOK}/web/../models/x"),
            format!("/t/{TOK}/web/%2e%2e/x"),
            format!("/t/{TOK}/web/%2E%2E/x"),
            format!("/t/{TOK}/web/.%2e/x"),
            format!("/t/{TOK}/web/%252e%252e/x"),
            format!("/t/{TOK}/web/a%5c..%5cb"),
            format!("/t/{TOK}/web/a\\b"),
            format!("/t/{TOK}/web//etc/passwd"),
            format!("/t/{TOK}/web/%2fetc/passwd"),
            format!("/t/{TOK}/web/C:/x"),
            format!("/t/{TOK}/web/a%00b"),
            format!("/t/{TOK}/web/%zz"),
            format!("/t/{TOK}/web/"),
            format!("/t/{TOK}/web/./worker.html"),
        ];
        for path in bad {
            assert_eq!(classify(&path, TOK), Target::Forbidden, "{path}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        for (name, want) in [
            ("a.html", "text/html; charset=utf-8"),
            ("a.js", "text/javascript; charset=utf-8"),
            ("a.MJS", "text/javascript; charset=utf-8"),
            ("a.wasm", "application/wasm"),
            ("a.json", "application/json"),
            ("a.onnx", "application/octet-stream"),
            ("a.bin", "application/octet-stream"),
            ("a.css", "text/css; charset=utf-8"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn encode_path_round_trips_through_classify() {
        let name = "bert tiny#1+ä.onnx";
        let path = format!("/t/{TOK}/models/{}", encode_path(name));
        assert_eq!(classify(&path, TOK), Target::Models(PathBuf::from(name)));
    }
}
