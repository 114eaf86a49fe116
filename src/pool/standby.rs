//! Hot standbys: copies of each model loaded on workers that do not serve it. This file keeps
//! them (`ensure_standbys`, within the copies and memory budget of `PoolConfig::standbys`),
//! checks a standby on a new browser kind against the placement's output before its answers
//! count as verified, waits for them before a workload starts, promotes them when a serving
//! worker fails (`promote`, `promote_off`, called by a recovery episode before any ladder
//! level), and takes a repaired worker's copies back as standbys (`rejoin_as_standby`).
//! Must not import `report`, `cli` or terminal crates.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::state::Op;

use super::placement::ModelEntry;
use super::worker::{cell_output, OutputMode, Worker};
use super::{lock, Pool};

impl Pool {
    /// Waits (up to `bound`) until every placed model has its standby copies, or the memory
    /// budget refused the rest; says how many are loaded per model.
    pub async fn standbys_ready(&self, bound: std::time::Duration) -> String {
        let want = self.inner.config.standbys.copies;
        let until = Instant::now() + bound;
        loop {
            self.ensure_standbys();
            let entries: Vec<Arc<ModelEntry>> =
                lock(&self.inner.models).values().cloned().collect();
            let done = entries.iter().all(|e| {
                lock(&e.standby).iter().filter(|s| s.is_routable()).count() >= want
                    || e.over_budget.load(Ordering::SeqCst)
                    || lock(&e.placements).is_empty()
            });
            if done || Instant::now() >= until || self.inner.cancel.is_cancelled() {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|e| format!("{} {}", e.name(), lock(&e.standby).len()))
                    .collect();
                return parts.join(", ");
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Promotes a ready standby of `entry` to serve it: the one whose worker serves the fewest
    /// models (so promotions spread the load). Returns what was done, or `None` without one.
    pub(super) fn promote(&self, entry: &Arc<ModelEntry>) -> Option<String> {
        let spare = {
            let mut standby = lock(&entry.standby);
            standby.retain(|s| s.is_routable());
            let serving = |w: &Arc<Worker>| {
                lock(&self.inner.models)
                    .values()
                    .filter(|e| e.served_by(w))
                    .count()
            };
            let best = (0..standby.len()).min_by_key(|&i| serving(&standby[i]))?;
            standby.remove(best)
        };
        lock(&entry.placements).push(spare.clone());
        self.journal(Op::Placed {
            model: entry.name().to_string(),
            worker: spare.id.clone(),
        });
        self.event(
            "promoted",
            &spare.id,
            format!("hot standby of {} now serves", entry.name()),
        );
        Some(format!("{} (hot standby promoted)", spare.id))
    }

    /// Moves off `worker` every model it serves that can be served elsewhere at once (another
    /// live placement, or a ready standby promoted). No load, no launch. Returns the moves and
    /// whether every model it served moved (then the worker serves nothing).
    pub(super) fn promote_off(&self, worker: &Arc<Worker>) -> (Vec<(String, String)>, bool) {
        let mut moved = Vec::new();
        let mut all = true;
        for entry in self.models_on(worker) {
            if !entry.covered_without(worker) {
                all = false;
                continue;
            }
            lock(&entry.placements).retain(|p| !Arc::ptr_eq(p, worker));
            self.journal(Op::Unplaced {
                model: entry.name().to_string(),
                worker: worker.id.clone(),
            });
            let live = lock(&entry.placements)
                .iter()
                .find(|s| s.is_routable())
                .map(|s| format!("{} (already placed)", s.id));
            let done = live.or_else(|| self.promote(&entry));
            // A standby went away between the check and now: the request path places it.
            let done = done.unwrap_or_else(|| "to be placed again".into());
            moved.push((entry.name().to_string(), done));
        }
        (moved, all)
    }

    /// Takes back a repaired worker's loaded models that it does not serve as hot standbys:
    /// the copies it held before its failure, or the models a recovery moved off it. Returns
    /// their names.
    pub(super) fn rejoin_as_standby(&self, worker: &Arc<Worker>) -> Vec<String> {
        let loaded = worker.status().loaded;
        let mut held = Vec::new();
        for entry in lock(&self.inner.models).values() {
            if !loaded.contains_key(entry.name()) || entry.served_by(worker) {
                continue;
            }
            let mut standby = lock(&entry.standby);
            if !standby.iter().any(|p| Arc::ptr_eq(p, worker)) {
                standby.push(worker.clone());
                held.push(entry.name().to_string());
            }
        }
        held
    }

    /// Loads standby copies of every placed model, up to the configured number of copies per
    /// model and within the standby memory budget (each copy counted at the model's measured
    /// load cost), each on a live worker that neither serves nor already holds the model. In
    /// the background, one load per model at a time.
    pub(super) fn ensure_standbys(&self) {
        let want = self.inner.config.standbys;
        let entries: Vec<Arc<ModelEntry>> = lock(&self.inner.models).values().cloned().collect();
        let mut committed: u64 = 0;
        for entry in &entries {
            let mut standby = lock(&entry.standby);
            standby.retain(|s| s.is_routable());
            committed += standby.len() as u64 * entry.memory_kib.load(Ordering::SeqCst);
        }
        for entry in entries {
            if lock(&entry.standby).len() >= want.copies || lock(&entry.placements).is_empty() {
                continue;
            }
            if entry.readying.load(Ordering::SeqCst) {
                continue;
            }
            let cost = entry.memory_kib.load(Ordering::SeqCst);
            if committed + cost > want.memory_kib {
                if !entry.over_budget.swap(true, Ordering::SeqCst) {
                    self.event(
                        "standby_over_budget",
                        "",
                        format!(
                            "{}: another standby copy ({} MiB) would pass the standby memory \
                             budget ({} of {} MiB taken)",
                            entry.name(),
                            cost / 1024,
                            committed / 1024,
                            want.memory_kib / 1024
                        ),
                    );
                }
                continue;
            }
            let holds = |s: &Arc<Worker>| {
                entry.served_by(s) || lock(&entry.standby).iter().any(|p| Arc::ptr_eq(p, s))
            };
            let Some(spare) = self
                .workers()
                .into_iter()
                .filter(|s| s.is_routable() && !holds(s))
                .filter(|s| entry.hardware().browser.is_none_or(|b| b == s.kind))
                .min_by_key(|s| (s.status().loaded.len(), s.queued()))
            else {
                continue;
            };
            if entry.readying.swap(true, Ordering::SeqCst) {
                continue;
            }
            committed += cost;
            let pool = self.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let loaded = spare
                    .load(entry.prepared.clone(), entry.hardware().backends)
                    .await;
                let checked = match loaded {
                    Ok(l) => pool.check_standby(&entry, &spare, &l).await.map(|()| l),
                    Err(e) => Err(e.to_string()),
                };
                match checked {
                    Ok(loaded) => {
                        entry.note_memory(loaded.memory_added_kib);
                        pool.event(
                            "standby",
                            &spare.id,
                            format!(
                                "{} loaded as a hot standby in {} ms (+{} MiB)",
                                entry.name(),
                                started.elapsed().as_millis(),
                                loaded.memory_added_kib / 1024
                            ),
                        );
                        lock(&entry.standby).push(spare);
                    }
                    Err(e) => pool.event("standby_failed", &spare.id, e),
                }
                entry.readying.store(false, Ordering::SeqCst);
            });
        }
    }

    /// A standby on a browser kind and backend the model has no verified answer for runs once,
    /// every value returned, and must match the first placement's output (within the
    /// correctness tolerance); its digests are then the reference for that kind and backend.
    /// A standby of a verified kind and backend needs no run: its answers are compared with
    /// the reference once it serves.
    async fn check_standby(
        &self,
        entry: &Arc<ModelEntry>,
        spare: &Arc<Worker>,
        loaded: &super::worker::Loaded,
    ) -> Result<(), String> {
        let key = (spare.kind, loaded.reply.backend);
        if lock(&entry.verified).contains_key(&key) {
            return Ok(());
        }
        let reply = spare
            .run(entry.name(), OutputMode::Full)
            .await
            .map_err(|e| format!("its check run failed: {e}"))?;
        let cell = cell_output(spare.kind, &entry.prepared, key.1, &reply)
            .filter(|c| !c.full.is_empty())
            .ok_or("its check run returned no output values")?;
        let reference = lock(&entry.reference).clone();
        if let Some(want) = reference {
            let (diff, ok) = crate::oracle::allclose(&cell.full, &want);
            if !ok {
                let _ = spare.unload(entry.name()).await;
                return Err(format!(
                    "{} on {}/{}: its answer differs from the placement's by {diff:.2e}; not kept",
                    entry.name(),
                    key.0,
                    key.1
                ));
            }
        }
        lock(&entry.verified).entry(key).or_insert(reply.digests);
        Ok(())
    }
}
