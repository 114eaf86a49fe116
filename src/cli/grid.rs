//! `--grid`, `--serve-addr`, `--tls`: remote browsers on Selenium Grid, and where the pages are
//! served from. Flattened into run, stress, scenario and shard.

use clap::Args;

/// Remote browsers on Selenium Grid, and where the pages are served from.
#[derive(Debug, Args)]
#[command(next_help_heading = "Selenium Grid")]
pub struct GridArgs {
    /// A Selenium Grid 4 hub, e.g. http://127.0.0.1:4444 (repeat or comma-separate for
    /// several). Each browser in --browsers that the Grid's nodes offer (chromium and chrome as
    /// `chrome`, firefox, edge) runs there as a remote WebDriver session; the others run here.
    /// The report names the node that served each worker. `scripts/grid.sh start` starts a
    /// local Grid.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    pub grid: Vec<String>,
    /// Where the asset server listens, as IP:PORT (port 0 picks one). Remote nodes must reach
    /// it: give this machine's address on their network (with --tls unless it is loopback).
    /// Default 127.0.0.1:0.
    #[arg(long, value_name = "IP:PORT")]
    pub serve_addr: Option<String>,
    /// Serve the pages over HTTPS with a self-signed certificate made for this run (browsers
    /// are told to accept it), so a page loaded from another host is still a secure,
    /// cross-origin-isolated context. Loopback over http stays the default.
    #[arg(long)]
    pub tls: bool,
}

impl GridArgs {
    /// Sets the scenario's `pool.grid`, `pool.serve_addr` and `pool.tls` from the flags given
    /// (a flag overrides the file's key; an absent flag leaves it).
    pub fn apply(&self, pool: &mut webgpu_pool::scenario::PoolConfig) {
        if !self.grid.is_empty() {
            pool.grid = self.grid.clone();
        }
        if let Some(addr) = &self.serve_addr {
            pool.serve_addr = Some(addr.clone());
        }
        pool.tls |= self.tls;
    }
}
