//! What adaptive routing did in a run: each model's evaluation (its live latency where it ran,
//! each other browser x backend timed on a real worker) and the move it led to, with the
//! latency before and after. Part of `run.json` as `adaptive`.

use serde::{Deserialize, Serialize};

/// Every evaluation of a run with `adaptive: true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveReport {
    /// One per model evaluated, in time order.
    pub evaluations: Vec<AdaptiveEvaluation>,
}

/// One model's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveEvaluation {
    /// The model.
    pub model: String,
    /// When, ms since the run started.
    pub at_ms: u64,
    /// Where it ran, from the run's own warm requests.
    pub current: PairTiming,
    /// Each other placement tried.
    pub probes: Vec<PairTiming>,
    /// What was decided and why.
    pub decision: String,
    /// The move, when it moved.
    pub moved: Option<AdaptiveMove>,
}

/// A browser x backend on one worker, timed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairTiming {
    /// Worker id.
    pub worker: String,
    /// Browser kind.
    pub browser: String,
    /// Backend.
    pub backend: String,
    /// Median page `session.run` time, ms (0 when it could not run).
    pub p50_ms: f64,
    /// Runs timed.
    pub samples: usize,
    /// Why it could not be timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A model moved by adaptive routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveMove {
    /// From `browser/backend` on this worker ...
    pub from: PairTiming,
    /// ... to this one.
    pub to: PairTiming,
    /// One-sided Mann-Whitney p of "where it ran is slower than where it went".
    pub p_value: f64,
    /// When the placement switched, ms since the run started.
    pub at_ms: u64,
    /// Warm page p50 of the run's requests before the move, ms.
    pub before_p50_ms: f64,
    /// Requests behind `before_p50_ms`.
    pub before_samples: usize,
    /// Warm page p50 of the run's requests served at the new placement after the move, ms
    /// (`None` when none ran there before the end).
    pub after_p50_ms: Option<f64>,
    /// Requests behind `after_p50_ms`.
    pub after_samples: usize,
}
