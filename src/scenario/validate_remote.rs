//! Validation of the keys that reach past this machine: `pool.grid` (Selenium Grid hub URLs),
//! `pool.serve_addr` and `pool.tls` (where the pages are served from, and whether a page loaded
//! from another host is still a secure context).

use super::types::PoolConfig;
use super::validate::{push, Issue};

/// Pushes an issue for each hub URL that is not `http://host[:port]`, and for a `serve_addr`
/// that is not an IP:port, is `0.0.0.0`, or is not loopback without `tls`.
pub(super) fn remote(out: &mut Vec<Issue>, p: &PoolConfig) {
    for (i, url) in p.grid.iter().enumerate() {
        if let Err(e) = crate::browser::grid::HubUrl::parse(url) {
            push(out, format!("pool.grid[{i}]"), e.to_string());
        }
    }
    if let Some(addr) = &p.serve_addr {
        match addr.parse::<std::net::SocketAddr>() {
            Err(_) => push(
                out,
                "pool.serve_addr",
                format!("'{addr}' is not host:port with an IP address (e.g. 10.0.0.5:0)"),
            ),
            Ok(a) if a.ip().is_unspecified() => push(
                out,
                "pool.serve_addr",
                format!(
                    "'{addr}' is not an address the nodes can be sent to; name this machine's \
                     address on their network"
                ),
            ),
            Ok(a) if !a.ip().is_loopback() && !p.tls => push(
                out,
                "pool.serve_addr",
                format!(
                    "'{addr}' is not loopback: a page served over plain http from it is not a \
                     secure context (no crossOriginIsolated, no WebGPU); add --tls (pool.tls: \
                     true)"
                ),
            ),
            Ok(_) => {}
        }
    }
}
