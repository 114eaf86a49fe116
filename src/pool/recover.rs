//! Recovery episodes: a worker failed; climb the ladder (`crate::recovery`) until service is
//! back, against the real browser. Each level ends in a typed [`Restored`] or [`LevelFailed`].
//!
//! [`Recovery`] owns what recovering needs to remember: the episodes in flight (shutdown waits
//! for them so each is recorded) and the faults the injector announced, waiting for the failure
//! they cause (`attribution.rs`). One episode per failure: the worker's `episode` lock
//! serialises them, and its generation (bumped by a repair in place) or its absence from the
//! live list (after a migration) tells a request that failed on the same fault that the
//! episode already ran, so it only re-runs itself. A worker whose every model went to hot
//! standbys is repaired aside (`repair.rs`). Must not import `report`, `cli` or terminal crates.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::browser::WorkerError;
use crate::faults::Kind;
use crate::recovery::{self, Failure, Level, ShardRecovery};

use super::attribution::{Attribution, Cause, Detection};
use super::error::ErrorClass;
use super::events::{LaunchReason, PoolEvent, RecoveryRecord, RetireReason, ShardRepair};
use super::pipelines::PipelineId;
use super::placing::{self, ReplaceError};
use super::shards::{self, ShardMoveError};
use super::worker::{Lifecycle, Worker};
use super::{lock, repair, standby, Pool, PoolError};

/// The recovery part of the pool: episodes in flight and faults awaiting their failure.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    episodes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    attribution: Mutex<Attribution>,
}

impl Recovery {
    /// A fault is about to hit `worker`: from now on a failure there is matched with it.
    pub fn fault_starting(&self, worker: &str, kind: Kind) {
        lock(&self.attribution).starting(worker, kind);
    }

    /// The announced fault took effect now.
    pub fn fault_effective(&self, worker: &str, kind: Kind) {
        lock(&self.attribution).effective(worker, kind);
    }

    /// A fault ended without a failure.
    pub fn fault_absorbed(&self, worker: &str, kind: Kind) {
        lock(&self.attribution).absorbed(worker, kind);
    }

    /// The announced fault on `worker` that best explains a failure seen as `seen`, taken.
    fn attribute(&self, worker: &str, seen: Detection) -> Option<(Kind, Instant)> {
        lock(&self.attribution).take(worker, seen)
    }

    /// The episodes in flight, taken (shutdown waits for them).
    pub fn take_episodes(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *lock(&self.episodes))
    }

    fn remember(&self, task: tokio::task::JoinHandle<()>) {
        let mut episodes = lock(&self.episodes);
        episodes.retain(|h| !h.is_finished());
        episodes.push(task);
    }
}

/// What restored service at a level.
#[derive(Debug)]
enum Restored {
    /// The same worker answered again.
    Answered,
    /// The page was reopened and its models loaded again.
    Reopened {
        ms: u128,
        /// The silent page's renderer was ended first (what was done).
        ended: Option<String>,
    },
    /// The worker's models now run elsewhere (`model -> where`).
    Moved(Vec<(String, String)>),
    /// The worker held no models; nothing needed moving.
    NothingToMove,
    /// A replacement worker was launched.
    Launched(String),
    /// The worker's pipeline shards were loaded on these workers.
    Shards {
        /// Where they went.
        to: Vec<String>,
        /// The shards loaded.
        reloaded: Vec<usize>,
    },
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answered => f.write_str("the same worker answered again"),
            Self::Reopened { ms, ended } => {
                write!(f, "page reopened and models reloaded in {ms} ms")?;
                match ended {
                    Some(how) => write!(f, "; the silent page's renderer ended first ({how})"),
                    None => Ok(()),
                }
            }
            Self::Moved(moves) => {
                let parts: Vec<String> =
                    moves.iter().map(|(m, to)| format!("{m} -> {to}")).collect();
                f.write_str(&parts.join(", "))
            }
            Self::NothingToMove => f.write_str("no models to move"),
            Self::Launched(id) => write!(f, "launched {id}"),
            Self::Shards { to, reloaded } => {
                write!(f, "shards {reloaded:?} loaded on [{}]", to.join(", "))
            }
        }
    }
}

/// Why a level did not restore service.
#[derive(Debug, thiserror::Error)]
enum LevelFailed {
    #[error("the browser process is gone")]
    BrowserGone,
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Replace(#[from] ReplaceError),
    #[error(transparent)]
    Shards(#[from] ShardMoveError),
}

/// Runs one recovery episode for `worker`, unless the failure seen on `generation` was already
/// handled. Returns when the episode is recorded (or was not needed); a repair aside goes on
/// after that, in the same task.
///
/// The episode is a task of the pool's, not part of the caller's future: a request that passes
/// its deadline while it waits here is dropped, and the episode still runs to its end, is
/// recorded, and leaves the worker repaired or retired (never stuck recovering).
pub(crate) async fn recover(pool: &Pool, worker: &Arc<Worker>, generation: u64, cause: Cause) {
    let (p, w) = (pool.clone(), worker.clone());
    let (done, ended) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        episode(&p, &w, generation, cause, done).await;
    });
    pool.recovery().remember(task);
    let _ = ended.await;
}

/// The episode itself: promote standbys, climb the ladder for what they do not cover, then
/// record what happened and tell `done` (the requests waiting on it). A worker set aside is
/// then repaired, still under the episode lock.
async fn episode(
    pool: &Pool,
    worker: &Arc<Worker>,
    generation: u64,
    cause: Cause,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let _episode = worker.episode.lock().await;
    if !pool.members().is_live(worker)
        || worker.generation() != generation
        || pool.cancel().is_cancelled()
    {
        return;
    }
    // A watcher that marked the worker failed saw it first, whoever reached the episode.
    let status = worker.status();
    let cause = match (status.noticed_by, status.noticed_at) {
        (Some(seen), Some(at)) => Cause {
            seen,
            seen_at: at.min(cause.seen_at),
            ..cause
        },
        _ => cause,
    };
    // Detected when it was seen, however long this episode waited for its lock.
    let detected = cause.seen_at;
    worker.set_lifecycle(Lifecycle::Recovering);
    let pending = pool.recovery().attribute(&worker.id, cause.seen);
    let (fault, detection_ms) = match pending {
        Some((kind, at)) => (
            Some(kind),
            detected.saturating_duration_since(at).as_millis() as u64,
        ),
        None => (None, cause.in_flight.as_millis() as u64),
    };
    let config = pool.config().recovery;
    let breaker_open = worker.breaker_outcome(false) || worker.breaker_open();
    let failure = Failure {
        session_usable: cause.session_usable(),
        browser_gone: !worker.browser_alive(),
    };
    // A worker holding pipeline shards climbs one step: its pipeline's shard recovery.
    let shards = held_shards(pool, worker);
    let models = served_models(pool, worker);
    let levels = match shards.first() {
        Some(&(id, _)) => shard_levels(pool.pipelines().recovery(id), failure),
        None => recovery::ladder(config.strategy, failure, breaker_open),
    };
    pool.emit(PoolEvent::Recovering {
        worker: worker.id.clone(),
        seen: cause.seen,
        fault,
        levels: levels.clone(),
    });
    let deadline = Instant::now() + config.timeout;
    let mut reached = None;
    let mut succeeded = false;
    let mut steps = Vec::new();
    let mut moved_shards = None;
    // Hot standbys first: every model here that can be served elsewhere at once moves (no
    // probe, no load). When that is all of them, that is the recovery: the worker is repaired
    // aside in the background, or replaced by upkeep when its browser is gone.
    let mut aside = false;
    if pool.config().standbys.copies > 0 && shards.is_empty() {
        let (moves, all) = standby::promote_off(pool, worker);
        let moved = if moves.is_empty() {
            Restored::NothingToMove
        } else {
            Restored::Moved(moves)
        };
        if all {
            reached = Some(Level::Migrate);
            succeeded = true;
            let then;
            (aside, then) = hand_over(pool, worker);
            steps.push(format!("promote: {moved}; {then}"));
        } else if !matches!(moved, Restored::NothingToMove) {
            steps.push(format!("promote: {moved}; the ladder for the rest"));
        }
    }
    // A worker holding shards: their standbys take over when everything it served has one,
    // unless the pipeline asked for every shard reloaded (`full_retry`).
    let shard_standbys = shards
        .first()
        .is_some_and(|&(id, _)| pool.pipelines().recovery(id) != ShardRecovery::FullRetry);
    if pool.config().standbys.copies > 0 && shard_standbys {
        if let Some(to) = shards::promote_shards(pool, worker, &shards) {
            reached = Some(Level::Migrate);
            succeeded = true;
            let moved: Vec<usize> = shards.iter().map(|&(_, k)| k).collect();
            let then;
            (aside, then) = hand_over(pool, worker);
            steps.push(format!(
                "promote: shards {moved:?} to {} (hot standbys); {then}",
                to.join(", ")
            ));
            moved_shards = Some((to, Vec::new()));
        }
    }
    for level in levels.into_iter().filter(|_| !succeeded) {
        reached = Some(level);
        let left = deadline.saturating_duration_since(Instant::now());
        let tried =
            tokio::time::timeout(left, try_level(pool, level, worker, &cause, left, &shards)).await;
        match tried {
            Ok(Ok(done)) => {
                steps.push(format!("{level}: {done}"));
                if let Restored::Shards { to, reloaded } = done {
                    moved_shards = Some((to, reloaded));
                } else if !shards.is_empty() {
                    // Reset: the shards were loaded again in the new page, on the same worker.
                    let reloaded = shards.iter().map(|&(_, k)| k).collect();
                    moved_shards = Some((vec![worker.id.clone()], reloaded));
                }
                succeeded = true;
                break;
            }
            Ok(Err(why)) => steps.push(format!("{level}: {why}")),
            Err(_) => {
                steps.push(format!(
                    "{level}: the recovery timeout ({:?}) passed",
                    config.timeout
                ));
                break;
            }
        }
    }
    match reached {
        _ if aside => {}
        Some(Level::Retry | Level::Reset) if succeeded => {
            worker.breaker_outcome(true);
            worker.repaired();
            standby::rejoin(pool, worker);
        }
        // Migrated or rebuilt: the worker was retired on the way. Failed: retire it now so
        // nothing is routed to it and its browser is closed.
        _ => pool.retire(worker, RetireReason::GaveUp),
    }
    pool.emit(PoolEvent::Recovered(RecoveryRecord {
        at_ms: pool.ms(detected),
        worker: worker.id.clone(),
        models,
        fault,
        detected_by: cause.seen,
        detection_ms,
        level: reached,
        recovery_ms: detected.elapsed().as_millis() as u64,
        succeeded,
        steps,
        shards: shards.first().map(|&(id, first)| {
            let (to, reloaded) = moved_shards.unwrap_or_default();
            ShardRepair {
                model: pool.pipelines().model(id),
                strategy: pool.pipelines().recovery(id),
                shard: failed_shard(pool, &cause, &shards).unwrap_or(first),
                to,
                reloaded,
            }
        }),
    }));
    let _ = done.send(());
    if aside {
        repair::repair_aside(pool, worker, &cause).await;
    }
}

/// A worker whose every model went to standbys: repaired aside when it can be, else retired.
/// Returns whether it is aside, and the words for the episode's step.
fn hand_over(pool: &Pool, worker: &Arc<Worker>) -> (bool, &'static str) {
    if repair::set_aside(pool, worker) {
        (true, "the worker is repaired aside")
    } else {
        pool.retire(worker, RetireReason::ToStandbys);
        (false, "the worker is retired")
    }
}

/// One ladder level.
async fn try_level(
    pool: &Pool,
    level: Level,
    worker: &Arc<Worker>,
    cause: &Cause,
    left: Duration,
    shards: &[(PipelineId, usize)],
) -> Result<Restored, LevelFailed> {
    if let Some(&(id, _)) = shards.first().filter(|_| level != Level::Reset) {
        let (to, reloaded) = match pool.pipelines().recovery(id) {
            ShardRecovery::ReassignShards => shards::reassign_shards(pool, worker, shards).await,
            ShardRecovery::RetryFailedShards => {
                shards::relaunch_shards(pool, worker, shards, false).await
            }
            ShardRecovery::FullRetry => shards::relaunch_shards(pool, worker, shards, true).await,
        }?;
        return Ok(Restored::Shards { to, reloaded });
    }
    match level {
        Level::Retry => {
            worker.probe(cause.model.as_deref()).await?;
            Ok(Restored::Answered)
        }
        Level::Reset => {
            if !worker.browser_alive() {
                return Err(LevelFailed::BrowserGone);
            }
            // Half the time left: a reset that hangs must leave room for migrate/rebuild.
            let started = Instant::now();
            // A silent page may still be spinning: ended first, it frees its core and the call
            // it holds, and the new page cannot land in its process.
            let silent = matches!(
                cause.seen,
                Detection::Heartbeat
                    | Detection::Request(ErrorClass::Timeout | ErrorClass::SessionLost)
            );
            let ended = if silent {
                worker.browser().end_page().await
            } else {
                None
            };
            worker.reset(left / 2).await?;
            // The reloaded models serve again only once their answers are verified.
            super::first_answer::verify_reloaded(pool, worker).await?;
            Ok(Restored::Reopened {
                ms: started.elapsed().as_millis(),
                ended,
            })
        }
        Level::Migrate => {
            let models = pool.placements().models_on(worker);
            pool.retire(worker, RetireReason::Migrating);
            let mut moved = Vec::new();
            for entry in &models {
                let to = placing::replace(pool, entry, false).await?;
                moved.push((entry.name().to_string(), to));
            }
            if moved.is_empty() {
                return Ok(Restored::NothingToMove);
            }
            Ok(Restored::Moved(moved))
        }
        Level::Rebuild => {
            pool.retire(worker, RetireReason::Rebuilding);
            let mut moved = Vec::new();
            // A pipeline's shards move only by their own step (above).
            let orphans = pool.placements().orphans();
            for entry in orphans
                .iter()
                .filter(|e| pool.pipelines().locate(e).is_none())
            {
                let to = placing::replace(pool, entry, true).await?;
                moved.push((entry.name().to_string(), to));
            }
            if moved.is_empty() {
                // Nothing was placed on it: launch a replacement to keep capacity.
                let new = pool.launch(worker.kind, LaunchReason::Replace).await?;
                return Ok(Restored::Launched(new.id.clone()));
            }
            Ok(Restored::Moved(moved))
        }
    }
}

/// The levels a worker holding pipeline shards climbs: its pipeline's step, after a reset
/// when its browser lives on (a crashed or hung tab: a new page in the same browser reloads the
/// shards, no launch), unless the pipeline asked for every shard reloaded (`full_retry`).
fn shard_levels(step: ShardRecovery, failure: Failure) -> Vec<Level> {
    if failure.browser_gone || step == ShardRecovery::FullRetry {
        vec![step.level()]
    } else {
        vec![Level::Reset, step.level()]
    }
}

/// The pipeline shards `worker` serves, in shard order.
fn held_shards(pool: &Pool, worker: &Arc<Worker>) -> Vec<(PipelineId, usize)> {
    let mut held: Vec<(PipelineId, usize)> = pool
        .placements()
        .models_on(worker)
        .iter()
        .filter_map(|e| pool.pipelines().locate(e))
        .collect();
    held.sort_by_key(|&(_, k)| k);
    held
}

/// The models `worker` served when its failure was seen, by their names in the ledger (a
/// shard by its whole model's): the service a recovery must restore.
fn served_models(pool: &Pool, worker: &Arc<Worker>) -> Vec<String> {
    let mut models: Vec<String> = pool
        .placements()
        .models_on(worker)
        .iter()
        .map(|e| match pool.pipelines().locate(e) {
            Some((id, _)) => pool.pipelines().model(id),
            None => e.name().to_string(),
        })
        .collect();
    models.sort();
    models.dedup();
    models
}

/// The shard whose call failed, when a request named it.
fn failed_shard(pool: &Pool, cause: &Cause, held: &[(PipelineId, usize)]) -> Option<usize> {
    let name = cause.model.as_deref()?;
    held.iter()
        .find_map(|&(id, k)| (pool.pipelines().shards(id).get(k)?.name() == name).then_some(k))
}
