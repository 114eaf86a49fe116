//! `stress`'s flags and its recovery choice.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use webgpu_pool::scenario::{FaultChoice, RecoveryStrategy};

use super::{parse_duration, parse_rate, parse_seconds, PoolArgs, WasmArgs};

/// `stress`: a routed, concurrent workload with faults injected and recovered.
#[derive(Debug, Args)]
#[command(mut_arg("browsers", |a| a
    .help("Browsers in the pool, comma-separated (one worker each)")
    .default_value("chromium,firefox")))]
#[command(mut_arg("backends", |a| a.help(
    "Backend priority, comma-separated (naming webgpu counts software adapters; needed for \
     gpu_device_lost to have a device to lose)"
)))]
#[command(mut_arg("seed", |a| a.help(
    "Seed for fault times, kinds and targets (and for weights and inputs)"
)))]
pub struct StressArgs {
    /// Models to run at once, comma-separated (see `webgpu-pool models list`).
    #[arg(
        long,
        short,
        value_delimiter = ',',
        default_value = "bert,vit,whisper",
        value_name = "NAME,..."
    )]
    pub models: Vec<String>,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub wasm: WasmArgs,
    /// How long to drive the load: seconds (120) or a duration (2m).
    #[arg(long, default_value = "120s", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Inject faults while the load runs.
    #[arg(long)]
    pub fault_injection: bool,
    /// One fault about this often (first after one period).
    #[arg(long, default_value = "15s", value_parser = parse_duration, conflicts_with = "fault_rate")]
    pub fault_every: Duration,
    /// Faults at random (Poisson) times instead, this many per minute on average.
    #[arg(long, value_parser = parse_rate)]
    pub fault_rate: Option<f64>,
    /// Fault kinds to draw from, comma-separated: kill_browser, crash_tab, hang,
    /// gpu_device_lost, kill_driver, disconnect, slow (default: all that fit a live worker).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault_kind, value_name = "KIND,...")]
    pub fault_kinds: Vec<FaultChoice>,
    /// How long a hang, a frozen driver or a slowdown lasts.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub fault_duration: Duration,
    /// `slow`: delay added to every run.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub slow_delay: Duration,
    /// Recovery strategy: progressive (retry, reset, migrate, rebuild), immediate (migrate
    /// at once), or none (failures stay failures).
    #[arg(long, value_enum, default_value_t = RecoveryChoice::Progressive)]
    pub recovery: RecoveryChoice,
    /// Bound on one recovery episode.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// Attempts per request, the first included, before it counts as failed.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: u32,
    /// Deadline of one request from its scheduled start, recoveries included. One page run
    /// is bounded by a quarter of it, so a hung page is noticed in time to recover.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Where run folders are written.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Write each cell's full first-run output, native onnxruntime's output and the model
    /// inputs as NumPy .npy files into the run folder's outputs/ (check them with your own tools).
    #[arg(long)]
    pub save_outputs: bool,
    /// Print the scenario these flags compile into, as YAML, and exit without running it.
    #[arg(long)]
    pub print_scenario: bool,
    /// Print why each model went to the worker it went to.
    #[arg(long)]
    pub explain_routing: bool,
    #[command(flatten)]
    pub routing: super::RoutingArgs,
    #[command(flatten)]
    pub standby: super::StandbyArgs,
    #[command(flatten)]
    pub grid: super::GridArgs,
    #[command(flatten)]
    pub history: super::HistoryArgs,
}

/// Parses one name of `--fault-kinds`: a fault kind, or `random` (which `cmd::stress` reads as
/// every kind, as when the flag is not given), naming the known names on error. A value parser
/// rather than a `ValueEnum`, whose error would word the list differently; the engine's types
/// never see clap.
fn parse_fault_kind(s: &str) -> Result<FaultChoice, String> {
    FaultChoice::from_name(s).ok_or_else(|| {
        format!(
            "unknown fault kind '{s}' (known: {})",
            FaultChoice::NAMES.join(", ")
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecoveryChoice {
    /// Retry, then reset the page, then migrate, then rebuild.
    Progressive,
    /// Migrate at once, then rebuild.
    Immediate,
    /// No recovery.
    None,
}

impl From<RecoveryChoice> for RecoveryStrategy {
    fn from(choice: RecoveryChoice) -> Self {
        match choice {
            RecoveryChoice::Progressive => Self::Progressive,
            RecoveryChoice::Immediate => Self::Immediate,
            RecoveryChoice::None => Self::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webgpu_pool::faults::Kind;

    #[test]
    fn fault_kind_names() {
        assert_eq!(
            parse_fault_kind("gpu_device_lost"),
            Ok(FaultChoice::One(Kind::GpuDeviceLost))
        );
        assert_eq!(parse_fault_kind("random"), Ok(FaultChoice::Random));
        let e = parse_fault_kind("explode").unwrap_err();
        assert!(
            e.starts_with("unknown fault kind 'explode' (known: kill_browser, crash_tab,")
                && e.ends_with(", corrupt_answer, random)"),
            "{e}"
        );
    }
}
