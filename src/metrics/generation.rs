//! The record of a generation (an entry of `run.json`'s `generations`): the text and its
//! tokens, the times a person waiting for it sees (first token, inter-token), each shard's
//! compute and each hop, native onnxruntime's same figures on the same graph, the
//! token-by-token check against it, and every step as it ran (the HTML report's per-token
//! chart). Pure.

use serde::{Deserialize, Serialize};

use super::Percentiles;

/// What a generation wrote and measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerationReport {
    /// The language model.
    pub model: String,
    /// How its matrices were kept: `f32` or `q4`.
    pub precision: String,
    /// How tokens were chosen: `greedy`, or `temperature T, top-p P, seed S`.
    pub choice: String,
    /// What a failed shard's worker got.
    pub recovery: String,
    /// How the layers were cut into the shards: `even`, `layer_balanced` or `cost_balanced`.
    #[serde(default)]
    pub strategy: String,
    /// Why the layers were cut so, a line each (each page's measured ms per layer, for
    /// `cost_balanced`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// The generated tokens.
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Native's own text where it differs from the browser's (after a near tie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_text: Option<String>,
    /// Placing every shard (fetch and session creation; launches excluded), ms.
    pub load_ms: f64,
    /// The pool's figures, with its browsers.
    pub pool: SideFigures,
    /// Native onnxruntime on the whole (unsharded) graph, at 1 thread and at every core.
    pub native: Vec<SideFigures>,
    /// Per shard.
    pub shards: Vec<GenerationShard>,
    /// Steps whose logits and choice matched native teacher-forced on the browser's tokens.
    pub verified_steps: usize,
    /// Steps checked (one per token).
    pub checked_steps: usize,
    /// Largest |browser - native| over every step's logits.
    pub max_abs_diff: f64,
    /// Steps where native's top two logits were within tolerance of each other.
    pub near_ties: usize,
    /// Every step as it ran: the prefill first, then one per token after the first.
    pub steps: Vec<GenerationStep>,
    /// The planned fault, as carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The recoveries steps waited for.
    #[serde(default)]
    pub stalls: Vec<GenerationStall>,
    /// Ctrl-C stopped the generation early.
    #[serde(default)]
    pub interrupted: bool,
    /// Why backends were not used (WebNN, today).
    #[serde(default)]
    pub backends_note: String,
}

impl GenerationReport {
    /// Every step matched native.
    pub fn verified(&self) -> bool {
        self.checked_steps > 0 && self.verified_steps == self.checked_steps
    }

    /// Native's decode tokens/s over the pool's at native's `threads`: what the browsers cost,
    /// like for like. `None` without both figures.
    pub fn x_native(&self, threads: usize) -> Option<f64> {
        let n = self.native.iter().find(|n| n.threads == threads)?;
        (self.pool.decode_tokens_per_s > 0.0 && n.decode_tokens_per_s > 0.0)
            .then(|| n.decode_tokens_per_s / self.pool.decode_tokens_per_s)
    }
}

/// One side's times (the pool's, or native's at some threads).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SideFigures {
    /// `pool: chromium 156, firefox 153` or `native onnxruntime 1.30.0`.
    pub side: String,
    /// Native's intra-op threads (0 for the pool).
    pub threads: usize,
    /// Prompt sent to first token back, ms.
    pub time_to_first_token_ms: f64,
    /// Prompt tokens per second in the prefill.
    pub prefill_tokens_per_s: f64,
    /// One decode step (sent to logits back), ms; the steps that waited for a recovery or
    /// rebuilt a cache are left out.
    pub inter_token_ms: Option<Percentiles>,
    /// Decode tokens per second over those steps.
    pub decode_tokens_per_s: f64,
}

/// One shard of the generation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerationShard {
    /// Its name in the pool (its model id, the cell's model).
    pub model: String,
    /// Its layers, `[start, end)`.
    pub layers: [usize; 2],
    /// The worker serving it at the end.
    pub worker: String,
    /// That worker's browser kind.
    pub browser: String,
    /// Its backend there.
    pub backend: String,
    /// The page's `session.run` per steady decode step, ms.
    pub compute_ms: Option<Percentiles>,
    /// To the next shard per steady decode step, ms (none for the last shard).
    pub hop_ms: Option<Percentiles>,
    /// Its graph's parameters.
    pub parameters: u64,
    /// Its graph file's bytes.
    pub graph_bytes: u64,
    /// Its browser's process tree PSS after the generation, MiB.
    pub memory_mib: Option<f64>,
    /// The growth of that since the browser was launched, MiB (when one browser served it
    /// throughout).
    pub memory_growth_mib: Option<f64>,
}

/// One step as it ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStep {
    /// New positions in (the prompt's length for the prefill, else 1).
    pub positions: usize,
    /// Sent to logits back, measured by the harness, ms.
    pub wall_ms: f64,
    /// Per shard: the page's `session.run`, ms (0 where a shard did not run again after a
    /// recovery).
    pub compute_ms: Vec<f64>,
    /// Per hop (shard k to k+1), ms.
    pub hop_ms: Vec<Option<f64>>,
    /// Shards whose cache was rebuilt in this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebuilt: Vec<usize>,
    /// What the step waited for recoveries, ms (0 for none).
    #[serde(default)]
    pub stalled_ms: f64,
}

/// A recovery a step waited for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerationStall {
    /// The step (0 is the prefill; step i writes token i+1).
    pub step: usize,
    /// The failed shard.
    pub shard: usize,
    /// The worker it failed on.
    pub worker: String,
    /// How its call failed (`None`: the pool's watch had already taken it out of service).
    pub class: Option<String>,
    /// Failing call's send to the step's logits back, ms.
    pub stalled_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(threads: usize, tok_s: f64) -> SideFigures {
        SideFigures {
            threads,
            decode_tokens_per_s: tok_s,
            ..SideFigures::default()
        }
    }

    #[test]
    fn x_native_is_natives_rate_over_the_pools_at_the_named_threads() {
        let r = GenerationReport {
            pool: side(0, 10.0),
            native: vec![side(1, 25.0), side(2, 40.0)],
            ..GenerationReport::default()
        };
        assert_eq!(r.x_native(1), Some(2.5));
        assert_eq!(r.x_native(2), Some(4.0));
        assert_eq!(r.x_native(4), None);
    }

    #[test]
    fn a_generation_with_one_unmatched_step_or_none_checked_is_not_verified() {
        let mut r = GenerationReport {
            checked_steps: 6,
            verified_steps: 6,
            ..GenerationReport::default()
        };
        assert!(r.verified());
        r.verified_steps = 5;
        assert!(!r.verified());
        r.checked_steps = 0;
        r.verified_steps = 0;
        assert!(!r.verified());
    }
}
