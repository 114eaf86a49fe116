//! The run engine: one path for every run. A [`RunPlan`] says which models (prepared once, by
//! the caller), the pool's configuration, how models are placed and which workload drives them;
//! the engine starts a [`Pool`], places the models, drives the workload through the scheduler,
//! shuts the pool down and turns what it observed into report rows (`summary.rs`).
//!
//! Placement: [`Placement::Matrix`] (`matrix.rs`) measures every model in every browser one
//! cell at a time (the benchmark grid; on 2 cores two browsers computing at once would measure
//! each other); [`Placement::Routed`] (`routed.rs`) lets the router place each model and runs
//! them all at once, with faults, migrations and live progress.
//!
//! Must not import `cli`, `report` or any terminal crate: progress goes out as [`RunEvent`]s.

mod baseline;
pub mod generation;
mod live;
mod matrix;
mod native;
pub mod pipeline;
mod probes;
mod routed;
mod summary;

pub use probes::layer_ms;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::browser::BrowserKind;
use crate::metrics::{
    BrowserEnv, Phase, Requests, ResultRow, RoutingRecord, Sample, WorkerSummary,
};
use crate::models::PreparedModel;
use crate::server::AssetServer;
use crate::state::{self, Op};

use super::attribution::FaultNote;
use super::config::PoolConfig;
use super::events::{RecoveryRecord, Stamped};
use super::scheduler::{Bound, Schedule, Workload};
use super::{Journal, Pool, PoolError};

/// How models are put on browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every model in every browser, one cell at a time.
    Matrix,
    /// The router places each model; all run at once.
    Routed,
    /// One model cut into shards, each placed on its own worker, run as a pipeline.
    Pipeline,
}

/// One model of a plan.
#[derive(Debug, Clone)]
pub struct PlannedModel {
    /// The model, prepared once.
    pub prepared: Arc<PreparedModel>,
    /// The browser it is pinned to, if any.
    pub pin: Option<BrowserKind>,
    /// Its share of the routed workload's requests.
    pub weight: u32,
    /// The same model run natively: the output every cell is checked against, and the
    /// baseline every cell is compared with.
    pub native: Option<Arc<crate::oracle::NativeResult>>,
    /// The measured best placement from the routing profile, if it has one for this model.
    pub measured: Option<super::router::Measured>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The models, in the order given.
    pub models: Vec<PlannedModel>,
    /// The pool: its launches (one per browser kind, in order), shape, page settings,
    /// timeouts and recovery.
    pub pool: PoolConfig,
    /// Matrix or routed.
    pub placement: Placement,
    /// The workload (per cell in matrix mode).
    pub workload: Workload,
    /// Routed mode: after the workload, keep the pool up and idle this long (scale-down shows).
    pub cooldown: Duration,
    /// Faults injected while the workload runs (routed runs).
    pub faults: Vec<crate::faults::FaultSpec>,
    /// The run's transaction log, and the run id it records.
    pub journal: Option<(Journal, String)>,
    /// Planned migrations: model, target browser kind, time after the workload starts.
    pub migrations: Vec<(String, BrowserKind, Duration)>,
    /// Adaptive routing (routed runs): move models to placements measured faster.
    pub adaptive: Option<super::AdaptSettings>,
    /// This plan finishes a resumed run: what its earlier part did (its journal already has
    /// the start, and the progress it records adds to this).
    pub resumed: Option<state::Progress>,
    /// Pipeline placement: the sharded model and how it runs.
    pub pipeline: Option<pipeline::PipelinePlan>,
    /// A language model's generations: in the matrix, a cell after each browser's model cells;
    /// routed, requests of the workload beside the other models'.
    pub generation: Option<generation::GenerationPlan>,
}

impl RunPlan {
    /// The benchmark grid: each model in each browser of `pool`, `iterations` back to back
    /// after `warmup`.
    pub fn matrix(
        models: Vec<Arc<PreparedModel>>,
        pool: PoolConfig,
        iterations: u32,
        warmup: u32,
    ) -> Self {
        Self {
            models: models
                .into_iter()
                .map(|prepared| PlannedModel {
                    prepared,
                    pin: None,
                    weight: 1,
                    native: None,
                    measured: None,
                })
                .collect(),
            pool,
            placement: Placement::Matrix,
            workload: Workload {
                schedule: Schedule::Closed { concurrency: 1 },
                bound: Bound::Iterations(u64::from(iterations)),
                warmup,
                request_timeout: Duration::from_secs(120),
                pin_clients: false,
            },
            cooldown: Duration::ZERO,
            faults: Vec::new(),
            journal: None,
            migrations: Vec::new(),
            adaptive: None,
            resumed: None,
            pipeline: None,
            generation: None,
        }
    }

    /// The browser kinds of the plan, in order.
    pub fn kinds(&self) -> Vec<BrowserKind> {
        self.pool.launches.iter().map(|l| l.kind).collect()
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
    /// Every pool event, in order (run.json's `pool_events` are those that
    /// `PoolEvent::is_pool_event` keeps).
    pub pool_events: Vec<Stamped>,
    /// Largest number of live workers at once.
    pub peak_workers: usize,
    /// Why the run stopped before its end, if it did.
    pub stopped_early: Option<String>,
    /// Faults injected (or skipped, with the reason).
    pub faults: Vec<FaultNote>,
    /// Recovery episodes.
    pub recoveries: Vec<RecoveryRecord>,
    /// Each cell's first-run output, every value (for `--save-outputs`).
    pub outputs: Vec<CellTensor>,
    /// What adaptive routing measured and moved.
    pub adaptive: Option<crate::metrics::AdaptiveReport>,
    /// A pipeline run's sharding report.
    pub sharding: Option<crate::metrics::sharding::ShardingReport>,
    /// The generation cells' generations, each prompt in each browser.
    pub generations: Vec<generation::GenerationRun>,
}

/// One cell's first-run output.
#[derive(Debug, Clone)]
pub struct CellTensor {
    /// Catalog model name.
    pub model: String,
    /// Browser kind.
    pub browser: String,
    /// Backend.
    pub backend: String,
    /// Shape.
    pub dims: Vec<i64>,
    /// Every value.
    pub values: Vec<f32>,
}

/// Progress events, for a terminal view or a log. The engine never prints.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEvent<'a> {
    /// A model's weights and ONNX file are being prepared (before the pool starts).
    Preparing {
        /// Model name.
        model: &'a str,
    },
    /// A model is prepared.
    Prepared {
        /// The prepared model.
        model: &'a PreparedModel,
        /// How long it took.
        took: Duration,
    },
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
    /// Something happened in the pool (a launch, a fault, a recovery, a request that ended),
    /// as it happened.
    Pool(&'a Stamped),
    /// The hot standbys are loaded (or the budget or the load timeout stopped them).
    StandbysReady {
        /// Copies per model.
        per_model: &'a [(String, usize)],
        /// How long it took.
        took: Duration,
        /// Copies asked for per model.
        copies: usize,
    },
    /// A sharded run's plan, and why it is what it is.
    ShardPlan {
        /// The planner's reasons.
        reasons: &'a [String],
    },
    /// `cost_balanced` timed one layer on a worker.
    LayerTimed {
        /// The worker.
        worker: &'a str,
        /// Its median ms per layer.
        ms: f64,
        /// Runs the median is of.
        runs: usize,
    },
    /// A shard is loaded on its worker.
    ShardLoaded {
        /// The shard.
        shard: usize,
        /// Its layers.
        layers: std::ops::Range<usize>,
        /// Its worker.
        worker: &'a str,
    },
    /// Both routes of the activations were timed and one chosen.
    TransferChosen {
        /// The times.
        probe: &'a crate::metrics::sharding::TransferProbe,
        /// Requests per route.
        rounds: usize,
        /// The route chosen.
        chosen: crate::sharding::transfer::Route,
    },
    /// A plain progress line from the application (resume's reaping, the native baseline).
    Note {
        /// The line.
        line: String,
    },
}

/// Receives [`RunEvent`]s. Every method does nothing by default.
pub trait RunObserver: Send + Sync {
    /// Called for each event.
    fn on_event(&self, _event: &RunEvent<'_>) {}
}

/// A model that could not be placed: its name, the browser asked for (if any), and why.
type PlacementError = (String, Option<BrowserKind>, PoolError);

/// What a run's placement produced before the pool shut down.
enum Ran {
    /// Matrix or routed: the models that could not be placed, adaptive routing's evaluations,
    /// and (matrix) each cell's cores.
    Cells(
        Vec<PlacementError>,
        Option<Vec<crate::metrics::AdaptiveEvaluation>>,
        Vec<matrix::CellCores>,
        Vec<generation::GenerationRun>,
    ),
    /// A pipeline.
    Pipeline(Result<Box<pipeline::PipelineOutcome>, pipeline::PipelineError>),
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
    let kinds = plan.kinds();
    observer.on_event(&RunEvent::Starting { browsers: &kinds });
    let journal = plan.journal.as_ref().map(|(j, _)| j.clone());
    if let Some((j, run_id)) = plan.journal.as_ref().filter(|_| plan.resumed.is_none()) {
        j.commit(Op::RunStarted {
            run_id: run_id.clone(),
            seed: plan.pool.seed,
            workload: Some(match plan.workload.bound {
                Bound::Duration(d) => state::WorkloadBound::DurationMs(d.as_millis() as u64),
                Bound::Iterations(n) => state::WorkloadBound::Iterations(n),
            }),
        });
    }
    let pool = tokio::select! {
        p = Pool::start(plan.pool.clone(), server, journal, cancel.clone()) => p?,
        () = cancel.cancelled() => return Ok(EngineOutput {
            stopped_early: Some("interrupted".into()),
            ..Default::default()
        }),
    };
    let driving = OnceLock::new();
    let work = async {
        match plan.placement {
            Placement::Matrix => {
                let m = matrix::run(plan, &pool, cancel, observer).await;
                Ran::Cells(m.errors, None, m.cores, m.generations)
            }
            Placement::Routed => {
                let r = routed::run(plan, &pool, cancel, observer, &driving).await;
                Ran::Cells(r.errors, r.evaluations, Vec::new(), r.generations)
            }
            Placement::Pipeline => Ran::Pipeline(
                pipeline::run(plan, &pool, cancel, observer, &driving)
                    .await
                    .map(Box::new),
            ),
        }
    };
    let ran = live::alongside(&pool, plan, observer, &driving, work).await;
    let journal = pool.journal().cloned();
    let report = pool.shutdown().await;
    if let Some(j) = journal {
        finish_journal(&j, plan, &report, cancel, observer);
    }
    let (requests, recoveries) = (report.requests, report.recoveries.clone());
    let mut out;
    match ran {
        Ran::Cells(errors, evaluations, cores, generations) => {
            out = summary::summarize(plan, report, errors, &cores);
            out.adaptive = evaluations.map(|e| summary::adaptive(e, &out.samples));
            out.generations = generations;
        }
        Ran::Pipeline(outcome) => {
            out = summary::summarize(plan, report, Vec::new(), &[]);
            match (outcome, &plan.pipeline) {
                (Ok(o), Some(p)) => {
                    let concurrency = match plan.workload.schedule {
                        Schedule::Closed { concurrency } => concurrency,
                        Schedule::Open { max_in_flight, .. } => max_in_flight,
                    };
                    out.sharding = Some(summary::sharding(
                        p,
                        &o,
                        requests,
                        &recoveries,
                        concurrency as u32,
                    ));
                }
                (Err(e), _) => out.stopped_early = Some(e.to_string()),
                (Ok(_), None) => {}
            }
        }
    }
    if cancel.is_cancelled() {
        out.stopped_early = Some("interrupted".into());
    }
    Ok(out)
}

/// The run's last progress op (every request ended by now) and, unless interrupted, its end.
fn finish_journal(
    j: &Journal,
    plan: &RunPlan,
    report: &super::PoolReport,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) {
    let finished = report.requests;
    let mut per_model = std::collections::BTreeMap::new();
    for s in report.samples.iter().filter(|s| s.phase == Phase::Measure) {
        *per_model.entry(s.model.clone()).or_insert(0u64) += 1;
    }
    let elapsed_ms = j.state().map_or(0, |s| s.progress.elapsed_ms);
    // The tick's ops already include the earlier part: add it to this one too.
    let earlier_elapsed = plan.resumed.as_ref().map_or(0, |p| p.elapsed_ms);
    j.commit(with_earlier(
        Op::Progress {
            issued: finished.issued,
            succeeded: finished.succeeded,
            failed: finished.failed,
            per_model,
            elapsed_ms: elapsed_ms.saturating_sub(earlier_elapsed),
        },
        plan.resumed.as_ref(),
    ));
    if !cancel.is_cancelled() {
        j.commit(Op::RunFinished);
    }
    if let Some(e) = j.close() {
        observer.on_event(&RunEvent::Warning {
            message: format!("the run's transaction log: {e}"),
        });
    }
}

/// A progress op of this part plus what an earlier part (of a resumed run) did.
fn with_earlier(op: Op, earlier: Option<&state::Progress>) -> Op {
    match (op, earlier) {
        (
            Op::Progress {
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
            Op::Progress {
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
