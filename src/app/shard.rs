//! A sharded run's plan (a scenario with a `sharding:` block, `webgpu-pool shard`, `run
//! --test-sharding`): plan the shards, write their graphs, run the unsharded model natively for
//! the reference (before any browser starts: on 2 cores a browser would slow both), and compile
//! it all into the engine's [`RunPlan`] with a pipeline placement. The engine runs it like any
//! other plan: the same pool, scheduler, ledger, injector and recovery.

use anyhow::{Context, Result};

use super::{RunConfig, UsageError};
use crate::models::{self, LayerParameters};
use crate::pool::engine::pipeline::{PipelinePlan, Replan, Transfer};
use crate::pool::{RunEvent, RunObserver, RunPlan};
use crate::scenario::{ShardStrategy, ShardTransfer, Sharding};
use crate::sharding::{self, transfer::Route, PlanRequest};

/// Native runs for the reference (its timings are reported as the native baseline).
const NATIVE_RUNS: usize = 5;

/// The plan of the scenario's sharded model; see the module doc.
///
/// # Errors
/// A plan that cannot be made (exit 2), model preparation or the native reference failed.
pub(super) async fn plan(config: &RunConfig, observer: &dyn RunObserver) -> Result<RunPlan> {
    let sc = &config.scenario;
    let sh = sc
        .sharding
        .clone()
        .context("a sharded run needs a sharding block")?;
    let (spec, params) = shardable(&sh)?;
    let workers = workers(config, &sh);
    let budget = budget(&sh);
    // cost_balanced plans again after measuring; its first plan is by parameters.
    let first = plan_for(&sh, spec.name, &params, workers, budget, None)?;
    let sharded = prepare(spec, config, &first.ranges, observer).await?;
    let (cache, whole) = (config.cache.clone(), sharded.whole.clone());
    let native =
        tokio::task::spawn_blocking(move || crate::oracle::run_model(&cache, &whole, NATIVE_RUNS))
            .await
            .context("the native run panicked")??;
    observer.on_event(&RunEvent::Note {
        line: format!(
            "native {} (unsharded, the reference): p50 {:.1} ms at 1 thread (onnxruntime {})",
            sharded.whole.name,
            native.one_thread_ms.p50,
            crate::oracle::ORT_VERSION
        ),
    });
    let n = sharded.shards.len();
    let places = if sh.workers.is_empty() {
        (0..n)
            .map(|i| (config.launches[i % config.launches.len()].kind, None))
            .collect()
    } else {
        sh.workers.iter().map(|w| (w.browser, w.backend)).collect()
    };
    let whole_bytes = params.total() * sharding::plan::BYTES_PER_PARAM;
    let baseline_skipped = budget.filter(|&b| whole_bytes > b).map(|b| {
        format!(
            "the unsharded model ({:.1} MiB of parameters) is over one worker's memory budget ({:.1} MiB): it runs only sharded",
            whole_bytes as f64 / 1048576.0,
            b as f64 / 1048576.0
        )
    });
    let pipeline = PipelinePlan {
        reference: crate::pool::correctness::Reference {
            dims: native.dims.clone(),
            output: native.output.clone(),
            task: spec.task,
        },
        strategy: sh.strategy.as_str().to_string(),
        reasons: first.reasons,
        replan: (sh.strategy == ShardStrategy::CostBalanced).then(|| Replan {
            spec,
            params: params.clone(),
            shards: sh.shards.map(|n| n as usize),
            workers,
            budget,
        }),
        recovery: sh.recovery,
        transfer: match sh.transfer {
            ShardTransfer::Auto => Transfer::Auto,
            ShardTransfer::Harness => Transfer::Fixed(Route::Harness),
            ShardTransfer::Server => Transfer::Fixed(Route::Server),
        },
        places,
        sharded,
        baseline_skipped,
    };
    Ok(super::plan::build_pipeline_plan(config, pipeline))
}

/// Refuses a plan that cannot be made before the run folder is created (exit 2, nothing written).
///
/// # Errors
/// [`UsageError`] naming why.
pub(super) fn check_plan(config: &RunConfig) -> Result<()> {
    let Some(sh) = &config.scenario.sharding else {
        return Ok(());
    };
    let (spec, params) = shardable(sh)?;
    plan_for(
        sh,
        spec.name,
        &params,
        workers(config, sh),
        budget(sh),
        None,
    )
    .map(drop)
}

/// The model to shard and its parameters per layer.
fn shardable(sh: &Sharding) -> Result<(&'static models::ModelSpec, LayerParameters)> {
    let spec =
        models::resolve(&sh.model).map_err(|e| UsageError(format!("sharding.model: {e}")))?;
    let params = models::layer_parameters(spec)
        .ok_or_else(|| UsageError(format!("sharding.model: '{}' cannot be sharded", sh.model)))?;
    Ok((spec, params))
}

/// Workers to plan over: the shards asked for, else the pool's maximum.
fn workers(config: &RunConfig, sh: &Sharding) -> usize {
    sh.shards
        .map_or(config.scenario.pool.max_connections, |n| n) as usize
}

/// Parameter bytes one worker may hold.
fn budget(sh: &Sharding) -> Option<u64> {
    sh.memory_budget_mib.map(|m| m * 1024 * 1024)
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
