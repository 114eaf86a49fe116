//! Placing models: route a model (through the pure `router`), place it (load, then its first
//! answer judged in `first_answer.rs`), a scale-up, replacing a lost placement (promote a standby, or route again), and moving a model
//! between browsers as one journaled transaction (`migrate`). What is placed where
//! is the registry's (`placements.rs`); this file does the work and tells it. Must not import
//! `report`, `cli` or terminal crates.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::state::Op;

use super::events::{LaunchReason, PoolEvent};
use super::first_answer::first_run;
use super::journal::Tx;
use super::placements::ModelEntry;
use super::router::{self, Candidate, Decision, Target};
use super::worker::Worker;
use super::{standby, Pool, PoolError};

/// Why a lost placement could not be replaced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplaceError {
    /// Routing or placing failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Migration wants another live worker and there is none.
    #[error("no other live worker for {model} (the router wants a new {wanted})")]
    NoOtherWorker {
        /// The model.
        model: String,
        /// The kind the router would launch.
        wanted: BrowserKind,
    },
}

/// Why a planned migration did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The model is not in the pool.
    #[error("{model} is not placed in this pool")]
    NotPlaced {
        /// The model.
        model: String,
    },
    /// The model has no live placement.
    #[error("{model} has no live placement to move")]
    NoLivePlacement {
        /// The model.
        model: String,
    },
    /// It runs on that kind already.
    #[error("{model} already runs on {kind} ({worker})")]
    AlreadyThere {
        /// The model.
        model: String,
        /// The kind asked for.
        kind: BrowserKind,
        /// Its worker.
        worker: String,
    },
    /// No live worker of that kind.
    #[error("no live {kind} worker to move {model} to")]
    NoTarget {
        /// The model.
        model: String,
        /// The kind asked for.
        kind: BrowserKind,
    },
    /// The load or the verified first run on the target failed; the transaction was rolled
    /// back.
    #[error("placing on {target} failed: {error}; rolled back: {undo}; {model} keeps serving from {source_worker}")]
    RolledBack {
        /// The model.
        model: String,
        /// The worker it was to move to.
        target: String,
        /// The worker it keeps serving from.
        source_worker: String,
        /// The load's or the first run's error.
        error: Box<PoolError>,
        /// What the rollback did.
        undo: String,
    },
}

fn candidates(pool: &Pool, entry: &ModelEntry) -> Vec<Candidate> {
    pool.members()
        .live()
        .iter()
        .filter(|s| s.is_routable())
        .map(|s| Candidate {
            id: s.id.clone(),
            kind: s.kind,
            backends: s.status().backends,
            queued: s.queued(),
            has_model: pool.placements().serves(entry, s),
            score: s
                .backend_of(entry.name())
                .and_then(|b| pool.ledger().live_score(entry.name(), &s.id, b)),
        })
        .collect()
}

/// Routes `entry` (recording the decision).
pub(super) fn route(
    pool: &Pool,
    entry: &ModelEntry,
    can_launch: bool,
) -> Result<Decision, PoolError> {
    let c = pool.config();
    let launchable: Vec<BrowserKind> = c.launches.iter().map(|l| l.kind).collect();
    let hardware = entry.hardware();
    let req = router::Request {
        model: entry.name(),
        task: entry.prepared.task,
        hardware: &hardware,
        backends: &c.page.backends,
        preferences: &c.preferences,
        launchable: &launchable,
        can_launch,
    };
    let decision =
        router::route(&req, &candidates(pool, entry)).map_err(|e| PoolError::NoPlacement {
            model: entry.name().to_string(),
            reason: e.to_string(),
        })?;
    pool.emit(PoolEvent::Routed(decision.clone()));
    Ok(decision)
}

/// The worker a decision names: an existing one, or a new one launched for `why` when `launch`
/// allows.
pub(super) async fn target_of(
    pool: &Pool,
    entry: &ModelEntry,
    decision: Decision,
    launch: bool,
    why: LaunchReason,
) -> Result<Arc<Worker>, ReplaceError> {
    match decision.target {
        Target::Worker(id) => pool.members().find(&id).ok_or_else(|| {
            ReplaceError::Pool(PoolError::NoPlacement {
                model: entry.name().to_string(),
                reason: format!("{id} went away"),
            })
        }),
        Target::Launch(kind) if launch => Ok(pool.launch(kind, why).await?),
        Target::Launch(kind) => Err(ReplaceError::NoOtherWorker {
            model: entry.name().to_string(),
            wanted: kind,
        }),
    }
}

/// Loads the model on `worker`, runs it once, records the placement.
pub(super) async fn place(
    pool: &Pool,
    entry: &Arc<ModelEntry>,
    worker: Arc<Worker>,
) -> Result<(), PoolError> {
    let loaded = worker
        .load(entry.prepared.clone(), entry.hardware().backends)
        .await?;
    pool.standby_state()
        .note_memory(entry, loaded.memory_added_kib);
    first_run(pool, entry, &worker, &loaded).await?;
    pool.placements().place(entry, &worker);
    Ok(())
}

/// Places `entry` on another live worker (`launch` false: migrate) or on a new one if needed
/// (`launch` true: rebuild). Returns what was done.
pub(super) async fn replace(
    pool: &Pool,
    entry: &Arc<ModelEntry>,
    launch: bool,
) -> Result<String, ReplaceError> {
    let _placing = entry.placing.lock().await;
    if let Some(s) = pool.placements().live_placement(entry) {
        return Ok(format!("{} (already placed)", s.id));
    }
    // A hot standby holds the model already: promote it, no load needed.
    if let Some(done) = standby::promote(pool, entry) {
        return Ok(done);
    }
    let decision = route(pool, entry, launch && pool.has_room())?;
    let why = LaunchReason::Rebuild(entry.name().to_string());
    let worker = target_of(pool, entry, decision, launch, why).await?;
    let id = worker.id.clone();
    place(pool, entry, worker).await?;
    Ok(id)
}

/// Moves `model` to a worker of kind `to`, as one transaction of the run's journal: load on the
/// target, switch the placement, unload from the source. A failure part way rolls back for
/// real: the half-loaded model is unloaded from the target (or the target, if it cannot answer,
/// is marked unhealthy so its page is reset without it), the source keeps serving, and the log
/// records the abort with the reason. Returns what was done.
///
/// # Errors
/// [`MigrateError`]: why the migration did not happen (after its rollback).
pub(super) async fn migrate(
    pool: &Pool,
    model: &str,
    to: BrowserKind,
) -> Result<String, MigrateError> {
    let registry = pool.placements();
    let entry = registry
        .find(model)
        .ok_or_else(|| MigrateError::NotPlaced {
            model: model.into(),
        })?;
    let _placing = entry.placing.lock().await;
    let source = registry
        .live_placement(&entry)
        .ok_or_else(|| MigrateError::NoLivePlacement {
            model: model.into(),
        })?;
    if source.kind == to {
        return Err(MigrateError::AlreadyThere {
            model: model.into(),
            kind: to,
            worker: source.id.clone(),
        });
    }
    let target = pool
        .members()
        .live()
        .into_iter()
        .find(|s| s.kind == to && s.is_routable())
        .ok_or_else(|| MigrateError::NoTarget {
            model: model.into(),
            kind: to,
        })?;
    let tx = Tx::begin(pool.journal());
    tx.op(Op::Placed {
        model: model.to_string(),
        worker: target.id.clone(),
    });
    pool.emit(PoolEvent::Migrating {
        model: model.to_string(),
        from: source.id.clone(),
        to: target.id.clone(),
    });
    // The target serves only once its first answer matched native onnxruntime.
    let loaded = match target
        .load(entry.prepared.clone(), entry.hardware().backends)
        .await
    {
        Ok(loaded) => first_run(pool, &entry, &target, &loaded).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = loaded {
        // Roll back: nothing of the model may stay on the target (a rejected first answer
        // has unloaded it already).
        let left = target.loaded_models().iter().any(|m| m == model);
        let undo = match if left {
            target.unload(model).await
        } else {
            Ok(())
        } {
            Ok(()) => format!("unloaded {model} from {}", target.id),
            Err(u) => {
                target.mark_unhealthy(format!("rollback of a migration: {u}"));
                format!(
                    "{} could not unload ({u}); marked unhealthy so its page is reset without {model}",
                    target.id
                )
            }
        };
        let why = MigrateError::RolledBack {
            model: model.into(),
            target: target.id.clone(),
            source_worker: source.id.clone(),
            error: Box::new(e),
            undo,
        };
        tx.abort(&why.to_string());
        pool.emit(PoolEvent::MigrationRolledBack {
            model: model.to_string(),
            target: target.id.clone(),
            detail: why.to_string(),
        });
        return Err(why);
    }
    registry.place(&entry, &target);
    registry.unplace(&entry, &source);
    tx.op(Op::Unplaced {
        model: model.to_string(),
        worker: source.id.clone(),
    });
    let unloaded = source.unload(model).await;
    tx.commit();
    let unload_error = unloaded.err().map(|e| e.to_string());
    let done = format!(
        "{model}: {} -> {}{}",
        source.id,
        target.id,
        unload_error
            .as_ref()
            .map(|e| format!(" (unload from the source failed: {e})"))
            .unwrap_or_default()
    );
    pool.emit(PoolEvent::Migrated {
        model: model.to_string(),
        from: source.id.clone(),
        to: target.id.clone(),
        unload_error,
    });
    Ok(done)
}

/// Places the model once if it has no live placement (serialised per model).
pub(super) async fn ensure_placed(pool: &Pool, entry: &Arc<ModelEntry>) -> Result<(), PoolError> {
    place_once(pool, entry).await.map_err(|(e, _)| e)
}

/// As [`ensure_placed`]; a failure names the worker the load or first run failed on, with its
/// generation then, when it got that far.
pub(super) async fn place_once(
    pool: &Pool,
    entry: &Arc<ModelEntry>,
) -> Result<(), (PoolError, Option<(Arc<Worker>, u64)>)> {
    let _placing = entry.placing.lock().await;
    if pool.placements().least_loaded(entry, None).is_some() {
        return Ok(());
    }
    let decision = route(pool, entry, pool.has_room()).map_err(|e| (e, None))?;
    let why = LaunchReason::Place(entry.name().to_string());
    let worker = target_of(pool, entry, decision, true, why)
        .await
        .map_err(|e| match e {
            ReplaceError::Pool(e) => (e, None),
            other => (
                PoolError::NoPlacement {
                    model: entry.name().to_string(),
                    reason: other.to_string(),
                },
                None,
            ),
        })?;
    let generation = worker.generation();
    place(pool, entry, worker.clone())
        .await
        .map_err(|e| (e, Some((worker, generation))))
}

/// Adds a worker for `entry` when the placement `chosen` is queued up and there is room.
pub(super) fn scale_up(pool: &Pool, entry: &Arc<ModelEntry>, chosen: &Worker) {
    if chosen.queued() < pool.config().scale_up_queue || !pool.has_room() {
        return;
    }
    if entry.scaling.swap(true, Ordering::SeqCst) {
        return;
    }
    let (pool, entry) = (pool.clone(), entry.clone());
    let kind = chosen.kind;
    tokio::spawn(async move {
        let name = entry.name().to_string();
        let result = async {
            let worker = pool
                .launch(kind, LaunchReason::ScaleUp(name.clone()))
                .await?;
            place(&pool, &entry, worker).await
        }
        .await;
        if let Err(e) = result {
            pool.emit(PoolEvent::ScaleUpFailed {
                model: name,
                error: e.to_string(),
            });
        }
        entry.scaling.store(false, Ordering::SeqCst);
    });
}

/// The backend `model` runs on at `worker` (wasm when the worker no longer says).
pub(super) fn backend_at(worker: &Worker, model: &str) -> Backend {
    worker.backend_of(model).unwrap_or(Backend::Wasm)
}
