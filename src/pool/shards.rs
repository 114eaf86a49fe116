//! Moving a pipeline's shards: load one on a worker (with the one backend it must use), and the
//! recovery ladder's step for a worker that held shards: `reassign_shards` (onto the live
//! workers) or `retry_failed_shards` / `full_retry` (a new browser of the same kind, and for a
//! full retry every shard loaded again). Each move is journaled once its shards loaded. Must
//! not import `report`, `cli` or terminal crates.

use std::sync::Arc;

use super::events::{LaunchReason, PoolEvent, RetireReason};
use super::pipelines::PipelineId;
use super::worker::Worker;
use super::{Pool, PoolError};

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
    let fresh = pool.launch(failed.kind, LaunchReason::Shard(first)).await?;
    let mine = |k: usize| held.iter().any(|&(_, h)| h == k);
    let reload: Vec<usize> = if everything {
        (0..pool.pipelines().shards(id).len()).collect()
    } else {
        held.iter().map(|&(_, k)| k).collect()
    };
    let mut to = vec![fresh.id.clone()];
    let mut moves = Vec::new();
    for &k in &reload {
        let worker = if mine(k) {
            fresh.clone()
        } else {
            // full_retry: every other shard is loaded again where it is.
            let entry = pool.pipelines().shards(id)[k].clone();
            let Some(w) = pool.placements().serving(&entry).first().cloned() else {
                return Err(ShardMoveError::NoLiveWorker { shard: k });
            };
            let _ = w.unload(entry.name()).await;
            if !to.contains(&w.id) {
                to.push(w.id.clone());
            }
            w
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
