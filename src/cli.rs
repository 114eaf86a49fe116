//! Command-line flags as given: clap derive types with syntax checks only, no I/O.
//! `app::RunConfig` is resolved from these (files read, browsers located, defaults applied).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use webgpu_pool::browser::BrowserKind;
use webgpu_pool::pool::Backend;

/// Run real AI models in a pool of real headless browsers over WebGPU, WebNN and WASM, and
/// measure them.
///
/// Models are written as ONNX by this tool and run with onnxruntime-web inside real Chromium and
/// Firefox processes. Run `scripts/setup.sh` once to install browsers, drivers and weights.
#[derive(Debug, Parser)]
#[command(
    name = "webgpu-pool",
    version,
    propagate_version = true,
    max_term_width = 100
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load models in browsers, run them, check their outputs and report latency and throughput.
    ///
    /// Example: webgpu-pool run --models bert,vit,whisper --browsers chromium,firefox
    Run(RunArgs),
    /// Find installed browsers and drivers, launch each, and show what it offers (WebGPU adapter,
    /// WebNN, WASM SIMD and threads).
    Browsers(BrowsersArgs),
    /// List the model catalog, or write models' ONNX files and inputs into the cache.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Models to run, comma-separated (see `webgpu-pool models list`).
    #[arg(
        long,
        short,
        value_delimiter = ',',
        required = true,
        value_name = "NAME,..."
    )]
    pub models: Vec<String>,
    /// Browsers to run them in, comma-separated.
    #[arg(
        long,
        short,
        value_delimiter = ',',
        default_value = "chromium,firefox",
        value_name = "KIND,..."
    )]
    pub browsers: Vec<BrowserKind>,
    /// Backend priority, comma-separated; the first one that works is used. By default a
    /// software WebGPU adapter (SwiftShader, lavapipe) does not count as WebGPU; naming
    /// `webgpu` here counts it.
    #[arg(long, value_delimiter = ',', value_name = "BACKEND,...")]
    pub backends: Option<Vec<Backend>>,
    /// Measured warm runs per model and browser.
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Unmeasured warm-up runs after the first run.
    #[arg(long, default_value_t = 2)]
    pub warmup: u32,
    /// Seed for generated weights and inputs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How to drive Chromium-family browsers (Firefox always uses geckodriver).
    #[arg(long, value_enum, default_value_t = DriverChoice::Cdp)]
    pub driver: DriverChoice,
    /// Where run folders are written.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Bound on one model load (fetch plus session creation), e.g. 120s or 5m.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub load_timeout: Duration,
    /// Bound on one inference request.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub run_timeout: Duration,
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
}

/// Running every model at once over a routed, scaling pool.
#[derive(Debug, Args)]
#[command(next_help_heading = "Concurrent models")]
pub struct ConcurrencyArgs {
    /// Run all models at once: the router places each model on the browser its type prefers
    /// (audio -> firefox, vision -> chromium, text_embedding -> edge or another Chromium), and
    /// clients send requests concurrently instead of one model at a time.
    #[arg(long)]
    pub concurrent_models: bool,
    /// Concurrent clients (closed loop), or the in-flight budget of an open loop.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), requires = "concurrent_models")]
    pub concurrency: u32,
    /// Run for this long (e.g. 30s, 2m) instead of a fixed number of requests.
    #[arg(long, value_parser = parse_duration, requires = "concurrent_models")]
    pub duration: Option<Duration>,
    /// Open loop: start this many requests per second whatever the latency.
    #[arg(long, value_parser = parse_rate, requires = "concurrent_models")]
    pub rate: Option<f64>,
    /// Workers kept alive (default: one per browser).
    #[arg(long, requires = "concurrent_models")]
    pub min_connections: Option<u32>,
    /// Workers never exceeded; the pool grows toward it when requests queue.
    #[arg(long, default_value_t = 4, requires = "concurrent_models")]
    pub max_connections: u32,
    /// Idle time after which a worker beyond the minimum is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration, requires = "concurrent_models")]
    pub idle_timeout: Duration,
    /// Print why each model went to the worker it went to.
    #[arg(long)]
    pub explain_routing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverChoice {
    /// Chrome DevTools Protocol (headless_chrome).
    Cdp,
    /// WebDriver through chromedriver (or msedgedriver).
    Webdriver,
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
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{s}' is not a positive number of requests per second"
        )),
    }
}

/// Parses `30s`, `5m`, `1h 10m`, `250ms`. A bare number is refused: the unit must be explicit.
fn parse_duration(s: &str) -> Result<Duration, String> {
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
    fn durations_need_units() {
        assert!(parse_duration("30").is_err());
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }
}
