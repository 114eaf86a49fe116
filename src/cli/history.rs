//! `history` and `recommend`: what they read (the history file, an age, a model or a type)
//! and how they print.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use webgpu_pool::metrics::compare::Timing;
use webgpu_pool::metrics::LoadKind;

use super::parse_percent;

/// What `history` and `recommend` read.
#[derive(Debug, Args)]
pub struct HistorySource {
    /// The history file. Default: `<results-dir>/history.sqlite`.
    #[arg(long, value_name = "FILE", env = "WEBGPU_POOL_HISTORY")]
    pub history: Option<PathBuf>,
    /// Where the runs (and by default the history) are.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Only runs that started this recently: 7d, 12h, 30m, or `all`.
    #[arg(long, default_value = "all", value_name = "AGE")]
    pub since: String,
    /// Only this model (name or alias).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Only models of this type.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub model_type: Option<TaskChoice>,
    /// Only cells measured under this load context: `isolated` (a matrix run, one cell at a
    /// time), `routed` (every model at once), `sharded`, `under_faults` (faults injected),
    /// `generation` (`generate`'s decode steps, per shard), or `unknown` (recorded before load
    /// contexts were).
    #[arg(long, value_enum, value_name = "CONTEXT")]
    pub load: Option<LoadChoice>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryCmdArgs {
    #[command(flatten)]
    pub source: HistorySource,
    /// Which time the p50/p95 columns, the trends and `--fail-on-regression` test: `page-run`
    /// (the page's own session.run) or `end-to-end` (scheduled start to answer, queueing and
    /// the driver round trip included).
    #[arg(long, value_enum, default_value = "page-run", value_name = "TIMING")]
    pub timing: TimingChoice,
    /// Columns of the table, comma-separated (`--json` always has every field).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latency,throughput",
        value_name = "METRIC,..."
    )]
    pub metrics: Vec<HistoryMetric>,
    /// Smallest change that counts as a regression or an improvement, e.g. 5% or 10%.
    #[arg(long, default_value = "5%", value_parser = parse_percent, value_name = "PERCENT")]
    pub threshold: f64,
    /// Also write the trend chart (p50 per run, per model, regressions marked) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Exit 1 when the latest run of any configuration is a significant regression on the run
    /// before it (for CI).
    #[arg(long)]
    pub fail_on_regression: bool,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub source: HistorySource,
    /// Fewest measured samples a configuration needs to be recommended.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_samples: u32,
    /// Latest runs of each configuration (browser, backend, adapter, threads, build, under one
    /// load context) whose samples are pooled.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    /// Write the routing profile routed runs use, from the isolated answers: to FILE, or to
    /// `<results-dir>/routing-profile.json` (used by default from then on; see
    /// `--routing-profile` and `--no-routing-profile` of run, stress and scenario).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub apply: Option<Option<PathBuf>>,
}

/// A model type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum TaskChoice {
    /// bert, all-minilm-l6-v2.
    TextEmbedding,
    /// vit.
    Vision,
    /// whisper.
    Audio,
    /// llama.
    TextGeneration,
}

impl TaskChoice {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TextEmbedding => "text_embedding",
            Self::Vision => "vision",
            Self::Audio => "audio",
            Self::TextGeneration => "text_generation",
        }
    }
}

/// A `history` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum HistoryMetric {
    /// Warm p50 and p95 of the time `--timing` names (default: the page run time).
    Latency,
    /// Warm requests per second.
    Throughput,
    /// Busy fraction of the workers that served the cell.
    BrowserUtilization,
}

/// `--timing`: which time of a request the p50/p95 tests compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimingChoice {
    /// The page's own session.run time (page_ms).
    PageRun,
    /// Scheduled start to answer, as the harness saw it (latency_ms).
    EndToEnd,
}

impl TimingChoice {
    /// The engine's name for it.
    pub fn to_timing(self) -> Timing {
        match self {
            Self::PageRun => Timing::PageRun,
            Self::EndToEnd => Timing::EndToEnd,
        }
    }
}

/// `--load`: a load context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum LoadChoice {
    /// A matrix run: one cell at a time.
    Isolated,
    /// A routed run: every model at once.
    Routed,
    /// A sharded run.
    Sharded,
    /// A run with faults injected.
    UnderFaults,
    /// A generation's decode steps, per shard.
    Generation,
    /// Recorded before load contexts were.
    Unknown,
}

impl LoadChoice {
    /// The engine's name for it.
    pub fn to_kind(self) -> LoadKind {
        match self {
            Self::Isolated => LoadKind::Isolated,
            Self::Routed => LoadKind::Routed,
            Self::Sharded => LoadKind::Sharded,
            Self::UnderFaults => LoadKind::UnderFaults,
            Self::Generation => LoadKind::Generation,
            Self::Unknown => LoadKind::Unknown,
        }
    }
}
