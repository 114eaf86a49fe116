//! What adaptive routing did in a run: each model's evaluation (its live latency where it ran,
//! each other browser x backend timed on a real worker in alternation with the current
//! placement, with its p-value and Holm level) and the move it led to, with the latency before
//! and after. Part of `run.json` as `adaptive`.

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
    /// Where it ran, from the run's own warm requests (what started the evaluation; the
    /// decision compares each probe with the current placement timed beside it instead).
    pub current: PairTiming,
    /// Each other placement tried, each timed in alternation with the current placement.
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
    /// A probe: median of the current placement's runs timed in alternation with this one's
    /// (the same load on both), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_p50_ms: Option<f64>,
    /// A probe: one-sided Mann-Whitney p of "the current placement is slower than this one".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// A probe: the level Holm's correction for every probe of the evaluation set for this
    /// p (`alpha / (K - rank)`); a move needs `p_value` at or under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holm_level: Option<f64>,
}

/// A model moved by adaptive routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveMove {
    /// From `browser/backend` on this worker ...
    pub from: PairTiming,
    /// ... to this one.
    pub to: PairTiming,
    /// One-sided Mann-Whitney p of "where it ran is slower than where it went", both timed
    /// in alternation; at or under its Holm level.
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
