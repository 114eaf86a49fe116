//! A pool slot: the task that owns one [`Worker`] (a browser and its page) and the handle the
//! rest of the pool uses to talk to it.
//!
//! One task owns each browser session and callers send it `(Job, oneshot reply)` over a bounded
//! channel (fantoccini's session task): this serialises page calls, gives backpressure, and
//! leaves one place that closes the browser. The handle's [`SlotStatus`] is a snapshot the router,
//! the reaper and the reports read; its `std::sync::Mutex` is never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::browser::{process, Browser, BrowserKind, WorkerError};
use crate::metrics::BrowserEnv;
use crate::models::PreparedModel;
use crate::recovery::Breaker;
use crate::server::AssetServer;

use super::worker::{LoadReply, OutputMode, RunReply};
use super::{Backend, Worker};

/// Jobs waiting per slot before senders wait (backpressure).
const QUEUE_CAPACITY: usize = 64;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Launching the browser and opening the page.
    Starting,
    /// Up and idle.
    Ready,
    /// Running a job.
    Busy,
    /// Failed a call or a health check; not routed to.
    Unhealthy,
    /// Being repaired.
    Recovering,
    /// Closed; its browser is gone.
    Closed,
}

/// A model loaded on a slot.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The page's load answer (backend, fallback reasons, timings).
    pub reply: LoadReply,
    /// Growth of the browser's PSS across the load, KiB (0 when not measurable).
    pub memory_added_kib: u64,
}

/// What the pool knows about a slot right now.
#[derive(Debug, Clone)]
pub struct SlotStatus {
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// Jobs queued or running.
    pub queued: usize,
    /// Models with a live session, by name.
    pub loaded: BTreeMap<String, Loaded>,
    /// Time spent running jobs.
    pub busy: Duration,
    /// When the slot was created.
    pub created: Instant,
    /// When it last finished a job (or was created).
    pub last_active: Instant,
    /// What the page offered at start.
    pub env: Option<BrowserEnv>,
    /// Backends this slot can run, given the pool's fallback-adapter policy.
    pub backends: Vec<Backend>,
    /// Browser main pid.
    pub pid: Option<u32>,
    /// Peak PSS of the browser's process tree seen so far, KiB.
    pub pss_peak_kib: u64,
    /// Sum and count of PSS samples, for the mean.
    pub pss_sum_kib: u64,
    /// Number of PSS samples.
    pub pss_samples: u64,
    /// Why it went unhealthy, when it did.
    pub fault: Option<String>,
    /// The page's own counters (`stats`: load_count, runs), read just before close.
    pub page_stats: Option<serde_json::Value>,
}

/// A job for the slot task.
#[derive(Debug)]
enum Job {
    Load {
        model: Arc<PreparedModel>,
        reply: oneshot::Sender<Result<Loaded, WorkerError>>,
    },
    Run {
        model: String,
        mode: OutputMode,
        reply: oneshot::Sender<Result<RunReply, WorkerError>>,
    },
    Unload {
        model: String,
        reply: oneshot::Sender<Result<(), WorkerError>>,
    },
    Call {
        method: String,
        args: serde_json::Value,
        /// Bound in the page (default: the slot's call timeout).
        within: Option<Duration>,
        reply: oneshot::Sender<Result<serde_json::Value, WorkerError>>,
    },
    /// Reopen the page and load every model it held again.
    Reset {
        timeout: Duration,
        reply: oneshot::Sender<Result<(), WorkerError>>,
    },
}

/// The pool's handle on one slot. Cheap to share (`Arc<Slot>`).
#[derive(Debug)]
pub struct Slot {
    /// Worker id, e.g. `chromium#2`.
    pub id: String,
    /// Browser kind.
    pub kind: BrowserKind,
    tx: mpsc::Sender<Job>,
    status: Mutex<SlotStatus>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    timeouts: SlotTimeouts,
    browser: Arc<dyn Browser>,
    /// Bumped by every recovery that repaired this slot in place; a request that failed on an
    /// older generation knows it was already handled.
    generation: AtomicU64,
    /// Held for the length of one recovery episode on this slot.
    pub(crate) episode: tokio::sync::Mutex<()>,
    breaker: Mutex<Breaker>,
}

/// Bounds on page calls made by a slot.
#[derive(Debug, Clone, Copy)]
pub struct SlotTimeouts {
    /// A load (fetch plus session creation).
    pub load: Duration,
    /// One run.
    pub run: Duration,
    /// Anything else (capabilities, unload, health checks).
    pub call: Duration,
}

impl Slot {
    /// Takes ownership of a started worker and spawns the task that serves it. `offered` is
    /// what this browser can run (for the router); `priority` is the order loads try backends.
    pub fn spawn(
        worker: Worker,
        env: BrowserEnv,
        offered: Vec<Backend>,
        server: Arc<AssetServer>,
        priority: Vec<Backend>,
        allow_fallback_adapter: bool,
        timeouts: SlotTimeouts,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let now = Instant::now();
        let browser = worker.shared_browser();
        let slot = Arc::new(Self {
            browser,
            generation: AtomicU64::new(0),
            episode: tokio::sync::Mutex::new(()),
            breaker: Mutex::new(Breaker::new(3, Duration::from_secs(5))),
            id: worker.id.clone(),
            kind: worker.kind(),
            tx,
            status: Mutex::new(SlotStatus {
                lifecycle: Lifecycle::Ready,
                queued: 0,
                loaded: BTreeMap::new(),
                busy: Duration::ZERO,
                created: now,
                last_active: now,
                env: Some(env),
                backends: offered,
                pid: worker.browser().pid(),
                pss_peak_kib: 0,
                pss_sum_kib: 0,
                pss_samples: 0,
                fault: None,
                page_stats: None,
            }),
            task: Mutex::new(None),
            timeouts,
        });
        let serve = Serve {
            slot: Arc::downgrade(&slot),
            server,
            backends: priority,
            allow_fallback_adapter,
            models: HashMap::new(),
        };
        let handle = tokio::spawn(serve.run(worker, rx, timeouts));
        *lock(&slot.task) = Some(handle);
        slot
    }

    /// A snapshot of the status.
    pub fn status(&self) -> SlotStatus {
        lock(&self.status).clone()
    }

    /// Whether the router may send work here: it is up and its breaker lets work through.
    pub fn is_routable(&self) -> bool {
        matches!(
            lock(&self.status).lifecycle,
            Lifecycle::Ready | Lifecycle::Busy
        ) && lock(&self.breaker).state(Instant::now()) != crate::recovery::BreakerState::Open
    }

    /// The browser, shared with the slot task: its pids and the fault hooks (`crash_tab`,
    /// `disconnect`) that must not wait behind queued page calls.
    pub fn browser(&self) -> Arc<dyn Browser> {
        self.browser.clone()
    }

    /// How many times a recovery repaired this slot in place.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Marks a repair in place: the slot serves again.
    pub(crate) fn repaired(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut s = lock(&self.status);
        if s.lifecycle != Lifecycle::Closed {
            s.lifecycle = Lifecycle::Ready;
            s.fault = None;
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
        lock(&self.breaker).state(Instant::now()) == crate::recovery::BreakerState::Open
    }

    /// Whether the browser's main process is alive (true when its pid is unknown).
    pub fn browser_alive(&self) -> bool {
        self.browser.pid().is_none_or(process::pid_alive)
    }

    /// Jobs queued or running.
    pub fn queued(&self) -> usize {
        lock(&self.status).queued
    }

    /// Marks the slot unhealthy so the router stops using it.
    pub fn mark_unhealthy(&self, why: String) {
        let mut s = lock(&self.status);
        // A recovery in progress owns the state (its probes may fail on the way).
        if !matches!(s.lifecycle, Lifecycle::Closed | Lifecycle::Recovering) {
            s.lifecycle = Lifecycle::Unhealthy;
            s.fault.get_or_insert(why);
        }
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

    /// Loads `model` (first backend that works).
    ///
    /// # Errors
    /// The page's or driver's error; [`WorkerError::Unusable`] when the slot is closed.
    pub async fn load(&self, model: Arc<PreparedModel>) -> Result<Loaded, WorkerError> {
        self.ask("load", |reply| Job::Load { model, reply }).await
    }

    /// Runs `model` once.
    ///
    /// # Errors
    /// As [`Slot::load`].
    pub async fn run(&self, model: &str, mode: OutputMode) -> Result<RunReply, WorkerError> {
        self.ask("run", |reply| Job::Run {
            model: model.to_string(),
            mode,
            reply,
        })
        .await
    }

    /// Releases `model`'s session.
    ///
    /// # Errors
    /// As [`Slot::load`].
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
    /// As [`Slot::load`].
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
    /// not hold the slot for the whole call timeout).
    ///
    /// # Errors
    /// As [`Slot::load`].
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
        let sent = self.tx.send(job(reply)).await;
        let result = match sent {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(gone())),
            Err(_) => Err(gone()),
        };
        if let Err(e) = &result {
            if e.is_session_lost() || e.is_timeout() {
                self.mark_unhealthy(e.to_string());
            }
        }
        result
    }

    /// Closes the browser: queued jobs fail, the task ends, processes and profile are gone.
    pub async fn close(&self) {
        if self.is_routable() {
            // The page's own counters outlive it in the report (bounded: a hung page says nothing).
            let stats = tokio::time::timeout(
                Duration::from_secs(5),
                self.call("stats", serde_json::json!({})),
            )
            .await;
            if let Ok(Ok(v)) = stats {
                lock(&self.status).page_stats = Some(v);
            }
        }
        let handle = lock(&self.task).take();
        // Dropping our sender is not enough (the Arc may live on); the task exits on Close.
        let (reply, done) = oneshot::channel();
        let _ = self
            .tx
            .send(Job::Call {
                method: CLOSE.to_string(),
                args: serde_json::Value::Null,
                within: None,
                reply,
            })
            .await;
        let _ = tokio::time::timeout(self.timeouts.call + Duration::from_secs(10), done).await;
        if let Some(h) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        lock(&self.status).lifecycle = Lifecycle::Closed;
    }
}

/// Counts a job in `queued` for as long as it lives.
struct Queued<'a>(&'a Mutex<SlotStatus>);

impl<'a> Queued<'a> {
    fn enter(status: &'a Mutex<SlotStatus>) -> Self {
        lock(status).queued += 1;
        Self(status)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        lock(self.0).queued -= 1;
    }
}

/// The pseudo-method that tells the slot task to close its browser and stop.
const CLOSE: &str = "\u{0}close";

/// The slot task's state.
struct Serve {
    slot: std::sync::Weak<Slot>,
    server: Arc<AssetServer>,
    backends: Vec<Backend>,
    allow_fallback_adapter: bool,
    /// Models loaded here, to load again after a reset.
    models: HashMap<String, Arc<PreparedModel>>,
}

impl Serve {
    async fn run(mut self, worker: Worker, mut rx: mpsc::Receiver<Job>, t: SlotTimeouts) {
        while let Some(job) = rx.recv().await {
            let started = Instant::now();
            self.with_status(|s| {
                if s.lifecycle == Lifecycle::Ready {
                    s.lifecycle = Lifecycle::Busy;
                }
            });
            let closing = matches!(&job, Job::Call { method, .. } if method == CLOSE);
            match job {
                Job::Load { model, reply } => {
                    let pid = worker.browser().pid();
                    let before = pid.and_then(process::tree_pss_kib).unwrap_or(0);
                    let r = worker
                        .load(
                            &model,
                            &self.server,
                            &self.backends,
                            self.allow_fallback_adapter,
                            t.load,
                        )
                        .await
                        .map(|reply| {
                            let after = pid.and_then(process::tree_pss_kib).unwrap_or(0);
                            Loaded {
                                reply,
                                memory_added_kib: after.saturating_sub(before),
                            }
                        });
                    if let Ok(l) = &r {
                        let name = model.name.clone();
                        let l = l.clone();
                        self.models.insert(name.clone(), model.clone());
                        self.with_status(|s| {
                            s.loaded.insert(name, l);
                        });
                    }
                    let _ = reply.send(r);
                }
                Job::Reset { timeout, reply } => {
                    let _ = reply.send(self.reset(&worker, timeout, t).await);
                }
                Job::Run { model, mode, reply } => {
                    let _ = reply.send(worker.run(&model, mode, t.run).await);
                }
                Job::Unload { model, reply } => {
                    let r = worker.unload(&model, t.call).await;
                    self.models.remove(&model);
                    self.with_status(|s| {
                        s.loaded.remove(&model);
                    });
                    let _ = reply.send(r);
                }
                Job::Call { reply, .. } if closing => {
                    let r = worker.close().await.map(|()| serde_json::Value::Null);
                    self.with_status(|s| {
                        s.lifecycle = Lifecycle::Closed;
                        s.loaded.clear();
                    });
                    let _ = reply.send(r);
                    break;
                }
                Job::Call {
                    method,
                    args,
                    within,
                    reply,
                } => {
                    let bound = within.unwrap_or(t.call);
                    let _ = reply.send(worker.browser().call(&method, args, bound).await);
                }
            }
            let took = started.elapsed();
            self.with_status(|s| {
                s.busy += took;
                s.last_active = Instant::now();
                if s.lifecycle == Lifecycle::Busy {
                    s.lifecycle = Lifecycle::Ready;
                }
            });
        }
        // Every handle is gone or Close was handled: make sure the browser is closed.
        let _ = worker.close().await;
        self.with_status(|s| s.lifecycle = Lifecycle::Closed);
    }

    /// Reopens the page and loads every model again, in load order of names.
    async fn reset(
        &self,
        worker: &Worker,
        timeout: Duration,
        t: SlotTimeouts,
    ) -> Result<(), WorkerError> {
        self.with_status(|s| s.loaded.clear());
        worker.browser().reset(timeout).await?;
        let mut names: Vec<_> = self.models.keys().cloned().collect();
        names.sort();
        for name in names {
            let model = self.models[&name].clone();
            let reply = worker
                .load(
                    &model,
                    &self.server,
                    &self.backends,
                    self.allow_fallback_adapter,
                    t.load,
                )
                .await?;
            self.with_status(|s| {
                s.loaded.insert(
                    name,
                    Loaded {
                        reply,
                        memory_added_kib: 0,
                    },
                );
            });
        }
        Ok(())
    }

    fn with_status(&self, f: impl FnOnce(&mut SlotStatus)) {
        if let Some(slot) = self.slot.upgrade() {
            f(&mut lock(&slot.status));
        }
    }
}

/// Locks a std mutex, recovering from poisoning (a panicked holder left plain data behind).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
