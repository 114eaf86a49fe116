//! Recovery episodes: a worker failed; climb the ladder (`crate::recovery`) until service is
//! back, against the real browser. Each level ends in a typed [`Restored`] or [`LevelFailed`].
//!
//! One episode per failure: the worker's `episode` lock serialises them, and its generation
//! (bumped by a repair in place) or its absence from the live list (after a migration) tells a
//! request that failed on the same fault that the episode already ran, so it only re-runs
//! itself. Must not import `report`, `cli` or terminal crates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::browser::WorkerError;
use crate::faults::Kind;
use crate::recovery::{self, Failure, Level};
use crate::state::{self, Op};

use super::attribution::Detection;
use super::placement::ReplaceError;
use super::worker::{Lifecycle, OutputMode, Worker};
use super::{lock, Pool, PoolError};

/// What the detector knows about a failure.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// How it was noticed.
    pub seen: Detection,
    /// The model whose request failed, if a request found it.
    pub model: Option<String>,
    /// How long the failing call was in flight; for a failure found by upkeep, how long since
    /// the worker's last sign of health (its last answer, or its process last seen alive).
    pub in_flight: Duration,
}

impl Cause {
    /// Whether the worker's session can still take calls.
    fn session_usable(&self) -> bool {
        match self.seen {
            Detection::Request(class) => class.session_usable(),
            Detection::Heartbeat | Detection::ProcessExit => false,
        }
    }
}

/// One recovery episode: a worker failed, the ladder ran.
#[derive(Debug, Clone)]
pub struct RecoveryRecord {
    /// When the failure was detected, ms since the pool started.
    pub at_ms: u64,
    /// The worker that failed.
    pub worker: String,
    /// The injected fault it is attributed to; `None` for a failure nobody injected.
    pub fault: Option<Kind>,
    /// How it was noticed.
    pub detected_by: Detection,
    /// Fault to detection, ms. For a failure nobody injected: the failing call's time in
    /// flight, or the time since the worker's last answer (heartbeat) or since its process was
    /// last seen alive (pid check). Always measured.
    pub detection_ms: u64,
    /// Highest ladder level tried.
    pub level: Option<Level>,
    /// Detection to serving again (or to giving up), ms.
    pub recovery_ms: u64,
    /// Whether service was restored.
    pub succeeded: bool,
    /// What each level did.
    pub steps: Vec<String>,
}

impl RecoveryRecord {
    /// The fault's name, `external` when nobody injected it.
    pub fn fault_name(&self) -> &'static str {
        self.fault.map_or("external", Kind::as_str)
    }
}

/// What restored service at a level.
#[derive(Debug)]
enum Restored {
    /// The same worker answered again.
    Answered,
    /// The page was reopened and its models loaded again.
    Reopened { ms: u128 },
    /// The worker's models now run elsewhere (`model -> where`).
    Moved(Vec<(String, String)>),
    /// The worker held no models; nothing needed moving.
    NothingToMove,
    /// A replacement worker was launched.
    Launched(String),
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answered => f.write_str("the same worker answered again"),
            Self::Reopened { ms } => write!(f, "page reopened and models reloaded in {ms} ms"),
            Self::Moved(moves) => {
                let parts: Vec<String> =
                    moves.iter().map(|(m, to)| format!("{m} -> {to}")).collect();
                f.write_str(&parts.join(", "))
            }
            Self::NothingToMove => f.write_str("no models to move"),
            Self::Launched(id) => write!(f, "launched {id}"),
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
}

impl Pool {
    /// Runs one recovery episode for `worker`, unless the failure seen on `generation` was
    /// already handled. Returns when the episode is recorded (or was not needed); a repair
    /// aside goes on after that, in the same task.
    ///
    /// The episode is a task of the pool's, not part of the caller's future: a request that
    /// passes its deadline while it waits here is dropped, and the episode still runs to its
    /// end, is recorded, and leaves the worker repaired or retired (never stuck recovering).
    pub(crate) async fn recover(&self, worker: &Arc<Worker>, generation: u64, cause: Cause) {
        let (pool, worker) = (self.clone(), worker.clone());
        let (done, ended) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            pool.episode(&worker, generation, cause, done).await;
        });
        {
            let mut episodes = lock(&self.inner.episodes);
            episodes.retain(|h| !h.is_finished());
            episodes.push(task);
        }
        let _ = ended.await;
    }

    /// The episode itself: promote standbys, climb the ladder for what they do not cover, then
    /// record what happened and tell `done` (the requests waiting on it). A worker set aside
    /// is then repaired, still under the episode lock.
    async fn episode(
        &self,
        worker: &Arc<Worker>,
        generation: u64,
        cause: Cause,
        done: tokio::sync::oneshot::Sender<()>,
    ) {
        let _episode = worker.episode.lock().await;
        let live = self.workers().iter().any(|s| Arc::ptr_eq(s, worker));
        if !live || worker.generation() != generation || self.inner.cancel.is_cancelled() {
            return;
        }
        let detected = Instant::now();
        // A watcher that marked the worker failed saw it first, whoever reached the episode.
        let cause = match worker.status().noticed_by {
            Some(seen) => Cause { seen, ..cause },
            None => cause,
        };
        worker.set_lifecycle(Lifecycle::Recovering);
        let pending = lock(&self.inner.attribution).take(&worker.id, cause.seen);
        let (fault, detection_ms) = match pending {
            Some((kind, at)) => (
                Some(kind),
                detected.saturating_duration_since(at).as_millis() as u64,
            ),
            None => (None, cause.in_flight.as_millis() as u64),
        };
        let fault_name = fault.map_or("external", Kind::as_str);
        let config = self.inner.config.recovery;
        let breaker_open = worker.breaker_outcome(false) || worker.breaker_open();
        let failure = Failure {
            session_usable: cause.session_usable(),
            browser_gone: !worker.browser_alive(),
        };
        let levels = recovery::ladder(config.strategy, failure, breaker_open);
        let names: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
        self.event(
            "recovering",
            &worker.id,
            format!(
                "{} noticed ({fault_name}); trying {}",
                cause.seen,
                names.join(" -> ")
            ),
        );
        let deadline = detected + config.timeout;
        let mut reached = None;
        let mut succeeded = false;
        let mut steps = Vec::new();
        // Hot standbys first: every model here that can be served elsewhere at once moves
        // (no probe, no load). When that is all of them, that is the recovery: the worker is
        // repaired aside in the background, or replaced by upkeep when its browser is gone.
        let mut aside = false;
        if self.inner.config.standbys.copies > 0 {
            let (moves, all) = self.promote_off(worker);
            let moved = if moves.is_empty() {
                Restored::NothingToMove
            } else {
                Restored::Moved(moves)
            };
            if all {
                reached = Some(Level::Migrate);
                succeeded = true;
                aside = self.set_aside(worker);
                let then = if aside {
                    "the worker is repaired aside"
                } else {
                    self.retire(worker, "its models went to hot standbys");
                    "the worker is retired"
                };
                steps.push(format!("promote: {moved}; {then}"));
            } else if !matches!(moved, Restored::NothingToMove) {
                steps.push(format!("promote: {moved}; the ladder for the rest"));
            }
        }
        for level in levels.into_iter().filter(|_| !succeeded) {
            reached = Some(level);
            let left = deadline.saturating_duration_since(Instant::now());
            let tried =
                tokio::time::timeout(left, self.try_level(level, worker, &cause, left)).await;
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
            _ if aside => {}
            Some(Level::Retry | Level::Reset) if succeeded => {
                worker.breaker_outcome(true);
                worker.repaired();
                self.rejoin_as_standby(worker);
            }
            // Migrated or rebuilt: the worker was retired on the way. Failed: retire it now so
            // nothing is routed to it and its browser is closed.
            _ => self.retire(worker, "recovery gave up on it"),
        }
        let at_ms = lock(&self.inner.ledger).ms(detected);
        let recovery_ms = detected.elapsed().as_millis() as u64;
        let level = reached.map_or("none", Level::as_str);
        self.event(
            if succeeded {
                "recovered"
            } else {
                "recovery_failed"
            },
            &worker.id,
            format!(
                "{fault_name} ({}) -> {level} in {recovery_ms} ms: {}",
                cause.seen,
                steps.join("; ")
            ),
        );
        self.journal(Op::RecoveryRecorded {
            event: state::RecoveryRecord {
                fault_kind: fault_name.to_string(),
                level: level.to_string(),
                detection_ms,
                recovery_ms,
                succeeded,
                worker: Some(worker.id.clone()),
            },
        });
        lock(&self.inner.ledger).recovery(RecoveryRecord {
            at_ms,
            worker: worker.id.clone(),
            fault,
            detected_by: cause.seen,
            detection_ms,
            level: reached,
            recovery_ms,
            succeeded,
            steps,
        });
        let _ = done.send(());
        if aside {
            self.repair_aside(worker, &cause).await;
        }
    }

    /// One ladder level.
    async fn try_level(
        &self,
        level: Level,
        worker: &Arc<Worker>,
        cause: &Cause,
        left: Duration,
    ) -> Result<Restored, LevelFailed> {
        match level {
            Level::Retry => {
                self.probe(worker, cause).await?;
                Ok(Restored::Answered)
            }
            Level::Reset => {
                if !worker.browser_alive() {
                    return Err(LevelFailed::BrowserGone);
                }
                // Half the time left: a reset that hangs must leave room for migrate/rebuild.
                let started = Instant::now();
                worker.reset(left / 2).await?;
                self.probe(worker, cause).await?;
                Ok(Restored::Reopened {
                    ms: started.elapsed().as_millis(),
                })
            }
            Level::Migrate => {
                let models = self.models_on(worker);
                self.retire(worker, "migrating its models");
                let mut moved = Vec::new();
                for entry in &models {
                    let to = self.replace(entry, false).await?;
                    moved.push((entry.name().to_string(), to));
                }
                if moved.is_empty() {
                    return Ok(Restored::NothingToMove);
                }
                Ok(Restored::Moved(moved))
            }
            Level::Rebuild => {
                self.retire(worker, "rebuilding elsewhere");
                let mut moved = Vec::new();
                for entry in self.orphans() {
                    let to = self.replace(&entry, true).await?;
                    moved.push((entry.name().to_string(), to));
                }
                if moved.is_empty() {
                    // Nothing was placed on it: launch a replacement to keep capacity.
                    let new = self.launch(worker.kind, "rebuild after a failure").await?;
                    return Ok(Restored::Launched(new.id.clone()));
                }
                Ok(Restored::Moved(moved))
            }
        }
    }

    /// A real run on the worker (of the failing model, or any it holds); `echo` when it holds
    /// none.
    pub(super) async fn probe(&self, worker: &Worker, cause: &Cause) -> Result<(), WorkerError> {
        let loaded = worker.status().loaded;
        let model = cause
            .model
            .clone()
            .filter(|m| loaded.contains_key(m))
            .or_else(|| loaded.keys().next().cloned());
        match model {
            Some(m) => worker.run(&m, OutputMode::None).await.map(drop),
            None => worker
                .call("echo", serde_json::json!({"probe": true}))
                .await
                .map(drop),
        }
    }
}
