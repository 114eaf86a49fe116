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

/// What native onnxruntime said of a generation.
#[derive(Debug, Clone)]
pub struct NativeCheck {
    /// Each step against the browser's.
    pub checks: Vec<StepCheck>,
    /// Native's own tokens (its continuation from the first step it chose differently).
    pub tokens: Vec<u32>,
    /// Its times at 1 thread and at every core.
    pub times: [(usize, SideTimes); 2],
    /// Its logits at each step, teacher-forced on the browser's tokens (1 thread): the same
    /// tokens give the same logits, so another generation of them is judged against these.
    pub logits: Vec<Vec<f32>>,
}

/// Each step of a greedy generation of `tokens` against native's `logits` teacher-forced on
/// the same tokens (see [`NativeCheck::logits`]).
pub fn against_logits(
    browser_logits: &[Vec<f32>],
    native_logits: &[Vec<f32>],
    tokens: &[u32],
) -> Vec<StepCheck> {
    let greedy = Chosen {
        sampling: None,
        draws: &[],
    };
    (0..tokens.len())
        .map(|k| step_check(&browser_logits[k], &native_logits[k], tokens[k], greedy, k).0)
        .collect()
}

/// Step `k`: the browser's logits against native's, and native's choice (which it returns)
/// against the browser's `token`.
fn step_check(
    browser: &[f32],
    native: &[f32],
    token: u32,
    chosen: Chosen<'_>,
    k: usize,
) -> (StepCheck, u32) {
    let (max_abs_diff, close) = oracle::allclose(browser, native);
    let (choice, near_tie) = chosen.at(k, native, max_abs_diff);
    let check = StepCheck {
        max_abs_diff,
        close,
        same_choice: choice == token,
        near_tie,
    };
    (check, choice)
}

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
    let mut native_logits = Vec::new();
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
                let (check, native) = step_check(&browser_logits[k], &logits, token, chosen, k);
                checks.push(check);
                native_tokens.push(native);
                native_logits.push(logits.clone());
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
    Ok(NativeCheck {
        checks,
        tokens: native_tokens,
        times,
        logits: native_logits,
    })
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

    #[test]
    fn a_repeated_generation_is_judged_by_its_own_logits() {
        let native = vec![vec![0.0, 3.0, 1.0], vec![2.0, 0.0, 1.0]];
        let tokens = [1, 0];
        let same: Vec<Vec<f32>> = native
            .iter()
            .map(|l| l.iter().map(|v| v + 1e-6).collect())
            .collect();
        assert!(against_logits(&same, &native, &tokens)
            .iter()
            .all(StepCheck::matched));
        // Its own logits off at one step: that step fails, though the tokens are the same.
        let mut off = same.clone();
        off[1][2] += 0.5;
        let checks = against_logits(&off, &native, &tokens);
        assert!(checks[0].matched());
        assert!(!checks[1].close && !checks[1].matched());
        // A token native would not choose fails its step.
        let checks = against_logits(&same, &native, &[1, 2]);
        assert!(!checks[1].same_choice && !checks[1].matched());
    }
}
