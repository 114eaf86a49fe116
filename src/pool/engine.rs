//! The run loop: launch every browser, then for each browser x model load, run once (first
//! run, with outputs for the check), warm up, measure, unload; then close everything.
//!
//! Measurement is sequential on purpose: on a 2-core machine two browsers computing at once
//! would measure each other. Browsers are launched in parallel (launching is mostly waiting).
//! Every request issued is accounted for as succeeded or failed; a cancelled or crashed run
//! still closes every browser and returns what it measured.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::browser::{BrowserKind, LaunchSpec, WorkerError};
use crate::metrics::{BrowserEnv, Percentiles, Phase, Requests, ResultRow, Sample};
use crate::models::PreparedModel;
use crate::server::AssetServer;

use super::correctness::{self, CellOutput};
use super::worker::{OutputMode, RunReply};
use super::{Backend, Worker};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Prepared models, in the order given.
    pub models: Vec<PreparedModel>,
    /// One launch per browser, in the order given.
    pub browsers: Vec<LaunchSpec>,
    /// Backend priority list.
    pub backends: Vec<Backend>,
    /// Whether a software WebGPU adapter (SwiftShader, lavapipe) counts as WebGPU.
    pub allow_fallback_adapter: bool,
    /// Warm-up runs after the first run, not measured.
    pub warmup: u32,
    /// Measured warm runs.
    pub iterations: u32,
    /// Bound on one `run` call.
    pub run_timeout: Duration,
    /// Bound on one `load` call (fetch plus session creation).
    pub load_timeout: Duration,
}

/// What the engine measured.
#[derive(Debug, Clone, Default)]
pub struct EngineOutput {
    /// Each browser launched and what it offered.
    pub browsers: Vec<BrowserEnv>,
    /// One row per model x browser (x the backend it ended up on).
    pub rows: Vec<ResultRow>,
    /// Request accounting.
    pub requests: Requests,
    /// Every request issued, in order.
    pub samples: Vec<Sample>,
    /// Why the run stopped before its end, if it did.
    pub stopped_early: Option<String>,
}

/// Progress events, for a terminal view or a log. The engine never prints.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEvent<'a> {
    /// A browser is being launched.
    Launching {
        /// Which.
        browser: BrowserKind,
    },
    /// A browser is ready.
    Launched {
        /// Worker id.
        worker: &'a str,
        /// Version.
        version: &'a str,
        /// Launch to page ready.
        elapsed: Duration,
    },
    /// A model is loading on a worker.
    Loading {
        /// Worker id.
        worker: &'a str,
        /// Model name.
        model: &'a str,
    },
    /// A model finished on a worker.
    CellDone {
        /// The row just measured.
        row: &'a ResultRow,
    },
    /// Something worth telling the user that does not stop the run.
    Warning {
        /// The message.
        message: String,
    },
}

/// Receives [`RunEvent`]s. Every method does nothing by default.
pub trait RunObserver: Send + Sync {
    /// Called for each event.
    fn on_event(&self, _event: &RunEvent<'_>) {}
}

/// One measured cell before the correctness verdict.
struct Cell {
    row: ResultRow,
    output: Option<CellOutput>,
}

/// Runs `plan`. Returns what was measured even when the run was cancelled or a browser failed;
/// only a failure to launch any browser at all is an error.
///
/// # Errors
/// [`WorkerError::Launch`] when a browser cannot be launched (nothing is left running).
pub async fn execute(
    plan: &RunPlan,
    server: &AssetServer,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) -> Result<EngineOutput, WorkerError> {
    let mut out = EngineOutput::default();
    let workers = launch_all(plan, observer).await;
    let mut live = Vec::new();
    let mut launch_error = None;
    for w in workers {
        match w {
            Ok(w) => live.push(w),
            Err(e) => launch_error = Some(e),
        }
    }
    if let Some(e) = launch_error {
        close_all(&live).await;
        return Err(e);
    }

    let mut rec = Recorder {
        t0: Instant::now(),
        requests: Requests::default(),
        samples: Vec::new(),
    };
    let mut cells: Vec<(usize, Cell)> = Vec::new();
    'workers: for worker in &live {
        let env = match describe(worker, plan).await {
            Ok(env) => env,
            Err(e) => {
                observer.on_event(&RunEvent::Warning {
                    message: format!("{}: capabilities failed: {e}", worker.id),
                });
                BrowserEnv {
                    kind: worker.kind().to_string(),
                    ..Default::default()
                }
            }
        };
        out.browsers.push(env);
        for (m, model) in plan.models.iter().enumerate() {
            if cancel.is_cancelled() {
                out.stopped_early = Some("interrupted".into());
                break 'workers;
            }
            observer.on_event(&RunEvent::Loading {
                worker: &worker.id,
                model: &model.name,
            });
            let cell = measure(worker, model, plan, server, cancel, &mut rec).await;
            observer.on_event(&RunEvent::CellDone { row: &cell.row });
            let crashed = cell
                .row
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("browser crashed"));
            cells.push((m, cell));
            if crashed {
                observer.on_event(&RunEvent::Warning {
                    message: format!("{} is gone; its remaining models are skipped", worker.id),
                });
                break;
            }
        }
    }
    if cancel.is_cancelled() && out.stopped_early.is_none() {
        out.stopped_early = Some("interrupted".into());
    }
    close_all(&live).await;

    // Correctness, model by model, over every cell that produced output.
    for m in 0..plan.models.len() {
        let idx: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].0 == m).collect();
        let outputs: Vec<CellOutput> = idx
            .iter()
            .map(|&i| {
                cells[i].1.output.clone().unwrap_or_else(|| CellOutput {
                    label: String::new(),
                    backend: String::new(),
                    sample: Vec::new(),
                    golden: None,
                })
            })
            .collect();
        for (&i, verdict) in idx.iter().zip(correctness::judge(&outputs)) {
            if cells[i].1.output.is_some() {
                cells[i].1.row.correctness = verdict;
            }
        }
    }
    out.rows = cells.into_iter().map(|(_, c)| c.row).collect();
    out.requests = rec.requests;
    out.requests.settle();
    out.samples = rec.samples;
    Ok(out)
}

async fn launch_all(
    plan: &RunPlan,
    observer: &dyn RunObserver,
) -> Vec<Result<Worker, WorkerError>> {
    let mut n = std::collections::HashMap::new();
    let launches = plan.browsers.iter().map(|spec| {
        let k = n.entry(spec.kind).or_insert(0);
        *k += 1;
        let id = format!("{}#{}", spec.kind, k);
        observer.on_event(&RunEvent::Launching { browser: spec.kind });
        Worker::start(id, spec.clone())
    });
    let results = futures::future::join_all(launches).await;
    for w in results.iter().flatten() {
        observer.on_event(&RunEvent::Launched {
            worker: &w.id,
            version: w.browser().version(),
            elapsed: w.launch_time,
        });
    }
    results
}

async fn close_all(workers: &[Worker]) {
    // A failed close has already killed what was left; there is nothing more to do.
    futures::future::join_all(workers.iter().map(|w| w.close())).await;
}

async fn describe(worker: &Worker, plan: &RunPlan) -> Result<BrowserEnv, WorkerError> {
    let webnn = plan.backends.contains(&Backend::Webnn);
    let caps = worker.capabilities(webnn, Duration::from_secs(60)).await?;
    Ok(browser_env(worker, &caps))
}

/// The environment record of `worker`, from its page's `capabilities` answer.
pub fn browser_env(worker: &Worker, caps: &serde_json::Value) -> BrowserEnv {
    let b = worker.browser();
    BrowserEnv {
        kind: b.kind().to_string(),
        version: b.version().to_string(),
        driver: b.driver().as_str().to_string(),
        executable: worker.spec.executable.display().to_string(),
        ort_version: caps["ort_version"].as_str().unwrap_or_default().to_string(),
        webgpu: caps["webgpu"].clone(),
        webnn: caps["webnn"].clone(),
        wasm: caps["wasm"].clone(),
        cross_origin_isolated: caps["cross_origin_isolated"].as_bool().unwrap_or(false),
        launch_ms: worker.launch_time.as_secs_f64() * 1e3,
    }
}

/// One model on one worker: load, first run, warm-up, measured runs, unload.
async fn measure(
    worker: &Worker,
    model: &PreparedModel,
    plan: &RunPlan,
    server: &AssetServer,
    cancel: &CancellationToken,
    rec: &mut Recorder,
) -> Cell {
    let mut row = ResultRow {
        model: model.name.clone(),
        task: model.task.as_str().to_string(),
        weights: model.weights.as_str().to_string(),
        weights_note: model.weights_note.clone(),
        browser: worker.kind().to_string(),
        ..Default::default()
    };
    let load = tokio::select! {
        r = worker.load(model, server, &plan.backends, plan.allow_fallback_adapter, plan.load_timeout) => r,
        () = cancel.cancelled() => {
            row.error = Some("interrupted while loading".into());
            return Cell { row, output: None };
        }
    };
    let load = match load {
        Ok(l) => l,
        Err(e) => {
            row.error = Some(describe_error(&e));
            return Cell { row, output: None };
        }
    };
    row.backend = load.backend.to_string();
    row.session_create_ms = load.session_create_ms;
    row.load_ms = load.fetch_ms + load.session_create_ms;
    if !load.fallback_reasons.is_empty() {
        let reasons: Vec<String> = load
            .fallback_reasons
            .iter()
            .map(|r| format!("{}: {}", r.backend, r.reason))
            .collect();
        row.backend_fallback_reason = Some(reasons.join("; "));
    }

    // First run: its output feeds the correctness check; full output only where a golden
    // vector needs every value (the strided sample is enough to compare browsers).
    let mode = if model.golden.is_some() {
        OutputMode::Full
    } else {
        OutputMode::Sample
    };
    let first = match issue(
        worker,
        &model.name,
        &row.backend,
        Phase::First,
        mode,
        plan.run_timeout,
        cancel,
        rec,
    )
    .await
    {
        Ok((reply, _)) => reply,
        Err(e) => {
            row.error = Some(e);
            return Cell { row, output: None };
        }
    };
    row.first_run_ms = first.run_ms;
    let output = cell_output(&row, model, &first);

    let mut page_ms = Vec::with_capacity(plan.iterations as usize);
    let mut trip_ms = Vec::with_capacity(plan.iterations as usize);
    let mut wall = Duration::ZERO;
    for i in 0..plan.warmup + plan.iterations {
        if cancel.is_cancelled() {
            row.error = Some(format!(
                "interrupted after {} of {} measured runs",
                page_ms.len(),
                plan.iterations
            ));
            break;
        }
        let phase = if i < plan.warmup {
            Phase::Warmup
        } else {
            Phase::Measure
        };
        match issue(
            worker,
            &model.name,
            &row.backend,
            phase,
            OutputMode::None,
            plan.run_timeout,
            cancel,
            rec,
        )
        .await
        {
            Ok((reply, took)) if i >= plan.warmup => {
                page_ms.push(reply.run_ms);
                trip_ms.push(took.as_secs_f64() * 1e3);
                wall += took;
            }
            Ok(_) => {}
            Err(e) => {
                row.error = Some(e);
                break;
            }
        }
    }
    row.runs = page_ms.len() as u64;
    row.latency_ms = Percentiles::from_ms(&page_ms).unwrap_or_default();
    row.round_trip_ms = Percentiles::from_ms(&trip_ms).unwrap_or_default();
    if !wall.is_zero() {
        row.throughput_per_s = page_ms.len() as f64 / wall.as_secs_f64();
    }
    if row
        .error
        .as_deref()
        .is_none_or(|e| !e.starts_with("browser crashed"))
    {
        // A failed unload leaves a session in a page that is about to close; not worth a row error.
        let _ = worker.unload(&model.name, plan.run_timeout).await;
    }
    Cell { row, output }
}

/// Request accounting and raw samples of a run, in issue order.
#[derive(Debug)]
struct Recorder {
    t0: Instant,
    requests: Requests,
    samples: Vec<Sample>,
}

/// Issues one run request and accounts for it: it ends succeeded or failed, never neither,
/// and leaves one [`Sample`].
#[allow(clippy::too_many_arguments)]
async fn issue(
    worker: &Worker,
    model: &str,
    backend: &str,
    phase: Phase,
    mode: OutputMode,
    timeout: Duration,
    cancel: &CancellationToken,
    rec: &mut Recorder,
) -> Result<(RunReply, Duration), String> {
    rec.requests.issued += 1;
    let started = Instant::now();
    let result = tokio::select! {
        r = worker.run(model, mode, timeout) => r.map_err(|e| (error_class(&e), describe_error(&e))),
        () = cancel.cancelled() => Err(("interrupted", "interrupted during a run".to_string())),
    };
    let took = started.elapsed();
    let at = started.duration_since(rec.t0).as_secs_f64() * 1e3;
    let mut sample = Sample {
        seq: rec.samples.len() as u64,
        model: model.to_string(),
        browser: worker.kind().to_string(),
        worker: worker.id.clone(),
        backend: backend.to_string(),
        phase,
        // Requests here are issued back to back, so the schedule is the issue time.
        scheduled_ms: at,
        started_ms: at,
        latency_ms: took.as_secs_f64() * 1e3,
        service_ms: took.as_secs_f64() * 1e3,
        page_ms: 0.0,
        ok: result.is_ok(),
        error: String::new(),
        attempt: 1,
    };
    let out = match result {
        Ok(reply) => {
            rec.requests.succeeded += 1;
            sample.page_ms = reply.run_ms;
            Ok((reply, took))
        }
        Err((class, e)) => {
            rec.requests.failed += 1;
            sample.error = class.to_string();
            Err(e)
        }
    };
    rec.samples.push(sample);
    out
}

/// A short, stable error class for samples and counts.
fn error_class(e: &WorkerError) -> &'static str {
    if e.is_browser_crash() {
        "crash"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_page_error() {
        "page"
    } else {
        "driver"
    }
}

fn describe_error(e: &WorkerError) -> String {
    if e.is_browser_crash() {
        format!("browser crashed: {e}")
    } else {
        e.to_string()
    }
}

fn cell_output(row: &ResultRow, model: &PreparedModel, first: &RunReply) -> Option<CellOutput> {
    let tensor = first
        .outputs
        .get(&model.output_name)
        .or_else(|| first.outputs.values().next())?;
    let golden = model.golden.as_ref().map(|g| match tensor.full() {
        Ok(full) => g.check(&tensor.dims, &full),
        Err(_) => g.check(&tensor.dims, &[]),
    });
    Some(CellOutput {
        label: format!("{}/{}", row.browser, row.backend),
        backend: row.backend.clone(),
        sample: tensor.sample.clone(),
        golden,
    })
}
