//! The pool flags of the commands that build their scenario from flags (`run`, `stress`,
//! `shard`): `--browsers`, `--backends`, `--seed`, `--driver`, and `--wasm-threads` (`run` and
//! `stress` only). Declared once here and flattened into each; [`PoolArgs::to_flags`] is the one
//! place they become the library's `PoolFlags`, whose `to_scenario` says what they mean.
//!
//! The models stay with each command: `run` requires `--models`, `stress` defaults them, and
//! `shard` takes one `--model`.

use clap::Args;

use webgpu_pool::browser::BrowserKind;
use webgpu_pool::pool::Backend;
use webgpu_pool::scenario::flags::PoolFlags;

use super::DriverChoice;

/// The pool a flag-built scenario runs in. The help text is `run`'s; `stress` and `shard` word
/// `--browsers`, `--backends` and `--seed` for what they do with them (`mut_arg` on their
/// structs).
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Browsers to run them in, comma-separated (default: every kind installed, so
    /// chromium-shell's WebNN runs beside Chromium's and Firefox's wasm).
    #[arg(long, short, value_delimiter = ',', value_name = "KIND,...")]
    pub browsers: Option<Vec<BrowserKind>>,
    /// Backend priority, comma-separated; the first one that works is used. By default a
    /// software WebGPU adapter (SwiftShader, lavapipe) does not count as WebGPU; naming
    /// `webgpu` here counts it.
    #[arg(long, value_delimiter = ',', value_name = "BACKEND,...")]
    pub backends: Option<Vec<Backend>>,
    /// Seed for generated weights and inputs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How to drive Chromium-family browsers (Firefox always uses geckodriver).
    #[arg(long, value_enum, default_value_t = DriverChoice::Cdp)]
    pub driver: DriverChoice,
}

impl PoolArgs {
    /// The library's pool flags: these, `models` in the order given, and `wasm_threads` (`None`
    /// for `shard`, which has no such flag). `default_browsers` stands in for `--browsers` when it
    /// was not given (`stress` and `shard` give the flag a default, so only `run` leaves it out).
    pub fn to_flags(
        &self,
        models: Vec<String>,
        wasm_threads: Option<u32>,
        default_browsers: Vec<BrowserKind>,
    ) -> PoolFlags {
        PoolFlags {
            seed: self.seed,
            models,
            browsers: self.browsers.clone().unwrap_or(default_browsers),
            driver: self.driver.into(),
            backends: self.backends.clone(),
            wasm_threads,
        }
    }
}

/// `--wasm-threads`, apart from [`PoolArgs`] because `shard` does not take it.
#[derive(Debug, Args)]
pub struct WasmArgs {
    /// Threads of onnxruntime-web's wasm backend in each page, 1 to 16 (default: what it picks,
    /// 1 on 2 cores; the report says how many ran). Compare with the native columns, measured
    /// at 1 thread and at every core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub wasm_threads: Option<u32>,
}
