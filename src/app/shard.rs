//! A sharded run (a scenario with a `sharding:` block, `webgpu-pool shard`, `run
//! --test-sharding`): plan the shards, write their graphs, run the unsharded model natively
//! for the reference, launch one worker per shard, stream the workload through the pipeline
//! with faults, measure one unsharded worker beside it, and write the run folder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::{Part, RunConfig, UsageError};
use crate::metrics::sharding::Baseline;
use crate::metrics::RunSummary;
use crate::models::{self, LayerParameters};
use crate::pool::worker::WorkerContext;
use crate::pool::{PageSettings, RunEvent, RunObserver, WorkerTimeouts};
use crate::scenario::{ShardStrategy, ShardTransfer, Sharding};
use crate::server::AssetServer;
use crate::sharding::{self, PlanRequest, ShardFault, ShardSetup, ShardedModelExecution};

/// Probe runs per worker for `cost_balanced`.
const PROBE_RUNS: usize = 5;
/// Requests per route when `transfer: auto` times both.
const TRANSFER_ROUNDS: usize = 2;
/// Native runs for the reference (its timings are reported as the native baseline).
const NATIVE_RUNS: usize = 5;

/// Runs the scenario's sharded model; see the module doc.
///
/// # Errors
/// A plan that cannot be made (exit 2), model preparation, the native reference, a browser
/// launch or a shard load that failed (the run folder still says what happened).
pub(super) async fn run_sharded(
    config: &RunConfig,
    part: Part,
    shutdown: CancellationToken,
    observer: &dyn RunObserver,
) -> Result<(RunSummary, PathBuf)> {
    let sc = &config.scenario;
    let sh = sc
        .sharding
        .clone()
        .context("a sharded run needs a sharding block")?;
    let spec =
        models::resolve(&sh.model).map_err(|e| UsageError(format!("sharding.model: {e}")))?;
    let params = models::layer_parameters(spec)
        .ok_or_else(|| UsageError(format!("sharding.model: '{}' cannot be sharded", sh.model)))?;
    let note = |line: String| observer.on_event(&RunEvent::Note { line });
    let workers = match sh.shards {
        Some(n) => n as usize,
        None => sc.pool.max_connections as usize,
    };
    let budget = sh.memory_budget_mib.map(|m| m * 1024 * 1024);
    // cost_balanced plans after measuring; the others plan now (and refuse before any browser).
    let first = plan_for(&sh, spec.name, &params, workers, budget, None)?;
    if sh.strategy != ShardStrategy::CostBalanced {
        for r in &first.reasons {
            note(format!("plan: {r}"));
        }
    }
    let sharded = prepare(spec, config, &first.ranges, observer).await?;

    // The reference before any browser starts: on 2 cores a browser would slow both.
    let (cache, whole) = (config.cache.clone(), sharded.whole.clone());
    let native =
        tokio::task::spawn_blocking(move || crate::oracle::run_model(&cache, &whole, NATIVE_RUNS))
            .await
            .context("the native run panicked")??;
    note(format!(
        "native {} (unsharded, the reference): p50 {:.1} ms at 1 thread (onnxruntime {})",
        sharded.whole.name,
        native.one_thread_ms.p50,
        crate::oracle::ORT_VERSION
    ));
    let reference = sharding::Reference {
        dims: native.dims.clone(),
        output: native.output.clone(),
        task: spec.task,
    };

    let server = Arc::new(super::remote::start_server(config).await?);
    let w = &sc.workload;
    let ctx = Arc::new(WorkerContext {
        server: server.clone(),
        page: PageSettings {
            backends: sc.backends.clone(),
            allow_fallback_adapter: sc.allow_fallback_adapter,
            wasm_threads: sc.wasm_threads,
            heartbeat: false,
        },
        timeouts: WorkerTimeouts {
            load: w.load_timeout,
            run: w.run_timeout.unwrap_or(w.request_timeout / 4),
            ..WorkerTimeouts::default()
        },
    });
    let setup = ShardSetup {
        launches: config.launches.clone(),
        places: sh.workers.iter().map(|w| (w.browser, w.backend)).collect(),
        ctx,
        recovery: sh.recovery,
        max_attempts: sc.recovery.max_attempts,
        journal: Some(part.journal.clone()),
    };
    let mut exec = ShardedModelExecution::new(sharded, setup);
    observer.on_event(&RunEvent::Starting {
        browsers: &sc.pool.browsers,
    });
    let prepared =
        async {
            let mut reasons = first.reasons.clone();
            if sh.strategy == ShardStrategy::CostBalanced {
                exec.launch_workers().await?;
                let probe = prepare(
                    spec,
                    config,
                    &probe_ranges(params.per_layer.len()),
                    observer,
                )
                .await
                .map_err(|e| sharding::ShardError {
                    class: crate::pool::ErrorClass::Page,
                    message: format!("{e:#}"),
                })?
                .shards
                .swap_remove(1);
                let speeds = exec.measure_layer_ms(Arc::new(probe), PROBE_RUNS).await?;
                let (workers_now, _) = exec.workers();
                for (w, ms) in workers_now.iter().zip(&speeds) {
                    note(format!(
                        "probe: {} runs one layer in {ms:.1} ms (p50 of {PROBE_RUNS})",
                        w.id
                    ));
                }
                let plan = plan_for(&sh, spec.name, &params, workers, budget, Some(&speeds))
                    .map_err(|e| sharding::ShardError {
                        class: crate::pool::ErrorClass::Page,
                        message: format!("{e:#}"),
                    })?;
                for r in &plan.reasons {
                    note(format!("plan: {r}"));
                }
                let sharded = prepare(spec, config, &plan.ranges, observer)
                    .await
                    .map_err(|e| sharding::ShardError {
                        class: crate::pool::ErrorClass::Page,
                        message: format!("{e:#}"),
                    })?;
                exec.replan(sharded);
                reasons = plan.reasons;
            }
            exec.initialize().await?;
            Ok::<_, sharding::ShardError>(reasons)
        }
        .await;

    let run_dir = part.run_dir.clone();
    let mut summary = super::empty_summary(
        part.run_id.clone(),
        &config.extras.command,
        part.started,
        None,
    );
    let reasons = match prepared {
        Ok(r) => r,
        Err(e) => {
            exec.shutdown().await;
            drop(exec);
            finish_server(server).await;
            summary.finished_at = now();
            summary.stopped_early = Some(e.message.clone());
            part.journal.close();
            crate::report::write_run(&summary, &[], &run_dir)?;
            anyhow::bail!(
                "sharded run {} stopped: {}; partial report in '{}'",
                summary.run_id,
                e.message,
                run_dir.display()
            );
        }
    };
    for (i, r) in exec.model().ranges.iter().enumerate() {
        note(format!(
            "shard {i}: layers {}..{} on {}",
            r.start,
            r.end,
            exec.worker_of(i).id
        ));
    }

    let probe = match sh.transfer {
        ShardTransfer::Harness => None,
        ShardTransfer::Server => {
            exec.set_route(sharding::Route::Server);
            None
        }
        ShardTransfer::Auto => {
            let p = sharding::choose_route(&exec, TRANSFER_ROUNDS).await;
            let ms =
                |v: Option<f64>| v.map_or_else(|| "failed".to_string(), |v| format!("{v:.0} ms"));
            note(format!(
                "transfer: one request takes {} through the harness, {} through the asset server (best of {TRANSFER_ROUNDS}, side by side): using the {}",
                ms(p.harness_ms),
                ms(p.server_ms),
                match exec.route() {
                    sharding::Route::Harness => "harness",
                    sharding::Route::Server => "asset server",
                }
            ));
            Some(p)
        }
    };
    let stream_spec = sharding::StreamSpec {
        warmup: w.warmup,
        iterations: u32::try_from(w.iterations.unwrap_or(10)).unwrap_or(u32::MAX),
        duration: w.duration,
        concurrency: w.concurrency.max(1),
        request_timeout: w.request_timeout,
        faults: faults(sc),
        cancel: shutdown.clone(),
    };
    observer.on_event(&RunEvent::Driving {
        what: format!(
            "{} sharded {} ways, {} clients",
            exec.model().whole.name,
            exec.model().shards.len(),
            stream_spec.concurrency
        ),
    });
    let outcome = sharding::stream(&exec, &stream_spec, &reference).await;
    for e in &exec.events() {
        observer.on_event(&RunEvent::Incident {
            line: format!(
                "{} {}: shard {} on {} failed ({}); shards {:?} loaded on [{}], serving {:.0} ms after the failure",
                e.strategy,
                if e.succeeded { "recovered" } else { "gave up" },
                e.shard,
                e.from,
                e.cause,
                e.reloaded,
                e.to.join(", "),
                e.recovery_ms
            ),
        });
    }
    let whole_bytes = params.total() * sharding::plan::BYTES_PER_PARAM;
    let base = match budget {
        Some(b) if whole_bytes > b => Baseline {
            skipped: Some(format!(
                "the unsharded model ({:.1} MiB of parameters) is over one worker's memory budget ({:.1} MiB): it runs only sharded",
                whole_bytes as f64 / 1048576.0,
                b as f64 / 1048576.0
            )),
            ..Baseline::default()
        },
        _ if shutdown.is_cancelled() => Baseline {
            skipped: Some("the run was interrupted".into()),
            ..Baseline::default()
        },
        _ => {
            observer.on_event(&RunEvent::Driving {
                what: format!(
                    "{} unsharded on one worker, the baseline",
                    exec.model().whole.name
                ),
            });
            let runs = outcome.latency.len().max(1) as u32;
            match sharding::baseline(&exec, runs, stream_spec.concurrency, &reference).await {
                Ok(b) => b,
                Err(e) => Baseline {
                    skipped: Some(format!("the unsharded baseline failed: {}", e.message)),
                    ..Baseline::default()
                },
            }
        }
    };
    let mut report = sharding::report(
        &exec,
        sh.strategy.as_str(),
        reasons,
        &outcome,
        stream_spec.concurrency,
        base,
    );
    report.recovery = sh.recovery.as_str().to_string();
    report.transfer_probe = probe;
    let (live, retired) = exec.workers();
    summary.environment.page_origin = Some(server.base_url());
    summary.environment.browsers = live
        .iter()
        .chain(&retired)
        .filter_map(|w| w.status().env)
        .collect();
    exec.shutdown().await;
    drop(exec);
    finish_server(server).await;
    summary.finished_at = now();
    summary.complete = !shutdown.is_cancelled();
    if shutdown.is_cancelled() {
        summary.stopped_early = Some("interrupted".into());
    }
    summary.requests = outcome.requests;
    summary.faults = outcome.faults.clone();
    summary.recovery_events = report
        .events
        .iter()
        .map(|e| crate::metrics::RecoveryEvent {
            fault_kind: e
                .fault_kind
                .clone()
                .unwrap_or_else(|| "shard_failed".into()),
            level: e.strategy.clone(),
            detection_ms: e.detection_ms.unwrap_or(0.0) as u64,
            recovery_ms: e.recovery_ms as u64,
            succeeded: e.succeeded,
            at_ms: e.at_ms,
            worker: e.from.clone(),
            detected_by: if e.detection_ms.is_some() {
                "failed shard call".into()
            } else {
                "failed shard call (no injected fault: detection time unknown)".into()
            },
            steps: Vec::new(),
        })
        .collect();
    summary.pool_events = outcome
        .events
        .iter()
        .map(|e| crate::metrics::PoolEventRecord {
            at_ms: e.at_ms,
            kind: e.kind.clone(),
            worker: e.worker.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    summary.sharding = Some(report);
    summary.thresholds =
        crate::metrics::thresholds::evaluate(&summary, &super::plan::limits(&config.scenario));
    if let Some(e) = part.journal.close() {
        observer.on_event(&RunEvent::Warning {
            message: format!("the transaction log: {e}"),
        });
    }
    crate::report::write_run(&summary, &outcome.samples, &run_dir)?;
    Ok((summary, run_dir))
}

/// Refuses a plan that cannot be made before the run folder is created (exit 2, nothing written).
///
/// # Errors
/// [`UsageError`] naming why.
pub(super) fn check_plan(config: &RunConfig) -> Result<()> {
    let Some(sh) = &config.scenario.sharding else {
        return Ok(());
    };
    let spec =
        models::resolve(&sh.model).map_err(|e| UsageError(format!("sharding.model: {e}")))?;
    let params = models::layer_parameters(spec)
        .ok_or_else(|| UsageError(format!("sharding.model: '{}' cannot be sharded", sh.model)))?;
    let workers = sh
        .shards
        .map_or(config.scenario.pool.max_connections as usize, |n| {
            n as usize
        });
    let budget = sh.memory_budget_mib.map(|m| m * 1024 * 1024);
    plan_for(sh, spec.name, &params, workers, budget, None).map(drop)
}

fn plan_for(
    sh: &Sharding,
    model: &str,
    params: &LayerParameters,
    workers: usize,
    budget: Option<u64>,
    speeds: Option<&[f64]>,
) -> Result<sharding::Plan> {
    // cost_balanced's first call (before the probe) plans by parameters, for the probe's layout.
    let strategy = match (sh.strategy, speeds) {
        (ShardStrategy::CostBalanced, None) => ShardStrategy::LayerBalanced,
        (s, _) => s,
    };
    sharding::plan(&PlanRequest {
        model,
        params,
        shards: sh.shards.map(|n| n as usize),
        strategy,
        workers,
        ms_per_layer: speeds,
        budget_bytes: budget,
    })
    .map_err(|e| UsageError(format!("sharding: {e}")).into())
}

/// Ranges whose middle one is a single layer that holds neither the embedding nor the head.
fn probe_ranges(layers: usize) -> Vec<std::ops::Range<usize>> {
    vec![0..1, 1..2, 2..layers]
}

async fn prepare(
    spec: &'static models::ModelSpec,
    config: &RunConfig,
    ranges: &[std::ops::Range<usize>],
    observer: &dyn RunObserver,
) -> Result<models::ShardedModel> {
    observer.on_event(&RunEvent::Preparing { model: spec.name });
    let (cache, seed, ranges) = (config.cache.clone(), config.scenario.seed, ranges.to_vec());
    tokio::task::spawn_blocking(move || models::prepare_shards(spec, &cache, seed, &ranges))
        .await
        .context("shard preparation task")?
        .map_err(|e| match e {
            models::ModelError::MissingWeights { .. } => {
                anyhow::Error::new(UsageError(e.to_string()))
            }
            other => anyhow::Error::new(other),
        })
        .with_context(|| format!("preparing the shards of '{}'", spec.name))
}

fn faults(sc: &crate::scenario::Scenario) -> Vec<ShardFault> {
    sc.faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let spec = super::plan::fault_spec(sc, i, f);
            let kind = match &spec.choice {
                crate::faults::Choice::One(k) => *k,
                crate::faults::Choice::Random(ks) => ks
                    .first()
                    .copied()
                    .unwrap_or(crate::faults::Kind::KillBrowser),
            };
            ShardFault {
                at: f.at.unwrap_or(Duration::ZERO),
                kind,
                target: f.target.clone(),
                spec,
            }
        })
        .collect()
}

async fn finish_server(server: Arc<AssetServer>) {
    if let Ok(s) = Arc::try_unwrap(server) {
        s.shutdown().await;
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
