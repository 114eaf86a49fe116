//! The application layer: resolves what the user asked for into a [`RunConfig`] (models found,
//! browsers located, defaults applied), runs the engine, and writes the reports.
//!
//! `main` compiles flags or a scenario file into a [`Scenario`]; everything here is callable in-process by tests.
//! Uses `anyhow` for context at I/O boundaries; the engine below uses typed errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::backend::Backend;
use crate::browser::{self, BrowserKind, DriverKind, Installed, LaunchSpec};
use crate::metrics::{Environment, Phase, RunSummary, SCHEMA_VERSION};
use crate::models::{self, Cache, ModelSpec};
use crate::pool::{self, RunEvent, RunObserver};
use crate::scenario::Scenario;

mod generate;
mod inventory;
mod plan;
mod remote;
mod resume;
mod shard;

pub use generate::{generate, GenerateOutcome, GenerateRequest, ShardFigures, Split};
pub use inventory::{model_list, prepare_named, probe_browsers};
pub use resume::resume;

/// A bad flag or value: reported with exit code 2 and never retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Where and how a run is recorded (not part of the scenario: the same scenario can be run
/// into different folders).
#[derive(Debug, Clone)]
pub struct RunExtras {
    /// Where run folders go.
    pub results_dir: PathBuf,
    /// The command line, for the report.
    pub command: String,
    /// Write each cell's full first-run output, the oracle's and the inputs as `.npy` files.
    pub save_outputs: bool,
    /// Browser kinds the run would have used had they been installed (`run` without
    /// `--browsers`): named in the report with how to install them.
    pub not_installed: Vec<BrowserKind>,
}

/// A resolved run: the validated scenario with every name looked up and every path found.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The scenario as given (validated), every model name rewritten to its catalog name.
    pub scenario: Scenario,
    /// Its models, resolved in the catalog, in order.
    pub models: Vec<&'static ModelSpec>,
    /// One launch spec per browser kind (the page URL is filled in once the server is up).
    pub launches: Vec<LaunchSpec>,
    /// Recording options.
    pub extras: RunExtras,
    /// Model cache.
    pub cache: Cache,
    /// The `web/` folder served to the page.
    pub web_dir: PathBuf,
    /// The routing profile `pool.routing_profile` names, read.
    pub profile: Option<crate::history::RoutingProfile>,
}

impl RunConfig {
    /// Validates `scenario` and looks up its models, browsers, drivers and the page.
    ///
    /// # Errors
    /// [`UsageError`] for an invalid scenario, an unknown model, a missing browser or driver
    /// (naming the package to install), or a page that is not set up.
    pub fn resolve(mut scenario: Scenario, extras: RunExtras) -> Result<Self> {
        if let Err(errors) = scenario.validate() {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            bail!(UsageError(lines.join("\n")));
        }
        let models = plan::canonicalize(&mut scenario)?;
        let installed = browser::discover();
        let webnn = scenario.backends.contains(&Backend::Webnn);
        let grids = remote::grid_statuses(&scenario.pool.grid)?;
        let mut launches = Vec::new();
        for &kind in &dedup(&scenario.pool.browsers) {
            let driver = if kind.is_chromium_family() {
                scenario.pool.driver
            } else {
                DriverKind::WebDriver
            };
            let remote = grids.iter().find(|(_, st)| st.offers(kind));
            let mut spec = match remote {
                Some((url, _)) => remote::remote_spec(kind, url, webnn),
                None => launch_spec(&installed, kind, driver, webnn)?,
            };
            spec.launch_timeout = scenario.pool.launch_timeout;
            launches.push(spec);
        }
        remote::every_grid_used(&grids, &launches, &scenario.pool.browsers)?;
        let web_dir = web_dir()?;
        let profile = match &scenario.pool.routing_profile {
            Some(path) => Some(
                crate::history::RoutingProfile::load(Path::new(path)).map_err(|e| {
                    UsageError(format!("--routing-profile (pool.routing_profile): {e}"))
                })?,
            ),
            None => None,
        };
        Ok(Self {
            scenario,
            models,
            launches,
            extras,
            cache: Cache::from_env(),
            web_dir,
            profile,
        })
    }
}

fn dedup<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for &x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Builds the launch spec for `kind`, or a usage error naming what to install.
///
/// # Errors
/// [`UsageError`] when the browser or the driver it needs is not installed.
pub fn launch_spec(
    installed: &Installed,
    kind: BrowserKind,
    driver: DriverKind,
    webnn: bool,
) -> Result<LaunchSpec> {
    installed
        .launch_spec(kind, driver, "", webnn, Duration::from_secs(60))
        .map_err(|e| UsageError(format!("--browsers: {e}")).into())
}

/// Finds the `web/` folder: `$WEBGPU_POOL_WEB_DIR`, else `./web`, else the source tree's.
///
/// # Errors
/// [`UsageError`] when none has onnxruntime-web installed.
pub fn web_dir() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("WEBGPU_POOL_WEB_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("web"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("web"),
        ])
        .collect();
    for dir in &candidates {
        if dir.join("worker.html").is_file() {
            if !dir
                .join("node_modules/onnxruntime-web/package.json")
                .is_file()
            {
                bail!(UsageError(format!(
                    "onnxruntime-web is not installed in '{}'; run scripts/setup.sh (or `npm ci` in web/)",
                    dir.display()
                )));
            }
            return dir
                .canonicalize()
                .with_context(|| format!("reading '{}'", dir.display()));
        }
    }
    bail!(UsageError(format!(
        "the worker page (web/worker.html) was not found in {}; set WEBGPU_POOL_WEB_DIR",
        candidates
            .iter()
            .map(|p| format!("'{}'", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Runs `config` to the end or until `shutdown` is cancelled, writing `results/<run-id>/`.
/// Returns the summary and the folder it was written to.
///
/// # Errors
/// Model preparation, server or browser launch failures (exit code 2). A run that measured
/// something returns `Ok` even if rows failed; `RunSummary::passed` says how it went.
pub async fn run(
    config: &RunConfig,
    shutdown: CancellationToken,
    observer: &dyn RunObserver,
) -> Result<(RunSummary, PathBuf)> {
    shard::check_plan(config)?;
    let started = SystemTime::now();
    let run_id = run_id(started);
    let run_dir = config.extras.results_dir.join(&run_id);
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating '{}'", run_dir.display()))?;
    // The scenario as run, and the journal of the pool's state: what `resume` needs.
    std::fs::write(
        run_dir.join("scenario.yaml"),
        crate::scenario::to_yaml(&config.scenario),
    )
    .with_context(|| format!("writing '{}'", run_dir.join("scenario.yaml").display()))?;
    let sync = config
        .scenario
        .state
        .as_ref()
        .map_or(Duration::from_secs(5), |s| s.sync_interval);
    let journal = pool::Journal::create(&run_dir, sync)
        .with_context(|| format!("creating the transaction log in '{}'", run_dir.display()))?;
    let part = Part {
        run_id,
        run_dir,
        started,
        journal,
        earlier: None,
    };
    run_part(config, part, shutdown, observer).await
}

/// One part of a run: the whole of a fresh run, or what is left of a resumed one.
struct Part {
    run_id: String,
    run_dir: PathBuf,
    started: SystemTime,
    journal: pool::Journal,
    earlier: Option<crate::metrics::EarlierPart>,
}

async fn run_part(
    config: &RunConfig,
    part: Part,
    shutdown: CancellationToken,
    observer: &dyn RunObserver,
) -> Result<(RunSummary, PathBuf)> {
    let sharded = config.scenario.sharding.is_some();
    if sharded && part.earlier.is_some() {
        bail!(UsageError(
            "a sharded run cannot be resumed: run it again".into()
        ));
    }
    let Part {
        run_id,
        run_dir,
        started,
        journal,
        earlier,
    } = part;
    // The generation cells' decoder and prompts, before any browser starts.
    let cells = match &config.scenario.generation {
        Some(g) => Some(generate::prepare_cells(g, &config.cache, observer).await?),
        None => None,
    };
    let mut plan = if sharded {
        shard::plan(config, observer).await?
    } else {
        let prepared = prepare_models(
            &config.models,
            &config.cache,
            config.scenario.seed,
            observer,
        )
        .await?;
        let natives = native_runs(&prepared, &config.cache, observer).await?;
        let mut plan = plan::build_plan(config, prepared.into_iter().map(Arc::new).collect());
        for (m, native) in plan.models.iter_mut().zip(natives) {
            m.native = Some(native);
        }
        plan.generation = cells.as_ref().map(|c| c.plan.clone());
        plan
    };
    let server = remote::start_server(config).await?;
    let page_origin = server.base_url();
    // What the earlier part did, as the journal counts it: requests in flight when its
    // harness died are neither succeeded nor failed (the report counts them lost).
    plan.resumed = earlier.as_ref().map(|e| crate::state::Progress {
        issued: e.issued,
        succeeded: e.succeeded,
        failed: e.failed,
        per_model: e.per_model.clone(),
        elapsed_ms: e.elapsed_ms,
    });
    plan.journal = Some((journal, run_id.clone()));
    let server = std::sync::Arc::new(server);
    let outcome = pool::execute(&plan, server.clone(), &shutdown, observer).await;
    if let Ok(server) = std::sync::Arc::try_unwrap(server) {
        server.shutdown().await;
    }

    let mut summary = empty_summary(run_id, &config.extras.command, started, earlier.clone());
    summary.load = plan::load_context(&config.scenario);
    summary.environment.page_origin = Some(page_origin);
    summary.environment.not_installed = config
        .extras
        .not_installed
        .iter()
        .map(|k| crate::metrics::NotInstalled {
            kind: k.to_string(),
            install: k.install_hint().to_string(),
        })
        .collect();
    match outcome {
        Ok(mut out) => {
            if let Some(c) = &cells {
                // The browsers are closed: the native checks have the machine to themselves.
                let runs = std::mem::take(&mut out.generations);
                let checked = generate::check_cells(c, runs, &config.cache, observer).await?;
                out.rows.extend(checked.rows);
                summary.generations = checked.generations;
                // A measured generation's samples are its steps, not its one request; a
                // request that failed or warmed up keeps its own (its steps are not reported).
                out.samples
                    .retain(|s| s.model != c.plan.model || !s.ok || s.phase == Phase::Warmup);
                let base = out.samples.len() as u64;
                out.samples
                    .extend(checked.samples.into_iter().enumerate().map(|(i, mut s)| {
                        s.seq = base + i as u64;
                        s
                    }));
            }
            summary.complete = out.stopped_early.is_none();
            summary.stopped_early = out.stopped_early;
            summary.environment.browsers = out.browsers;
            summary.requests = out.requests;
            if let Some(e) = &plan.resumed {
                // Both parts are one run: its accounting covers both.
                summary.requests.issued += e.issued;
                summary.requests.succeeded += e.succeeded;
                summary.requests.failed += e.failed;
            }
            if let Some(e) = &earlier {
                summary.requests.lost += e.interrupted;
                summary.requests.lost_with_harness = e.interrupted;
            }
            summary.results = out.rows;
            summary.workers = out.workers;
            summary.routing = out.routing;
            summary.pool_events = out
                .pool_events
                .iter()
                .filter_map(crate::report::events::record)
                .collect();
            summary.peak_workers = out.peak_workers;
            summary.adaptive = out.adaptive;
            summary.sharding = out.sharding;
            summary.faults = fault_records(&out.faults);
            summary.recovery_events = recovery_events(&out.recoveries, &out.samples);
            summary.thresholds =
                crate::metrics::thresholds::evaluate(&summary, &plan::limits(&config.scenario));
            crate::report::write_run(&summary, &out.samples, &run_dir)?;
            if sharded && summary.sharding.is_none() {
                bail!(
                    "sharded run {} stopped: {}; partial report in '{}'",
                    summary.run_id,
                    summary
                        .stopped_early
                        .as_deref()
                        .unwrap_or("before its stream"),
                    run_dir.display()
                );
            }
            if config.extras.save_outputs {
                let models: Vec<_> = plan
                    .models
                    .iter()
                    .map(|m| (&*m.prepared, m.native.as_deref()))
                    .collect();
                crate::report::npy::write_outputs(&run_dir, &models, &out.outputs)?;
            }
            Ok((summary, run_dir))
        }
        Err(e) => {
            // Nothing was measured, but the run folder still says what happened.
            summary.stopped_early = Some(e.to_string());
            crate::report::write_run(&summary, &[], &run_dir)?;
            Err(anyhow::Error::new(e).context(format!(
                "run {} stopped; partial report in '{}'",
                summary.run_id,
                run_dir.display()
            )))
        }
    }
}

/// The pool's fault notes as run.json records them.
fn fault_records(faults: &[pool::FaultNote]) -> Vec<crate::metrics::FaultRecord> {
    faults
        .iter()
        .map(|f| crate::metrics::FaultRecord {
            kind: f.kind_name().to_string(),
            at_ms: f.at_ms,
            target: f.target.clone(),
            injected: f.injected,
            detail: f.detail.clone(),
        })
        .collect()
}

/// The pool's recoveries as run.json records them; `samples` give when each recovered model
/// was served again.
fn recovery_events(
    recoveries: &[pool::RecoveryRecord],
    samples: &[crate::metrics::Sample],
) -> Vec<crate::metrics::RecoveryEvent> {
    recoveries
        .iter()
        .map(|r| crate::metrics::RecoveryEvent {
            fault_kind: r.fault_name().to_string(),
            level: r.level.map_or("none", |l| l.as_str()).to_string(),
            detection_ms: r.detection_ms,
            recovery_ms: r.recovery_ms,
            served_ms: r
                .succeeded
                .then(|| crate::metrics::served_ms(r.at_ms, &r.models, samples))
                .flatten(),
            models: r.models.clone(),
            served_nothing: r.models.is_empty() && r.shards.is_none(),
            succeeded: r.succeeded,
            at_ms: r.at_ms,
            worker: r.worker.clone(),
            detected_by: r.detected_by.to_string(),
            steps: r.steps.clone(),
        })
        .collect()
}

/// The summary of a run that has measured nothing yet (finished now).
fn empty_summary(
    run_id: String,
    command: &str,
    started: SystemTime,
    resumed: Option<crate::metrics::EarlierPart>,
) -> RunSummary {
    RunSummary {
        schema_version: SCHEMA_VERSION,
        run_id,
        command: command.to_string(),
        started_at: humantime::format_rfc3339_seconds(started).to_string(),
        finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        complete: false,
        stopped_early: None,
        environment: environment(),
        load: crate::metrics::LoadContext::UNKNOWN,
        requests: Default::default(),
        results: Vec::new(),
        faults: Vec::new(),
        recovery_events: Vec::new(),
        thresholds: Vec::new(),
        workers: Vec::new(),
        routing: Vec::new(),
        pool_events: Vec::new(),
        peak_workers: 0,
        resumed,
        sharding: None,
        adaptive: None,
        generations: Vec::new(),
    }
}

/// Warm runs per thread count of the native baseline.
const NATIVE_RUNS: usize = 10;

/// Runs each model natively (the oracle and the baseline), before any browser starts: on 2
/// cores a browser computing meanwhile would slow both.
///
/// # Errors
/// The native library is missing (the message names `scripts/setup.sh`) or a model does not run.
async fn native_runs(
    prepared: &[models::PreparedModel],
    cache: &Cache,
    observer: &dyn RunObserver,
) -> Result<Vec<Arc<crate::oracle::NativeResult>>> {
    let mut out = Vec::with_capacity(prepared.len());
    for model in prepared {
        let (cache, m) = (cache.clone(), model.clone());
        // The graph the pages will load is saved here too, while no browser computes (a
        // page's load would otherwise wait for it). A failed save is not an error here: the
        // load says why and gives the page the model's own graph.
        let native = tokio::task::spawn_blocking(move || {
            let native = crate::oracle::run_model(&cache, &m, NATIVE_RUNS);
            let _ = crate::oracle::preoptimize(&cache, &m.onnx_file);
            native
        })
        .await
        .context("the native run panicked")??;
        observer.on_event(&RunEvent::Note {
            line: format!(
                "native {}: p50 {:.1} ms at 1 thread, {:.1} ms at {} threads (onnxruntime {})",
                model.name,
                native.one_thread_ms.p50,
                native.all_threads_ms.p50,
                native.all_threads,
                crate::oracle::ORT_VERSION
            ),
        });
        out.push(Arc::new(native));
    }
    Ok(out)
}

/// Prepares models off the async runtime (weight generation and ONNX encoding are CPU work).
///
/// # Errors
/// A [`models::ModelError`] with the path involved.
pub async fn prepare_models(
    specs: &[&'static ModelSpec],
    cache: &Cache,
    seed: u64,
    observer: &dyn RunObserver,
) -> Result<Vec<models::PreparedModel>> {
    let mut out = Vec::new();
    for &spec in specs {
        observer.on_event(&RunEvent::Preparing { model: spec.name });
        let cache = cache.clone();
        let started = std::time::Instant::now();
        let prepared = tokio::task::spawn_blocking(move || models::prepare(spec, &cache, seed))
            .await
            .context("model preparation task")?
            .map_err(|e| match e {
                models::ModelError::MissingWeights { .. } => {
                    anyhow::Error::new(UsageError(e.to_string()))
                }
                other => anyhow::Error::new(other),
            })
            .with_context(|| format!("preparing model '{}'", spec.name))?;
        observer.on_event(&RunEvent::Prepared {
            model: &prepared,
            took: started.elapsed(),
        });
        out.push(prepared);
    }
    Ok(out)
}

/// Host facts for the report.
pub fn environment() -> Environment {
    Environment {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        browsers: Vec::new(),
        page_origin: None,
        not_installed: Vec::new(),
    }
}

/// `2026-11-28T10-00-00Z-ab12`: sortable, safe in paths, unique per start.
fn run_id(at: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace(':', "-");
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{stamp}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
}
