//! The run engine: one path for every run. A [`RunPlan`] says which models, which browsers,
//! how they are placed and which workload drives them; the engine starts a [`Pool`], places
//! the models, drives the workload through the scheduler, shuts the pool down and turns what
//! it observed into report rows.
//!
//! Placement: [`Placement::Matrix`] measures every model in every browser one cell at a time
//! (the benchmark grid; on 2 cores two browsers computing at once would measure each other);
//! [`Placement::Routed`] lets the router place each model and runs them all at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::browser::{BrowserKind, LaunchSpec};
use crate::metrics::{
    BrowserEnv, ModelMemory, Percentiles, Phase, PoolEventRecord, Requests, ResultRow,
    RoutingRecord, Sample, WorkerSummary,
};
use crate::models::{Cache, PreparedModel};
use crate::server::AssetServer;

use super::correctness::{self, CellOutput};
use super::manager::{
    FaultTolerance, Pool, PoolConfig, PoolError, PoolReport, RecoveryConfig, RecoveryRecord,
};
use super::router::{HardwarePreferences, Preferences, Target};
use super::scheduler::{self, Bound, Schedule, Workload};
use super::slot::SlotTimeouts;
use super::Backend;

/// How models are put on browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every model in every browser, one cell at a time.
    Matrix,
    /// The router places each model; all run at once.
    Routed,
}

/// The pool's shape and upkeep.
#[derive(Debug, Clone)]
pub struct PoolShape {
    /// Workers kept alive.
    pub min_workers: usize,
    /// Workers never exceeded.
    pub max_workers: usize,
    /// Browser preference per model type.
    pub preferences: Preferences,
    /// Idle time before a worker beyond the minimum is closed.
    pub idle_timeout: Duration,
    /// Health-check period.
    pub heartbeat_interval: Duration,
    /// Health-check bound.
    pub heartbeat_timeout: Duration,
    /// Queue per placement that adds a worker.
    pub scale_up_queue: usize,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Prepared models, in the order given.
    pub models: Vec<PreparedModel>,
    /// Per model (same order): a browser it is pinned to, and its share of requests.
    pub pins: Vec<(Option<BrowserKind>, u32)>,
    /// One launch per browser kind, in the order given.
    pub browsers: Vec<LaunchSpec>,
    /// Backend priority.
    pub backends: Vec<Backend>,
    /// Whether a software WebGPU adapter counts as WebGPU.
    pub allow_fallback_adapter: bool,
    /// Matrix or routed.
    pub placement: Placement,
    /// The workload (per cell in matrix mode).
    pub workload: Workload,
    /// Routed mode: after the workload, keep the pool up and idle this long (scale-down shows).
    pub cooldown: Duration,
    /// Pool shape.
    pub pool: PoolShape,
    /// Bounds on page calls.
    pub timeouts: SlotTimeouts,
    /// Model cache.
    pub cache: Cache,
    /// Seed.
    pub seed: u64,
    /// How failed workers are recovered (routed runs; matrix cells report failures as they are).
    pub recovery: RecoveryConfig,
    /// Faults injected while the workload runs (routed runs).
    pub faults: Vec<crate::faults::FaultSpec>,
    /// The run's transaction log, and the run id it records.
    pub journal: Option<(super::Journal, String)>,
    /// Planned migrations: model, target browser kind, time after the workload starts.
    pub migrations: Vec<(String, BrowserKind, Duration)>,
    /// This plan finishes a resumed run: what its earlier part did (its journal already has
    /// the start, and the progress it records adds to this).
    pub resumed: Option<crate::state::Progress>,
}

impl RunPlan {
    /// The benchmark grid `run` uses: each model in each browser, `iterations` back to back.
    pub fn matrix(
        models: Vec<PreparedModel>,
        browsers: Vec<LaunchSpec>,
        iterations: u32,
        warmup: u32,
    ) -> Self {
        let n = browsers.len().max(1);
        Self {
            pins: vec![(None, 1); models.len()],
            models,
            browsers,
            backends: Backend::DEFAULT_PRIORITY.to_vec(),
            allow_fallback_adapter: false,
            placement: Placement::Matrix,
            workload: Workload {
                schedule: Schedule::Closed { concurrency: 1 },
                bound: Bound::Iterations(u64::from(iterations)),
                warmup,
                request_timeout: Duration::from_secs(120),
                pin_clients: false,
            },
            cooldown: Duration::ZERO,
            pool: PoolShape {
                min_workers: n,
                max_workers: n,
                preferences: Preferences::default(),
                idle_timeout: Duration::from_secs(3600),
                heartbeat_interval: Duration::from_secs(5),
                heartbeat_timeout: Duration::from_secs(30),
                scale_up_queue: usize::MAX,
            },
            timeouts: SlotTimeouts {
                load: Duration::from_secs(300),
                run: Duration::from_secs(120),
                call: Duration::from_secs(60),
            },
            cache: Cache::from_env(),
            seed: 42,
            recovery: RecoveryConfig::default(),
            faults: Vec::new(),
            journal: None,
            migrations: Vec::new(),
            resumed: None,
        }
    }
}

/// What the engine measured.
#[derive(Debug, Clone, Default)]
pub struct EngineOutput {
    /// Each browser launched and what it offered.
    pub browsers: Vec<BrowserEnv>,
    /// One row per model x browser x backend.
    pub rows: Vec<ResultRow>,
    /// Request accounting.
    pub requests: Requests,
    /// Every request issued, in order.
    pub samples: Vec<Sample>,
    /// Per-worker resources and utilization.
    pub workers: Vec<WorkerSummary>,
    /// Every routing decision.
    pub routing: Vec<RoutingRecord>,
    /// Scaling and health events.
    pub pool_events: Vec<PoolEventRecord>,
    /// Largest number of live workers at once.
    pub peak_workers: usize,
    /// Why the run stopped before its end, if it did.
    pub stopped_early: Option<String>,
    /// Faults injected (or skipped, with the reason).
    pub faults: Vec<super::manager::FaultNote>,
    /// Recovery episodes.
    pub recoveries: Vec<RecoveryRecord>,
}

/// Progress events, for a terminal view or a log. The engine never prints.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEvent<'a> {
    /// The pool is starting its first workers.
    Starting {
        /// Browser kinds.
        browsers: &'a [BrowserKind],
    },
    /// A model is being placed.
    Loading {
        /// Browser kind asked for, if any.
        browser: Option<BrowserKind>,
        /// Model name.
        model: &'a str,
    },
    /// A workload phase started.
    Driving {
        /// What runs.
        what: String,
    },
    /// Something worth telling the user that does not stop the run.
    Warning {
        /// The message.
        message: String,
    },
    /// Live counts while a routed workload runs (about twice a second).
    Counts {
        /// Requests succeeded so far.
        ok: u64,
        /// Requests failed so far.
        failed: u64,
        /// Workers in a recovery episode now.
        recovering: usize,
        /// Faults injected so far.
        faults: usize,
    },
    /// A fault was injected (or skipped), or a recovery episode ended: one line for the log.
    Incident {
        /// The line.
        line: String,
    },
}

/// Receives [`RunEvent`]s. Every method does nothing by default.
pub trait RunObserver: Send + Sync {
    /// Called for each event.
    fn on_event(&self, _event: &RunEvent<'_>) {}
}

/// Runs `plan`. Returns what was measured even when the run was cancelled or a model failed;
/// only a failure to start the pool is an error (nothing is left running then).
///
/// # Errors
/// [`PoolError`] when the initial workers cannot be launched.
pub async fn execute(
    plan: &RunPlan,
    server: Arc<AssetServer>,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) -> Result<EngineOutput, PoolError> {
    let kinds: Vec<BrowserKind> = plan.browsers.iter().map(|b| b.kind).collect();
    observer.on_event(&RunEvent::Starting { browsers: &kinds });
    let config = PoolConfig {
        launches: plan.browsers.clone(),
        initial: kinds.clone(),
        min_workers: plan.pool.min_workers,
        max_workers: plan.pool.max_workers.max(plan.pool.min_workers).max(1),
        backends: plan.backends.clone(),
        allow_fallback_adapter: plan.allow_fallback_adapter,
        preferences: plan.pool.preferences.clone(),
        timeouts: plan.timeouts,
        heartbeat_interval: plan.pool.heartbeat_interval,
        heartbeat_timeout: plan.pool.heartbeat_timeout,
        idle_timeout: plan.pool.idle_timeout,
        scale_up_queue: plan.pool.scale_up_queue,
        cache: plan.cache.clone(),
        seed: plan.seed,
        recovery: plan.recovery,
        journal: plan.journal.as_ref().map(|(j, _)| j.clone()),
        warm_spares: false,
    };
    if let Some((j, run_id)) = plan.journal.as_ref().filter(|_| plan.resumed.is_none()) {
        j.commit(crate::state::Op::RunStarted {
            run_id: run_id.clone(),
            seed: plan.seed,
            workload: Some(match plan.workload.bound {
                scheduler::Bound::Duration(d) => {
                    crate::state::WorkloadBound::DurationMs(d.as_millis() as u64)
                }
                scheduler::Bound::Iterations(n) => crate::state::WorkloadBound::Iterations(n),
            }),
        });
    }
    // Matrix cells measure each browser as it is; routed runs hide worker failures.
    let tolerance = match plan.placement {
        Placement::Routed if plan.recovery.strategy != crate::recovery::Strategy::None => {
            FaultTolerance::Recover
        }
        _ => FaultTolerance::None,
    };
    let pool = tokio::select! {
        p = Pool::start(config, server, cancel.clone()) => p?,
        () = cancel.cancelled() => return Ok(EngineOutput { stopped_early: Some("interrupted".into()), ..Default::default() }),
    };
    let mut errors: Vec<(String, String, String)> = Vec::new();
    match plan.placement {
        Placement::Matrix => {
            'cells: for &kind in &kinds {
                for (i, model) in plan.models.iter().enumerate() {
                    if cancel.is_cancelled() {
                        break 'cells;
                    }
                    // A model pinned to a browser is measured there only.
                    if plan
                        .pins
                        .get(i)
                        .and_then(|p| p.0)
                        .is_some_and(|pin| pin != kind)
                    {
                        continue;
                    }
                    let hw = HardwarePreferences {
                        browser: Some(kind),
                        backends: None,
                    };
                    observer.on_event(&RunEvent::Loading {
                        browser: Some(kind),
                        model: &model.name,
                    });
                    let placed = tokio::select! {
                        h = pool.get_model(model.task, &model.name, hw, FaultTolerance::None) => h,
                        () = cancel.cancelled() => break 'cells,
                    };
                    match placed {
                        Ok(h) => {
                            observer.on_event(&RunEvent::Driving {
                                what: format!("{} on {kind}", model.name),
                            });
                            scheduler::drive(std::slice::from_ref(&h), &plan.workload, cancel)
                                .await;
                            h.release().await;
                        }
                        Err(e) => {
                            observer.on_event(&RunEvent::Warning {
                                message: format!("{} on {kind}: {e}", model.name),
                            });
                            errors.push((model.name.clone(), kind.to_string(), e.to_string()));
                        }
                    }
                }
            }
        }
        Placement::Routed => {
            let mut handles = Vec::new();
            for (i, model) in plan.models.iter().enumerate() {
                if cancel.is_cancelled() {
                    break;
                }
                let (pin, weight) = plan.pins.get(i).copied().unwrap_or((None, 1));
                observer.on_event(&RunEvent::Loading {
                    browser: pin,
                    model: &model.name,
                });
                let hw = HardwarePreferences {
                    browser: pin,
                    backends: None,
                };
                let placed = tokio::select! {
                    h = pool.get_model(model.task, &model.name, hw, tolerance) => h,
                    () = cancel.cancelled() => break,
                };
                match placed {
                    // A model's share of the round-robin is its weight.
                    Ok(h) => handles.extend(std::iter::repeat_n(h, weight.max(1) as usize)),
                    Err(e) => {
                        observer.on_event(&RunEvent::Warning {
                            message: format!("{}: {e}", model.name),
                        });
                        errors.push((model.name.clone(), String::new(), e.to_string()));
                    }
                }
            }
            if !cancel.is_cancelled() {
                let mut names: Vec<_> = handles.iter().map(|h| h.model().name.clone()).collect();
                names.dedup();
                observer.on_event(&RunEvent::Driving {
                    what: names.join(", "),
                });
                let injector = (!plan.faults.is_empty()).then(|| {
                    let horizon = match plan.workload.bound {
                        scheduler::Bound::Duration(d) => Some(d),
                        scheduler::Bound::Iterations(_) => None,
                    };
                    let stop = cancel.child_token();
                    let task = tokio::spawn(super::injector::run(
                        pool.clone(),
                        plan.faults.clone(),
                        horizon,
                        stop.clone(),
                    ));
                    (task, stop)
                });
                let stop_migrations = cancel.child_token();
                let migrations: Vec<_> = plan
                    .migrations
                    .iter()
                    .cloned()
                    .map(|(model, to, at)| {
                        let (pool, stop) = (pool.clone(), stop_migrations.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                () = tokio::time::sleep(at) => {}
                                () = stop.cancelled() => return None,
                            }
                            Some(pool.migrate(&model, to).await)
                        })
                    })
                    .collect();
                {
                    let drive = scheduler::drive(&handles, &plan.workload, cancel);
                    tokio::pin!(drive);
                    let driving = std::time::Instant::now();
                    let mut tick = tokio::time::interval(Duration::from_millis(500));
                    let (mut seen_faults, mut seen_recoveries) = (0, 0);
                    let journal = pool.journal_handle();
                    let commit_progress = |j: &super::Journal| {
                        j.commit(with_earlier(
                            pool.progress(driving.elapsed()),
                            plan.resumed.as_ref(),
                        ));
                    };
                    loop {
                        tokio::select! {
                            _ = &mut drive => break,
                            () = pool.request_ended(), if journal.is_some() => {
                                // Each ended request reaches the log (and the OS) at once, so a
                                // harness killed between ticks loses no finished request's count.
                                if let Some(j) = journal {
                                    commit_progress(j);
                                }
                                continue;
                            }
                            _ = tick.tick() => {}
                        }
                        if let Some(j) = journal {
                            commit_progress(j);
                            j.tick();
                        }
                        let (ok, failed, recovering, faults, recoveries) =
                            pool.live(seen_faults, seen_recoveries);
                        seen_faults += faults.len();
                        seen_recoveries += recoveries.len();
                        for f in faults {
                            observer.on_event(&RunEvent::Incident {
                                line: format!(
                                    "fault at {:.1}s: {} on {}: {}",
                                    f.at_ms as f64 / 1e3,
                                    f.kind,
                                    if f.target.is_empty() { "-" } else { &f.target },
                                    f.detail
                                ),
                            });
                        }
                        for r in recoveries {
                            observer.on_event(&RunEvent::Incident {
                                line: format!(
                                    "recovery of {} ({}, seen as {}): {} at level {} after {} ms detection + {} ms",
                                    r.worker,
                                    r.fault_kind,
                                    r.detected_by,
                                    if r.succeeded { "recovered" } else { "FAILED" },
                                    r.level.map_or("none", |l| l.as_str()),
                                    r.detection_ms,
                                    r.recovery_ms
                                ),
                            });
                        }
                        observer.on_event(&RunEvent::Counts {
                            ok,
                            failed,
                            recovering,
                            faults: seen_faults,
                        });
                    }
                }
                stop_migrations.cancel();
                for m in migrations {
                    let line = match m.await {
                        Ok(Some(Err(why))) => format!("migration rolled back: {why}"),
                        Ok(Some(Ok(done))) => format!("migrated {done}"),
                        _ => continue,
                    };
                    observer.on_event(&RunEvent::Incident { line });
                }
                if let Some((task, stop)) = injector {
                    stop.cancel();
                    let _ = task.await;
                }
                if !plan.cooldown.is_zero() {
                    observer.on_event(&RunEvent::Driving {
                        what: format!("nothing: cooling down for {:?}", plan.cooldown),
                    });
                    tokio::select! {
                        () = tokio::time::sleep(plan.cooldown) => {}
                        () = cancel.cancelled() => {}
                    }
                }
            }
        }
    }
    let journal = pool.journal_handle().cloned();
    let report = pool.shutdown().await;
    if let Some(j) = journal {
        let finished = report.requests;
        let mut per_model = BTreeMap::new();
        for s in report.samples.iter().filter(|s| s.phase == Phase::Measure) {
            *per_model.entry(s.model.clone()).or_insert(0u64) += 1;
        }
        let elapsed_ms = j.state().map_or(0, |s| s.progress.elapsed_ms);
        // The tick's ops already include the earlier part: add it to this one too.
        let earlier_elapsed = plan.resumed.as_ref().map_or(0, |p| p.elapsed_ms);
        j.commit(with_earlier(
            crate::state::Op::Progress {
                issued: finished.issued,
                succeeded: finished.succeeded,
                failed: finished.failed,
                per_model,
                elapsed_ms: elapsed_ms.saturating_sub(earlier_elapsed),
            },
            plan.resumed.as_ref(),
        ));
        if !cancel.is_cancelled() {
            j.commit(crate::state::Op::RunFinished);
        }
        if let Some(e) = j.close() {
            observer.on_event(&RunEvent::Warning {
                message: format!("the run's transaction log: {e}"),
            });
        }
    }
    let mut out = summarize(plan, report, errors);
    if cancel.is_cancelled() {
        out.stopped_early = Some("interrupted".into());
    }
    Ok(out)
}

/// A progress op of this part plus what an earlier part (of a resumed run) did.
fn with_earlier(
    op: crate::state::Op,
    earlier: Option<&crate::state::Progress>,
) -> crate::state::Op {
    match (op, earlier) {
        (
            crate::state::Op::Progress {
                issued,
                succeeded,
                failed,
                mut per_model,
                elapsed_ms,
            },
            Some(e),
        ) => {
            for (m, n) in &e.per_model {
                *per_model.entry(m.clone()).or_insert(0) += n;
            }
            crate::state::Op::Progress {
                issued: issued + e.issued,
                succeeded: succeeded + e.succeeded,
                failed: failed + e.failed,
                per_model,
                elapsed_ms: elapsed_ms + e.elapsed_ms,
            }
        }
        (op, _) => op,
    }
}

/// Turns what the pool observed into report rows, worker summaries and routing records.
fn summarize(
    plan: &RunPlan,
    report: PoolReport,
    errors: Vec<(String, String, String)>,
) -> EngineOutput {
    let mut out = EngineOutput {
        requests: report.requests,
        peak_workers: report.peak_workers,
        faults: report.faults.clone(),
        recoveries: report.recoveries.clone(),
        ..Default::default()
    };
    let mut workers = report.workers;
    workers.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    for w in &workers {
        if let Some(env) = &w.status.env {
            if !out.browsers.iter().any(|b| b.kind == env.kind) {
                out.browsers.push(env.clone());
            }
        }
    }

    // One row per model x browser x backend, in plan order.
    let mut rows: BTreeMap<(usize, String, String), (ResultRow, Option<CellOutput>)> =
        BTreeMap::new();
    let order = |m: &str| {
        plan.models
            .iter()
            .position(|p| p.name == m)
            .unwrap_or(usize::MAX)
    };
    for p in &report.placements {
        let key = (
            order(&p.model),
            p.browser.to_string(),
            p.load.backend.to_string(),
        );
        let entry = rows.entry(key).or_insert_with(|| {
            let model = plan.models.iter().find(|m| m.name == p.model);
            let row = ResultRow {
                model: p.model.clone(),
                task: model
                    .map(|m| m.task.as_str().to_string())
                    .unwrap_or_default(),
                weights: model
                    .map(|m| m.weights.as_str().to_string())
                    .unwrap_or_default(),
                weights_note: model.map(|m| m.weights_note.clone()).unwrap_or_default(),
                browser: p.browser.to_string(),
                backend: p.load.backend.to_string(),
                backend_fallback_reason: (!p.load.fallback_reasons.is_empty()).then(|| {
                    p.load
                        .fallback_reasons
                        .iter()
                        .map(|r| format!("{}: {}", r.backend, r.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                }),
                load_ms: p.load.fetch_ms + p.load.session_create_ms,
                session_create_ms: p.load.session_create_ms,
                first_run_ms: p.first_run_ms,
                memory_added_mb: p.memory_added_kib as f64 / 1024.0,
                ..Default::default()
            };
            (row, p.output.clone())
        });
        if !entry.0.workers.contains(&p.worker) {
            entry.0.workers.push(p.worker.clone());
        }
    }
    for ((_, browser, backend), (row, _)) in rows.iter_mut() {
        let mine: Vec<&Sample> = report
            .samples
            .iter()
            .filter(|s| {
                s.model == row.model
                    && &s.browser == browser
                    && &s.backend == backend
                    && s.phase == Phase::Measure
            })
            .collect();
        let ok: Vec<&&Sample> = mine.iter().filter(|s| s.ok).collect();
        row.runs = ok.len() as u64;
        row.failed = (mine.len() - ok.len()) as u64;
        row.latency_ms = Percentiles::from_ms(&ok.iter().map(|s| s.page_ms).collect::<Vec<_>>())
            .unwrap_or_default();
        row.round_trip_ms =
            Percentiles::from_ms(&ok.iter().map(|s| s.latency_ms).collect::<Vec<_>>())
                .unwrap_or_default();
        let start = mine
            .iter()
            .map(|s| s.started_ms)
            .fold(f64::INFINITY, f64::min);
        let end = mine
            .iter()
            .map(|s| s.scheduled_ms + s.latency_ms)
            .fold(0.0, f64::max);
        if end > start && !ok.is_empty() {
            row.throughput_per_s = ok.len() as f64 / ((end - start) / 1e3);
        }
        if row.failed > 0 {
            let mut classes: BTreeMap<&str, u64> = BTreeMap::new();
            for s in mine.iter().filter(|s| !s.ok) {
                *classes.entry(s.error.as_str()).or_default() += 1;
            }
            let what: Vec<String> = classes.iter().map(|(c, n)| format!("{n} {c}")).collect();
            row.error = Some(format!(
                "{} of {} requests failed ({})",
                row.failed,
                mine.len(),
                what.join(", ")
            ));
        }
    }
    // Correctness per model across its cells.
    let keys: Vec<_> = rows.keys().cloned().collect();
    for m in 0..plan.models.len() {
        let mine: Vec<_> = keys.iter().filter(|k| k.0 == m).cloned().collect();
        let outputs: Vec<CellOutput> = mine
            .iter()
            .map(|k| {
                rows[k].1.clone().unwrap_or_else(|| CellOutput {
                    label: format!("{}/{}", k.1, k.2),
                    backend: k.2.clone(),
                    sample: Vec::new(),
                    golden: None,
                })
            })
            .collect();
        for (k, verdict) in mine.iter().zip(correctness::judge(&outputs)) {
            if let Some(r) = rows.get_mut(k) {
                r.0.correctness = verdict;
            }
        }
    }
    out.rows = rows.into_values().map(|(r, _)| r).collect();
    for (model, browser, e) in errors {
        let spec = plan.models.iter().find(|m| m.name == model);
        out.rows.push(ResultRow {
            task: spec
                .map(|m| m.task.as_str().to_string())
                .unwrap_or_default(),
            weights: spec
                .map(|m| m.weights.as_str().to_string())
                .unwrap_or_default(),
            model,
            browser,
            error: Some(e),
            ..Default::default()
        });
    }

    out.workers = workers
        .iter()
        .map(|w| WorkerSummary {
            id: w.id.clone(),
            browser: w.kind.to_string(),
            version: w
                .status
                .env
                .as_ref()
                .map(|e| e.version.clone())
                .unwrap_or_default(),
            state: format!("{:?}", w.status.lifecycle).to_lowercase(),
            alive_s: w.alive.as_secs_f64(),
            utilization: w.utilization,
            pss_peak_mb: w.status.pss_peak_kib as f64 / 1024.0,
            pss_mean_mb: if w.status.pss_samples > 0 {
                w.status.pss_sum_kib as f64 / w.status.pss_samples as f64 / 1024.0
            } else {
                0.0
            },
            models: report
                .placements
                .iter()
                .filter(|p| p.worker == w.id)
                .map(|p| ModelMemory {
                    model: p.model.clone(),
                    memory_added_mb: p.memory_added_kib as f64 / 1024.0,
                })
                .collect(),
            fault: w.status.fault.clone(),
            page_load_count: w
                .status
                .page_stats
                .as_ref()
                .and_then(|v| v["load_count"].as_u64()),
            page_runs: w
                .status
                .page_stats
                .as_ref()
                .and_then(|v| v["runs"].as_u64()),
        })
        .collect();
    out.routing = report
        .decisions
        .iter()
        .map(|d| RoutingRecord {
            model: d.model.clone(),
            target: match &d.target {
                Target::Worker(id) => id.clone(),
                Target::Launch(k) => format!("new {k} worker"),
            },
            reasons: d.reasons.clone(),
        })
        .collect();
    out.pool_events = report
        .events
        .iter()
        .map(|e| PoolEventRecord {
            at_ms: e.at_ms,
            kind: e.kind.clone(),
            worker: e.worker.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    out.samples = report.samples;
    out
}
