//! The application layer: resolves what the user asked for into a [`RunConfig`] (models found,
//! browsers located, defaults applied), runs the engine, and writes the reports.
//!
//! `main` compiles flags or a scenario file into a [`Scenario`]; everything here is callable in-process by tests.
//! Uses `anyhow` for context at I/O boundaries; the engine below uses typed errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use crate::browser::{self, BrowserKind, DriverKind, Installed, LaunchSpec};
use crate::metrics::{Environment, RunSummary, SCHEMA_VERSION};
use crate::models::{self, Cache, ModelSpec};
use crate::pool::{self, Backend, RunObserver, RunPlan};
use crate::scenario::{self, PlacementMode, RecoveryStrategy, Scenario, WorkloadMode};
use crate::server::AssetServer;
use crate::{faults, recovery};

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
}

/// A resolved run: the validated scenario with every name looked up and every path found.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The scenario as given (validated).
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
}

impl RunConfig {
    /// Validates `scenario` and looks up its models, browsers, drivers and the page.
    ///
    /// # Errors
    /// [`UsageError`] for an invalid scenario, an unknown model, a missing browser or driver
    /// (naming the package to install), or a page that is not set up.
    pub fn resolve(scenario: Scenario, extras: RunExtras) -> Result<Self> {
        if let Err(errors) = scenario.validate() {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            bail!(UsageError(lines.join("\n")));
        }
        let models = scenario
            .models
            .iter()
            .map(|m| models::resolve(&m.name).map_err(|e| UsageError(format!("--models: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let installed = browser::discover();
        let webnn = scenario.backends.contains(&Backend::Webnn);
        let mut launches = Vec::new();
        for &kind in &dedup(&scenario.pool.browsers) {
            let driver = if kind.is_chromium_family() {
                scenario.pool.driver
            } else {
                DriverKind::WebDriver
            };
            let mut spec = launch_spec(&installed, kind, driver, webnn)?;
            spec.launch_timeout = scenario.pool.launch_timeout;
            launches.push(spec);
        }
        let web_dir = web_dir()?;
        Ok(Self {
            scenario,
            models,
            launches,
            extras,
            cache: Cache::from_env(),
            web_dir,
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
    progress: &dyn Fn(&str),
) -> Result<(RunSummary, PathBuf)> {
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
    run_part(config, part, shutdown, observer, progress).await
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
    progress: &dyn Fn(&str),
) -> Result<(RunSummary, PathBuf)> {
    let Part {
        run_id,
        run_dir,
        started,
        journal,
        earlier,
    } = part;
    let prepared = prepare_models(
        &config.models,
        &config.cache,
        config.scenario.seed,
        progress,
    )
    .await?;
    let server = AssetServer::start(config.web_dir.clone(), config.cache.models_dir())
        .await
        .context("starting the asset server")?;
    let mut launches = config.launches.clone();
    for l in &mut launches {
        l.page_url = server.page_url();
    }
    let mut plan = build_plan(config, prepared, launches);
    plan.resumed = earlier.as_ref().map(|e| crate::state::Progress {
        issued: e.issued,
        succeeded: e.succeeded,
        failed: e.failed + e.interrupted,
        per_model: e.per_model.clone(),
        elapsed_ms: e.elapsed_ms,
    });
    plan.journal = Some((journal, run_id.clone()));
    let server = std::sync::Arc::new(server);
    let outcome = pool::execute(&plan, server.clone(), &shutdown, observer).await;
    if let Ok(server) = std::sync::Arc::try_unwrap(server) {
        server.shutdown().await;
    }

    let mut summary = RunSummary {
        schema_version: SCHEMA_VERSION,
        run_id,
        command: config.extras.command.clone(),
        started_at: humantime::format_rfc3339_seconds(started).to_string(),
        finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        complete: false,
        stopped_early: None,
        environment: environment(),
        requests: Default::default(),
        results: Vec::new(),
        faults: Vec::new(),
        recovery_events: Vec::new(),
        thresholds: Vec::new(),
        workers: Vec::new(),
        routing: Vec::new(),
        pool_events: Vec::new(),
        peak_workers: 0,
        resumed: earlier.clone(),
    };
    match outcome {
        Ok(out) => {
            summary.complete = out.stopped_early.is_none();
            summary.stopped_early = out.stopped_early;
            summary.environment.browsers = out.browsers;
            summary.requests = out.requests;
            if let Some(e) = &earlier {
                // Both parts are one run: its accounting covers both.
                summary.requests.issued += e.issued;
                summary.requests.succeeded += e.succeeded;
                summary.requests.failed += e.failed + e.interrupted;
            }
            summary.results = out.rows;
            summary.workers = out.workers;
            summary.routing = out.routing;
            summary.pool_events = out.pool_events;
            summary.peak_workers = out.peak_workers;
            summary.faults = out
                .faults
                .iter()
                .map(|f| crate::metrics::FaultRecord {
                    kind: f.kind.clone(),
                    at_ms: f.at_ms,
                    target: f.target.clone(),
                    injected: f.injected,
                    detail: f.detail.clone(),
                })
                .collect();
            summary.recovery_events = out
                .recoveries
                .iter()
                .map(|r| crate::metrics::RecoveryEvent {
                    fault_kind: r.fault_kind.clone(),
                    level: r.level.map_or("none", |l| l.as_str()).to_string(),
                    detection_ms: r.detection_ms,
                    recovery_ms: r.recovery_ms,
                    succeeded: r.succeeded,
                    at_ms: r.at_ms,
                    worker: r.worker.clone(),
                    detected_by: r.detected_by.clone(),
                    steps: r.steps.clone(),
                })
                .collect();
            summary.thresholds =
                crate::metrics::thresholds::evaluate(&summary, &limits(&config.scenario));
            crate::report::write_run(&summary, &out.samples, &run_dir)?;
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

/// Compiles the resolved scenario into the engine's plan.
fn build_plan(
    config: &RunConfig,
    models: Vec<models::PreparedModel>,
    launches: Vec<LaunchSpec>,
) -> RunPlan {
    let sc = &config.scenario;
    let w = &sc.workload;
    let mut plan = RunPlan::matrix(models, launches, 0, w.warmup);
    plan.backends = sc.backends.clone();
    plan.allow_fallback_adapter = sc.allow_fallback_adapter;
    plan.timeouts.load = w.load_timeout;
    plan.timeouts.run = w.request_timeout;
    plan.workload.request_timeout = w.request_timeout;
    plan.cache = config.cache.clone();
    plan.seed = sc.seed;
    plan.pins = sc.models.iter().map(|m| (m.browser, m.weight)).collect();
    plan.workload.schedule = match (w.mode, w.rate) {
        (WorkloadMode::Open, Some(rate)) => pool::Schedule::Open {
            rate_per_s: rate,
            max_in_flight: w.concurrency.max(1) as usize,
        },
        _ => pool::Schedule::Closed {
            concurrency: w.concurrency.max(1) as usize,
        },
    };
    let per_model = w.iterations.unwrap_or(10);
    match sc.pool.placement {
        PlacementMode::Matrix => {
            plan.workload.bound = match w.duration {
                Some(d) => pool::Bound::Duration(d),
                None => pool::Bound::Iterations(per_model),
            };
        }
        PlacementMode::Routed => {
            plan.placement = pool::Placement::Routed;
            plan.workload.bound = match w.duration {
                Some(d) => pool::Bound::Duration(d),
                // Iterations are per model, as in the matrix.
                None => pool::Bound::Iterations(per_model * config.models.len() as u64),
            };
            plan.cooldown = w.cooldown;
            plan.pool.min_workers = sc.pool.min_connections as usize;
            plan.pool.max_workers = (sc.pool.max_connections as usize).max(1);
            plan.pool.idle_timeout = sc.pool.idle_timeout;
            plan.pool.heartbeat_interval = sc.pool.heartbeat_interval;
            plan.pool.heartbeat_timeout = sc.pool.heartbeat_timeout;
            plan.pool.scale_up_queue = 2;
            plan.recovery = pool::RecoveryConfig {
                strategy: match sc.recovery.strategy {
                    RecoveryStrategy::Progressive => recovery::Strategy::Progressive,
                    RecoveryStrategy::Immediate => recovery::Strategy::Immediate,
                    RecoveryStrategy::None => recovery::Strategy::None,
                },
                timeout: sc.recovery.timeout,
                max_attempts: sc.recovery.max_attempts,
            };
            if plan.recovery.strategy != recovery::Strategy::None {
                // A hung page must be noticed with time left to recover and run the request
                // again inside its deadline.
                plan.timeouts.run = w.request_timeout / 4;
            }
            plan.migrations = sc
                .state
                .iter()
                .flat_map(|st| &st.migrations)
                .map(|m| {
                    let name = models::resolve(&m.model)
                        .map(|s| s.name.to_string())
                        .unwrap_or_else(|_| m.model.clone());
                    (name, m.to, m.at)
                })
                .collect();
            plan.workload.pin_clients = !sc.faults.is_empty();
            if !sc.faults.is_empty() {
                // The room above min_connections is for rebuilding failed workers, not for
                // scaling up on queues.
                plan.pool.scale_up_queue = usize::MAX;
            }
            plan.faults = sc
                .faults
                .iter()
                .enumerate()
                .map(|(i, f)| fault_spec(sc, i, f))
                .collect();
        }
    }
    plan.pool.preferences = preferences(sc);
    plan
}

/// One scenario fault as the injector takes it, defaults applied (duration 5s, delay 250ms,
/// seed = scenario seed + index).
fn fault_spec(sc: &Scenario, i: usize, f: &scenario::Fault) -> faults::FaultSpec {
    use scenario::{FaultKind as K, FaultTarget as T};
    let kind = |k: K| match k {
        K::KillBrowser | K::Random => faults::Kind::KillBrowser,
        K::CrashTab => faults::Kind::CrashTab,
        K::Hang => faults::Kind::Hang,
        K::GpuDeviceLost => faults::Kind::GpuDeviceLost,
        K::KillDriver => faults::Kind::KillDriver,
        K::Disconnect => faults::Kind::Disconnect,
        K::Slow => faults::Kind::Slow,
    };
    faults::FaultSpec {
        choice: match f.kind {
            K::Random => faults::Choice::Random(f.kinds.iter().map(|k| kind(*k)).collect()),
            k => faults::Choice::One(kind(k)),
        },
        when: match (f.at, f.every, f.rate) {
            (Some(at), _, _) => faults::When::At(at),
            (_, Some(every), _) => faults::When::Every(every),
            (_, _, Some(rate)) => faults::When::Rate(rate),
            // Validation requires a schedule; an unscheduled fault never fires.
            _ => faults::When::Rate(0.0),
        },
        count: f.count,
        seed: f.seed.unwrap_or(sc.seed.wrapping_add(i as u64)),
        target: match &f.target {
            T::Random => faults::Target::Random,
            T::Browser(b) => faults::Target::Browser(*b),
            T::Worker(w) => faults::Target::Worker(w.clone()),
            T::Model(m) => faults::Target::Model(
                models::resolve(m)
                    .map(|s| s.name.to_string())
                    .unwrap_or_else(|_| m.clone()),
            ),
        },
        duration: f.duration.unwrap_or(Duration::from_secs(5)),
        delay: f.delay.unwrap_or(Duration::from_millis(250)),
    }
}

/// The scenario's per-type browser preferences over the built-in defaults.
fn preferences(sc: &Scenario) -> pool::Preferences {
    let mut p = pool::Preferences::default();
    let given = [
        (models::Task::Audio, sc.pool.preferences.audio),
        (models::Task::Vision, sc.pool.preferences.vision),
        (
            models::Task::TextEmbedding,
            sc.pool.preferences.text_embedding,
        ),
        (
            models::Task::TextGeneration,
            sc.pool.preferences.text_generation,
        ),
    ];
    for (task, kind) in given {
        if let Some(k) = kind {
            p.0.insert(task, k);
        }
    }
    p
}

/// The scenario's thresholds as metric limits, model aliases resolved to catalog names.
fn limits(sc: &Scenario) -> crate::metrics::thresholds::Limits {
    let name = |m: &String| {
        models::resolve(m)
            .map(|s| s.name.to_string())
            .unwrap_or_else(|_| m.clone())
    };
    crate::metrics::thresholds::Limits {
        lost_requests: sc.thresholds.lost_requests,
        error_rate: sc.thresholds.error_rate,
        p95_ms: sc
            .thresholds
            .p95_ms
            .iter()
            .map(|(m, v)| (name(m), *v))
            .collect(),
        p99_ms: sc
            .thresholds
            .p99_ms
            .iter()
            .map(|(m, v)| (name(m), *v))
            .collect(),
    }
}

/// Prepares models off the async runtime (weight generation and ONNX encoding are CPU work).
///
/// # Errors
/// A [`models::ModelError`] with the path involved.
pub async fn prepare_models(
    specs: &[&'static ModelSpec],
    cache: &Cache,
    seed: u64,
    progress: &dyn Fn(&str),
) -> Result<Vec<models::PreparedModel>> {
    let mut out = Vec::new();
    for &spec in specs {
        progress(&format!("preparing {} ...", spec.name));
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
        progress(&format!(
            "prepared {} ({} weights, {:.1} MB ONNX) in {:.1}s",
            prepared.name,
            prepared.weights.as_str(),
            prepared.onnx_bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        ));
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

/// The catalog as plain records.
pub fn model_list() -> Vec<crate::metrics::ModelInfo> {
    models::catalog()
        .iter()
        .map(|m| crate::metrics::ModelInfo {
            name: m.name.to_string(),
            aliases: m.aliases.iter().map(|a| a.to_string()).collect(),
            task: m.task.as_str().to_string(),
            summary: m.summary.to_string(),
            test_variant: m.test_variant,
        })
        .collect()
}

/// Prepares the named models (every catalog model when `names` is empty).
///
/// # Errors
/// [`UsageError`] for an unknown name; model errors with their path.
pub async fn prepare_named(
    names: &[String],
    seed: u64,
    progress: &dyn Fn(&str),
) -> Result<Vec<models::PreparedModel>> {
    let specs: Vec<&'static ModelSpec> = if names.is_empty() {
        models::catalog().iter().collect()
    } else {
        names
            .iter()
            .map(|n| models::resolve(n).map_err(|e| UsageError(format!("models prepare: {e}"))))
            .collect::<Result<_, _>>()?
    };
    prepare_models(&specs, &Cache::from_env(), seed, progress).await
}

/// Launches every installed browser (or the `only` ones), asks its page what it offers, and
/// closes it again.
///
/// # Errors
/// [`UsageError`] when a browser named in `only` is missing or the page is not set up.
pub async fn probe_browsers(
    only: &[BrowserKind],
    progress: &dyn Fn(&str),
) -> Result<crate::metrics::BrowserProbe> {
    let installed = browser::discover();
    let kinds: Vec<BrowserKind> = if only.is_empty() {
        BrowserKind::ALL
            .into_iter()
            .filter(|&k| installed.browser(k).is_some())
            .collect()
    } else {
        dedup(only)
    };
    let mut launches = Vec::new();
    let mut probe = crate::metrics::BrowserProbe {
        drivers: installed
            .drivers
            .iter()
            .map(|(server, f)| crate::metrics::ToolInfo {
                name: server.as_str().to_string(),
                path: f.path.display().to_string(),
                version: f.version.clone().unwrap_or_default(),
            })
            .collect(),
        ..Default::default()
    };
    for kind in kinds {
        let driver = if kind.is_chromium_family() {
            DriverKind::Cdp
        } else {
            DriverKind::WebDriver
        };
        match launch_spec(&installed, kind, driver, true) {
            Ok(spec) => launches.push(spec),
            Err(e) if only.is_empty() => probe.errors.push(format!("{kind}: {e}")),
            Err(e) => return Err(e),
        }
    }
    if launches.is_empty() {
        bail!(UsageError(format!(
            "no browser found; {}",
            BrowserKind::Chromium.install_hint()
        )));
    }
    let server = AssetServer::start(web_dir()?, Cache::from_env().models_dir())
        .await
        .context("starting the asset server")?;
    let probes = launches.into_iter().map(|mut spec| {
        spec.page_url = server.page_url();
        async move {
            progress(&format!("launching {} ...", spec.kind));
            let worker = pool::Worker::start(format!("{}#1", spec.kind), spec.clone()).await?;
            let caps = worker.capabilities(true, Duration::from_secs(60)).await;
            let closed = worker.close().await;
            let caps = caps?;
            closed?;
            Ok::<_, browser::WorkerError>(pool::worker::browser_env(&worker, &caps))
        }
    });
    for r in futures::future::join_all(probes).await {
        match r {
            Ok(env) => probe.browsers.push(env),
            Err(e) => probe.errors.push(e.to_string()),
        }
    }
    server.shutdown().await;
    Ok(probe)
}

/// Finishes a run whose harness died (SIGKILL, power loss): rebuilds its state from the run
/// folder's snapshot and transaction log, reaps the browsers and drivers the dead harness left
/// (found by their recorded profile directories, so nothing else is touched), rolls back the
/// transactions it left open, relaunches workers and reloads each model where it was placed,
/// and runs what is left of the workload. The report covers both parts.
///
/// # Errors
/// [`UsageError`] (exit 2) when the folder is not a resumable run: no log or scenario, a damaged
/// log (the error names the record's byte offset), or a run that already finished.
pub async fn resume(
    run_dir: &Path,
    command: String,
    shutdown: CancellationToken,
    observer: &dyn RunObserver,
    progress: &dyn Fn(&str),
) -> Result<(RunSummary, PathBuf)> {
    let scenario_file = run_dir.join("scenario.yaml");
    if !scenario_file.is_file() {
        bail!(UsageError(format!(
            "'{}' is not a run folder to resume: it has no scenario.yaml",
            run_dir.display()
        )));
    }
    let mut scenario = crate::scenario::load_file(&scenario_file).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        UsageError(lines.join("\n"))
    })?;
    let sync = scenario
        .state
        .as_ref()
        .map_or(Duration::from_secs(5), |s| s.sync_interval);
    let policy = crate::state::CommitPolicy::Group { interval: sync };
    let (log, replayed) = crate::state::TxLog::open_append(run_dir, policy)
        .map_err(|e| UsageError(format!("cannot resume '{}': {e}", run_dir.display())))?;
    for w in &replayed.warnings {
        progress(&format!("warning: {w}"));
    }
    let state = log.state().clone();
    if state.finished {
        bail!(UsageError(format!(
            "run {} in '{}' finished; there is nothing to resume",
            state.run_id,
            run_dir.display()
        )));
    }
    let journal = pool::Journal::wrap(log, sync);

    // The dead harness's browsers and drivers: reap them, and say so in the log.
    let reap = journal.begin();
    for w in state.workers.values() {
        let reaped = reap_worker(w).await;
        progress(&format!("reaped {}: {reaped}", w.id));
        if let Some(tx) = reap {
            journal.op(tx, crate::state::Op::WorkerRemoved { id: w.id.clone() });
        }
    }
    if let Some(tx) = reap {
        journal.commit_tx(tx);
    }
    // Transactions the crash cut short (a migration half done): their browsers are gone with
    // the rest, so rolling back is recording the abort.
    let open: Vec<crate::state::TxId> = replayed.incomplete.iter().map(|t| t.txid).collect();
    for tx in &open {
        journal.abort(
            *tx,
            "the harness died mid-transaction; rolled back on resume",
        );
    }

    // What is left, and where each model was.
    let p = &state.progress;
    let w = &mut scenario.workload;
    match state.workload {
        Some(crate::state::WorkloadBound::DurationMs(total)) => {
            let left = total.saturating_sub(p.elapsed_ms).max(1000);
            w.duration = Some(Duration::from_millis(left));
            w.iterations = None;
        }
        Some(crate::state::WorkloadBound::Iterations(total)) => {
            let done: u64 = p.per_model.values().sum();
            let models = scenario.models.len().max(1) as u64;
            w.iterations = Some(total.saturating_sub(done).div_ceil(models).max(1));
            w.duration = None;
        }
        _ => {}
    }
    w.warmup = w.warmup.min(1);
    for m in &mut scenario.models {
        if m.browser.is_some() {
            continue;
        }
        let placed = models::resolve(&m.name)
            .ok()
            .and_then(|spec| state.placements.get(spec.name))
            .and_then(|ws| ws.first())
            .and_then(|id| state.workers.get(id))
            .and_then(|w| w.browser.parse::<BrowserKind>().ok());
        if let Some(kind) = placed.filter(|k| scenario.pool.browsers.contains(k)) {
            m.browser = Some(kind);
        }
    }
    let earlier = crate::metrics::EarlierPart {
        issued: p.issued,
        succeeded: p.succeeded,
        failed: p.failed,
        interrupted: p.issued.saturating_sub(p.succeeded + p.failed),
        elapsed_ms: p.elapsed_ms,
        transactions: format!(
            "{} committed, {} aborted, {} rolled back on resume",
            replayed.applied,
            replayed.aborted,
            open.len()
        ),
        per_model: p.per_model.clone(),
    };
    progress(&format!(
        "resuming run {}: {} requests before the harness died ({} succeeded, {} failed, {} in flight), {}",
        state.run_id,
        earlier.issued,
        earlier.succeeded,
        earlier.failed,
        earlier.interrupted,
        earlier.transactions
    ));
    let results_dir = run_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let config = RunConfig::resolve(
        scenario,
        RunExtras {
            results_dir,
            command,
        },
    )?;
    let part = Part {
        run_id: state.run_id.clone(),
        run_dir: run_dir.to_path_buf(),
        started: SystemTime::now(),
        journal,
        earlier: Some(earlier),
    };
    run_part(&config, part, shutdown, observer, progress).await
}

/// Kills every process that carries `w`'s profile directory (the browser, its children, its
/// driver) and removes the directory. Returns what was done.
async fn reap_worker(w: &crate::state::WorkerRecord) -> String {
    let Some(dir) = w.profile_dir.as_deref().map(Path::new) else {
        return "no profile directory on record".into();
    };
    let pids = browser::process::mentioning(dir);
    for &p in &pids {
        let _ = browser::process::kill(p, browser::process::Signal::Kill);
    }
    let survivors = browser::process::kill_until_dead(&pids, Duration::from_secs(5)).await;
    let removed = if dir.exists() {
        std::fs::remove_dir_all(dir).is_ok()
    } else {
        false
    };
    format!(
        "{} process(es) killed{}{}",
        pids.len(),
        if removed { ", profile removed" } else { "" },
        match survivors {
            Ok(()) => String::new(),
            Err(alive) => format!(", {alive:?} survived"),
        }
    )
}
