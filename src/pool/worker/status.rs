//! What the pool knows about a worker at a moment: its [`Lifecycle`], the models loaded there
//! and what it measured. The actor writes what the page said and did; the pool writes the
//! lifecycle and the fault. Plain data behind the worker's one status lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::metrics::BrowserEnv;
use crate::models::PreparedModel;

use super::{BeatMode, LoadReply};

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

impl Lifecycle {
    /// The lowercase name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Busy => "busy",
            Self::Unhealthy => "unhealthy",
            Self::Recovering => "recovering",
            Self::Closed => "closed",
        }
    }
}

/// A model loaded on a worker.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The model (a reset loads it again from here).
    pub model: Arc<PreparedModel>,
    /// Its own backend order, when not the pool's (a reset loads it with the same).
    pub backends: Option<Vec<Backend>>,
    /// The page's load answer (backend, fallback reasons, timings).
    pub reply: LoadReply,
    /// Growth of the browser's PSS across the load, KiB (0 when not measurable).
    pub memory_added_kib: u64,
}

/// What the pool knows about a worker right now.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// Jobs queued or running.
    pub queued: usize,
    /// Models with a live session, by name: the one record of what is loaded where.
    pub loaded: BTreeMap<String, Loaded>,
    /// Time spent running jobs.
    pub busy: Duration,
    /// When the worker was created.
    pub created: Instant,
    /// When it last finished a job (or was created).
    pub last_active: Instant,
    /// What the page offered at start.
    pub env: Option<BrowserEnv>,
    /// Backends this worker can run, given the pool's fallback-adapter policy.
    pub backends: Vec<Backend>,
    /// Browser main pid.
    pub pid: Option<u32>,
    /// Peak PSS of the browser's process tree seen so far, KiB.
    pub pss_peak_kib: u64,
    /// Sum of PSS samples, KiB, for the mean.
    pub pss_sum_kib: u64,
    /// Number of PSS samples.
    pub pss_samples: u64,
    /// Why it went unhealthy, when it did.
    pub fault: Option<String>,
    /// The page's own counters (`stats`: load_count, runs), read just before close.
    pub page_stats: Option<serde_json::Value>,
    /// When the page last answered a call.
    pub last_answer: Instant,
    /// When the browser process was last seen alive.
    pub last_seen_alive: Instant,
    /// Runs the harness received an answer for from the current page (since it was opened or
    /// last reset), to compare with the page's own count.
    pub runs_answered: u64,
    /// Runs sent to this worker's pages by purpose, and what earlier pages counted.
    pub runs: super::runs::RunBooks,
    /// The page's own heartbeat, once it was started.
    pub beat: Option<BeatMode>,
    /// A load or a reset is in flight: the page's main thread takes in hundreds of MB and its
    /// beats may lag on a busy machine, so silence is not judged then (the load's own bound is).
    pub loading: bool,
    /// The watcher that marked the worker unhealthy (a silent heartbeat, a process gone): what
    /// its recovery episode records as the detection, even when a request whose call was cut
    /// short by that marking reaches the episode first.
    pub noticed_by: Option<super::super::attribution::Detection>,
    /// When that watcher marked it.
    pub noticed_at: Option<std::time::Instant>,
}
