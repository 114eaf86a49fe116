//! `webgpu-pool bench overhead`: what the pool itself costs, measured against real browsers.
//!
//! Part 1, added latency: for each driver path (Chromium over CDP, Chromium over chromedriver,
//! Firefox over geckodriver) it interleaves bare driver round trips of the page's no-op `echo`
//! (`Browser::call`) with the same call through the pool path (`Slot::call`: the slot task's
//! bounded channel, the task, the oneshot reply), A/B/A/B with the order flipped every pair so
//! machine noise and ordering hit both alike, and reports p50/p99 of each and the difference.
//! Part 2, throughput: a tiny wasm model under a closed loop through the pool and the scheduler,
//! with one worker and then two, and the ratio.
//!
//! Inputs: [`OverheadOptions`] (browsers resolved here from what is installed), a cancellation
//! token and a progress callback. Output: [`OverheadReport`] (serialisable; `--json`) and its
//! table ([`render`]). Every browser is closed on success, error and cancellation. This is a
//! front-end module like `app`: it may use the engine modules, and the engine never imports it.
//! It measures the harness's overhead, not browser speed; targets are reported, never asserted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::{self, BrowserKind, DriverKind, LaunchSpec, WorkerError};
use crate::metrics::Percentiles;
use crate::models::Cache;
use crate::pool::{PageSettings, PoolConfig, PoolError};
use crate::server::{AssetServer, ServerError};

mod latency;
pub mod recovery;
mod throughput;

/// Layout version of the `--json` document.
pub const SCHEMA_VERSION: u32 = 1;
/// Target for the pool path's added p50 latency, ms (issue #3).
pub const TARGET_ADDED_P50_MS: f64 = 0.5;
/// Target for the 2-worker / 1-worker throughput ratio on 2 cores (issue #3).
pub const TARGET_RATIO: f64 = 1.6;

/// What to measure.
#[derive(Debug, Clone)]
pub struct OverheadOptions {
    /// Browsers to measure the latency paths of (Chromium-family ones also run throughput).
    pub browsers: Vec<BrowserKind>,
    /// Driver for Chromium-family browsers; `None` measures both CDP and WebDriver.
    pub chromium_driver: Option<DriverKind>,
    /// Measured bare/pool pairs per driver path.
    pub iterations: u32,
    /// Unmeasured pairs first.
    pub warmup: u32,
    /// The tiny model of the throughput part.
    pub model: String,
    /// Measured time of each throughput leg.
    pub duration: Duration,
    /// Closed-loop clients in the throughput part.
    pub concurrency: usize,
    /// Skip the throughput part.
    pub skip_throughput: bool,
    /// The `web/` folder served to the page.
    pub web_dir: PathBuf,
}

/// Errors that stop the benchmark (a failed request is counted, not raised).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A browser or driver is missing, or an option names nothing usable.
    #[error("{0}")]
    Setup(String),
    /// The asset server did not start.
    #[error("starting the asset server: {0}")]
    Server(#[from] ServerError),
    /// A browser failed.
    #[error(transparent)]
    Worker(#[from] Box<WorkerError>),
    /// The pool failed.
    #[error(transparent)]
    Pool(#[from] Box<PoolError>),
}

impl From<WorkerError> for BenchError {
    fn from(e: WorkerError) -> Self {
        Self::Worker(Box::new(e))
    }
}

impl From<PoolError> for BenchError {
    fn from(e: PoolError) -> Self {
        Self::Pool(Box::new(e))
    }
}

/// Latency statistics of one series, ms.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Measured calls.
    pub n: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
}

impl Series {
    fn of(samples: &[Duration]) -> Self {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let p = Percentiles::from_ms(&ms).unwrap_or_default();
        Self {
            n: ms.len(),
            p50_ms: p.p50,
            p99_ms: p.p99,
            mean_ms: p.mean,
        }
    }
}

/// Bare vs pool-path `echo` on one driver path.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    /// Browser kind.
    pub browser: BrowserKind,
    /// Driver protocol.
    pub driver: DriverKind,
    /// Whether both series went to the same page. `false`: the bare calls go to a twin page
    /// (same browser and flags, own process) because the pool cannot yet share its page.
    pub same_page: bool,
    /// `Browser::call("echo")` round trips.
    pub bare: Series,
    /// `Slot::call("echo")` round trips (channel, slot task, driver, oneshot).
    pub pool: Series,
    /// `pool.p50 - bare.p50`, ms.
    pub added_p50_ms: f64,
    /// `pool.p99 - bare.p99`, ms.
    pub added_p99_ms: f64,
}

/// One throughput leg.
#[derive(Debug, Clone, Serialize)]
pub struct Leg {
    /// Workers allowed (`max_workers`).
    pub workers: usize,
    /// Workers the model was placed on when the clock started.
    pub placed_on: usize,
    /// Requests that succeeded in the measured window.
    pub succeeded: u64,
    /// Requests that failed in it.
    pub failed: u64,
    /// Wall time of the measured window, s.
    pub measured_s: f64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Latency of the successful requests, ms.
    pub latency: Series,
    /// `session.run` as the page timed it, ms (the rest of `latency` is harness, driver, queue).
    pub page: Series,
    /// Successful requests per worker id.
    pub per_worker: BTreeMap<String, u64>,
    /// `ort.env.wasm.numThreads` each worker's page reported (or will use).
    pub wasm_threads: BTreeMap<String, u64>,
    /// Where the CPU went during the measured window.
    pub cpu: CpuUse,
}

/// Average CPUs kept busy during a measured window (from `/proc`; zeros where unavailable).
/// `machine_cpus - harness_cpus - browsers_cpus` is everyone else on the machine.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// This process (the harness: pool, scheduler, drivers' clients).
    pub harness_cpus: f64,
    /// The workers' browser process trees (renderers doing the inference, browser, GPU process).
    pub browsers_cpus: f64,
    /// The whole machine.
    pub machine_cpus: f64,
}

/// Throughput of a tiny model with 1 vs 2 workers.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Model name.
    pub model: String,
    /// Backend it ran on.
    pub backend: Backend,
    /// Closed-loop clients.
    pub concurrency: usize,
    /// One worker.
    pub one: Leg,
    /// Two workers.
    pub two: Leg,
    /// `two.requests_per_s / one.requests_per_s`.
    pub ratio: f64,
}

/// Everything `bench overhead` measured: the body of `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    /// Layout version.
    pub schema_version: u32,
    /// Logical CPUs of the host.
    pub cpus: usize,
    /// Target for the added p50, ms.
    pub target_added_p50_ms: f64,
    /// Target for the throughput ratio.
    pub target_ratio: f64,
    /// One row per driver path.
    pub latency: Vec<LatencyRow>,
    /// The throughput part, unless skipped or interrupted before it.
    pub throughput: Option<Throughput>,
    /// Why the benchmark stopped early, when it did.
    pub stopped_early: Option<String>,
}

/// Runs both parts. On cancellation it stops, closes every browser and returns what it has.
///
/// # Errors
/// [`BenchError`] when a browser, driver, the server or the model cannot be set up or fails.
pub async fn overhead(
    o: &OverheadOptions,
    cancel: CancellationToken,
    progress: &dyn Fn(&str),
) -> Result<OverheadReport, BenchError> {
    let installed = browser::discover();
    let mut paths = Vec::new();
    for &kind in &o.browsers {
        let drivers = match (kind.is_chromium_family(), o.chromium_driver) {
            (false, _) => vec![DriverKind::WebDriver],
            (true, Some(d)) => vec![d],
            (true, None) => vec![DriverKind::Cdp, DriverKind::WebDriver],
        };
        for d in drivers {
            let spec = installed
                .launch_spec(kind, d, "", false, Duration::from_secs(60))
                .map_err(|e| BenchError::Setup(format!("--browsers: {e}")))?;
            paths.push(spec);
        }
    }
    if paths.is_empty() {
        return Err(BenchError::Setup("--browsers: no browser named".into()));
    }
    let cache = Cache::from_env();
    let server = Arc::new(AssetServer::start(o.web_dir.clone(), cache.models_dir()).await?);
    let result = measure_all(o, &paths, &server, &cancel, progress).await;
    if let Ok(server) = Arc::try_unwrap(server) {
        server.shutdown().await;
    }
    let (latency, throughput) = result?;
    Ok(OverheadReport {
        schema_version: SCHEMA_VERSION,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        target_added_p50_ms: TARGET_ADDED_P50_MS,
        target_ratio: TARGET_RATIO,
        latency,
        throughput,
        stopped_early: cancel.is_cancelled().then(|| "interrupted".to_string()),
    })
}

async fn measure_all(
    o: &OverheadOptions,
    paths: &[LaunchSpec],
    server: &Arc<AssetServer>,
    cancel: &CancellationToken,
    progress: &dyn Fn(&str),
) -> Result<(Vec<LatencyRow>, Option<Throughput>), BenchError> {
    let mut latency = Vec::new();
    for spec in paths {
        if cancel.is_cancelled() {
            return Ok((latency, None));
        }
        let (kind, driver) = (spec.kind, spec.driver.as_str());
        progress(&format!("latency: {kind} over {driver}: launching ..."));
        latency.push(latency::latency_path(o, spec, server, cancel, progress).await?);
    }
    let chromium = paths.iter().find(|s| s.kind.is_chromium_family());
    let throughput = match chromium {
        Some(spec) if !o.skip_throughput && !cancel.is_cancelled() => {
            // CDP is the default Chromium driver of `run`; use it when it was measured.
            let spec = paths
                .iter()
                .find(|s| s.kind == spec.kind && s.driver == DriverKind::Cdp)
                .unwrap_or(spec);
            throughput::throughput(o, spec, server, cancel, progress).await?
        }
        _ => None,
    };
    Ok((latency, throughput))
}

/// A pool of Chromium-or-other workers of one launch spec, `min..=max` workers, wasm only.
fn pool_config(spec: &LaunchSpec, min: usize, max: usize, heartbeat: Duration) -> PoolConfig {
    PoolConfig {
        min_workers: min,
        max_workers: max,
        page: PageSettings {
            backends: vec![Backend::Wasm],
            allow_fallback_adapter: false,
            wasm_threads: None,
            heartbeat: false,
        },
        heartbeat_interval: heartbeat,
        // One queued request on the only placement adds a worker (when there is room).
        scale_up_queue: 1,
        ..PoolConfig::fixed(vec![spec.clone()])
    }
}

/// The two tables and the notes.
pub fn render(r: &OverheadReport) -> String {
    let mut out = String::new();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "path",
        "pairs",
        "bare p50 ms",
        "pool p50 ms",
        "added p50 ms",
        "bare p99 ms",
        "pool p99 ms",
        "added p99 ms",
        "p50 target",
    ]);
    for row in &r.latency {
        let verdict = if row.added_p50_ms <= r.target_added_p50_ms {
            "met"
        } else {
            "MISSED"
        };
        t.add_row([
            format!("{} / {}", row.browser, row.driver.as_str()),
            row.bare.n.to_string(),
            format!("{:.3}", row.bare.p50_ms),
            format!("{:.3}", row.pool.p50_ms),
            format!("{:+.3}", row.added_p50_ms),
            format!("{:.3}", row.bare.p99_ms),
            format!("{:.3}", row.pool.p99_ms),
            format!("{:+.3}", row.added_p99_ms),
            format!("{verdict} (<= {})", r.target_added_p50_ms),
        ]);
    }
    out.push_str("Added latency of the pool path over a bare driver round trip (page `echo`)\n");
    out.push_str(&format!("{t}\n"));
    if r.latency.iter().any(|l| !l.same_page) {
        out.push_str(
            "note: bare calls go to a twin page (same browser, flags and server, own process); \
             the pool cannot yet share its worker's page with a bare caller.\n",
        );
    }
    if let Some(tp) = &r.throughput {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header([
            "workers",
            "placed on",
            "requests/s",
            "ok",
            "failed",
            "p50 ms",
            "p99 ms",
            "page p50 ms",
            "per worker",
            "wasm threads",
            "CPUs: harness / browsers / machine",
        ]);
        for l in [&tp.one, &tp.two] {
            let join = |m: &BTreeMap<String, u64>| {
                let v: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                v.join(", ")
            };
            t.add_row([
                l.workers.to_string(),
                l.placed_on.to_string(),
                format!("{:.1}", l.requests_per_s),
                l.succeeded.to_string(),
                l.failed.to_string(),
                format!("{:.1}", l.latency.p50_ms),
                format!("{:.1}", l.latency.p99_ms),
                format!("{:.1}", l.page.p50_ms),
                join(&l.per_worker),
                join(&l.wasm_threads),
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    l.cpu.harness_cpus, l.cpu.browsers_cpus, l.cpu.machine_cpus
                ),
            ]);
        }
        out.push_str(&format!(
            "\nThroughput of {} ({}), closed loop, {} clients, {:.0} s per leg\n{t}\n",
            tp.model, tp.backend, tp.concurrency, tp.one.measured_s
        ));
        let verdict = if tp.ratio >= r.target_ratio {
            "met"
        } else {
            "MISSED"
        };
        out.push_str(&format!(
            "ratio 2/1 workers: {:.2} ({verdict}; target >= {} on {} CPUs)\n",
            tp.ratio, r.target_ratio, r.cpus
        ));
    }
    if let Some(why) = &r.stopped_early {
        out.push_str(&format!("stopped early: {why}\n"));
    }
    out
}
