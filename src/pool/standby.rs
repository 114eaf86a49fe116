//! Hot standbys: copies of each model loaded on workers that do not serve it. [`StandbyState`]
//! owns what keeping them needs (each model's measured memory cost, the loads in flight, the
//! models the budget refused); the copies themselves are in the placement registry. This file
//! keeps them ([`ensure`], within the copies and memory budget of `PoolConfig::standbys`),
//! checks a standby on a new browser kind against the placement's output before its answers
//! count as verified, waits for them before a workload starts ([`ready`]), promotes them when a
//! serving worker fails ([`promote`], [`promote_off`], called by a recovery episode before any
//! ladder level), and takes a repaired worker's copies back as standbys ([`rejoin`]).
//! Must not import `report`, `cli` or terminal crates.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::browser::WorkerError;

use super::events::PoolEvent;
use super::placements::ModelEntry;
use super::worker::{Loaded, OutputMode, Probe, RunFor, Worker};
use super::{lock, Pool};

/// Why a standby copy was not kept.
#[derive(Debug, thiserror::Error)]
enum StandbyError {
    /// Its load failed.
    #[error(transparent)]
    Load(WorkerError),
    /// The check run failed.
    #[error("its check run failed: {0}")]
    CheckRun(WorkerError),
    /// Its first answer was not right; the copy was unloaded.
    #[error("{model} on {kind}/{backend}: {detail}; not kept")]
    Rejected {
        model: String,
        kind: crate::browser::BrowserKind,
        backend: crate::backend::Backend,
        detail: String,
    },
}

/// What keeping standbys needs to remember, per model key.
#[derive(Debug, Default)]
pub(super) struct StandbyState {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The model's measured memory cost on a worker (PSS growth across its load), KiB.
    memory_kib: HashMap<String, u64>,
    /// A standby load is in flight.
    readying: HashSet<String>,
    /// The standby memory budget kept a copy of this model from loading (said once).
    over_budget: HashSet<String>,
}

impl StandbyState {
    /// Records a measured load cost of `entry` (the largest seen).
    pub fn note_memory(&self, entry: &ModelEntry, kib: u64) {
        let mut s = lock(&self.state);
        let m = s.memory_kib.entry(entry.key().to_string()).or_insert(0);
        *m = (*m).max(kib);
    }

    fn memory(&self, entry: &ModelEntry) -> u64 {
        lock(&self.state)
            .memory_kib
            .get(entry.key())
            .copied()
            .unwrap_or(0)
    }

    fn is_over_budget(&self, entry: &ModelEntry) -> bool {
        lock(&self.state).over_budget.contains(entry.key())
    }

    /// Marks `entry` over budget; returns whether it was not before.
    fn over_budget(&self, entry: &ModelEntry) -> bool {
        lock(&self.state)
            .over_budget
            .insert(entry.key().to_string())
    }

    /// Starts a standby load of `entry` unless one is in flight; returns whether it started.
    fn start_readying(&self, entry: &ModelEntry) -> bool {
        lock(&self.state).readying.insert(entry.key().to_string())
    }

    fn is_readying(&self, entry: &ModelEntry) -> bool {
        lock(&self.state).readying.contains(entry.key())
    }

    fn done_readying(&self, entry: &ModelEntry) {
        lock(&self.state).readying.remove(entry.key());
    }
}

/// Waits (up to `bound`) until every placed model has its standby copies, or the memory budget
/// refused the rest; returns how many copies each model has.
pub(super) async fn ready(pool: &Pool, bound: Duration) -> Vec<(String, usize)> {
    let want = pool.config().standbys.copies;
    let until = Instant::now() + bound;
    let registry = pool.placements();
    loop {
        ensure(pool);
        let entries = registry.entries();
        let short: Vec<&Arc<ModelEntry>> = entries
            .iter()
            .filter(|e| {
                registry.standbys(e).len() < want
                    && !pool.standby_state().is_over_budget(e)
                    && !registry.is_unplaced(e)
            })
            .collect();
        // A copy can still come only from a load in flight, a spare worker, or a launch in
        // progress; with none of them, waiting out the bound would only delay the workload.
        let stuck = pool.members().launching() == 0
            && short
                .iter()
                .all(|e| !pool.standby_state().is_readying(e) && spare_for(pool, e).is_none());
        if stuck {
            for e in &short {
                pool.emit(PoolEvent::StandbyNoSpare {
                    model: e.name().to_string(),
                    copies: registry.standbys(e).len(),
                    wanted: want,
                    pin: e.hardware().browser,
                });
            }
        }
        if short.is_empty() || stuck || Instant::now() >= until || pool.cancel().is_cancelled() {
            return entries
                .iter()
                .map(|e| (e.name().to_string(), registry.standbys(e).len()))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Promotes a ready standby of `entry` to serve it: the one whose worker serves the fewest
/// models (so promotions spread the load). Returns what was done, or `None` without one.
pub(super) fn promote(pool: &Pool, entry: &Arc<ModelEntry>) -> Option<String> {
    let spare = pool.placements().promote(entry)?;
    pool.emit(PoolEvent::Promoted {
        model: entry.name().to_string(),
        worker: spare.id.clone(),
    });
    Some(format!("{} (hot standby promoted)", spare.id))
}

/// Moves off `worker` every model it serves that can be served elsewhere at once (another live
/// placement, or a ready standby promoted). No load, no launch. Returns the moves and whether
/// every model it served moved (then the worker serves nothing).
pub(super) fn promote_off(pool: &Pool, worker: &Arc<Worker>) -> (Vec<(String, String)>, bool) {
    let registry = pool.placements();
    let mut moved = Vec::new();
    let mut all = true;
    for entry in registry.models_on(worker) {
        if !registry.covered_without(&entry, worker) {
            all = false;
            continue;
        }
        registry.unplace(&entry, worker);
        pool.emit(PoolEvent::Unplaced {
            model: entry.name().to_string(),
            worker: worker.id.clone(),
        });
        let live = registry
            .live_placement(&entry)
            .map(|s| format!("{} (already placed)", s.id));
        let done = live.or_else(|| promote(pool, &entry));
        // A standby went away between the check and now: the request path places it.
        let done = done.unwrap_or_else(|| "to be placed again".into());
        moved.push((entry.name().to_string(), done));
    }
    (moved, all)
}

/// Takes back a repaired worker's loaded models that it does not serve as hot standbys: the
/// copies it held before its failure, or the models a recovery moved off it. Returns their
/// names.
pub(super) fn rejoin(pool: &Pool, worker: &Arc<Worker>) -> Vec<String> {
    let loaded = worker.loaded_models();
    let registry = pool.placements();
    let mut held = Vec::new();
    for entry in registry.entries() {
        if !loaded.iter().any(|m| m == entry.name()) || registry.serves(&entry, worker) {
            continue;
        }
        if registry.add_standby(&entry, worker) {
            held.push(entry.name().to_string());
        }
    }
    held
}

/// Loads standby copies of every placed model, up to the configured number of copies per model
/// and within the standby memory budget (each copy counted at the model's measured load cost),
/// each on a live worker that neither serves nor already holds the model. In the background,
/// one load per model at a time.
pub(super) fn ensure(pool: &Pool) {
    let want = pool.config().standbys;
    let registry = pool.placements();
    let state = pool.standby_state();
    let entries = registry.entries();
    let mut committed: u64 = entries
        .iter()
        .map(|e| registry.standbys(e).len() as u64 * state.memory(e))
        .sum();
    for entry in entries {
        if registry.standbys(&entry).len() >= want.copies || registry.is_unplaced(&entry) {
            continue;
        }
        if state.is_readying(&entry) {
            continue;
        }
        let cost = state.memory(&entry);
        if committed + cost > want.memory_kib {
            if state.over_budget(&entry) {
                pool.emit(PoolEvent::StandbyOverBudget {
                    model: entry.name().to_string(),
                    cost_mib: cost / 1024,
                    taken_mib: committed / 1024,
                    budget_mib: want.memory_kib / 1024,
                });
            }
            continue;
        }
        let Some(spare) = spare_for(pool, &entry) else {
            continue;
        };
        if !state.start_readying(&entry) {
            continue;
        }
        committed += cost;
        let pool = pool.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let loaded = spare
                .load(entry.prepared.clone(), entry.hardware().backends)
                .await;
            let checked = match loaded {
                Ok(l) => check(&pool, &entry, &spare, &l).await.map(|()| l),
                Err(e) => Err(StandbyError::Load(e)),
            };
            match checked {
                Ok(loaded) => {
                    pool.standby_state()
                        .note_memory(&entry, loaded.memory_added_kib);
                    pool.emit(PoolEvent::StandbyLoaded {
                        model: entry.name().to_string(),
                        worker: spare.id.clone(),
                        ms: started.elapsed().as_millis() as u64,
                        added_mib: loaded.memory_added_kib / 1024,
                    });
                    pool.placements().add_standby(&entry, &spare);
                }
                Err(why) => pool.emit(PoolEvent::StandbyFailed {
                    worker: spare.id.clone(),
                    why: why.to_string(),
                }),
            }
            pool.standby_state().done_readying(&entry);
        });
    }
}

/// The live worker a new standby copy of `entry` would go to: routable, not holding the model,
/// of the model's pinned browser kind if it has one, the least loaded.
fn spare_for(pool: &Pool, entry: &ModelEntry) -> Option<Arc<Worker>> {
    let pin = entry.hardware().browser;
    let registry = pool.placements();
    pool.members()
        .live()
        .into_iter()
        .filter(|s| s.is_routable() && !registry.holds(entry, s))
        .filter(|s| pin.is_none_or(|b| b == s.kind))
        .min_by_key(|s| (s.loaded_models().len(), s.queued()))
}

/// Every standby copy runs once, every value returned, before it may ever be promoted: judged
/// against native onnxruntime (a model without an oracle, a pipeline's shard, against the first
/// placement's output), and its digests must equal the verified answer of its browser kind and
/// backend where there is one, else they become it. A copy that fails is unloaded, counted as a
/// rejected placement, and not kept.
async fn check(
    pool: &Pool,
    entry: &Arc<ModelEntry>,
    spare: &Arc<Worker>,
    loaded: &Loaded,
) -> Result<(), StandbyError> {
    let registry = pool.placements();
    let (kind, backend) = (spare.kind, loaded.reply.backend);
    let reply = spare
        .run(
            entry.name(),
            OutputMode::Full,
            RunFor::Probe(Probe::StandbyCheck),
        )
        .await
        .map_err(StandbyError::CheckRun)?;
    let (_, rejected) = super::first_answer::judge_answer(registry, entry, kind, backend, &reply);
    if let Some(detail) = rejected {
        registry.note_judged(entry, kind, backend, false);
        let _ = spare.unload(entry.name()).await;
        pool.emit(PoolEvent::PlacementRejected {
            model: entry.name().to_string(),
            worker: spare.id.clone(),
            browser: kind,
            backend,
            detail: format!("standby copy: {detail}"),
        });
        return Err(StandbyError::Rejected {
            model: entry.name().to_string(),
            kind,
            backend,
            detail,
        });
    }
    registry.note_judged(entry, kind, backend, true);
    registry.set_verified(entry, kind, backend, &reply.digests);
    Ok(())
}
