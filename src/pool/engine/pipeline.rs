//! Pipeline placement: one model cut into shards, each shard a placement of the pool on its own
//! worker, driven by the same scheduler, ledger, injector and recovery as a routed model.
//!
//! The run: time one layer on each worker first (`cost_balanced` only) and plan again, load
//! each shard on its worker (one at a time: two loads at once on 2 cores only slow each other),
//! choose how activations travel (time both routes side by side when asked), drive the
//! workload through the [`ShardedHandle`] with the planned faults alongside, then compare it
//! with the same model unsharded, like for like (`baseline.rs`). The sharding report is made
//! from what the handle recorded and the pool's recovery episodes (`report`). Must not import
//! `report`, `cli` or terminal crates.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::sharding::{Baseline, Round, TransferProbe};
use crate::models::{self, LayerParameters, ModelSpec, ShardedModel};
use crate::recovery::ShardRecovery;
use crate::sharding::transfer::Route;
use crate::sharding::{self, PlanRequest};

use super::super::correctness::Reference;
use super::super::pipeline::ShardedHandle;
use super::super::pipelines::ShardLoads;
use super::super::scheduler;
use super::super::worker::Worker;
use super::super::{injector, shards, Pool, PoolError};
use super::baseline::{self, Comparison};
use super::probes::{choose_route, layer_ms, TRANSFER_ROUNDS};
use super::{RunEvent, RunObserver, RunPlan};

/// Probe runs per worker for `cost_balanced`.
const PROBE_RUNS: usize = 5;

/// How activations should travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Time both routes before the stream, use the faster.
    Auto,
    /// This route.
    Fixed(Route),
}

/// `cost_balanced`: what planning again after the probe needs.
#[derive(Debug, Clone)]
pub struct Replan {
    /// The model.
    pub spec: &'static ModelSpec,
    /// Its parameters per layer.
    pub params: LayerParameters,
    /// Shards asked for.
    pub shards: Option<usize>,
    /// Workers to plan over.
    pub workers: usize,
    /// Parameter bytes one worker may hold.
    pub budget: Option<u64>,
}

/// A sharded model's part of a [`RunPlan`].
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    /// The model and its shards (planned by parameters; `cost_balanced` plans again).
    pub sharded: ShardedModel,
    /// Per shard, in order: its browser and the one backend it must use, if any. The pool's
    /// first workers are these, in this order.
    pub places: Vec<(BrowserKind, Option<Backend>)>,
    /// What a failed shard's worker gets.
    pub recovery: ShardRecovery,
    /// How activations travel.
    pub transfer: Transfer,
    /// The unsharded model's native output: every answer must match it.
    pub reference: Reference,
    /// The planner's strategy, as the report names it.
    pub strategy: String,
    /// Why the plan is what it is.
    pub reasons: Vec<String>,
    /// `cost_balanced`: plan again from a probe of each worker.
    pub replan: Option<Replan>,
    /// Why the unsharded baseline is not run, when it is not.
    pub baseline_skipped: Option<String>,
}

/// What a pipeline run produced before the pool shut down.
#[derive(Debug)]
pub(super) struct PipelineOutcome {
    /// The model as run (after a replan).
    pub sharded: ShardedModel,
    /// Why the plan is what it is.
    pub reasons: Vec<String>,
    /// The pipeline's handle (what its requests recorded).
    pub handle: ShardedHandle,
    /// Per shard: the worker serving it at the end.
    pub workers: Vec<String>,
    /// Per shard: the workers it was on before, and its loads.
    pub history: Vec<(Vec<String>, ShardLoads)>,
    /// The routes' times, when both were timed.
    pub probe: Option<TransferProbe>,
    /// The unsharded baseline.
    pub baseline: Baseline,
    /// The sharded and unsharded batches, in alternating rounds.
    pub rounds: Vec<Round>,
}

/// Why a pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Its workers, planning or a shard load failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The probe's or the new plan's shards could not be written.
    #[error("preparing the shards: {0}")]
    Model(#[from] models::ModelError),
    /// The new plan could not be made.
    #[error("planning again after the probe: {0}")]
    Plan(#[from] sharding::PlanError),
}

/// Runs the plan's pipeline: see the module doc.
///
/// # Errors
/// [`PipelineError`] when the pipeline could not be set up (nothing was driven).
pub(super) async fn run(
    plan: &RunPlan,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
    driving: &OnceLock<Instant>,
) -> Result<PipelineOutcome, PipelineError> {
    let Some(p) = &plan.pipeline else {
        return Err(PipelineError::Pool(PoolError::NoPlacement {
            model: String::new(),
            reason: "a pipeline run without a pipeline plan".into(),
        }));
    };
    let mut sharded = p.sharded.clone();
    let mut reasons = p.reasons.clone();
    if let Some(re) = &p.replan {
        let workers = shards::in_place_order(pool, &sharded.whole.name, &p.places)?;
        let (s, r) = replan(plan, re, &workers, observer).await?;
        sharded = s;
        reasons = r;
    }
    observer.on_event(&RunEvent::ShardPlan { reasons: &reasons });
    let model = sharded.whole.name.clone();
    let spec = shards::PipelineSpec {
        model: &model,
        shards: &sharded.shards,
        ranges: &sharded.ranges,
        places: &p.places,
        recovery: p.recovery,
    };
    let mut loaded = |k: usize, w: &Worker| {
        observer.on_event(&RunEvent::ShardLoaded {
            shard: k,
            layers: sharded.ranges[k].clone(),
            worker: &w.id,
        });
    };
    let (id, _) = shards::place_pipeline(pool, &spec, &mut loaded).await?;
    let handle = ShardedHandle::new(pool.clone(), id, &model, p.reference.clone());
    let probe = match p.transfer {
        Transfer::Fixed(route) => {
            handle.set_route(route);
            None
        }
        Transfer::Auto => {
            let probe = choose_route(&handle).await;
            observer.on_event(&RunEvent::TransferChosen {
                probe: &probe,
                rounds: TRANSFER_ROUNDS,
                chosen: handle.route(),
            });
            Some(probe)
        }
    };
    let concurrency = match plan.workload.schedule {
        scheduler::Schedule::Closed { concurrency } => concurrency,
        scheduler::Schedule::Open { max_in_flight, .. } => max_in_flight,
    };
    observer.on_event(&RunEvent::Driving {
        what: format!(
            "{model} sharded {} ways, {concurrency} clients",
            sharded.shards.len()
        ),
    });
    drive(plan, pool, &handle, cancel, driving).await;
    let workers = (0..sharded.shards.len())
        .map(|k| {
            handle
                .worker_of(k)
                .map(|w| w.id.clone())
                .unwrap_or_default()
        })
        .collect();
    let history = pool.pipelines().history(id);
    let comparison = match &p.baseline_skipped {
        Some(why) => Comparison::skipped(why.as_str()),
        None if cancel.is_cancelled() => Comparison::skipped("the run was interrupted"),
        None => {
            observer.on_event(&RunEvent::Driving {
                what: format!(
                    "{model} sharded and unsharded in alternating rounds (the baseline on a worker of its own)"
                ),
            });
            let measured = handle.records().latency.len();
            baseline::compare(
                pool,
                &handle,
                &sharded.whole,
                measured,
                concurrency.max(1),
                cancel,
            )
            .await
        }
    };
    Ok(PipelineOutcome {
        sharded,
        reasons,
        handle,
        workers,
        history,
        probe,
        baseline: comparison.baseline,
        rounds: comparison.rounds,
    })
}

/// The workload through `handle`, with the planned faults alongside.
async fn drive(
    plan: &RunPlan,
    pool: &Pool,
    handle: &ShardedHandle,
    cancel: &CancellationToken,
    driving: &OnceLock<Instant>,
) {
    let faults = injector::start(pool, &plan.faults, plan.workload.bound, cancel);
    let _ = driving.set(Instant::now());
    scheduler::drive(std::slice::from_ref(handle), &plan.workload, cancel).await;
    if let Some(faults) = faults {
        faults.stop().await;
    }
}

/// `cost_balanced`: each worker's ms per layer, then the plan by those speeds and its shards.
async fn replan(
    plan: &RunPlan,
    re: &Replan,
    workers: &[Arc<Worker>],
    observer: &dyn RunObserver,
) -> Result<(ShardedModel, Vec<String>), PipelineError> {
    let probe = prepare(plan, re.spec, &probe_ranges(re.params.per_layer.len()))
        .await?
        .shards
        .swap_remove(1);
    let speeds = layer_ms(workers, &[], Arc::new(probe), PROBE_RUNS).await?;
    for (w, ms) in workers.iter().zip(&speeds) {
        observer.on_event(&RunEvent::LayerTimed {
            worker: &w.id,
            ms: *ms,
            runs: PROBE_RUNS,
        });
    }
    let planned = sharding::plan(&PlanRequest {
        model: re.spec.name,
        params: &re.params,
        shards: re.shards,
        strategy: sharding::ShardStrategy::CostBalanced,
        workers: re.workers,
        ms_per_layer: Some(&speeds),
        budget_bytes: re.budget,
    })?;
    let sharded = prepare(plan, re.spec, &planned.ranges).await?;
    Ok((sharded, planned.reasons))
}

/// Ranges whose middle one is a single layer that holds neither the embedding nor the head.
fn probe_ranges(layers: usize) -> Vec<Range<usize>> {
    vec![0..1, 1..2, 2..layers]
}

async fn prepare(
    plan: &RunPlan,
    spec: &'static ModelSpec,
    ranges: &[Range<usize>],
) -> Result<ShardedModel, PipelineError> {
    let (cache, seed, ranges) = (plan.pool.cache.clone(), plan.pool.seed, ranges.to_vec());
    let prepared =
        tokio::task::spawn_blocking(move || models::prepare_shards(spec, &cache, seed, &ranges))
            .await
            .map_err(|e| {
                PipelineError::Pool(PoolError::NoPlacement {
                    model: spec.name.to_string(),
                    reason: format!("shard preparation task: {e}"),
                })
            })??;
    Ok(prepared)
}
