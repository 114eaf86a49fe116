//! How the next token is chosen: greedy (the largest logit), or sampled from the softmax at a
//! temperature within the top-p nucleus, one uniform draw per step from a seeded ChaCha8
//! stream, so a seed reproduces the text. The draws are kept: native's choice on its own
//! logits with the same draw is what the browser's choice is checked against. Pure logic.
//! Must not import `pool`, `report` or `cli`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::argmax;

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature (above 0).
    pub temperature: f32,
    /// Nucleus: the fewest most likely tokens whose probabilities sum to at least this, in
    /// (0, 1].
    pub top_p: f32,
    /// Seed of the draws.
    pub seed: u64,
}

/// Chooses tokens: greedily, or by [`Sampling`] with a draw per step.
#[derive(Debug, Clone)]
pub struct Chooser {
    sampling: Option<(Sampling, ChaCha8Rng)>,
    /// Every draw made, in order (empty when greedy).
    pub draws: Vec<f64>,
}

impl Chooser {
    /// Greedy when `sampling` is `None`.
    pub fn new(sampling: Option<Sampling>) -> Self {
        Chooser {
            sampling: sampling.map(|s| (s, ChaCha8Rng::seed_from_u64(s.seed))),
            draws: Vec::new(),
        }
    }

    /// The next token from `logits` (a new draw when sampling).
    pub fn choose(&mut self, logits: &[f32]) -> u32 {
        match &mut self.sampling {
            None => argmax(logits),
            Some((s, rng)) => {
                let u: f64 = rng.random();
                self.draws.push(u);
                pick(logits, s, u)
            }
        }
    }
}

/// The token the draw `u` in [0, 1) picks from `logits` under `s`.
pub fn pick(logits: &[f32], s: &Sampling, u: f64) -> u32 {
    let nucleus = nucleus(logits, s);
    let total: f64 = nucleus.iter().map(|&(_, p)| p).sum();
    let mut acc = 0.0;
    for &(i, p) in &nucleus {
        acc += p;
        if u * total < acc {
            return i;
        }
    }
    nucleus.last().map_or(0, |&(i, _)| i)
}

/// How far the cumulative shares of a softmax at `temperature` can move when every logit may
/// be off by `delta`: each probability by a factor within `e^(±2 delta / T)`.
pub fn draw_slack(delta: f64, temperature: f32) -> f64 {
    (2.0 * delta / f64::from(temperature)).exp_m1().max(1e-12)
}

/// Whether `u` lies within `slack` of a boundary between two tokens' shares of the nucleus of
/// `logits` (or the nucleus's own edge is that close to `top_p`): two correct
/// implementations whose logits differ that much may land on either side.
pub fn near_boundary(logits: &[f32], s: &Sampling, u: f64, slack: f64) -> bool {
    let lo = pick(logits, s, (u - slack).max(0.0));
    let hi = pick(logits, s, (u + slack).min(1.0 - f64::EPSILON));
    let wider = Sampling {
        top_p: (s.top_p + slack as f32).min(1.0),
        ..*s
    };
    lo != hi || pick(logits, &wider, u) != pick(logits, s, u)
}

/// The tokens of the nucleus, most likely first, with their probabilities (f64 softmax of
/// `logits / temperature`).
fn nucleus(logits: &[f32], s: &Sampling) -> Vec<(u32, f64)> {
    let t = f64::from(s.temperature);
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, ((f64::from(v) - f64::from(max)) / t).exp()))
        .collect();
    let sum: f64 = probs.iter().map(|&(_, p)| p).sum();
    for p in &mut probs {
        p.1 /= sum;
    }
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut acc = 0.0;
    let keep = probs
        .iter()
        .position(|&(_, p)| {
            acc += p;
            acc >= f64::from(s.top_p)
        })
        .map_or(probs.len(), |k| k + 1);
    probs.truncate(keep);
    probs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(temperature: f32, top_p: f32) -> Sampling {
        Sampling {
            temperature,
            top_p,
            seed: 7,
        }
    }

    #[test]
    fn the_draw_walks_the_nucleus_most_likely_first() {
        // Probabilities at temperature 1: about 0.665, 0.245, 0.090.
        let logits = [1.0, 2.0, 0.0];
        assert_eq!(pick(&logits, &s(1.0, 1.0), 0.0), 1);
        assert_eq!(pick(&logits, &s(1.0, 1.0), 0.66), 1);
        assert_eq!(pick(&logits, &s(1.0, 1.0), 0.67), 0);
        assert_eq!(pick(&logits, &s(1.0, 1.0), 0.95), 2);
        // top_p 0.8 keeps the first two; the draw scales to their 0.91.
        assert_eq!(pick(&logits, &s(1.0, 0.8), 0.95), 0);
        // A low temperature is nearly greedy.
        assert_eq!(pick(&logits, &s(0.01, 1.0), 0.999), 1);
    }

    #[test]
    fn a_seed_reproduces_the_draws_and_another_does_not() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut c = Chooser::new(Some(Sampling {
                seed,
                ..s(1.0, 0.95)
            }));
            (0..20).map(|_| c.choose(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let mut greedy = Chooser::new(None);
        assert_eq!(greedy.choose(&logits), 6);
        assert!(greedy.draws.is_empty());
    }

    #[test]
    fn a_draw_at_a_boundary_is_a_near_tie() {
        let logits = [0.0, 0.0];
        let slack = draw_slack(1e-4, 1.0);
        assert!(near_boundary(&logits, &s(1.0, 1.0), 0.5, slack));
        assert!(!near_boundary(&logits, &s(1.0, 1.0), 0.25, slack));
        assert!(!near_boundary(
            &logits,
            &s(1.0, 1.0),
            0.4999,
            draw_slack(1e-6, 1.0)
        ));
    }
}
