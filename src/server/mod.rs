//! The asset server: hands each browser page its files over HTTP.
//!
//! Serves `web/` (the worker page and the onnxruntime-web npm install) at `/t/<token>/web/…` and
//! the model cache at `/t/<token>/models/…`, on `127.0.0.1:0` by default. The token is 128 random
//! bits made per run, so nothing else on the machine (or on the network, when bound for Selenium
//! Grid) can read the files without it. Every response carries COOP/COEP/CORP so the page is
//! `crossOriginIsolated`, and `Cache-Control: no-store`. Files are streamed, never read whole.
//!
//! Inputs: the two directory roots. Outputs: URLs for the drivers ([`AssetServer::page_url`],
//! [`AssetServer::model_path`]) and request counters ([`ServerStats`]).
//! This module imports nothing from the rest of the crate (it sits under `pool`).

mod files;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, Response, StatusCode};
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sync::lock;
use files::{Outcome, Roots, Target};

/// How long [`AssetServer::shutdown`] waits for open connections before it aborts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The file the page's module imports; its absence means `npm ci` was not run in `web/`.
const ORT_ENTRY: &str = "node_modules/onnxruntime-web/dist/ort.all.min.mjs";

/// Errors of starting the asset server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A root directory is missing or unreadable.
    #[error("asset root '{path}' is not usable: {source}")]
    Root {
        /// The root as given.
        path: PathBuf,
        /// Why canonicalizing or creating it failed.
        source: std::io::Error,
    },
    /// The web root lacks a file the page needs.
    #[error("web root '{root}' lacks '{missing}': {hint}")]
    WebRootIncomplete {
        /// The web root as given.
        root: PathBuf,
        /// The relative path that is missing.
        missing: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// The listening socket could not be bound.
    #[error("cannot bind the asset server to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The TLS certificate or configuration could not be made.
    #[error("cannot set up TLS for the asset server: {message}")]
    Tls {
        /// What failed.
        message: String,
    },
    /// The run token could not be drawn from `/dev/urandom`.
    #[error("cannot read a run token from /dev/urandom: {source}")]
    Token {
        /// The read error.
        source: std::io::Error,
    },
}

/// Request counters, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Every request answered, whatever its status.
    pub requests: u64,
    /// Files streamed (200).
    pub served: u64,
    /// Requests refused with 403: wrong or missing token, or an unsafe path.
    pub forbidden: u64,
    /// Requests answered 404.
    pub not_found: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    served: AtomicU64,
    forbidden: AtomicU64,
    not_found: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    token: String,
    roots: Roots,
    counters: Counters,
    /// Relay slots: key -> bytes, put by a page, read by a page or taken by the harness.
    relay: std::sync::Mutex<std::collections::HashMap<String, axum::body::Bytes>>,
    /// Heartbeats: key -> when the last one arrived.
    beats: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// The largest body a relay slot takes (a shard's activation or output).
const RELAY_MAX_BYTES: usize = 256 * 1024 * 1024;

/// A running asset server. Stop it with [`AssetServer::shutdown`]; dropping it aborts the
/// serving task without waiting.
#[derive(Debug)]
pub struct AssetServer {
    addr: SocketAddr,
    /// Serving HTTPS with a certificate made at start.
    tls: bool,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl AssetServer {
    /// Starts a server on `127.0.0.1` with a port the OS picks.
    ///
    /// `web_root` must hold `worker.html` and the npm install of onnxruntime-web;
    /// `models_root` is created when missing (it is a cache the models code fills later).
    ///
    /// # Errors
    /// [`ServerError::Root`], [`ServerError::WebRootIncomplete`], [`ServerError::Token`] or
    /// [`ServerError::Bind`].
    pub async fn start(web_root: PathBuf, models_root: PathBuf) -> Result<Self, ServerError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), web_root, models_root).await
    }

    /// Starts a server on `addr`, e.g. an address Selenium Grid nodes can reach.
    ///
    /// The URLs it hands out use the bound address, so bind a concrete one, not `0.0.0.0`.
    /// Browsers treat only `localhost`/`127.0.0.1` (or HTTPS) as a secure context: a page served
    /// from a LAN address is not `crossOriginIsolated` and has no WebGPU unless the browser is
    /// told to trust that origin (Chromium `--unsafely-treat-insecure-origin-as-secure`).
    ///
    /// # Errors
    /// As [`AssetServer::start`].
    pub async fn start_on(
        addr: SocketAddr,
        web_root: PathBuf,
        models_root: PathBuf,
    ) -> Result<Self, ServerError> {
        Self::start_with(addr, false, web_root, models_root).await
    }

    /// As [`AssetServer::start_on`], over HTTPS when `tls` is set: a self-signed certificate
    /// is made at start for the bound IP address (and `localhost`), so a page a Selenium Grid
    /// node loads from another host is a secure, cross-origin-isolated context. Browsers must
    /// be told to accept it (`acceptInsecureCerts`, Chromium `--ignore-certificate-errors`).
    ///
    /// # Errors
    /// As [`AssetServer::start`], and [`ServerError::Tls`] when the certificate cannot be made.
    pub async fn start_with(
        addr: SocketAddr,
        tls: bool,
        web_root: PathBuf,
        models_root: PathBuf,
    ) -> Result<Self, ServerError> {
        let roots = Roots {
            web: canonical_root(&web_root)?,
            models: {
                std::fs::create_dir_all(&models_root).map_err(|source| ServerError::Root {
                    path: models_root.clone(),
                    source,
                })?;
                canonical_root(&models_root)?
            },
        };
        for (missing, hint) in [
            (
                "worker.html",
                "the worker page is part of the repository's web/ directory",
            ),
            (ORT_ENTRY, "run `npm ci` in web/ (scripts/setup.sh does)"),
        ] {
            if !roots.web.join(missing).is_file() {
                return Err(ServerError::WebRootIncomplete {
                    root: web_root,
                    missing,
                    hint,
                });
            }
        }
        let token = random_token().map_err(|source| ServerError::Token { source })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let tls = if tls { Some(tls_config(bound)?) } else { None };
        let shared = Arc::new(Shared {
            token,
            roots,
            counters: Counters::default(),
            relay: std::sync::Mutex::new(std::collections::HashMap::new()),
            beats: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = match &tls {
            None => tokio::spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                    // A dropped sender also stops the server.
                    let _ = stopped.await;
                });
                // Accept errors are retried inside axum; an error here means the listener is
                // gone, and the drivers will see connection failures, which they already report.
                let _ = serve.await;
            }),
            Some(config) => tokio::spawn(serve_tls(
                listener,
                app,
                tokio_rustls::TlsAcceptor::from(Arc::clone(config)),
                stopped,
            )),
        };
        Ok(Self {
            addr: bound,
            tls: tls.is_some(),
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The absolute path of relay slot `key` (PUT bytes there, GET them back; the harness
    /// takes them with [`AssetServer::take_relay`]).
    pub fn relay_path(&self, key: &str) -> String {
        format!("/t/{}/relay/{}", self.shared.token, files::encode_path(key))
    }

    /// The absolute path a page POSTs its heartbeat `key` to.
    pub fn beat_path(&self, key: &str) -> String {
        format!("/t/{}/beat/{}", self.shared.token, files::encode_path(key))
    }

    /// When heartbeat `key` last arrived, if one ever did.
    pub fn last_beat(&self, key: &str) -> Option<std::time::Instant> {
        beat_times(&self.shared).get(key).copied()
    }

    /// Forgets heartbeat `key` (its page is being replaced).
    pub fn forget_beat(&self, key: &str) {
        beat_times(&self.shared).remove(key);
    }

    /// Removes relay slot `key` and returns its bytes, if a page put any.
    pub fn take_relay(&self, key: &str) -> Option<Vec<u8>> {
        relay_slots(&self.shared).remove(key).map(|b| b.to_vec())
    }

    /// Relay slots held now.
    pub fn relay_len(&self) -> usize {
        relay_slots(&self.shared).len()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The run token (32 lowercase hex digits) every path must carry.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// `http://<ip>:<port>` (`https://` with TLS), without a trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the server speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The URL a browser opens: `http://<ip>:<port>/t/<token>/web/worker.html`.
    pub fn page_url(&self) -> String {
        format!(
            "{}/t/{}/web/worker.html",
            self.base_url(),
            self.shared.token
        )
    }

    /// The absolute path the page fetches for a file under the models root:
    /// `/t/<token>/models/<file_name>` (percent-encoded; `/` separates subdirectories).
    pub fn model_path(&self, file_name: &str) -> String {
        format!(
            "/t/{}/models/{}",
            self.shared.token,
            files::encode_path(file_name)
        )
    }

    /// The canonical web root being served.
    pub fn web_root(&self) -> &Path {
        &self.shared.roots.web
    }

    /// The canonical models root being served.
    pub fn models_root(&self) -> &Path {
        &self.shared.roots.models
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        ServerStats {
            requests: c.requests.load(Ordering::Relaxed),
            served: c.served.load(Ordering::Relaxed),
            forbidden: c.forbidden.load(Ordering::Relaxed),
            not_found: c.not_found.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, lets open requests finish for up to 3 s, then aborts what is left.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for AssetServer {
    fn drop(&mut self) {
        // Non-blocking on purpose (API C-DTOR-BLOCK); `shutdown` is the graceful path.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Bound on a client's TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls server configuration with a self-signed certificate for `bound`'s IP address and
/// `localhost`, HTTP/1.1 only (what the page's fetches use).
fn tls_config(bound: SocketAddr) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, ServerError> {
    use tokio_rustls::rustls;
    let fail = |message: String| ServerError::Tls { message };
    let names = vec![bound.ip().to_string(), "localhost".to_owned()];
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| fail(format!("certificate: {e}")))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .map_err(|e| fail(format!("certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS accept loop: a TLS handshake, then HTTP/1.1 served by the same router as plain
/// HTTP. On stop it stops accepting and ends open connections (the pages are closed by then).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut open = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                open.spawn(async move {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = open.join_next(), if !open.is_empty() => {}
        }
    }
    open.abort_all();
    while open.join_next().await.is_some() {}
}

fn canonical_root(path: &Path) -> Result<PathBuf, ServerError> {
    let canonical = std::fs::canonicalize(path).map_err(|source| ServerError::Root {
        path: path.to_path_buf(),
        source,
    })?;
    if !canonical.is_dir() {
        return Err(ServerError::Root {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    Ok(canonical)
}

/// 128 bits from the kernel, as hex. Read directly rather than adding a `rand` dependency for
/// sixteen bytes.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The one handler: every request, whatever its path, comes here, so every response gets the
/// policy headers and is counted.
async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let counters = &shared.counters;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    // The raw path, still percent-encoded: decoding here first would let `%2e%2e` slip past.
    let target = files::classify(request.uri().path(), &shared.token);
    let (outcome, response) = match target {
        Target::Forbidden => (Outcome::Forbidden, files::status(StatusCode::FORBIDDEN)),
        Target::Unknown => (Outcome::NotFound, files::status(StatusCode::NOT_FOUND)),
        Target::Relay(key) => relay(&shared, &key, request).await,
        Target::Beat(key) if request.method() == Method::POST => {
            beat_times(&shared).insert(key, std::time::Instant::now());
            (Outcome::Other, files::status(StatusCode::NO_CONTENT))
        }
        Target::Beat(_) => (
            Outcome::Other,
            files::status(StatusCode::METHOD_NOT_ALLOWED),
        ),
        _ if request.method() != Method::GET && request.method() != Method::HEAD => (
            Outcome::Other,
            files::status(StatusCode::METHOD_NOT_ALLOWED),
        ),
        Target::Web(rel) => files::serve_file(&shared.roots.web, &rel).await,
        Target::Models(rel) => files::serve_file(&shared.roots.models, &rel).await,
    };
    let counter = match outcome {
        Outcome::Served => Some(&counters.served),
        Outcome::Forbidden => Some(&counters.forbidden),
        Outcome::NotFound => Some(&counters.not_found),
        Outcome::Other => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    response
}

fn relay_slots(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, axum::body::Bytes>> {
    lock(&shared.relay)
}

fn beat_times(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Instant>> {
    lock(&shared.beats)
}

/// A relay slot: PUT stores the body (replacing what was there), GET answers it.
async fn relay(shared: &Shared, key: &str, request: Request<Body>) -> (Outcome, Response<Body>) {
    match *request.method() {
        Method::PUT => match axum::body::to_bytes(request.into_body(), RELAY_MAX_BYTES).await {
            Ok(bytes) => {
                relay_slots(shared).insert(key.to_string(), bytes);
                (Outcome::Served, files::status(StatusCode::NO_CONTENT))
            }
            Err(_) => (Outcome::Other, files::status(StatusCode::PAYLOAD_TOO_LARGE)),
        },
        Method::GET => match relay_slots(shared).get(key).cloned() {
            Some(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                response.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/octet-stream"),
                );
                (Outcome::Served, files::with_policy_headers(response))
            }
            None => (Outcome::NotFound, files::status(StatusCode::NOT_FOUND)),
        },
        _ => (
            Outcome::Other,
            files::status(StatusCode::METHOD_NOT_ALLOWED),
        ),
    }
}

#[cfg(test)]
mod tests;
