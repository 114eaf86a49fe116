//! `--standbys`, `--standby-memory`: hot standbys of every model, promoted when a serving worker
//! fails. Flattened into stress and scenario.

use clap::Args;

/// Hot standbys.
#[derive(Debug, Args)]
#[command(next_help_heading = "Hot standbys")]
pub struct StandbyArgs {
    /// Standby copies of each model, each loaded on a worker that does not serve it and
    /// promoted at once when a serving worker fails (recovery then costs no load); a
    /// replacement is loaded in the background. Default 1 when faults are injected and the pool
    /// recovers. 0 turns them off. The pool keeps at least this many workers plus one, within
    /// --max-connections.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=8))]
    pub standbys: Option<u32>,
    /// Memory all standby copies together may take, MiB, each counted at its model's measured
    /// load cost (default: half the memory available at start). A copy that would pass it is
    /// not loaded, and the run's events say so.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub standby_memory: Option<u64>,
}

impl StandbyArgs {
    /// Sets the scenario's `pool.standbys` and `pool.standby_memory_mib` from the flags given.
    pub fn apply(&self, pool: &mut webgpu_pool::scenario::PoolConfig) {
        if let Some(n) = self.standbys {
            pool.standbys = Some(n);
        }
        if let Some(mib) = self.standby_memory {
            pool.standby_memory_mib = Some(mib);
        }
    }
}
