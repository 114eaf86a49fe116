//! `shard`'s flags and their value enums.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use webgpu_pool::pool::Backend;
use webgpu_pool::scenario::{ShardRecovery, ShardStrategy, ShardTransfer, ShardWorker};

use super::{parse_duration, parse_seconds, PoolArgs};

/// `shard`: one model split across workers.
#[derive(Debug, Args)]
#[command(mut_arg("browsers", |a| a
    .help("Browsers, used in turn for the shards' workers, comma-separated")
    .default_value("chromium,firefox")))]
#[command(mut_arg("backends", |a| a.help(
    "Backend priority, comma-separated (default: webnn, webgpu on hardware adapters, wasm)"
)))]
pub struct ShardArgs {
    /// The model to shard: llama-tiny, bert-base-uncased (bert), whisper-tiny (whisper), or a
    /// test variant (llama-micro, bert-tiny, whisper-micro).
    #[arg(long, short)]
    pub model: String,
    /// Shards, one worker each (2 up to the model's layers). memory_aware picks the fewest that
    /// fit when it is not given.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub shards: Option<u32>,
    /// How layers are split: layer_balanced (parameters per shard even), cost_balanced (by
    /// per-layer time measured on each worker first), memory_aware (within --memory-budget-mib).
    #[arg(long, value_enum, default_value_t = ShardStrategyChoice::LayerBalanced)]
    pub strategy: ShardStrategyChoice,
    /// What a failed shard gets: retry_failed_shards (relaunch its browser, reload only its
    /// shards), reassign_shards (move them to the live workers), full_retry (relaunch, reload
    /// everything, rerun from the first shard).
    #[arg(long, value_enum, default_value_t = ShardRecoveryChoice::RetryFailedShards)]
    pub recovery: ShardRecoveryChoice,
    /// Parameter memory one worker may hold, MiB: a shard over it is refused, and a model over
    /// it runs only sharded (its unsharded baseline is skipped, saying why).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_budget_mib: Option<u64>,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Where each shard runs, in order: BROWSER or BROWSER:BACKEND, comma-separated, e.g.
    /// `chromium-shell:webnn,firefox:wasm,chromium:wasm` (one model over WebNN and wasm in two
    /// engines). Sets the shard count and the browsers.
    #[arg(long, value_delimiter = ',', value_parser = parse_shard_worker, value_name = "BROWSER[:BACKEND],...", conflicts_with = "browsers")]
    pub placement: Vec<ShardWorker>,
    /// Measured requests.
    #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Run the measured stream for this long instead of --iterations: seconds (20) or a
    /// duration (20s).
    #[arg(long, value_parser = parse_seconds, conflicts_with = "iterations")]
    pub duration: Option<Duration>,
    /// Unmeasured requests first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u32,
    /// Requests in flight at once: above 1 the shards work at the same time on different
    /// requests (pipelining).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// How activations travel between shards: auto (time both before the stream, use the
    /// faster), harness (base64 in the page-API calls) or server (raw bytes through the asset
    /// server's relay).
    #[arg(long, value_enum, default_value_t = TransferChoice::Auto)]
    pub transfer: TransferChoice,
    /// Kill the browser hosting this shard (from 0) during the stream, to watch recovery.
    #[arg(long, value_name = "SHARD")]
    pub kill_shard: Option<u32>,
    /// When --kill-shard strikes, after the stream starts.
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "kill_shard")]
    pub kill_at: Duration,
    /// Workers (browsers) the pool may have at once: one per shard, and one more for the
    /// unsharded baseline, which runs on its own worker after the stream (default: the shard
    /// count plus one). A plan needing more workers than this is refused (exit 2); one leaving
    /// no room for the baseline's skips it, saying why.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Deadline of one request, recoveries included; one shard call is bounded by a quarter.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Where run folders are written.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Print the scenario these flags compile into, as YAML, and exit without running it.
    #[arg(long)]
    pub print_scenario: bool,
    #[command(flatten)]
    pub grid: super::GridArgs,
    #[command(flatten)]
    pub history: super::HistoryArgs,
}

/// How layers are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ShardStrategyChoice {
    /// Parameters per shard as even as contiguous ranges allow.
    LayerBalanced,
    /// By per-layer time measured on each worker.
    CostBalanced,
    /// Within a per-worker memory budget.
    MemoryAware,
}

impl From<ShardStrategyChoice> for ShardStrategy {
    fn from(c: ShardStrategyChoice) -> Self {
        match c {
            ShardStrategyChoice::LayerBalanced => Self::LayerBalanced,
            ShardStrategyChoice::CostBalanced => Self::CostBalanced,
            ShardStrategyChoice::MemoryAware => Self::MemoryAware,
        }
    }
}

/// How activations travel between shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransferChoice {
    /// Time both, use the faster.
    Auto,
    /// Base64 in the page-API calls.
    Harness,
    /// Raw bytes through the asset server's relay.
    Server,
}

impl From<TransferChoice> for ShardTransfer {
    fn from(c: TransferChoice) -> Self {
        match c {
            TransferChoice::Auto => Self::Auto,
            TransferChoice::Harness => Self::Harness,
            TransferChoice::Server => Self::Server,
        }
    }
}

/// What a failed shard gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ShardRecoveryChoice {
    /// Relaunch the failed browser, reload only its shards.
    RetryFailedShards,
    /// Move its shards to the live workers.
    ReassignShards,
    /// Relaunch, reload every shard, rerun from the first.
    FullRetry,
}

impl From<ShardRecoveryChoice> for ShardRecovery {
    fn from(c: ShardRecoveryChoice) -> Self {
        match c {
            ShardRecoveryChoice::RetryFailedShards => Self::RetryFailedShards,
            ShardRecoveryChoice::ReassignShards => Self::ReassignShards,
            ShardRecoveryChoice::FullRetry => Self::FullRetry,
        }
    }
}

pub(super) fn parse_shard_worker(s: &str) -> Result<ShardWorker, String> {
    let (browser, backend) = match s.split_once(':') {
        Some((b, k)) => (b, Some(k)),
        None => (s, None),
    };
    Ok(ShardWorker {
        browser: browser.parse().map_err(|e| format!("{e}"))?,
        backend: backend
            .map(|k| k.parse::<Backend>().map_err(|e| format!("{e}")))
            .transpose()?,
    })
}
