//! `generate`'s flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use webgpu_pool::app::Split;
use webgpu_pool::browser::BrowserKind;
use webgpu_pool::generate::model::Precision;
use webgpu_pool::scenario::ShardWorker;

use super::shard::{parse_shard_worker, ShardRecoveryChoice};
use super::{parse_duration, HistoryArgs};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The language model. Only `smollm2` (SmolLM2-135M-Instruct, from the GGUF file
    /// `scripts/setup.sh` fetches) for now.
    #[arg(long, default_value = "smollm2", value_parser = ["smollm2"])]
    pub model: String,
    /// What to ask (with --chat, the default) or the text to continue (with --raw).
    #[arg(long)]
    pub prompt: String,
    /// Give the prompt raw, without the chat template.
    #[arg(long, conflicts_with = "chat")]
    pub raw: bool,
    /// Wrap the prompt in the model's own chat template (the default).
    #[arg(long)]
    pub chat: bool,
    /// Tokens to generate at most; fewer when the model ends its turn.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub max_new_tokens: u32,
    /// Sample at this softmax temperature instead of choosing the most likely token (0, the
    /// default, is greedy). Each step's draw is kept, and native's choice with the same draw
    /// on its own logits must be the browser's.
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    pub temperature: f32,
    /// Sample only among the most likely tokens whose probabilities sum to P (with
    /// --temperature; default 1, every token).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Seed of the sampling draws (with --temperature; default 0): the same seed writes the
    /// same text.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// How the decoder's matrices are kept: f32 (dequantized exactly), or q4 (the GGUF's 4-bit
    /// blocks kept as onnxruntime's MatMulNBits, about a third of the memory). Each is checked
    /// against native onnxruntime on its own graph.
    #[arg(long, value_enum, default_value_t = WeightsChoice::F32)]
    pub weights: WeightsChoice,
    /// Cut the decoder's 30 layers into this many shards, one browser each, in order; only the
    /// hidden state (2.3 KB a token) crosses between them, each keeps its own layers' cache.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub shards: u32,
    /// Browsers, used in turn for the shards, comma-separated (all on wasm), e.g.
    /// `chromium,firefox,chromium-shell`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "chromium",
        value_name = "KIND,...",
        alias = "browser"
    )]
    pub browsers: Vec<BrowserKind>,
    /// Where each shard runs, in order: BROWSER or BROWSER:BACKEND, comma-separated, e.g.
    /// `chromium:wasm,chromium-shell:webnn`; sets the shard count and the browsers. Backends:
    /// `wasm` (the default), `webgpu`, or `webnn`: WebNN needs static shapes, so with it every
    /// shard runs the fixed-capacity cache variant, one position a run (no --kill-shard yet).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_shard_worker,
        value_name = "BROWSER[:BACKEND],...",
        conflicts_with_all = ["browsers", "shards"]
    )]
    pub placement: Vec<ShardWorker>,
    /// How the layers are cut into the shards: even (the same number each), layer_balanced
    /// (parameters per shard even: the first shard holds the embedding and the last the tied
    /// head, so they get fewer layers and every page about the same memory), or cost_balanced
    /// (one layer timed on each shard's page first, then a faster page gets more layers and
    /// the head counts as the layers of compute it costs).
    #[arg(long, value_enum, default_value_t = SplitChoice::Even)]
    pub strategy: SplitChoice,
    /// What a failed shard gets: retry_failed_shards (relaunch its browser, rebuild only its
    /// cache from the inputs the harness kept), reassign_shards (move it to a live browser,
    /// rebuild its cache there), full_retry (relaunch, reload every shard, rebuild every cache).
    #[arg(long, value_enum, default_value_t = ShardRecoveryChoice::RetryFailedShards)]
    pub recovery: ShardRecoveryChoice,
    /// Fault: SIGKILL the browser of this shard (0 is the first) once --kill-at-token tokens
    /// are written; the generation must recover and write the same text.
    #[arg(long, value_name = "N", requires = "kill_at_token")]
    pub kill_shard: Option<u32>,
    /// When --kill-shard strikes: after this many tokens are written.
    #[arg(long, value_name = "K", requires = "kill_shard", value_parser = clap::value_parser!(u32).range(1..))]
    pub kill_at_token: Option<u32>,
    /// Bound on one page call: a load, or one shard's step.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// Where the run folder is written (run.json with the generation and every step,
    /// samples.csv, report.html with the per-token chart by shard, summary.md, junit.xml).
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// After the generation, copy its report files to `<results-dir>/baselines/NAME/`, for
    /// `compare --baseline NAME` (a nightly job gating on tokens/s).
    #[arg(long, value_name = "NAME")]
    pub save_baseline: Option<String>,
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SplitChoice {
    /// The same number of layers in each shard.
    Even,
    /// Parameters per shard as even as contiguous ranges allow.
    LayerBalanced,
    /// By one layer's time measured on each shard's page.
    CostBalanced,
}

impl From<SplitChoice> for Split {
    fn from(c: SplitChoice) -> Self {
        match c {
            SplitChoice::Even => Split::Even,
            SplitChoice::LayerBalanced => Split::LayerBalanced,
            SplitChoice::CostBalanced => Split::CostBalanced,
        }
    }
}

/// `--weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightsChoice {
    /// Every weight dequantized to f32.
    F32,
    /// The 4-bit matrices kept 4-bit.
    Q4,
}

impl From<WeightsChoice> for Precision {
    fn from(c: WeightsChoice) -> Self {
        match c {
            WeightsChoice::F32 => Precision::F32,
            WeightsChoice::Q4 => Precision::Q4,
        }
    }
}
