//! `bench`'s subcommands and their flags.

use std::time::Duration;

use clap::{Args, Subcommand};

use webgpu_pool::browser::BrowserKind;

use super::{parse_duration, DriverChoice};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Latency the pool path adds over a bare driver round trip (page `echo`, p50/p99 per driver
    /// path), and throughput of a tiny wasm model with 1 vs 2 workers.
    ///
    /// Example: webgpu-pool bench overhead --iterations 2000 --duration 20s
    Overhead(BenchOverheadArgs),
    /// Time to recover after a real kill_browser (SIGKILL to the first answer after it), with a
    /// warm spare worker and without, alternating rounds in one run. Target: p50 <= 1.5 s with
    /// a spare.
    ///
    /// Example: webgpu-pool bench recovery --rounds 10
    Recovery(BenchRecoveryArgs),
}

#[derive(Debug, Args)]
pub struct BenchRecoveryArgs {
    /// The browser to kill.
    #[arg(long, default_value = "chromium")]
    pub browser: BrowserKind,
    /// Kills per leg.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// The model served.
    #[arg(long, default_value = "bert-tiny")]
    pub model: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchOverheadArgs {
    /// Browsers whose driver paths are measured (Chromium-family ones also run throughput).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "chromium,firefox",
        value_name = "KIND,..."
    )]
    pub browsers: Vec<BrowserKind>,
    /// Driver for Chromium-family browsers (default: both cdp and webdriver).
    #[arg(long, value_enum)]
    pub driver: Option<DriverChoice>,
    /// Measured bare/pool call pairs per driver path.
    #[arg(long, short = 'n', default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Unmeasured pairs first.
    #[arg(long, default_value_t = 200)]
    pub warmup: u32,
    /// Tiny model of the throughput part.
    #[arg(long, default_value = "bert-tiny")]
    pub model: String,
    /// Measured time of each throughput leg (1 worker, 2 workers).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Closed-loop clients of the throughput part.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Only measure latency.
    #[arg(long)]
    pub no_throughput: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}
