//! Recovery episodes: a worker failed; climb the ladder (`crate::recovery`) until service is
//! back, against the real browser.
//!
//! One episode per failure: the slot's `episode` lock serialises them, and its generation (bumped
//! by a repair in place) or its absence from the live list (after a migration) tells a request
//! that failed on the same fault that the episode already ran, so it only re-runs itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::recovery::{self, Failure, Level};

use super::super::router::Target;
use super::super::slot::{Lifecycle, Slot};
use super::super::worker::OutputMode;
use super::{lock, ModelEntry, Pool, PoolError, RecoveryRecord};

/// What the detector knows about a failure.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// Error class of the failing call (`crash`, `timeout`, ...) or the upkeep's detector
    /// (`heartbeat`, `process_exit`).
    pub class: &'static str,
    /// Whether the worker's session can still take calls.
    pub session_usable: bool,
    /// The model whose request failed, if a request found it.
    pub model: Option<String>,
    /// How long the failing call was in flight.
    pub in_flight: Duration,
}

impl Pool {
    /// Runs one recovery episode for `slot`, unless the failure seen on `generation` was
    /// already handled. Returns when the episode is over (or was not needed).
    pub(crate) async fn recover(&self, slot: &Arc<Slot>, generation: u64, cause: Cause) {
        let _episode = slot.episode.lock().await;
        let live = self.workers().iter().any(|s| Arc::ptr_eq(s, slot));
        if !live || slot.generation() != generation || self.inner.cancel.is_cancelled() {
            return;
        }
        let detected = Instant::now();
        slot.set_lifecycle(Lifecycle::Recovering);
        let (fault_kind, detection_ms) = match self.take_pending(&slot.id, cause.class) {
            Some((kind, at)) => (
                kind,
                detected.saturating_duration_since(at).as_millis() as u64,
            ),
            None => ("external".to_string(), cause.in_flight.as_millis() as u64),
        };
        let config = self.inner.config.recovery;
        let breaker_open = slot.breaker_outcome(false) || slot.breaker_open();
        let failure = Failure {
            session_usable: cause.session_usable,
            browser_gone: !slot.browser_alive(),
        };
        let levels = recovery::ladder(config.strategy, failure, breaker_open);
        let names: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
        self.event(
            "recovering",
            &slot.id,
            format!(
                "{} noticed ({fault_kind}); trying {}",
                cause.class,
                names.join(" -> ")
            ),
        );
        let deadline = detected + config.timeout;
        let mut reached = None;
        let mut succeeded = false;
        let mut steps = Vec::new();
        for level in levels {
            reached = Some(level);
            let left = deadline.saturating_duration_since(Instant::now());
            let tried = tokio::time::timeout(left, self.try_level(level, slot, &cause, left)).await;
            match tried {
                Ok(Ok(done)) => {
                    steps.push(format!("{level}: {done}"));
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
            Some(Level::Retry | Level::Reset) if succeeded => {
                slot.breaker_outcome(true);
                slot.repaired();
            }
            // Migrated or rebuilt: the slot was retired on the way. Failed: retire it now so
            // nothing is routed to it and its browser is closed.
            _ => self.retire(slot, "recovery gave up on it"),
        }
        let at_ms = detected
            .saturating_duration_since(self.inner.t0)
            .as_millis() as u64;
        let recovery_ms = detected.elapsed().as_millis() as u64;
        let level = reached.map_or("none", Level::as_str);
        self.event(
            if succeeded {
                "recovered"
            } else {
                "recovery_failed"
            },
            &slot.id,
            format!(
                "{fault_kind} ({}) -> {level} in {recovery_ms} ms: {}",
                cause.class,
                steps.join("; ")
            ),
        );
        self.journal(crate::state::Op::RecoveryRecorded {
            event: crate::state::RecoveryRecord {
                fault_kind: fault_kind.clone(),
                level: level.to_string(),
                detection_ms,
                recovery_ms,
                succeeded,
                worker: Some(slot.id.clone()),
            },
        });
        lock(&self.inner.log).recoveries.push(RecoveryRecord {
            at_ms,
            worker: slot.id.clone(),
            fault_kind,
            detected_by: cause.class.to_string(),
            detection_ms,
            level: reached,
            recovery_ms,
            succeeded,
            steps,
        });
    }

    /// One ladder level. `Ok` says what restored service; `Err` why this level did not.
    async fn try_level(
        &self,
        level: Level,
        slot: &Arc<Slot>,
        cause: &Cause,
        left: Duration,
    ) -> Result<String, String> {
        match level {
            Level::Retry => {
                self.probe(slot, cause).await?;
                Ok("the same worker answered again".into())
            }
            Level::Reset => {
                if !slot.browser_alive() {
                    return Err("the browser process is gone".into());
                }
                // Half the time left: a reset that hangs must leave room for migrate/rebuild.
                let started = Instant::now();
                slot.reset(left / 2).await.map_err(|e| e.to_string())?;
                self.probe(slot, cause).await?;
                Ok(format!(
                    "page reopened and models reloaded in {} ms",
                    started.elapsed().as_millis()
                ))
            }
            Level::Migrate => {
                let models = self.models_on(slot);
                self.retire(slot, "migrating its models");
                let mut moved = Vec::new();
                for entry in &models {
                    let to = self.replace(entry, false).await?;
                    moved.push(format!("{} -> {to}", entry.prepared.name));
                }
                if moved.is_empty() {
                    return Ok("no models to move".into());
                }
                Ok(moved.join(", "))
            }
            Level::Rebuild => {
                self.retire(slot, "rebuilding elsewhere");
                let mut moved = Vec::new();
                for entry in self.orphans() {
                    let to = self.replace(&entry, true).await?;
                    moved.push(format!("{} -> {to}", entry.prepared.name));
                }
                if moved.is_empty() {
                    // Nothing was placed on it: launch a replacement to keep capacity.
                    let slot = self
                        .launch(slot.kind, "rebuild after a failure")
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(format!("launched {}", slot.id));
                }
                Ok(moved.join(", "))
            }
        }
    }

    /// A real run on the slot (of the failing model, or any it holds); `echo` when it holds none.
    async fn probe(&self, slot: &Slot, cause: &Cause) -> Result<(), String> {
        let loaded = slot.status().loaded;
        let model = cause
            .model
            .clone()
            .filter(|m| loaded.contains_key(m))
            .or_else(|| loaded.keys().next().cloned());
        match model {
            Some(m) => slot
                .run(&m, OutputMode::None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => slot
                .call("echo", serde_json::json!({"probe": true}))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// Model entries with a placement on `slot`.
    fn models_on(&self, slot: &Arc<Slot>) -> Vec<Arc<ModelEntry>> {
        lock(&self.inner.models)
            .values()
            .filter(|e| lock(&e.placements).iter().any(|p| Arc::ptr_eq(p, slot)))
            .cloned()
            .collect()
    }

    /// Model entries left with no routable placement.
    fn orphans(&self) -> Vec<Arc<ModelEntry>> {
        lock(&self.inner.models)
            .values()
            .filter(|e| !lock(&e.placements).iter().any(|p| p.is_routable()))
            .cloned()
            .collect()
    }

    /// Takes `slot` out of service: out of the live list and every placement, its browser
    /// closed in the background (shutdown waits for it).
    pub(crate) fn retire(&self, slot: &Arc<Slot>, why: &str) {
        let removed = {
            let mut live = lock(&self.inner.slots);
            let before = live.len();
            live.retain(|s| !Arc::ptr_eq(s, slot));
            before != live.len()
        };
        let mut held = Vec::new();
        for e in lock(&self.inner.models).values() {
            let mut placements = lock(&e.placements);
            if placements.iter().any(|p| Arc::ptr_eq(p, slot)) {
                // The model's name, as the state knows it (the map's key adds the browser pin).
                held.push(e.prepared.name.clone());
            }
            placements.retain(|p| !Arc::ptr_eq(p, slot));
            lock(&e.standby).retain(|p| !Arc::ptr_eq(p, slot));
        }
        if !removed {
            return;
        }
        slot.mark_unhealthy(why.to_string());
        self.event("retired", &slot.id, why.to_string());
        // The worker stays a member, `closing` and serving nothing, until its browser is gone:
        // a harness killed while the close runs leaves a record for `resume` to reap by.
        if let Some(j) = &self.inner.config.journal {
            if let Some(tx) = j.begin() {
                j.op(
                    tx,
                    crate::state::Op::WorkerStatus {
                        id: slot.id.clone(),
                        status: "closing".into(),
                    },
                );
                for model in held {
                    j.op(
                        tx,
                        crate::state::Op::Unplaced {
                            model,
                            worker: slot.id.clone(),
                        },
                    );
                }
                j.commit_tx(tx);
            }
        }
        let s = slot.clone();
        let pool = self.clone();
        let handle = tokio::spawn(async move {
            s.close().await;
            pool.journal(crate::state::Op::WorkerRemoved { id: s.id.clone() });
        });
        lock(&self.inner.closing).push(handle);
        lock(&self.inner.retired).push(slot.clone());
    }

    /// Places `entry` on another live worker (`launch` false: migrate) or on a new one if needed
    /// (`launch` true: rebuild). Returns the worker id.
    async fn replace(&self, entry: &Arc<ModelEntry>, launch: bool) -> Result<String, String> {
        let _placing = entry.placing.lock().await;
        if let Some(s) = lock(&entry.placements)
            .iter()
            .find(|s| s.is_routable())
            .cloned()
        {
            return Ok(format!("{} (already placed)", s.id));
        }
        // A warm spare holds the model already: promote it, no load needed.
        let spare = {
            let mut standby = lock(&entry.standby);
            standby.retain(|s| s.is_routable());
            (!standby.is_empty()).then(|| standby.remove(0))
        };
        if let Some(s) = spare {
            lock(&entry.placements).push(s.clone());
            self.journal(crate::state::Op::Placed {
                model: entry.prepared.name.clone(),
                worker: s.id.clone(),
            });
            self.event(
                "promoted",
                &s.id,
                format!("warm spare of {} now serves", entry.prepared.name),
            );
            return Ok(format!("{} (warm spare promoted)", s.id));
        }
        let decision = self
            .route(entry, launch && self.has_room())
            .map_err(|e| e.to_string())?;
        let slot = match decision.target {
            Target::Worker(id) => self
                .workers()
                .into_iter()
                .find(|s| s.id == id)
                .ok_or_else(|| format!("{id} went away"))?,
            Target::Launch(kind) if launch => self
                .launch(kind, &format!("rebuild for {}", entry.prepared.name))
                .await
                .map_err(|e| e.to_string())?,
            Target::Launch(kind) => {
                return Err(format!(
                    "no other live worker for {} (the router wants a new {kind})",
                    entry.prepared.name
                ))
            }
        };
        let id = slot.id.clone();
        self.place(entry, slot)
            .await
            .map_err(|e: PoolError| e.to_string())?;
        Ok(id)
    }

    /// The injected fault on `worker` that best explains a failure seen as `class`: the latest
    /// whose kind produces that class, else the latest on that worker.
    fn take_pending(&self, worker: &str, class: &str) -> Option<(String, Instant)> {
        let explains = |kind: &str| match class {
            "crash" | "process_exit" => matches!(kind, "kill_browser" | "kill_driver"),
            "tab_crash" => kind == "crash_tab",
            "disconnect" => kind == "disconnect",
            "device_lost" => kind == "gpu_device_lost",
            "timeout" | "session_lost" => matches!(kind, "hang" | "slow" | "disconnect"),
            _ => true,
        };
        let mut p = lock(&self.inner.pending);
        let i = p
            .iter()
            .rposition(|f| f.worker == worker && explains(&f.kind))
            .or_else(|| p.iter().rposition(|f| f.worker == worker))?;
        let f = p.remove(i);
        Some((f.kind, f.at))
    }
}

impl Pool {
    /// Moves `model` to a worker of kind `to`, as one transaction of the run's journal: load on
    /// the target, switch the placement, unload from the source. A failure part way rolls back
    /// for real: the half-loaded model is unloaded from the target (or the target, if it cannot
    /// answer, is marked unhealthy so its page is reset without it), the source keeps serving,
    /// and the log records the abort with the reason. Returns what was done.
    ///
    /// # Errors
    /// Why the migration did not happen (after its rollback).
    pub async fn migrate(
        &self,
        model: &str,
        to: crate::browser::BrowserKind,
    ) -> Result<String, String> {
        let entry = lock(&self.inner.models)
            .values()
            .find(|e| e.prepared.name == model)
            .cloned()
            .ok_or_else(|| format!("{model} is not placed in this pool"))?;
        let _placing = entry.placing.lock().await;
        let source = lock(&entry.placements)
            .iter()
            .find(|s| s.is_routable())
            .cloned()
            .ok_or_else(|| format!("{model} has no live placement to move"))?;
        if source.kind == to {
            return Err(format!("{model} already runs on {to} ({})", source.id));
        }
        let target = self
            .workers()
            .into_iter()
            .find(|s| s.kind == to && s.is_routable())
            .ok_or_else(|| format!("no live {to} worker to move {model} to"))?;
        let journal = self.inner.config.journal.clone();
        let tx = journal.as_ref().and_then(|j| j.begin());
        let op = |o: crate::state::Op| {
            if let (Some(j), Some(t)) = (&journal, tx) {
                j.op(t, o);
            }
        };
        op(crate::state::Op::Placed {
            model: model.to_string(),
            worker: target.id.clone(),
        });
        self.event(
            "migrating",
            &target.id,
            format!("{model}: {} -> {}", source.id, target.id),
        );
        if let Err(e) = target.load(entry.prepared.clone()).await {
            // Roll back: nothing of the model may stay on the target.
            let undo = match target.unload(model).await {
                Ok(()) => format!("unloaded {model} from {}", target.id),
                Err(u) => {
                    target.mark_unhealthy(format!("rollback of a migration: {u}"));
                    format!(
                        "{} could not unload ({u}); marked unhealthy so its page is reset without {model}",
                        target.id
                    )
                }
            };
            let why = format!(
                "load on {} failed: {e}; rolled back: {undo}; {model} keeps serving from {}",
                target.id, source.id
            );
            if let (Some(j), Some(t)) = (&journal, tx) {
                j.abort(t, &why);
            }
            self.event("migration_rolled_back", &target.id, why.clone());
            return Err(why);
        }
        lock(&entry.placements).push(target.clone());
        lock(&entry.placements).retain(|s| !Arc::ptr_eq(s, &source));
        op(crate::state::Op::Unplaced {
            model: model.to_string(),
            worker: source.id.clone(),
        });
        let unloaded = source.unload(model).await;
        if let (Some(j), Some(t)) = (&journal, tx) {
            j.commit_tx(t);
        }
        let done = format!(
            "{model}: {} -> {}{}",
            source.id,
            target.id,
            match unloaded {
                Ok(()) => String::new(),
                Err(e) => format!(" (unload from the source failed: {e})"),
            }
        );
        self.event("migrated", &target.id, done.clone());
        Ok(done)
    }
}
