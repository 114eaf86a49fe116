//! Asset server tests over raw TCP: an HTTP client would normalize `..` before sending it.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fixture {
    _dir: tempfile::TempDir,
    server: AssetServer,
}

/// A temp tree: `web/` with the page and a fake-free ort entry file (the server only checks it
/// exists), `models/`, and a `secret.txt` beside them that must never be served.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("web");
    let dist = web.join("node_modules/onnxruntime-web/dist");
    std::fs::create_dir_all(&dist).expect("mkdir dist");
    std::fs::write(web.join("worker.html"), "<!doctype html>").expect("write html");
    std::fs::write(web.join("worker.js"), "export {};").expect("write js");
    std::fs::write(dist.join("ort.all.min.mjs"), "export {};").expect("write mjs");
    std::fs::write(dist.join("ort.wasm"), b"\0asm").expect("write wasm");
    std::fs::write(web.join("style.css"), "p{}").expect("write css");
    std::fs::write(web.join("data.json"), "{}").expect("write json");
    std::fs::write(dir.path().join("secret.txt"), "secret").expect("write secret");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), web.join("link.txt"))
        .expect("symlink");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("mkdir models");
    std::fs::write(models.join("m.onnx"), [1u8, 2, 3]).expect("write onnx");
    std::fs::write(models.join("in.bin"), [0u8; 16]).expect("write bin");
    let server = AssetServer::start(web, models).await.expect("start");
    Fixture { _dir: dir, server }
}

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `path` byte for byte as the request target and reads the whole response.
async fn get(server: &AssetServer, path: &str) -> Raw {
    send(server, "GET", path, &[]).await
}

/// Sends `method path` with `body` and reads the whole response.
async fn send(server: &AssetServer, method: &str, path: &str, body: &[u8]) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.expect("write request");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("response in time")
        .expect("read response");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(bytes[..split].to_vec()).expect("utf8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

fn assert_policy_headers(raw: &Raw, path: &str) {
    for (name, value) in [
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-embedder-policy", "require-corp"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(raw.header(name), Some(value), "{name} on {path}");
    }
}

#[tokio::test]
async fn serves_page_with_policy_headers() {
    let f = fixture().await;
    let tok = f.server.token().to_string();
    assert_eq!(tok.len(), 32);
    assert!(f
        .server
        .page_url()
        .ends_with(&format!("/t/{tok}/web/worker.html")));
    let raw = get(&f.server, &format!("/t/{tok}/web/worker.html")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, b"<!doctype html>");
    assert_eq!(raw.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(raw.header("content-length"), Some("15"));
    assert_policy_headers(&raw, "worker.html");
    f.server.shutdown().await;
}

#[tokio::test]
async fn forbids_requests_without_the_token() {
    let f = fixture().await;
    let tok = f.server.token().to_string();
    let wrong = "0".repeat(32);
    for path in [
        "/".to_string(),
        "/web/worker.html".to_string(),
        "/favicon.ico".to_string(),
        format!("/t/{wrong}/web/worker.html"),
        format!("/t/{}/web/worker.html", &tok[..31]),
        format!("/t/{tok}0/web/worker.html"),
        format!("/t/{}/web/worker.html", tok.to_uppercase()),
    ] {
        let raw = get(&f.server, &path).await;
        assert_eq!(raw.status, 403, "{path}");
        assert_policy_headers(&raw, &path);
    }
    assert_eq!(f.server.stats().forbidden, 7);
    assert_eq!(f.server.stats().served, 0);
    f.server.shutdown().await;
}

#[tokio::test]
async fn forbids_traversal_in_every_spelling() {
    let f = fixture().await;
    let tok = f.server.token().to_string();
    let paths = [
        format!("/t/{tok}/web/../secret.txt"),
        format!("/t/{tok}/web/../../secret.txt"),
        format!("/t/{tok}/models/../secret.txt"),
        format!("/t/{tok}/web/%2e%2e/secret.txt"),
        format!("/t/{tok}/web/%2E%2E/secret.txt"),
        format!("/t/{tok}/web/.%2e/secret.txt"),
        format!("/t/{tok}/web/%2e%2e%2fsecret.txt"),
        format!("/t/{tok}/web/..%2fsecret.txt"),
        format!("/t/{tok}/web/%252e%252e/secret.txt"),
        format!("/t/{tok}/web/..%5csecret.txt"),
        format!("/t/{tok}/web/%5c..%5csecret.txt"),
        format!("/t/{tok}/web//etc/passwd"),
        format!("/t/{tok}/web/%2fetc%2fpasswd"),
        format!("/t/{tok}/web/link.txt"),
        format!("/t/{tok}/web/../web/worker.html"),
    ];
    for path in &paths {
        let raw = get(&f.server, path).await;
        assert_eq!(raw.status, 403, "{path}");
        assert!(!raw.body.windows(6).any(|w| w == b"secret"), "{path}");
        assert_policy_headers(&raw, path);
    }
    assert_eq!(f.server.stats().forbidden, paths.len() as u64);
    f.server.shutdown().await;
}

#[tokio::test]
async fn raw_backslash_is_forbidden() {
    let f = fixture().await;
    let tok = f.server.token().to_string();
    // hyper passes a raw backslash through in the request target; the path check refuses it.
    let raw = get(&f.server, &format!("/t/{tok}/web/..\\secret.txt")).await;
    assert_eq!(raw.status, 403);
    assert!(!raw.body.windows(6).any(|w| w == b"secret"));
    assert_policy_headers(&raw, "backslash");
    f.server.shutdown().await;
}

#[tokio::test]
async fn missing_files_and_directories_are_404() {
    let f = fixture().await;
    let tok = f.server.token().to_string();
    for path in [
        format!("/t/{tok}/web/nope.js"),
        format!("/t/{tok}/models/nope.onnx"),
        format!("/t/{tok}/web/node_modules"),
        format!("/t/{tok}/other/worker.html"),
    ] {
        let raw = get(&f.server, &path).await;
        assert_eq!(raw.status, 404, "{path}");
        assert_policy_headers(&raw, &path);
    }
    assert_eq!(f.server.stats().not_found, 4);
    f.server.shutdown().await;
}

#[tokio::test]
async fn content_types_and_model_paths() {
    let f = fixture().await;
    let tok = f.server.token().to_string();
    assert_eq!(
        f.server.model_path("m.onnx"),
        format!("/t/{tok}/models/m.onnx")
    );
    for (path, want) in [
        (
            format!("/t/{tok}/web/worker.js"),
            "text/javascript; charset=utf-8",
        ),
        (
            format!("/t/{tok}/web/node_modules/onnxruntime-web/dist/ort.all.min.mjs"),
            "text/javascript; charset=utf-8",
        ),
        (
            format!("/t/{tok}/web/node_modules/onnxruntime-web/dist/ort.wasm"),
            "application/wasm",
        ),
        (format!("/t/{tok}/web/data.json"), "application/json"),
        (format!("/t/{tok}/web/style.css"), "text/css; charset=utf-8"),
        (f.server.model_path("m.onnx"), "application/octet-stream"),
        (f.server.model_path("in.bin"), "application/octet-stream"),
    ] {
        let raw = get(&f.server, &path).await;
        assert_eq!(raw.status, 200, "{path}");
        assert_eq!(raw.header("content-type"), Some(want), "{path}");
        assert_policy_headers(&raw, &path);
    }
    let stats = f.server.stats();
    assert_eq!((stats.requests, stats.served), (7, 7));
    f.server.shutdown().await;
}

#[tokio::test]
async fn streams_a_large_file_intact() {
    let f = fixture().await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(f.server.models_root().join("big.bin"), &data).expect("write big");
    let raw = get(&f.server, &f.server.model_path("big.bin")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-length"), Some("3000000"));
    assert!(raw.body == data, "body differs");
    f.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let f = fixture().await;
    let addr = f.server.addr();
    let started = std::time::Instant::now();
    f.server.shutdown().await;
    assert!(started.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(1));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn start_reports_bad_roots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = AssetServer::start(dir.path().join("absent"), dir.path().join("models"))
        .await
        .expect_err("missing web root");
    assert!(matches!(err, ServerError::Root { .. }), "{err}");
    assert!(err.to_string().contains("absent"), "{err}");

    std::fs::write(dir.path().join("worker.html"), "x").expect("write html");
    let err = AssetServer::start(dir.path().to_path_buf(), dir.path().join("models"))
        .await
        .expect_err("no npm install");
    assert!(
        matches!(err, ServerError::WebRootIncomplete { missing, .. } if missing == ORT_ENTRY),
        "{err}"
    );
    assert!(err.to_string().contains("npm ci"), "{err}");
}

#[tokio::test]
async fn a_relay_slot_holds_what_a_page_put_until_the_harness_takes_it() {
    let f = fixture().await;
    let path = f.server.relay_path("r1-s0-7");
    assert_eq!(get(&f.server, &path).await.status, 404, "empty slot");
    let put = send(&f.server, "PUT", &path, &[1, 2, 3, 4]).await;
    assert_eq!(put.status, 204);
    assert_policy_headers(&put, &path);
    let got = get(&f.server, &path).await;
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &[1u8, 2, 3, 4][..])
    );
    assert_eq!(
        f.server.relay_len(),
        1,
        "reading leaves the slot for a retry"
    );
    assert_eq!(f.server.take_relay("r1-s0-7"), Some(vec![1, 2, 3, 4]));
    assert_eq!(f.server.relay_len(), 0);
    let wrong_token = path.replace(f.server.token(), &"0".repeat(32));
    let refused = send(&f.server, "PUT", &wrong_token, &[9]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        f.server.relay_len(),
        0,
        "a PUT without the token stores nothing"
    );
    let nested = format!("/t/{}/relay/a/b", f.server.token());
    assert_eq!(send(&f.server, "PUT", &nested, &[9]).await.status, 404);
    f.server.shutdown().await;
}
