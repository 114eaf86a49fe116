//! Every step of a generation checked against native onnxruntime running the same decoder
//! graph teacher-forced on the browser's tokens, and native's own timings and greedy text.
//! Blocking CPU work. Must not import `pool`, `report` or `cli`.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use crate::metrics::Percentiles;
use crate::models::Cache;
use crate::oracle::{self, OracleError};

use super::choose::{draw_slack, near_boundary, pick, Sampling};
use super::model::SMOLLM2;
use super::native::NativeDecoder;
use super::{argmax, top_two_gap};

/// One step's check against native onnxruntime on the same tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCheck {
    /// Largest |browser - native| over the step's logits.
    pub max_abs_diff: f64,
    /// Every logit within the oracle's tolerance.
    pub close: bool,
    /// The browser chose what native would.
    pub same_choice: bool,
    /// Native's two best logits are within the tolerance of each other: a different choice is
    /// not a fault.
    pub near_tie: bool,
}

/// Timings of one side (browser or native), ms.
#[derive(Debug, Clone, Default)]
pub struct SideTimes {
    /// The prefill step (the whole prompt).
    pub prefill_ms: f64,
    /// Each decode step.
    pub decode_ms: Vec<f64>,
}

impl SideTimes {
    /// Prompt tokens per second in the prefill.
    pub fn prefill_tokens_per_s(&self, prompt: usize) -> f64 {
        prompt as f64 / (self.prefill_ms / 1e3)
    }

    /// Decode steps per second.
    pub fn decode_tokens_per_s(&self) -> f64 {
        let total: f64 = self.decode_ms.iter().sum();
        self.decode_ms.len() as f64 / (total / 1e3)
    }

    /// Inter-token latency percentiles.
    pub fn inter_token(&self) -> Option<Percentiles> {
        Percentiles::from_ms(&self.decode_ms)
    }
}

impl StepCheck {
    /// Logits within tolerance, and the same choice unless native's was a near tie: a near tie
    /// excuses a different token, never different logits.
    pub fn matched(&self) -> bool {
        self.close && (self.same_choice || self.near_tie)
    }
}

/// Per step against native, native's own tokens, and its times at 1 thread and at every core.
pub type NativeCheck = (Vec<StepCheck>, Vec<u32>, [(usize, SideTimes); 2]);

/// How the browser chose its tokens: greedily, or by sampling with these draws (one a step).
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'a> {
    /// The sampling settings, `None` for greedy.
    pub sampling: Option<Sampling>,
    /// The draws, one per token.
    pub draws: &'a [f64],
}

impl Chosen<'_> {
    /// The token step `k`'s choice gives from `logits`, and whether it is a near tie there for
    /// logits that may be off by `delta`.
    fn at(&self, k: usize, logits: &[f32], delta: f64) -> (u32, bool) {
        match (self.sampling, self.draws.get(k)) {
            (Some(s), Some(&u)) => {
                let slack = draw_slack(delta, s.temperature);
                (pick(logits, &s, u), near_boundary(logits, &s, u, slack))
            }
            _ => {
                let top = logits.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
                let tie = f64::from(top_two_gap(logits)) <= oracle::ATOL + oracle::RTOL * top;
                (argmax(logits), tie)
            }
        }
    }
}

/// Native onnxruntime teacher-forced on the browser's `tokens`: each step's logits against the
/// browser's and its choice (with the same draw, when sampling) against the browser's token,
/// then its own continuation from the first step it would choose differently; timed at 1
/// thread and at every core.
#[allow(clippy::too_many_arguments)]
pub fn native_check(
    cache: &Cache,
    file: &Path,
    layers: Range<usize>,
    kv_heads: usize,
    head_dim: usize,
    prompt: &[u32],
    tokens: &[u32],
    browser_logits: &[Vec<f32>],
    chosen: Chosen<'_>,
) -> Result<NativeCheck, OracleError> {
    let all = std::thread::available_parallelism().map_or(1, usize::from);
    let mut checks = Vec::new();
    let mut native_tokens = Vec::new();
    let mut times = [(1, SideTimes::default()), (all, SideTimes::default())];
    for (threads, side) in &mut times {
        let mut d = NativeDecoder::open(
            cache,
            SMOLLM2,
            file,
            layers.clone(),
            kv_heads,
            head_dim,
            *threads,
        )?;
        let t0 = Instant::now();
        let mut logits = d.step(prompt)?;
        side.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        for (k, &token) in tokens.iter().enumerate() {
            if *threads == 1 {
                let (max_abs_diff, close) = oracle::allclose(&browser_logits[k], &logits);
                let (native, near_tie) = chosen.at(k, &logits, max_abs_diff);
                checks.push(StepCheck {
                    max_abs_diff,
                    close,
                    same_choice: native == token,
                    near_tie,
                });
                native_tokens.push(native);
            }
            if k + 1 == tokens.len() {
                break;
            }
            let t0 = Instant::now();
            logits = d.step(&[token])?;
            side.decode_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    // Where native would have chosen differently, its own text goes on from there.
    if let Some(at) = native_tokens.iter().zip(tokens).position(|(n, b)| n != b) {
        let mut d = NativeDecoder::open(cache, SMOLLM2, file, layers, kv_heads, head_dim, all)?;
        let mut ids = prompt.to_vec();
        ids.extend_from_slice(&tokens[..at]);
        let mut logits = d.step(&ids)?;
        native_tokens.truncate(at);
        while native_tokens.len() < tokens.len() {
            let (t, _) = chosen.at(native_tokens.len(), &logits, 0.0);
            native_tokens.push(t);
            logits = d.step(&[t])?;
        }
    }
    Ok((checks, native_tokens, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(close: bool, same_choice: bool, near_tie: bool) -> StepCheck {
        StepCheck {
            max_abs_diff: if close { 1e-5 } else { 4.0 },
            close,
            same_choice,
            near_tie,
        }
    }

    #[test]
    fn a_near_tie_excuses_a_choice_not_the_logits() {
        assert!(step(true, true, false).matched());
        assert!(step(true, false, true).matched());
        assert!(!step(true, false, false).matched());
        assert!(!step(false, true, true).matched());
        assert!(!step(false, false, true).matched());
    }
}
