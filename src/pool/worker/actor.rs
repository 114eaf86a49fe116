//! The task that owns one worker's [`Page`]: it takes [`Job`]s one at a time from the worker's
//! bounded channel, runs them against the page, and keeps the worker's status up to date: busy
//! time, and what is loaded (`WorkerStatus::loaded`, the one record of it, which a reset loads
//! again from). The only place a page is closed ([`Job::Close`]).
//!
//! Must not import `report`, `cli` or terminal crates.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::backend::Backend;
use crate::breaks;
use crate::browser::{process, WorkerError};
use crate::models::PreparedModel;

use super::runs::{self, CountUnknown, Probe, RunFor};
use super::{Lifecycle, Loaded, OutputMode, Page, RunReply, Worker, WorkerContext, WorkerStatus};

/// How long a page about to be reset has to say what it counted.
const STATS_BOUND: Duration = Duration::from_secs(1);
/// How long a page about to be closed has to say what it counted.
const STATS_AT_CLOSE: Duration = Duration::from_secs(5);

/// The bound on one run for `purpose`: a copy's first answer just after its load (a reloaded
/// page's check, a standby's) pays first-call costs on top of a run, so it gets the load's
/// bound; a `run_timeout` of 1 s, meant for warm runs, failed a recovery's reload check on a
/// busy machine.
fn run_bound(purpose: RunFor, t: super::super::config::WorkerTimeouts) -> Duration {
    match purpose {
        RunFor::Probe(Probe::ReloadCheck | Probe::StandbyCheck) => t.run.max(t.load),
        _ => t.run,
    }
}

/// A job for the worker task.
#[derive(Debug)]
pub(super) enum Job {
    Load {
        model: Arc<PreparedModel>,
        backends: Option<Vec<Backend>>,
        reply: oneshot::Sender<Result<Loaded, WorkerError>>,
    },
    Run {
        model: String,
        mode: OutputMode,
        purpose: RunFor,
        reply: oneshot::Sender<Result<RunReply, WorkerError>>,
    },
    /// A run with per-run inputs (a shard's incoming activation, a generation's step).
    RunFed {
        model: String,
        feeds: std::collections::BTreeMap<String, super::page_api::Feed>,
        outputs: super::page_api::FedOutputs,
        purpose: RunFor,
        reply: oneshot::Sender<Result<RunReply, WorkerError>>,
    },
    Unload {
        model: String,
        reply: oneshot::Sender<Result<(), WorkerError>>,
    },
    Call {
        method: String,
        args: serde_json::Value,
        /// Bound in the page (default: the worker's call timeout).
        within: Option<Duration>,
        reply: oneshot::Sender<Result<serde_json::Value, WorkerError>>,
    },
    /// Reopen the page and load every model it held again.
    Reset {
        timeout: Duration,
        reply: oneshot::Sender<Result<(), WorkerError>>,
    },
    /// Close the browser and end the task; first read the page's own counters
    /// (`WorkerStatus::page_stats`) when `read_stats`.
    Close {
        read_stats: bool,
        reply: oneshot::Sender<Result<(), WorkerError>>,
    },
}

/// The task's state.
struct Actor {
    worker: Weak<Worker>,
    page: Page,
    ctx: Arc<WorkerContext>,
}

/// Serves `rx` until a [`Job::Close`] or until every handle is gone; the page is closed either
/// way.
pub(super) async fn run(
    worker: Weak<Worker>,
    page: Page,
    mut rx: mpsc::Receiver<Job>,
    ctx: Arc<WorkerContext>,
) {
    let actor = Actor { worker, page, ctx };
    actor.start_beat().await;
    while let Some(job) = rx.recv().await {
        let started = Instant::now();
        actor.with_status(|s| {
            if s.lifecycle == Lifecycle::Ready {
                s.lifecycle = Lifecycle::Busy;
            }
        });
        let job = match job {
            Job::Close { read_stats, reply } => {
                if read_stats && !breaks::once(breaks::Break::UnreadAtClose) {
                    // Bounded: a hung page says nothing.
                    let stats = actor
                        .page
                        .browser()
                        .call("stats", serde_json::json!({}), STATS_AT_CLOSE)
                        .await;
                    if let Ok(v) = stats {
                        actor.with_status(|s| s.page_stats = Some(v));
                    }
                }
                let r = actor.page.close().await;
                actor.with_status(|s| {
                    s.lifecycle = Lifecycle::Closed;
                    s.loaded.clear();
                });
                let _ = reply.send(r);
                return;
            }
            other => other,
        };
        actor.serve(job).await;
        let took = started.elapsed();
        actor.with_status(|s| {
            s.busy += took;
            s.last_active = Instant::now();
            if s.lifecycle == Lifecycle::Busy {
                s.lifecycle = Lifecycle::Ready;
            }
        });
    }
    // Every handle is gone: make sure the browser is closed.
    let _ = actor.page.close().await;
    actor.with_status(|s| s.lifecycle = Lifecycle::Closed);
}

impl Actor {
    async fn serve(&self, job: Job) {
        let t = self.ctx.timeouts;
        match job {
            Job::Load {
                model,
                backends,
                reply,
            } => {
                self.with_status(|s| s.loading = true);
                let r = self.load(model, backends).await;
                self.with_status(|s| s.loading = false);
                let _ = reply.send(r);
            }
            Job::Reset { timeout, reply } => {
                self.with_status(|s| s.loading = true);
                let r = self.reset(timeout).await;
                self.with_status(|s| s.loading = false);
                let _ = reply.send(r);
            }
            Job::Run {
                model,
                mode,
                purpose,
                reply,
            } => {
                self.with_status(|s| s.runs.sent(purpose));
                let r = self
                    .page
                    .run(&model, mode, purpose, run_bound(purpose, t))
                    .await
                    .inspect_err(|e| self.note_failed(purpose, e));
                if purpose == RunFor::Request && breaks::once(breaks::Break::UnaskedRun) {
                    let _ = self.page.run(&model, mode, purpose, t.run).await;
                }
                if let Ok(reply) = &r {
                    self.note_answered(purpose, reply);
                }
                let _ = reply.send(r);
            }
            Job::RunFed {
                model,
                feeds,
                outputs,
                purpose,
                reply,
            } => {
                self.with_status(|s| s.runs.sent(purpose));
                let dispatched = std::time::Instant::now();
                let r = self
                    .page
                    .run_fed(&model, &feeds, &outputs, purpose, t.run)
                    .await
                    .inspect_err(|e| self.note_failed(purpose, e))
                    .map(|mut reply| {
                        reply.dispatched = Some(dispatched);
                        reply
                    });
                if let Ok(reply) = &r {
                    self.note_answered(purpose, reply);
                }
                let _ = reply.send(r);
            }
            Job::Unload { model, reply } => {
                let r = self.page.unload(&model, t.call).await;
                self.with_status(|s| {
                    s.loaded.remove(&model);
                });
                let _ = reply.send(r);
            }
            Job::Call {
                method,
                args,
                within,
                reply,
            } => {
                let bound = within.unwrap_or(t.call);
                let _ = reply.send(self.page.browser().call(&method, args, bound).await);
            }
            // run() closes the page itself and ends the task; nothing is left to answer.
            Job::Close { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Loads `model`, measuring the browser's memory growth across the load.
    async fn load(
        &self,
        model: Arc<PreparedModel>,
        backends: Option<Vec<Backend>>,
    ) -> Result<Loaded, WorkerError> {
        let pid = self.page.browser().pid();
        let before = pid.and_then(process::tree_pss_kib).unwrap_or(0);
        let reply = self.load_page(&model, backends.as_deref()).await?;
        let after = pid.and_then(process::tree_pss_kib).unwrap_or(0);
        self.note_proxy(reply.proxy);
        let name = model.name.clone();
        let loaded = Loaded {
            model,
            backends,
            reply,
            memory_added_kib: after.saturating_sub(before),
        };
        let l = loaded.clone();
        self.with_status(|s| {
            s.loaded.insert(name, l);
        });
        Ok(loaded)
    }

    /// Reopens the page and loads every model again, in order of names. A model whose reload
    /// fails is no longer loaded here (the error says which).
    async fn reset(&self, timeout: Duration) -> Result<(), WorkerError> {
        let held: Vec<(Arc<PreparedModel>, Option<Vec<Backend>>)> = self
            .with_status(|s| std::mem::take(&mut s.loaded))
            .unwrap_or_default()
            .into_values()
            .map(|l| (l.model, l.backends))
            .collect();
        let counted = self.count_before_reset().await;
        self.with_status(|s| {
            s.beat = None;
            s.runs.page_replaced(counted);
        });
        self.page.browser().reset(timeout).await?;
        // A fresh page: its own run count starts again, and its heartbeat.
        self.with_status(|s| s.runs_answered = 0);
        self.start_beat().await;
        for (model, backends) in held {
            let name = model.name.clone();
            let reply = self.load_page(&model, backends.as_deref()).await?;
            self.note_proxy(reply.proxy);
            self.with_status(|s| {
                s.loaded.insert(
                    name,
                    Loaded {
                        model,
                        backends,
                        reply,
                        memory_added_kib: 0,
                    },
                );
            });
        }
        Ok(())
    }

    /// Books a run call the page answered, with the counts its answer carried.
    fn note_answered(&self, purpose: RunFor, reply: &RunReply) {
        self.with_status(|s| {
            s.runs_answered += 1;
            s.runs.answered(purpose, reply.runs_for.as_ref());
        });
    }

    /// Books a run call that failed: refused before it was sent, or sent and unanswered.
    fn note_failed(&self, purpose: RunFor, e: &WorkerError) {
        self.with_status(|s| match e {
            // The page answered with an error: it counted the call on arrival, but the error
            // carries no counts.
            WorkerError::Page { .. } => s.runs.answered(purpose, None),
            WorkerError::Unusable { .. } => s.runs.not_sent(purpose),
            _ => s.runs.unanswered(purpose),
        });
    }

    /// The runs the page about to be replaced counted, by purpose; why that is unknown when
    /// its heartbeat is silent (a hung page) or it does not answer within a second (a crashed
    /// tab answers at once).
    async fn count_before_reset(&self) -> runs::Counted {
        let id = self
            .worker
            .upgrade()
            .map(|w| w.id.clone())
            .unwrap_or_default();
        let silent = self.ctx.page.heartbeat.then(|| {
            self.ctx
                .server
                .last_beat(&id)
                .map(|t| t.elapsed())
                .filter(|s| *s > super::HANG_AFTER)
        });
        if let Some(Some(s)) = silent {
            return Err(CountUnknown::SilentAtReset { ms: s.as_millis() });
        }
        let stats = self
            .page
            .browser()
            .call("stats", serde_json::json!({}), STATS_BOUND)
            .await
            .map_err(|e| CountUnknown::NoAnswerAtReset(e.to_string()))?;
        runs::counted(&stats)
    }

    /// The page call of a load, with the pool's page settings (the model's own backend
    /// order, when it has one) and load bound.
    async fn load_page(
        &self,
        model: &PreparedModel,
        backends: Option<&[Backend]>,
    ) -> Result<super::LoadReply, WorkerError> {
        let page = &self.ctx.page;
        let backends = backends.unwrap_or(&page.backends);
        self.page
            .load(
                model,
                &self.ctx.server,
                page,
                backends,
                self.ctx.timeouts.load,
            )
            .await
    }

    /// Starts the page's heartbeat (in a pool that watches heartbeats): the page POSTs to the
    /// asset server every [`BEAT_INTERVAL`](super::BEAT_INTERVAL) from its main thread. A page
    /// that cannot start it is simply not watched this way (its calls still are).
    async fn start_beat(&self) {
        if !self.ctx.page.heartbeat {
            return;
        }
        let Some(id) = self.worker.upgrade().map(|w| w.id.clone()) else {
            return;
        };
        self.ctx.server.forget_beat(&id);
        let args = serde_json::json!({
            "url": self.ctx.server.beat_path(&id),
            "interval_ms": super::BEAT_INTERVAL.as_millis() as u64,
        });
        let started = self
            .page
            .browser()
            .call("beat", args, self.ctx.timeouts.call)
            .await;
        if let Ok(v) = started {
            let proxy = v.get("proxy").and_then(serde_json::Value::as_bool) == Some(true);
            self.with_status(|s| s.beat = Some(super::BeatMode { proxy }));
        }
    }

    /// Records whether the page's inference left its main thread (known after a load).
    fn note_proxy(&self, proxy: bool) {
        self.with_status(|s| {
            if let Some(b) = &mut s.beat {
                b.proxy = proxy;
            }
        });
    }

    fn with_status<T>(&self, f: impl FnOnce(&mut WorkerStatus) -> T) -> Option<T> {
        self.worker.upgrade().map(|w| w.with_status(f))
    }
}
