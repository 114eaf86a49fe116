//! Command-line flags as given: clap derive types with syntax checks only, no I/O.
//!
//! `cmd` maps these onto the library's plain flag structs (`scenario::flags`), which compile
//! into a `Scenario`; `app::RunConfig` is resolved from that (files read, browsers located,
//! defaults applied). Holds no domain logic: what a flag means lives in the library. The value
//! enums here mirror engine enums only to carry help text, and convert with `From`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use webgpu_pool::browser::{BrowserKind, DriverKind};

mod bench;
mod generate;
mod grid;
mod history;
mod pool;
mod shard;
mod standby;
mod stress;
pub use bench::{BenchCommand, BenchOverheadArgs, BenchRecoveryArgs};
pub use generate::GenerateArgs;
pub use grid::GridArgs;
pub use history::{HistoryCmdArgs, HistoryMetric, HistorySource, RecommendArgs, TimingChoice};
pub use pool::{PoolArgs, WasmArgs};
pub use shard::ShardArgs;
pub use standby::StandbyArgs;
pub use stress::StressArgs;

/// Run real AI models in real headless browsers over WebGPU, WebNN and WASM, and measure them.
#[derive(Debug, Parser)]
#[command(
    name = "webgpu-pool",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Set up once with scripts/setup.sh. `webgpu-pool help <command>` explains a \
                  command, with examples."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print nothing but errors and the final table.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

// Each command's first line is its entry in `webgpu-pool --help`; the paragraphs after it are
// for `webgpu-pool help <command>`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load models in every installed browser, run, check and time them.
    ///
    /// Each model runs in each browser in turn (WebNN in chromium-shell, wasm in Chromium and
    /// Firefox by default), its outputs are checked against native onnxruntime, and the table
    /// gives load time, warm latency, throughput, the cores the cell used and its cost against
    /// native at the nearest thread count.
    ///
    /// Example: webgpu-pool run --models bert,vit,whisper
    ///
    /// Example: webgpu-pool run --models bert,vit --browsers chromium,firefox --concurrent-models
    Run(RunArgs),
    /// Run models under load, inject real faults and recover without losing a request.
    ///
    /// Faults are real: SIGKILLed browsers and drivers, crashed tabs, hung pages, lost GPU
    /// devices, dropped connections, slow pages. The report gives issued / succeeded / failed /
    /// lost, faults by kind, recovery events by ladder level with detection and time-to-recover
    /// percentiles, and throughput over time.
    ///
    /// Example: webgpu-pool stress --fault-injection --duration 120
    ///
    /// Example: webgpu-pool stress --fault-injection --fault-kinds kill_browser,hang --fault-every 10s
    Stress(StressArgs),
    /// Split one model's layers across browsers and run it as a checked pipeline.
    ///
    /// The planner prints which layers go where and why, activations pass between browsers as
    /// binary float32, every answer is checked against the unsharded model run by native
    /// onnxruntime, and a failed shard is recovered by the chosen strategy. The report gives
    /// per-shard compute, per-hop bytes and ms, end-to-end latency and pipelined throughput, and
    /// x unsharded: after the stream, the unsharded model on a page of its own with as many wasm
    /// threads as the shard pages together, in rounds alternating with the pipeline (the median
    /// of their ratios), every answer on both sides checked.
    ///
    /// Example: webgpu-pool shard --model llama-tiny --shards 3 --strategy layer_balanced --browsers chromium,firefox
    ///
    /// Example: webgpu-pool shard --model bert --shards 3 --recovery reassign_shards --kill-shard 1
    ///
    /// Example: webgpu-pool shard --model llama-tiny --strategy memory_aware --memory-budget-mib 48
    Shard(ShardArgs),
    /// Generate text with a real small language model in a browser, checked token by token.
    ///
    /// SmolLM2-135M-Instruct (its GGUF file, dequantized to f32) runs in a browser page on wasm:
    /// the prompt in one step, then one token a step, greedy, the key/value cache kept in the
    /// page. The text streams to stdout as it is written. Then native onnxruntime runs the same
    /// graph teacher-forced on the browser's tokens: every step's logits must be within
    /// tolerance and choose the same token (a near tie is reported, not failed); exit 1
    /// otherwise. The table gives time to first token, prefill and decode tokens/s and
    /// inter-token latency, for the page and for native at 1 thread and every core.
    ///
    /// Example: webgpu-pool generate --prompt "Write a short story about AI" --max-new-tokens 64
    ///
    /// Example: webgpu-pool generate --raw --prompt "The capital of France is" --browser firefox
    ///
    /// Example: webgpu-pool generate --prompt "Hi" --shards 3 --browsers chromium,firefox,chromium-shell --strategy cost_balanced
    Generate(GenerateArgs),
    /// Finish a run whose harness died, from its snapshot and transaction log.
    ///
    /// Rebuilds the run's state from its folder's snapshot and transaction log (checksums
    /// verified), reaps the browsers it left, relaunches workers, reloads each model where it
    /// was placed, and runs what is left of the workload. The report accounts for both parts. A
    /// damaged log exits 2 naming the record.
    ///
    /// Example: webgpu-pool resume results/2026-11-28T10-00-00Z-ab12
    Resume(ResumeArgs),
    /// Print a finished run again (its run.json and samples.csv) in one format.
    ///
    /// Example: webgpu-pool report results/2026-11-28T10-00-00Z-ab12 --format md
    Report(ReportArgs),
    /// Compare a run with a baseline; exit 1 on a significant regression.
    ///
    /// Per-metric deltas (warm page run time or, with --timing end-to-end, end-to-end latency
    /// p50/p95, and throughput) per cell measured alike in both runs, and a significance test
    /// over the raw samples. Exits 1 when a metric is worse by more than the threshold with
    /// p < 0.01, or when a cell that had successful runs in the baseline has none now, naming
    /// each; exits 2 when a cell was measured under other conditions (adapter, threads, browser
    /// build, load context), naming what differs.
    ///
    /// Example: webgpu-pool compare --baseline nightly results/2026-11-28T10-00-00Z-ab12
    Compare(CompareArgs),
    /// Show the performance history every run adds to, with regressions found.
    ///
    /// Each configuration's runs over time (model, browser, backend, adapter, wasm threads,
    /// browser build, load context) with the change against the run before (the same
    /// noise-aware tests as `compare`, over the raw samples), then the regressions,
    /// improvements and anomalies found. `--html` draws the trend chart.
    ///
    /// Example: webgpu-pool history --model bert --since 7d
    ///
    /// Example: webgpu-pool history --model-type vision --metrics latency,browser_utilization --json
    History(HistoryCmdArgs),
    /// Name the measured best configuration per model and model type, per load context.
    ///
    /// With the numbers behind it, a confidence (Mann-Whitney U against the runner-up) and the
    /// sample count (none below --min-samples). `--apply` writes the routing profile routed runs
    /// use, from the isolated (matrix) answers.
    ///
    /// Example: webgpu-pool recommend
    ///
    /// Example: webgpu-pool recommend --since 7d --apply
    Recommend(RecommendArgs),
    /// Check or print a run's crash-safe state (transaction log and snapshot).
    ///
    /// The transaction log (txlog.log) and snapshot (snapshot.json) in its run folder. See
    /// docs/state.md.
    ///
    /// Example: webgpu-pool state verify results/2026-11-28T10-00-00Z-ab12
    #[command(subcommand)]
    State(StateCommand),
    /// Find installed browsers and drivers, launch each, show what it offers.
    ///
    /// The WebGPU adapter, WebNN, WASM SIMD and threads, as each page reports them.
    Browsers(BrowsersArgs),
    /// List the model catalog, or write models' ONNX files and inputs into the cache.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Benchmark the harness itself against real browsers.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run a scenario file, or a built-in scenario by name.
    ///
    /// Built-in: basic, concurrent-models, fault-tolerance, recovery, sharding, stress,
    /// state-management. See docs/scenario.md.
    ///
    /// Example: webgpu-pool scenario scenarios/concurrent-models.yaml --explain-routing
    Scenario(ScenarioArgs),
    /// Check scenario files without running them (exit 2 naming file:line:col).
    ///
    /// Every error names file:line:col, the key path and the bad value; exit 2 when any file
    /// is invalid.
    Validate {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the scenario format (for editors).
    Schema,
}

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// A scenario file, or the name of a built-in scenario.
    pub file: String,
    /// Where run folders are written.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Write each cell's full first-run output, native onnxruntime's output and the model
    /// inputs as NumPy .npy files into the run folder's outputs/ (check them with your own tools).
    #[arg(long)]
    pub save_outputs: bool,
    /// Print why each model went to the worker it went to.
    #[arg(long)]
    pub explain_routing: bool,
    /// Print the scenario as YAML (defaults filled in) and exit without running it.
    #[arg(long)]
    pub print_scenario: bool,
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub standby: StandbyArgs,
    #[command(flatten)]
    pub grid: GridArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("routed").multiple(true).args(["concurrent_models", "test_state_management"])))]
pub struct RunArgs {
    /// After the run, copy its report files to `<results-dir>/baselines/NAME/`, for
    /// `compare --baseline NAME`.
    #[arg(long, value_name = "NAME")]
    pub save_baseline: Option<String>,
    /// Models to run, comma-separated (see `webgpu-pool models list`). A language model
    /// (`smollm2`) writes text: a generation cell in each browser after the others (two fixed
    /// prompts, 16 tokens each), or with `--concurrent-models` generation requests beside the
    /// other models'; every step is checked against native (a scenario's `generation:` block
    /// sets the prompts and tokens).
    #[arg(
        long,
        short,
        value_delimiter = ',',
        required = true,
        value_name = "NAME,..."
    )]
    pub models: Vec<String>,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub wasm: WasmArgs,
    /// Measured warm runs per model and browser.
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Unmeasured warm-up runs after the first run.
    #[arg(long, default_value_t = 2)]
    pub warmup: u32,
    /// Where run folders are written.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Write each cell's full first-run output, native onnxruntime's output and the model
    /// inputs as NumPy .npy files into the run folder's outputs/ (check them with your own tools).
    #[arg(long)]
    pub save_outputs: bool,
    /// Bound on one model load (fetch plus session creation), e.g. 120s or 5m.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub load_timeout: Duration,
    /// Bound on one inference request.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub run_timeout: Duration,
    /// Print the scenario these flags compile into, as YAML, and exit without running it.
    #[arg(long)]
    pub print_scenario: bool,
    /// Exercise the crash-safe state: run the models concurrently (as --concurrent-models,
    /// 20s unless --duration says otherwise), sync the transaction log every --sync-interval,
    /// migrate the first model to another browser half way (one transaction, rolled back if it
    /// fails), and verify the log and snapshot at the end.
    #[arg(long)]
    pub test_state_management: bool,
    /// Time between syncs (fsync and snapshot) of the run's transaction log: seconds (5) or a
    /// duration (500ms).
    #[arg(long, value_parser = parse_seconds, value_name = "DURATION")]
    pub sync_interval: Option<Duration>,
    /// Run the one model of --models sharded across the browsers (layer_balanced, one worker
    /// per shard, retry_failed_shards), checked against the unsharded model; `webgpu-pool
    /// shard` has every option.
    #[arg(long, conflicts_with = "routed")]
    pub test_sharding: bool,
    /// Shards for --test-sharding.
    #[arg(long, default_value_t = 3, requires = "test_sharding", value_parser = clap::value_parser!(u32).range(2..=64))]
    pub shards: u32,
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub grid: GridArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run folder (`results/<run-id>`) of the run to finish.
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Print why each model went to the worker it went to.
    #[arg(long)]
    pub explain_routing: bool,
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// Running every model at once over a routed, scaling pool.
#[derive(Debug, Args)]
#[command(next_help_heading = "Concurrent models")]
pub struct ConcurrencyArgs {
    /// Run all models at once: the router places each model on the browser its type prefers
    /// (audio -> firefox, vision -> chromium, text_embedding -> chromium-shell or another Chromium), and
    /// clients send requests concurrently instead of one model at a time.
    #[arg(long)]
    pub concurrent_models: bool,
    /// Concurrent clients (closed loop), or the in-flight budget of an open loop.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), requires = "routed")]
    pub concurrency: u32,
    /// Run for this long (e.g. 30s, 2m) instead of a fixed number of requests.
    #[arg(long, value_parser = parse_duration, requires = "routed")]
    pub duration: Option<Duration>,
    /// Open loop: start this many requests per second whatever the latency.
    #[arg(long, value_parser = parse_rate, requires = "routed")]
    pub rate: Option<f64>,
    /// Workers kept alive (default: one per browser).
    #[arg(long, requires = "routed")]
    pub min_connections: Option<u32>,
    /// Workers never exceeded; the pool grows toward it when requests queue.
    #[arg(long, default_value_t = 4, requires = "routed")]
    pub max_connections: u32,
    /// Idle time after which a worker beyond the minimum is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration, requires = "routed")]
    pub idle_timeout: Duration,
    /// After the workload, keep the pool up and idle this long, so idle workers beyond the
    /// minimum are closed (visible with --explain-routing).
    #[arg(long, default_value = "0s", value_parser = parse_duration, requires = "routed")]
    pub cooldown: Duration,
    /// Print why each model went to the worker it went to.
    #[arg(long)]
    pub explain_routing: bool,
}

/// Where finished runs are remembered.
#[derive(Debug, Args)]
#[command(next_help_heading = "History")]
pub struct HistoryArgs {
    /// The performance history every finished run is added to (SQLite). Default:
    /// `<results-dir>/history.sqlite`. A history that cannot be written is a warning: the
    /// run's own files are written first.
    #[arg(long, value_name = "FILE", env = "WEBGPU_POOL_HISTORY")]
    pub history: Option<PathBuf>,
    /// Do not add this run to the history.
    #[arg(long, conflicts_with = "history")]
    pub no_history: bool,
}

/// Routing by measurements.
#[derive(Debug, Args)]
#[command(next_help_heading = "Routing by measurements")]
pub struct RoutingArgs {
    /// Route each model to the browser and backend its routing profile measured best
    /// (`webgpu-pool recommend --apply` writes one). Default:
    /// `<results-dir>/routing-profile.json` when it exists, in routed runs.
    #[arg(long, value_name = "FILE")]
    pub routing_profile: Option<PathBuf>,
    /// Route by the model type's browser preference even when a routing profile exists.
    #[arg(long, conflicts_with = "routing_profile")]
    pub no_routing_profile: bool,
    /// After warm-up, time each model on the pool's other browser x backend pairs and move it
    /// (one journaled transaction) where it runs significantly faster; the report shows each
    /// move with the latency before and after.
    #[arg(long)]
    pub adaptive: bool,
}

impl RoutingArgs {
    /// `--routing-profile` as the scenario key holds it.
    pub fn profile(&self) -> Option<String> {
        self.routing_profile
            .as_ref()
            .map(|p| p.display().to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverChoice {
    /// Chrome DevTools Protocol (headless_chrome).
    Cdp,
    /// WebDriver through chromedriver (or msedgedriver).
    Webdriver,
}

impl From<DriverChoice> for DriverKind {
    fn from(choice: DriverChoice) -> Self {
        match choice {
            DriverChoice::Cdp => Self::Cdp,
            DriverChoice::Webdriver => Self::WebDriver,
        }
    }
}

#[derive(Debug, Args)]
pub struct BrowsersArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only these browsers (default: every one installed).
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    pub only: Vec<BrowserKind>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Show every model: name, aliases, task, weights source.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write ONNX files and inputs for these models into the cache (default: every model).
    Prepare {
        /// Model names or aliases.
        #[arg(value_delimiter = ',')]
        models: Vec<String>,
        /// Seed for generated weights and inputs.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// Parses a positive request rate, e.g. `20` or `2.5` (per second).
pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{s}' is not a positive number of requests per second"
        )),
    }
}
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run folder (`results/<run-id>`) or a baseline folder.
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// The format to print.
    #[arg(long, short, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// report.html: charts and tables, self-contained.
    Html,
    /// summary.md: for a CI step summary.
    Md,
    /// samples.csv: one row per request.
    Csv,
    /// run.json: the report contract.
    Json,
    /// junit.xml: a testcase per model x browser x backend and per threshold.
    Junit,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// BASELINE_DIR CURRENT_DIR, or only CURRENT_DIR with --baseline NAME.
    #[arg(value_name = "RUN_DIR", num_args = 1..=2, required = true)]
    pub runs: Vec<PathBuf>,
    /// Compare with the saved baseline NAME (`<results-dir>/baselines/NAME/`, written by
    /// `run --save-baseline NAME`).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// Where `--baseline` looks for `baselines/NAME/`.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Smallest change for the worse that counts as a regression, e.g. 5% or 10%.
    #[arg(long, default_value = "5%", value_parser = parse_percent, value_name = "PERCENT")]
    pub threshold: f64,
    /// Which time the p50/p95 tests (and so the gate) compare: `page-run` (the page's own
    /// session.run: the browser and backend alone) or `end-to-end` (scheduled start to answer:
    /// what a caller waits, queueing and the driver round trip included).
    #[arg(long, value_enum, default_value = "page-run", value_name = "TIMING")]
    pub timing: TimingChoice,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Check every record's CRC32C and framing, the sequence order, the transaction structure
    /// and the snapshot's SHA-256. Exits 0 when sound (a torn last record is only a warning: it
    /// is what a crash mid-write leaves), 2 naming the file, byte offset and seq of the first
    /// damaged record.
    ///
    /// Example: webgpu-pool state verify results/2026-11-28T10-00-00Z-ab12
    Verify {
        /// A run folder (`results/<run-id>`) holding txlog.log.
        #[arg(value_name = "RUN_DIR")]
        run_dir: PathBuf,
    },
    /// Print the state rebuilt from the snapshot plus the log's committed transactions:
    /// workers and their pids, placements, shard plans, recovery events, progress.
    ///
    /// Example: webgpu-pool state show results/2026-11-28T10-00-00Z-ab12 --json
    Show {
        /// A run folder (`results/<run-id>`) holding txlog.log.
        #[arg(value_name = "RUN_DIR")]
        run_dir: PathBuf,
        /// Print JSON (the state, the log counts, incomplete transactions, warnings).
        #[arg(long)]
        json: bool,
    },
}

/// Parses `5%`, `12.5%` or a bare `5` (percent) into a fraction (0.05).
pub(crate) fn parse_percent(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches('%').trim();
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..1000.0).contains(&v) => Ok(v / 100.0),
        _ => Err(format!("'{s}' is not a percentage like 5% (0 to 1000)")),
    }
}

/// Parses a bare number of seconds (`120`) or a duration with a unit (`2m`).
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => parse_duration(s),
    }
}

/// Parses `30s`, `5m`, `1h 10m`, `250ms`. A bare number is refused: the unit must be explicit.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration like 30s or 5m: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("5%").unwrap(), 0.05);
        assert_eq!(parse_percent("12.5").unwrap(), 0.125);
        assert!(parse_percent("-1%").is_err() && parse_percent("x").is_err());
    }

    #[test]
    fn durations_need_units() {
        assert!(parse_duration("30").is_err());
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }
}
