//! The shard planner: which layers each shard holds, and why.
//!
//! Pure logic over parameter counts ([`LayerParameters`]) and, for `cost_balanced`, per-worker
//! speeds measured before the run. Shard `i` runs on worker `i` (the workers in launch order).
//! Every strategy cuts the layers into contiguous ranges minimising the largest shard's cost:
//! - `layer_balanced`: cost = the shard's parameters (the embedding and head count, so the
//!   shards holding them get fewer layers);
//! - `cost_balanced`: cost = the shard's compute in layer-equivalents (each layer 1, the head
//!   its parameters over a layer's, the embedding lookup 0) x the worker's measured ms per
//!   layer, so a faster worker gets more layers;
//! - `memory_aware`: parameters, with every shard's bytes within the worker budget; with no
//!   shard count, the fewest shards that fit.

use std::ops::Range;

use crate::models::LayerParameters;
use crate::scenario::ShardStrategy;

/// Bytes per parameter (float32).
pub const BYTES_PER_PARAM: u64 = 4;

/// What the planner is asked.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// The model's name (for the reasons).
    pub model: &'a str,
    /// Its parameters by part.
    pub params: &'a LayerParameters,
    /// Shards wanted; `None` lets `memory_aware` pick.
    pub shards: Option<usize>,
    /// The strategy.
    pub strategy: ShardStrategy,
    /// Workers available, in order (at most this many shards).
    pub workers: usize,
    /// `cost_balanced`: each worker's measured ms per layer.
    pub ms_per_layer: Option<&'a [f64]>,
    /// Parameter memory one worker may hold.
    pub budget_bytes: Option<u64>,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Each shard's layers, in order; shard `i` goes to worker `i`.
    pub ranges: Vec<Range<usize>>,
    /// Why, one line each.
    pub reasons: Vec<String>,
    /// Whether the whole model fits one worker's budget (true without a budget).
    pub whole_fits: bool,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot plan shards of {model}: {message}")]
pub struct PlanError {
    /// The model.
    pub model: String,
    /// Why.
    pub message: String,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Plans the shards.
///
/// # Errors
/// [`PlanError`] when the count is impossible (more shards than layers or workers) or no split
/// fits the memory budget with the workers available.
pub fn plan(req: &PlanRequest<'_>) -> Result<Plan, PlanError> {
    let layers = req.params.per_layer.len();
    let fail = |message: String| PlanError {
        model: req.model.to_string(),
        message,
    };
    let total_bytes = req.params.total() * BYTES_PER_PARAM;
    let whole_fits = req.budget_bytes.is_none_or(|b| total_bytes <= b);
    let mut reasons = Vec::new();
    if let Some(b) = req.budget_bytes {
        reasons.push(if whole_fits {
            format!(
                "{} holds {:.1} MiB of parameters, within one worker's budget of {:.1} MiB",
                req.model,
                mib(total_bytes),
                mib(b)
            )
        } else {
            format!(
                "{} holds {:.1} MiB of parameters, over one worker's budget of {:.1} MiB: it runs only sharded, and the unsharded baseline is skipped",
                req.model,
                mib(total_bytes),
                mib(b)
            )
        });
    }
    let unit: Vec<f64> = match (req.strategy, req.ms_per_layer) {
        (ShardStrategy::CostBalanced, Some(speeds)) => speeds.to_vec(),
        (ShardStrategy::CostBalanced, None) => {
            return Err(fail(
                "cost_balanced needs each worker's measured speed".into(),
            ))
        }
        _ => vec![1.0; req.workers],
    };
    let count = match (req.shards, req.strategy) {
        (Some(n), _) => n,
        (None, ShardStrategy::MemoryAware) => {
            let budget = req
                .budget_bytes
                .ok_or_else(|| fail("memory_aware needs a per-worker budget".into()))?;
            let most = layers.min(req.workers);
            (1..=most)
                .find(|&n| {
                    split(req.params, n, &unit, Cost::Parameters).1 * BYTES_PER_PARAM as f64
                        <= budget as f64
                })
                .ok_or_else(|| {
                    fail(format!(
                        "even {most} shards (one per worker) leave a shard over the budget of {:.1} MiB (sharding.memory_budget_mib, --memory-budget-mib); give more workers or a larger budget",
                        mib(budget)
                    ))
                })?
                .max(2)
        }
        (None, s) => return Err(fail(format!("{} needs a shard count", s.as_str()))),
    };
    if count < 2 || count > layers || count > req.workers {
        return Err(fail(format!(
            "{count} shards: use 2 to {} (the model has {layers} layers, the pool {} workers)",
            layers.min(req.workers),
            req.workers
        )));
    }
    let cost = if req.strategy == ShardStrategy::CostBalanced {
        Cost::Compute
    } else {
        Cost::Parameters
    };
    let (ranges, _) = split(req.params, count, &unit, cost);
    let most = layers.min(req.workers);
    for (i, r) in ranges.iter().enumerate() {
        let bytes = req.params.of_range(r) * BYTES_PER_PARAM;
        if let Some(b) = req.budget_bytes.filter(|&b| bytes > b) {
            return Err(fail(format!(
                "shard {i} (layers {}..{}) needs {:.1} MiB, over the budget of {:.1} MiB (sharding.memory_budget_mib, --memory-budget-mib); {}",
                r.start,
                r.end,
                mib(bytes),
                mib(b),
                if count < most {
                    format!("use more shards (up to {most})")
                } else {
                    "no split fits: give a larger budget".to_string()
                }
            )));
        }
    }
    reasons.push(match req.strategy {
        ShardStrategy::LayerBalanced => format!(
            "layer_balanced: {count} contiguous ranges with the largest shard as small as it can be in parameters; the embedding ({:.1} MiB) and head ({:.1} MiB) count, so their shards get fewer layers",
            mib(req.params.embed * BYTES_PER_PARAM),
            mib(req.params.head * BYTES_PER_PARAM)
        ),
        ShardStrategy::CostBalanced => format!(
            "cost_balanced: measured ms per layer on each worker {}; each shard's layers chosen so the slowest shard is as fast as it can be (faster workers get more layers; the head counts as its parameters over a layer's)",
            unit.iter().map(|u| format!("{u:.2}")).collect::<Vec<_>>().join(", ")
        ),
        ShardStrategy::MemoryAware => format!(
            "memory_aware: {count} shards, the fewest{} whose largest fits the budget",
            if req.shards.is_some() { " asked for" } else { "" }
        ),
    });
    for (i, r) in ranges.iter().enumerate() {
        let p = req.params.of_range(r);
        reasons.push(format!(
            "shard {i}: layers {}..{} ({} layer{}{}{}), {:.1} M parameters, {:.1} MiB{}",
            r.start,
            r.end,
            r.len(),
            if r.len() == 1 { "" } else { "s" },
            if r.start == 0 { " + embeddings" } else { "" },
            if r.end == layers && req.params.head > 0 {
                " + head"
            } else {
                ""
            },
            p as f64 / 1e6,
            mib(p * BYTES_PER_PARAM),
            if req.strategy == ShardStrategy::CostBalanced {
                format!(", est. {:.1} ms", compute(req.params, r) * unit[i])
            } else {
                String::new()
            }
        ));
    }
    Ok(Plan {
        ranges,
        reasons,
        whole_fits,
    })
}

/// What a shard costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    /// Its parameters (memory).
    Parameters,
    /// Its compute in layer-equivalents.
    Compute,
}

/// Compute of the shard holding `r`, in layers: each layer 1, the head its parameters over a
/// layer's (a matrix multiply of that size), the embedding lookup nothing.
fn compute(p: &LayerParameters, r: &Range<usize>) -> f64 {
    let layer = p.per_layer.first().copied().unwrap_or(1).max(1) as f64;
    let head = if r.end == p.per_layer.len() {
        p.head as f64 / layer
    } else {
        0.0
    };
    r.len() as f64 + head
}

/// The contiguous split of the layers into `n` ranges (range `i` on a worker with weight
/// `unit[i]`) minimising the largest `unit[i] * cost(range)`; returns it with that cost.
/// Exact dynamic programme: layer counts here are at most a few dozen.
fn split(p: &LayerParameters, n: usize, unit: &[f64], kind: Cost) -> (Vec<Range<usize>>, f64) {
    let layers = p.per_layer.len();
    let cost = |i: usize, r: Range<usize>| {
        let c = match kind {
            Cost::Parameters => p.of_range(&r) as f64,
            Cost::Compute => compute(p, &r),
        };
        c * unit.get(i).copied().unwrap_or(1.0)
    };
    // best[k][e]: the smallest max cost of splitting layers 0..e into k ranges.
    let inf = f64::INFINITY;
    let mut best = vec![vec![inf; layers + 1]; n + 1];
    let mut cut = vec![vec![0usize; layers + 1]; n + 1];
    best[0][0] = 0.0;
    for k in 1..=n {
        for e in k..=layers {
            for s in (k - 1)..e {
                let c = best[k - 1][s].max(cost(k - 1, s..e));
                if c < best[k][e] {
                    best[k][e] = c;
                    cut[k][e] = s;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(n);
    let mut e = layers;
    for k in (1..=n).rev() {
        let s = cut[k][e];
        ranges.push(s..e);
        e = s;
    }
    ranges.reverse();
    (ranges, best[n][layers])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama_like() -> LayerParameters {
        // 8 layers of 10, an embedding of 25 and a head of 25 (in millions, say).
        LayerParameters {
            embed: 25,
            per_layer: vec![10; 8],
            head: 25,
            activation: 1,
        }
    }

    fn req(p: &LayerParameters, strategy: ShardStrategy) -> PlanRequest<'_> {
        PlanRequest {
            model: "m",
            params: p,
            shards: Some(3),
            strategy,
            workers: 3,
            ms_per_layer: None,
            budget_bytes: None,
        }
    }

    #[test]
    fn layer_balanced_gives_the_embedding_and_head_shards_fewer_layers() {
        let p = llama_like();
        let plan = plan(&req(&p, ShardStrategy::LayerBalanced)).unwrap();
        // 130 in all: the best max is 45 (25+20 | 40 | 20+25).
        assert_eq!(plan.ranges, vec![0..2, 2..6, 6..8]);
        assert!(plan.whole_fits);
    }

    #[test]
    fn cost_balanced_gives_a_faster_worker_more_layers() {
        let p = LayerParameters {
            embed: 0,
            per_layer: vec![10; 9],
            head: 0,
            activation: 1,
        };
        let even = plan(&PlanRequest {
            ms_per_layer: Some(&[1.0, 1.0, 1.0]),
            ..req(&p, ShardStrategy::CostBalanced)
        })
        .unwrap();
        assert_eq!(even.ranges, vec![0..3, 3..6, 6..9]);
        // Worker 1 twice as fast: it takes more layers than the others.
        let fast_middle = plan(&PlanRequest {
            ms_per_layer: Some(&[2.0, 1.0, 2.0]),
            ..req(&p, ShardStrategy::CostBalanced)
        })
        .unwrap();
        assert_eq!(fast_middle.ranges, vec![0..2, 2..7, 7..9]);
        assert!(plan(&req(&p, ShardStrategy::CostBalanced)).is_err());
    }

    #[test]
    fn memory_aware_picks_the_fewest_shards_that_fit_and_says_the_model_runs_only_sharded() {
        let p = llama_like();
        // 130 params x 4 bytes = 520 bytes; a budget of 200 bytes fits 50 params per worker.
        let plan = plan(&PlanRequest {
            shards: None,
            budget_bytes: Some(200),
            ..req(&p, ShardStrategy::MemoryAware)
        })
        .unwrap();
        assert_eq!(plan.ranges.len(), 3);
        assert!(!plan.whole_fits);
        assert!(
            plan.reasons[0].contains("runs only sharded"),
            "{:?}",
            plan.reasons
        );
        let too_small = super::plan(&PlanRequest {
            shards: None,
            budget_bytes: Some(100),
            ..req(&p, ShardStrategy::MemoryAware)
        })
        .unwrap_err();
        assert!(too_small.message.contains("over the budget"), "{too_small}");
        let fixed_over = super::plan(&PlanRequest {
            shards: Some(2),
            budget_bytes: Some(200),
            ..req(&p, ShardStrategy::MemoryAware)
        })
        .unwrap_err();
        assert!(
            fixed_over.message.contains("use more shards"),
            "{fixed_over}"
        );
    }

    #[test]
    fn impossible_counts_are_refused() {
        let p = llama_like();
        for n in [1, 4, 9] {
            let e = plan(&PlanRequest {
                shards: Some(n),
                ..req(&p, ShardStrategy::LayerBalanced)
            })
            .unwrap_err();
            assert!(e.message.contains("use 2 to 3"), "{e}");
        }
    }
}
