//! Where the pages are served from and which browsers run on a Selenium Grid: the asset server
//! on `pool.serve_addr` (HTTPS with `pool.tls`), each hub's `/status`, and the launch specs of
//! remote sessions. Must not import `report`, `cli` or terminal crates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::browser::{self, BrowserKind, DriverKind, LaunchSpec};
use crate::server::AssetServer;

use super::{RunConfig, UsageError};

/// The asset server on `pool.serve_addr` (default `127.0.0.1:0`), over HTTPS with `pool.tls`.
///
/// # Errors
/// The server cannot start (the address cannot be bound, the page is not set up).
pub(crate) async fn start_server(config: &RunConfig) -> Result<AssetServer> {
    let p = &config.scenario.pool;
    // Validation checked the address already.
    let addr = p
        .serve_addr
        .as_deref()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    AssetServer::start_with(
        addr,
        p.tls,
        config.web_dir.clone(),
        config.cache.models_dir(),
    )
    .await
    .with_context(|| format!("starting the asset server on {addr} (--serve-addr)"))
}

/// Each hub's `/status`, in order.
///
/// # Errors
/// [`UsageError`] naming `--grid` and the hub that cannot be asked or is not ready.
pub(super) fn grid_statuses(urls: &[String]) -> Result<Vec<(String, browser::grid::GridStatus)>> {
    let mut out = Vec::new();
    for url in urls {
        let st = browser::grid::status(url)
            .map_err(|e| UsageError(format!("--grid (pool.grid) {url}: {e}")))?;
        if st.offered().is_empty() {
            bail!(UsageError(format!(
                "--grid (pool.grid) {url}: the hub has no node that is up ({} registered); \
                 start the nodes (scripts/grid.sh start starts a local Grid)",
                st.nodes.len()
            )));
        }
        out.push((url.clone(), st));
    }
    Ok(out)
}

/// The launch spec of a remote session of `kind` from the hub at `url`.
pub(super) fn remote_spec(kind: BrowserKind, url: &str, webnn: bool) -> LaunchSpec {
    LaunchSpec {
        kind,
        driver: DriverKind::WebDriver,
        executable: PathBuf::from(format!("{url} (Selenium Grid)")),
        driver_executable: None,
        page_url: String::new(),
        enable_webnn: webnn,
        launch_timeout: Duration::from_secs(60),
        grid: Some(url.to_owned()),
    }
}

/// Refuses a hub none of whose browsers is in `browsers` (it would be silently unused).
///
/// # Errors
/// [`UsageError`] naming `--grid`, what the hub offers and what was asked for.
pub(super) fn every_grid_used(
    grids: &[(String, browser::grid::GridStatus)],
    launches: &[LaunchSpec],
    browsers: &[BrowserKind],
) -> Result<()> {
    for (url, st) in grids {
        if !launches
            .iter()
            .any(|l| l.grid.as_deref() == Some(url.as_str()))
        {
            let offered = st.offered();
            bail!(UsageError(format!(
                "--grid {url}: its nodes offer {}, none of the browsers in --browsers ({}); \
                 name one of them (chromium or chrome for `chrome`)",
                if offered.is_empty() {
                    "no browser".to_owned()
                } else {
                    offered.join(", ")
                },
                browsers
                    .iter()
                    .map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
    }
    Ok(())
}
