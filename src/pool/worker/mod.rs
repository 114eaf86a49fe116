//! A worker: one browser with the worker page, owned by one task (`actor.rs`), and the handle
//! ([`Worker`]) the rest of the pool uses to talk to it.
//!
//! Callers send the task `(Job, oneshot reply)` over a bounded channel (fantoccini's session
//! task): this serialises page calls, gives backpressure, and leaves one place that closes the
//! browser. The handle's [`WorkerStatus`] is a snapshot the router, the reaper and the reports
//! read; its `std::sync::Mutex` is never held across an `.await`. `beat.rs` judges the page's
//! heartbeat, and `page_api.rs` types the page's replies. Must not import `report`, `cli` or
//! terminal crates.

mod actor;
mod beat;
pub mod page_api;
pub mod runs;
mod status;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::backend::Backend;
use crate::browser::{process, Browser, BrowserKind, WorkerError};
use crate::models::PreparedModel;
use crate::recovery::{Breaker, BreakerState};
use crate::server::AssetServer;

pub use page_api::{
    Capabilities, FedOutputs, Feed, LoadReply, OutputMode, OutputStats, OutputTensor, Page,
    RunReply,
};

use super::config::{PageSettings, WorkerTimeouts};
use super::lock;
use actor::Job;
use beat::silence_counts;
pub use beat::{BeatMode, BEAT_INTERVAL, HANG_AFTER};
pub use runs::{Probe, RunFor};
pub use status::{Lifecycle, Loaded, WorkerStatus};

/// Jobs waiting per worker before senders wait (backpressure).
const QUEUE_CAPACITY: usize = 64;

/// What a worker task shares with every other: the asset server and how pages load models.
#[derive(Debug)]
pub struct WorkerContext {
    /// Serves the page and the model files.
    pub server: Arc<AssetServer>,
    /// Backend priority and the software-adapter policy.
    pub page: PageSettings,
    /// Bounds on page calls.
    pub timeouts: WorkerTimeouts,
}

/// The pool's handle on one worker. Cheap to share (`Arc<Worker>`).
#[derive(Debug)]
pub struct Worker {
    /// Worker id, e.g. `chromium#2`.
    pub id: String,
    /// Browser kind.
    pub kind: BrowserKind,
    tx: mpsc::Sender<Job>,
    status: Mutex<WorkerStatus>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What every worker shares: the asset server (where the page's heartbeats arrive), page
    /// settings and timeouts, resolved once by the pool.
    ctx: Arc<WorkerContext>,
    browser: Arc<dyn Browser>,
    /// Bumped by every recovery that repaired this worker in place; a request that failed on
    /// an older generation knows it was already handled.
    generation: AtomicU64,
    /// Held for the length of one recovery episode on this worker.
    pub(crate) episode: tokio::sync::Mutex<()>,
    breaker: Mutex<Breaker>,
    /// Bumped when the worker is marked unhealthy: calls in flight stop waiting for it.
    failed: tokio::sync::watch::Sender<u64>,
}

impl Worker {
    /// Takes ownership of a started page and spawns the task that serves it. `caps` is what the
    /// page offered at start (the router reads the backends from it).
    pub fn spawn(page: Page, caps: &Capabilities, ctx: Arc<WorkerContext>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let now = Instant::now();
        let worker = Arc::new(Self {
            browser: page.shared_browser(),
            generation: AtomicU64::new(0),
            episode: tokio::sync::Mutex::new(()),
            breaker: Mutex::new(Breaker::new(3, Duration::from_secs(5))),
            id: page.id.clone(),
            kind: page.kind(),
            tx,
            status: Mutex::new(WorkerStatus {
                lifecycle: Lifecycle::Ready,
                queued: 0,
                loaded: BTreeMap::new(),
                busy: Duration::ZERO,
                created: now,
                last_active: now,
                env: Some(page.env(caps)),
                backends: caps.offered_backends(ctx.page.allow_fallback_adapter),
                pid: page.browser().pid(),
                pss_peak_kib: 0,
                pss_sum_kib: 0,
                pss_samples: 0,
                fault: None,
                page_stats: None,
                last_answer: now,
                last_seen_alive: now,
                runs_answered: 0,
                runs: runs::RunBooks::default(),
                beat: None,
                loading: false,
                noticed_by: None,
                noticed_at: None,
            }),
            task: Mutex::new(None),
            ctx: ctx.clone(),
            failed: tokio::sync::watch::Sender::new(0),
        });
        let handle = tokio::spawn(actor::run(Arc::downgrade(&worker), page, rx, ctx));
        *lock(&worker.task) = Some(handle);
        worker
    }

    /// A snapshot of the status.
    pub fn status(&self) -> WorkerStatus {
        lock(&self.status).clone()
    }

    /// Updates the status (the actor's and the pool's one way in).
    pub(crate) fn with_status<T>(&self, f: impl FnOnce(&mut WorkerStatus) -> T) -> T {
        f(&mut lock(&self.status))
    }

    /// Whether `model` has a live session here, and on which backend.
    pub fn backend_of(&self, model: &str) -> Option<Backend> {
        lock(&self.status)
            .loaded
            .get(model)
            .map(|l| l.reply.backend)
    }

    /// Threads of onnxruntime-web's wasm backend in this page, as it reported when `model`
    /// loaded; `None` when `model` is not loaded here.
    pub fn wasm_threads_of(&self, model: &str) -> Option<u32> {
        lock(&self.status)
            .loaded
            .get(model)
            .and_then(|l| l.reply.wasm_threads)
    }

    /// The models with a live session here, by name (in name order).
    pub fn loaded_models(&self) -> Vec<String> {
        lock(&self.status).loaded.keys().cloned().collect()
    }

    /// Whether a model runs on `backend` here.
    pub fn runs_on(&self, backend: Backend) -> bool {
        lock(&self.status)
            .loaded
            .values()
            .any(|l| l.reply.backend == backend)
    }

    /// Whether the router may send work here: it is up and its breaker lets work through.
    pub fn is_routable(&self) -> bool {
        matches!(
            lock(&self.status).lifecycle,
            Lifecycle::Ready | Lifecycle::Busy
        ) && lock(&self.breaker).state(Instant::now()) != BreakerState::Open
    }

    /// The browser, shared with the worker task: its pids and the fault hooks (`crash_tab`,
    /// `disconnect`) that must not wait behind queued page calls.
    pub fn browser(&self) -> Arc<dyn Browser> {
        self.browser.clone()
    }

    /// How many times a recovery repaired this worker in place.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Marks a repair in place: the worker serves again.
    pub(crate) fn repaired(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut s = lock(&self.status);
        if s.lifecycle != Lifecycle::Closed {
            s.lifecycle = Lifecycle::Ready;
            s.fault = None;
            s.noticed_by = None;
            s.noticed_at = None;
        }
    }

    /// Sets the lifecycle (unless closed).
    pub(crate) fn set_lifecycle(&self, l: Lifecycle) {
        let mut s = lock(&self.status);
        if s.lifecycle != Lifecycle::Closed {
            s.lifecycle = l;
        }
    }

    /// Reports a request's outcome to the breaker. Returns whether it is open afterwards.
    pub(crate) fn breaker_outcome(&self, ok: bool) -> bool {
        let mut b = lock(&self.breaker);
        if ok {
            b.on_success();
            false
        } else {
            b.on_failure(Instant::now())
        }
    }

    /// Whether the breaker is open now.
    pub(crate) fn breaker_open(&self) -> bool {
        lock(&self.breaker).state(Instant::now()) == BreakerState::Open
    }

    /// Whether the browser's main process is alive (true when its pid is unknown).
    pub fn browser_alive(&self) -> bool {
        self.browser.pid().is_none_or(process::pid_alive)
    }

    /// Whether the browser's driver process (geckodriver, chromedriver) is alive (true when
    /// there is none here).
    pub fn driver_alive(&self) -> bool {
        self.browser.driver_pid().is_none_or(process::pid_alive)
    }

    /// Jobs queued or running.
    pub fn queued(&self) -> usize {
        lock(&self.status).queued
    }

    /// Marks the worker unhealthy so the router stops using it. Calls in flight on it stop
    /// waiting (their requests run again elsewhere); returns whether it was healthy before.
    pub fn mark_unhealthy(&self, why: String) -> bool {
        self.mark_failed(why, None)
    }

    /// As [`Worker::mark_unhealthy`], by a watcher that saw it as `by`.
    pub(crate) fn mark_noticed(&self, why: String, by: super::attribution::Detection) -> bool {
        self.mark_failed(why, Some(by))
    }

    fn mark_failed(&self, why: String, by: Option<super::attribution::Detection>) -> bool {
        let mut s = lock(&self.status);
        // A recovery in progress owns the state (its probes may fail on the way).
        if !matches!(
            s.lifecycle,
            Lifecycle::Closed | Lifecycle::Recovering | Lifecycle::Unhealthy
        ) {
            s.lifecycle = Lifecycle::Unhealthy;
            s.fault.get_or_insert(why);
            s.noticed_by = by;
            s.noticed_at = by.map(|_| Instant::now());
            drop(s);
            self.failed.send_modify(|n| *n += 1);
            return true;
        }
        false
    }

    /// Calls in flight stop waiting for their answers (the worker was retired).
    pub(crate) fn abandon_calls(&self) {
        self.failed.send_modify(|n| *n += 1);
    }

    /// How long the page's heartbeat has been silent, when that silence means something: the
    /// page beats, and either runs inference off its main thread or has no call in flight.
    /// A page that has not answered a run yet is not judged while a call is in flight either:
    /// its first run pays shader compilation and first-call costs beside the other pages'
    /// loads, and on a busy machine its beats lag past the limit (a false alarm there cost a
    /// model its first placement). That call's own bound still holds.
    pub fn beat_silence(&self) -> Option<Duration> {
        let counts = {
            let s = lock(&self.status);
            silence_counts(s.beat, s.loading, s.queued, s.runs_answered)
        };
        if !counts {
            return None;
        }
        self.ctx.server.last_beat(&self.id).map(|t| t.elapsed())
    }

    /// Records one PSS sample of the browser's process tree.
    pub fn sample_memory(&self) {
        let pid = lock(&self.status).pid;
        if let Some(kib) = pid.and_then(process::tree_pss_kib) {
            let mut s = lock(&self.status);
            s.pss_peak_kib = s.pss_peak_kib.max(kib);
            s.pss_sum_kib += kib;
            s.pss_samples += 1;
        }
    }

    /// Loads `model` with the first backend that works, of `backends` (the pool's order when
    /// `None`).
    ///
    /// # Errors
    /// The page's or driver's error; [`WorkerError::Unusable`] when the worker is closed.
    pub async fn load(
        &self,
        model: Arc<PreparedModel>,
        backends: Option<Vec<Backend>>,
    ) -> Result<Loaded, WorkerError> {
        self.ask("load", |reply| Job::Load {
            model,
            backends,
            reply,
        })
        .await
    }

    /// Runs `model` once, for `purpose` (the page counts it under that name).
    ///
    /// # Errors
    /// As [`Worker::load`].
    pub async fn run(
        &self,
        model: &str,
        mode: OutputMode,
        purpose: RunFor,
    ) -> Result<RunReply, WorkerError> {
        self.ask("run", |reply| Job::Run {
            model: model.to_string(),
            mode,
            purpose,
            reply,
        })
        .await
    }

    /// Runs `model` once for `purpose` on `feeds` (its per-run inputs), the outputs `outputs`
    /// names relayed or kept in the page, every other returned in full.
    ///
    /// # Errors
    /// As [`Worker::load`].
    pub async fn run_fed(
        &self,
        model: &str,
        feeds: BTreeMap<String, Feed>,
        outputs: FedOutputs,
        purpose: RunFor,
    ) -> Result<RunReply, WorkerError> {
        self.ask("run", |reply| Job::RunFed {
            model: model.to_string(),
            feeds,
            outputs,
            purpose,
            reply,
        })
        .await
    }

    /// Releases `model`'s session.
    ///
    /// # Errors
    /// As [`Worker::load`].
    pub async fn unload(&self, model: &str) -> Result<(), WorkerError> {
        self.ask("unload", |reply| Job::Unload {
            model: model.to_string(),
            reply,
        })
        .await
    }

    /// Reopens the page (new tab, or the page navigated again) and loads every model it held.
    ///
    /// # Errors
    /// The reset's or a reload's error.
    pub async fn reset(&self, timeout: Duration) -> Result<(), WorkerError> {
        self.ask("reset", |reply| Job::Reset { timeout, reply })
            .await
    }

    /// Any page API call (`echo` for health checks, `stats`, fault hooks).
    ///
    /// # Errors
    /// As [`Worker::load`].
    pub async fn call(
        &self,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, WorkerError> {
        self.ask(method, |reply| Job::Call {
            method: method.to_string(),
            args,
            within: None,
            reply,
        })
        .await
    }

    /// A page API call bounded by `within` in the page as well (heartbeats: a hung page must
    /// not hold the worker for the whole call timeout).
    ///
    /// # Errors
    /// As [`Worker::load`].
    pub async fn call_within(
        &self,
        method: &str,
        args: serde_json::Value,
        within: Duration,
    ) -> Result<serde_json::Value, WorkerError> {
        self.ask(method, |reply| Job::Call {
            method: method.to_string(),
            args,
            within: Some(within),
            reply,
        })
        .await
    }

    async fn ask<T>(
        &self,
        method: &str,
        job: impl FnOnce(oneshot::Sender<Result<T, WorkerError>>) -> Job,
    ) -> Result<T, WorkerError> {
        let (reply, answer) = oneshot::channel();
        let gone = || WorkerError::Unusable {
            method: method.to_string(),
            reason: format!("{} is closed", self.id),
        };
        // Counted until answered or abandoned (a caller past its deadline drops this future).
        let _queued = Queued::enter(&self.status);
        let mut failed = self.failed.subscribe();
        let sent = self.tx.send(job(reply)).await;
        let result = match sent {
            Ok(()) => tokio::select! {
                a = answer => a.unwrap_or_else(|_| Err(gone())),
                // Marked unhealthy (a silent heartbeat, the process gone): the answer may never
                // come, and recovery does not wait for it.
                _ = failed.changed() => Err(WorkerError::Unusable {
                    method: method.to_string(),
                    reason: format!(
                        "{} failed while this call was in flight: {}",
                        self.id,
                        lock(&self.status).fault.clone().unwrap_or_default()
                    ),
                }),
            },
            Err(_) => Err(gone()),
        };
        match &result {
            Ok(_) => lock(&self.status).last_answer = Instant::now(),
            Err(e) if e.is_session_lost() || e.is_timeout() => {
                self.mark_unhealthy(e.to_string());
            }
            Err(_) => {}
        }
        result
    }

    /// A real run on the worker, of `model` when it holds it, else of any model it holds;
    /// `echo` when it holds none (what a recovery asks before it trusts the worker again).
    ///
    /// # Errors
    /// As [`Worker::load`].
    pub async fn probe(&self, model: Option<&str>) -> Result<(), WorkerError> {
        let loaded = self.loaded_models();
        let model = model
            .filter(|m| loaded.iter().any(|l| l == m))
            .map(str::to_string)
            .or_else(|| loaded.first().cloned());
        match model {
            Some(m) => self
                .run(&m, OutputMode::None, RunFor::Probe(Probe::RecoveryProbe))
                .await
                .map(drop),
            None => self
                .call("echo", serde_json::json!({"probe": true}))
                .await
                .map(drop),
        }
    }

    /// Records that the browser process was just seen alive.
    pub(crate) fn seen_alive(&self) {
        lock(&self.status).last_seen_alive = Instant::now();
    }

    /// How long since the last sign of health that `seen` contradicts: the last answer (for a
    /// heartbeat that went unanswered) or the last time the process was seen alive (for one
    /// found dead). A detection time measured from the worker's own history, never made up.
    pub(crate) fn since_last_good(&self, seen: super::attribution::Detection) -> Duration {
        let s = lock(&self.status);
        match seen {
            super::attribution::Detection::ProcessExit => s.last_seen_alive.elapsed(),
            _ => s.last_answer.elapsed(),
        }
    }

    /// Closes the browser: queued jobs fail, the task ends, processes and profile are gone.
    pub async fn close(&self) {
        let handle = lock(&self.task).take();
        // Dropping our sender is not enough (the Arc may live on); the task exits on Close.
        // A page that still serves is asked for its own counters first, by the task, after
        // every job sent before: no run can reach the page after they are read.
        let (reply, done) = oneshot::channel();
        let _ = self
            .tx
            .send(Job::Close {
                read_stats: self.is_routable(),
                reply,
            })
            .await;
        let _ = tokio::time::timeout(self.ctx.timeouts.call + Duration::from_secs(10), done).await;
        if let Some(h) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        lock(&self.status).lifecycle = Lifecycle::Closed;
    }
}

/// Counts a job in `queued` for as long as it lives.
struct Queued<'a>(&'a Mutex<WorkerStatus>);

impl<'a> Queued<'a> {
    fn enter(status: &'a Mutex<WorkerStatus>) -> Self {
        lock(status).queued += 1;
        Self(status)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        lock(self.0).queued -= 1;
    }
}
