//! [`Sample`]: one request as it happened. Raw samples are kept (not only percentiles) so that
//! reports can draw distributions and `compare` can test significance over them.
//!
//! The CSV columns of `samples.csv` are [`Sample::CSV_COLUMNS`], in that order: this is the one
//! place they are listed.

use serde::{Deserialize, Serialize};

/// Which part of a run a request belonged to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The first run of a session (pays shader compilation and first-call costs).
    First,
    /// An unmeasured warm-up run.
    Warmup,
    /// A measured run.
    #[default]
    Measure,
}

/// Why a failed request failed, judged from the pool's record of which copies of its model were
/// live (serving or a hot standby, verified against native onnxruntime, on a routable worker)
/// while it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureCause {
    /// Its model had no live copy anywhere in the pool for the request's whole wait.
    Capacity,
    /// A live copy existed at some moment of its wait, and the request still failed: the pool's
    /// recovery did not bring it to a copy in time. The pool must have none of these.
    Recovery,
    /// A copy ran it and answered wrong or threw (`wrong_answer`, `page`): the answer failed,
    /// not the pool.
    Answer,
    /// The scheduler's queue was full (`rejected`): more load was offered than it takes.
    Overload,
    /// The run was stopped before it could run (`interrupted`).
    Stopped,
}

impl FailureCause {
    /// Every cause, in report order.
    pub const ALL: [FailureCause; 5] = [
        Self::Capacity,
        Self::Recovery,
        Self::Answer,
        Self::Overload,
        Self::Stopped,
    ];

    /// The lowercase name samples and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::Recovery => "recovery",
            Self::Answer => "answer",
            Self::Overload => "overload",
            Self::Stopped => "stopped",
        }
    }
}

/// One inference request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Order of issue within the run, from 0.
    pub seq: u64,
    /// Catalog model name.
    pub model: String,
    /// Browser kind.
    pub browser: String,
    /// Worker id, e.g. `chromium#1`.
    pub worker: String,
    /// Backend the session used (empty if the request never reached a session).
    pub backend: String,
    /// Which part of the run.
    pub phase: Phase,
    /// When the request was scheduled to start, ms since the run started.
    pub scheduled_ms: f64,
    /// When it was actually issued, ms since the run started.
    pub started_ms: f64,
    /// Scheduled start to completion, ms (what a user waits; free of coordinated omission).
    pub latency_ms: f64,
    /// Issue to completion as the harness saw it, ms (includes the driver round trip).
    pub service_ms: f64,
    /// `session.run` as the page measured it, ms (0 when the request failed).
    pub page_ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// The error class when it failed (`timeout`, `crash`, `page`, `interrupted`, ...).
    pub error: String,
    /// Attempts it took (1 when nothing was retried).
    pub attempt: u32,
    /// Why it failed (`None` when it succeeded; absent from files written before it existed).
    #[serde(default)]
    pub cause: Option<FailureCause>,
}

impl Sample {
    /// The `samples.csv` header, in column order.
    pub const CSV_COLUMNS: [&'static str; 15] = [
        "seq",
        "model",
        "browser",
        "worker",
        "backend",
        "phase",
        "scheduled_ms",
        "started_ms",
        "latency_ms",
        "service_ms",
        "page_ms",
        "ok",
        "error",
        "attempt",
        "cause",
    ];
}
