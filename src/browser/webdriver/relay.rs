//! The connection to a remote session: a loopback TCP relay between thirtyfour and the Selenium
//! Grid hub, owned by one remote worker.
//!
//! A remote browser has no pid here to freeze, so `disconnect` cuts the real connection
//! instead: [`Relay::cut`] closes every open connection to the hub (an answer in flight is
//! lost) and refuses new ones for `hold`, as a network partition between the harness and the
//! Grid would. Bytes are copied unchanged. Must not import `report`, `cli` or terminal crates.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Debug, Default)]
struct Shared {
    /// Connections refused until then.
    cut_until: Option<Instant>,
    /// Open connections' copy tasks.
    open: Vec<AbortHandle>,
}

/// A relay from a loopback port to the hub. Dropping it stops it and its connections.
#[derive(Debug)]
pub(super) struct Relay {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target` (`host:port`).
    ///
    /// # Errors
    /// The bind error.
    pub(super) async fn start(target: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut g = state.lock().unwrap_or_else(|p| p.into_inner());
                if g.cut_until.is_some_and(|t| Instant::now() < t) {
                    // Refused: the client sees the connection close at once.
                    drop(inbound);
                    continue;
                }
                g.cut_until = None;
                g.open.retain(|h| !h.is_finished());
                let target = target.clone();
                let copy = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                g.open.push(copy.abort_handle());
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The address thirtyfour connects to.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses new ones for `hold`; returns how many were open.
    pub(super) fn cut(&self, hold: Duration) -> usize {
        let mut g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        g.cut_until = Some(Instant::now() + hold);
        let open = std::mem::take(&mut g.open);
        let n = open.iter().filter(|h| !h.is_finished()).count();
        for h in open {
            h.abort();
        }
        n
    }

    /// Whether the connection is cut right now.
    pub(super) fn is_cut(&self) -> bool {
        let g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        g.cut_until.is_some_and(|t| Instant::now() < t)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        let g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        for h in &g.open {
            h.abort();
        }
    }
}
