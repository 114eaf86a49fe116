//! The asset server over a real socket: the token is required, nothing outside the roots is
//! ever served, and the page gets the cross-origin isolation headers it needs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use webgpu_pool::server::AssetServer;

/// Sends `path` exactly as given (no client-side normalisation of `..`) and returns the response head.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_and_roots_are_enforced() {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web");
    let models = tempfile::tempdir().unwrap();
    std::fs::write(models.path().join("m.onnx"), b"onnx bytes").unwrap();
    let outside = models
        .path()
        .parent()
        .unwrap()
        .join(format!("wgp-secret-{}", std::process::id()));
    std::fs::write(&outside, b"secret").unwrap();

    let server = AssetServer::start(web, models.path().to_path_buf())
        .await
        .expect("server starts");
    let addr = server.addr();
    let tok = server.token().to_string();
    let secret = outside.file_name().unwrap().to_string_lossy().into_owned();

    let checks = tokio::task::spawn_blocking(move || {
        let ok = get(addr, &format!("/t/{tok}/web/worker.html"));
        assert_eq!(ok.0, 200, "{}", ok.1);
        let head = ok.1.to_ascii_lowercase();
        assert!(
            head.contains("cross-origin-opener-policy: same-origin"),
            "{head}"
        );
        assert!(
            head.contains("cross-origin-embedder-policy: require-corp"),
            "{head}"
        );
        assert_eq!(get(addr, &format!("/t/{tok}/models/m.onnx")).0, 200);

        assert_eq!(get(addr, "/web/worker.html").0, 403, "no token");
        assert_eq!(
            get(addr, "/t/0123456789abcdef0123456789abcdef/web/worker.html").0,
            403,
            "wrong token"
        );
        for evil in [
            format!("/t/{tok}/models/../{secret}"),
            format!("/t/{tok}/models/%2e%2e/{secret}"),
            format!("/t/{tok}/models/%2E%2E%2F{secret}"),
            format!("/t/{tok}/web/../../../../etc/passwd"),
            format!("/t/{tok}/models/..%5c{secret}"),
        ] {
            let (status, body) = get(addr, &evil);
            assert_eq!(status, 403, "{evil} -> {status}");
            assert!(!body.contains("secret"), "{evil} leaked the file");
        }
        assert_eq!(get(addr, &format!("/t/{tok}/models/nope.onnx")).0, 404);
    })
    .await;
    let stats = server.stats();
    server.shutdown().await;
    let _ = std::fs::remove_file(&outside);
    checks.expect("checks passed");
    assert!(stats.forbidden >= 7, "{stats:?}");
}
