//! Moving a pipeline's shards: load one on a worker (with the one backend it must use), and the
//! recovery ladder's step for a worker that held shards: `reassign_shards` (onto the live
//! workers) or `retry_failed_shards` / `full_retry` (a new browser of the same kind, and for a
//! full retry every shard loaded again). Each move is journaled once its shards loaded. Must
//! not import `report`, `cli` or terminal crates.

use std::ops::Range;
use std::sync::Arc;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::models::PreparedModel;
use crate::recovery::ShardRecovery;
use crate::state::ShardAssignment;

use super::events::{LaunchReason, PoolEvent, RetireReason};
use super::pipelines::PipelineId;
use super::router::HardwarePreferences;
use super::worker::Worker;
use super::{Pool, PoolError};

/// A sharded model to place as a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSpec<'a> {
    /// The whole model's name.
    pub model: &'a str,
    /// Its shards, in order.
    pub shards: &'a [PreparedModel],
    /// The layers each shard holds.
    pub ranges: &'a [Range<usize>],
    /// Per shard: its browser and the one backend it must use, if any. The pool's first
    /// workers are these, in this order.
    pub places: &'a [(BrowserKind, Option<Backend>)],
    /// What a failed shard's worker gets.
    pub recovery: ShardRecovery,
}

/// Places `spec` in the pool: each shard a model of the placement registry, loaded on the
/// pool's worker for its place (one at a time: two loads at once on 2 cores only slow each
/// other; `loaded` hears of each), the assignment journaled. Returns the pipeline and its
/// workers, in shard order.
///
/// # Errors
/// [`PoolError::NoPlacement`] when the pool has no worker for a place, [`PoolError::Worker`]
/// when a load failed.
pub async fn place_pipeline(
    pool: &Pool,
    spec: &PipelineSpec<'_>,
    loaded: &mut dyn FnMut(usize, &Worker),
) -> Result<(PipelineId, Vec<Arc<Worker>>), PoolError> {
    let workers = in_place_order(pool, spec.model, spec.places)?;
    let registry = pool.placements();
    let entries = spec
        .shards
        .iter()
        .zip(spec.places)
        .map(|(s, &(_, backend))| {
            let hardware = HardwarePreferences {
                browser: None,
                backends: backend.map(|b| vec![b]),
                measured: None,
            };
            // A shard has no native output of its own: the pipeline's every answer is judged
            // against the unsharded model's.
            registry.entry(Arc::new(s.clone()), None, hardware)
        })
        .collect();
    let backends = spec.places.iter().map(|&(_, b)| b).collect();
    let id = pool
        .pipelines()
        .add(spec.model, entries, backends, spec.recovery);
    for (k, w) in workers.iter().enumerate() {
        load_shard(pool, id, k, w).await?;
        loaded(k, w);
    }
    pool.emit(PoolEvent::ShardsPlanned {
        model: spec.model.to_string(),
        shards: spec
            .ranges
            .iter()
            .zip(&workers)
            .enumerate()
            .map(|(k, (r, w))| {
                ShardAssignment::new(k as u32, r.start as u32..r.end as u32, w.id.clone())
            })
            .collect(),
    });
    Ok((id, workers))
}

/// The pool's first workers in the order of `places`: shard `k` takes the n-th worker of its
/// kind, n being how many shards before it want that kind (ids name workers in launch order).
pub fn in_place_order(
    pool: &Pool,
    model: &str,
    places: &[(BrowserKind, Option<Backend>)],
) -> Result<Vec<Arc<Worker>>, PoolError> {
    let mut live = pool.workers();
    live.sort_by_key(|w| (w.kind, number(&w.id)));
    places
        .iter()
        .enumerate()
        .map(|(k, &(kind, _))| {
            let n = places[..k].iter().filter(|p| p.0 == kind).count();
            live.iter()
                .filter(|w| w.kind == kind)
                .nth(n)
                .cloned()
                .ok_or_else(|| PoolError::NoPlacement {
                    model: model.to_string(),
                    reason: format!("no {kind} worker for shard {k}"),
                })
        })
        .collect()
}

/// The number of a worker id (`chromium#2` -> 2).
fn number(id: &str) -> u64 {
    id.rsplit('#')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Why a failed worker's shards could not be loaded elsewhere.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardMoveError {
    /// No live worker is left to take a shard.
    #[error("no live worker is left to take shard {shard}")]
    NoLiveWorker {
        /// The shard.
        shard: usize,
    },
    /// A launch or a load failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// Loads shard `k` of pipeline `id` on `worker` (with the one backend it must use, if any) and
/// records it there.
///
/// # Errors
/// [`PoolError::Worker`] when the load failed.
pub(super) async fn load_shard(
    pool: &Pool,
    id: PipelineId,
    k: usize,
    worker: &Arc<Worker>,
) -> Result<(), PoolError> {
    let pipelines = pool.pipelines();
    let entry = pipelines.shards(id)[k].clone();
    let backends = pipelines.backend(id, k).map(|b| vec![b]);
    let loaded = worker.load(entry.prepared.clone(), backends).await?;
    let reply = &loaded.reply;
    pipelines.loaded(
        id,
        k,
        reply.fetch_ms + reply.session_create_ms,
        reply.backend,
        reply.wasm_threads,
    );
    pool.placements().place(&entry, worker);
    Ok(())
}

/// `reassign_shards`: the failed worker's shards onto the live workers, the one holding the
/// fewest parameters first, journaled as one transaction once they all loaded. Returns the
/// workers they went to and the shards loaded.
///
/// # Errors
/// [`ShardMoveError`] when no live worker is left or a load failed.
pub(super) async fn reassign_shards(
    pool: &Pool,
    failed: &Arc<Worker>,
    held: &[(PipelineId, usize)],
) -> Result<(Vec<String>, Vec<usize>), ShardMoveError> {
    pool.retire(failed, RetireReason::Migrating);
    let mut to = Vec::new();
    let mut moves = Vec::new();
    for &(id, k) in held {
        let parameters = |w: &Arc<Worker>| -> u64 {
            pool.placements()
                .models_on(w)
                .iter()
                .map(|e| e.prepared.parameters)
                .sum()
        };
        let target = pool
            .members()
            .live()
            .into_iter()
            .filter(|w| !Arc::ptr_eq(w, failed) && w.is_routable() && w.browser_alive())
            .min_by_key(|w| parameters(w))
            .ok_or(ShardMoveError::NoLiveWorker { shard: k })?;
        load_shard(pool, id, k, &target).await?;
        pool.pipelines().moved(id, k, &failed.id);
        moves.push((k as u32, target.id.clone()));
        if !to.contains(&target.id) {
            to.push(target.id.clone());
        }
    }
    shards_assigned(pool, held, moves);
    Ok((to, held.iter().map(|&(_, k)| k).collect()))
}

/// Hot standbys take over a failed worker whose models, its shards among them, all have a
/// ready copy elsewhere: each moves at once (no launch, no load), and each shard's move is
/// journaled as a reassignment. A decoder shard's page has no cache yet: the generation that
/// waited for this recovery rebuilds it there from its kept inputs, as after any move.
/// `None` when some model on the worker has no copy elsewhere (the pipeline's ladder step
/// then runs, as without standbys).
pub(super) fn promote_shards(
    pool: &Pool,
    failed: &Arc<Worker>,
    held: &[(PipelineId, usize)],
) -> Option<Vec<String>> {
    let registry = pool.placements();
    let on = registry.models_on(failed);
    if on.is_empty() || !on.iter().all(|e| registry.covered_without(e, failed)) {
        return None;
    }
    let (_, all) = super::standby::promote_off(pool, failed);
    let mut to = Vec::new();
    let mut moves = Vec::new();
    for &(id, k) in held {
        let entry = &pool.pipelines().shards(id)[k];
        // A standby that went away between the check and the move leaves the shard unserved:
        // the ladder loads it.
        let Some(w) = registry.serving(entry).first().cloned() else {
            continue;
        };
        pool.pipelines().moved(id, k, &failed.id);
        moves.push((k as u32, w.id.clone()));
        if !to.contains(&w.id) {
            to.push(w.id.clone());
        }
    }
    let every_shard = moves.len() == held.len();
    shards_assigned(pool, held, moves);
    (all && every_shard).then_some(to)
}

/// `retry_failed_shards` (`everything` false) or `full_retry` (true): a new browser of the
/// failed one's kind takes its shards; a full retry loads every other shard again where it
/// is. Returns the workers that loaded and the shards loaded.
///
/// # Errors
/// [`ShardMoveError::Pool`] when the launch or a load failed.
pub(super) async fn relaunch_shards(
    pool: &Pool,
    failed: &Arc<Worker>,
    held: &[(PipelineId, usize)],
    everything: bool,
) -> Result<(Vec<String>, Vec<usize>), ShardMoveError> {
    pool.retire(failed, RetireReason::Rebuilding);
    let Some(&(id, first)) = held.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mine = |k: usize| held.iter().any(|&(_, h)| h == k);
    let entries = pool.pipelines().shards(id);
    let reload: Vec<usize> = if everything {
        (0..entries.len()).collect()
    } else {
        held.iter().map(|&(_, k)| k).collect()
    };
    // full_retry: every other shard leaves service before anything is reloaded, so no request
    // runs on a shard (or keeps state in it) while the pipeline is being rebuilt.
    let mut kept = Vec::new();
    for &k in reload.iter().filter(|&&k| !mine(k)) {
        let Some(w) = pool.placements().serving(&entries[k]).first().cloned() else {
            return Err(ShardMoveError::NoLiveWorker { shard: k });
        };
        pool.placements().unplace(&entries[k], &w);
        kept.push((k, w));
    }
    let fresh = pool.launch(failed.kind, LaunchReason::Shard(first)).await?;
    let mut to = vec![fresh.id.clone()];
    let mut moves = Vec::new();
    for &k in &reload {
        let worker = match kept.iter().find(|(j, _)| *j == k) {
            None => fresh.clone(),
            Some((_, w)) => {
                // Loaded again where it is.
                let _ = w.unload(entries[k].name()).await;
                if !to.contains(&w.id) {
                    to.push(w.id.clone());
                }
                w.clone()
            }
        };
        load_shard(pool, id, k, &worker).await?;
        if mine(k) {
            pool.pipelines().moved(id, k, &failed.id);
            moves.push((k as u32, fresh.id.clone()));
        }
    }
    shards_assigned(pool, held, moves);
    Ok((to, reload))
}

fn shards_assigned(pool: &Pool, held: &[(PipelineId, usize)], moves: Vec<(u32, String)>) {
    if let Some(&(id, _)) = held.first() {
        pool.emit(PoolEvent::ShardsAssigned {
            model: pool.pipelines().model(id),
            moves,
        });
    }
}
