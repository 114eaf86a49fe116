//! Golden outputs for models with real weights: the sentence-embedding check of all-MiniLM-L6-v2.
//!
//! Input: the full `last_hidden_state` of a run and its dims. Output: [`GoldenCheck`] after mean
//! pooling over the attention mask and L2 normalisation. Must not import `cli` or `report`.

use serde::{Deserialize, Serialize};

/// The reference embedding prefix of all-MiniLM-L6-v2 for [`super::text::SENTENCE`].
pub const MINILM_PREFIX: [f32; 5] = [-0.029127, 0.024244, 0.022706, -0.006884, 0.075163];

/// An expected output prefix and how to reduce a raw output to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    /// Expected first values of the pooled, normalised embedding.
    pub expected: Vec<f32>,
    /// Maximum absolute difference allowed.
    pub tolerance: f64,
    /// The input's attention mask (`[S]`): mean pooling averages tokens where it is 1.
    pub attention_mask: Vec<i64>,
}

/// The result of comparing one output with a [`Golden`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenCheck {
    /// True when every compared value is within `tolerance`.
    pub passed: bool,
    /// Largest absolute difference (infinite when the output has the wrong shape).
    pub max_abs_diff: f64,
    /// The computed prefix.
    pub got: Vec<f32>,
    /// The expected prefix.
    pub expected: Vec<f32>,
    /// The tolerance used.
    pub tolerance: f64,
}

impl Golden {
    /// Mean-pools `full_output` (`[1, S, D]` per `dims`) over the attention mask, L2-normalises
    /// it and compares the first values with the expected prefix. A shape mismatch fails the
    /// check with an infinite difference rather than panicking.
    pub fn check(&self, dims: &[i64], full_output: &[f32]) -> GoldenCheck {
        let fail = |got: Vec<f32>| GoldenCheck {
            passed: false,
            max_abs_diff: f64::INFINITY,
            got,
            expected: self.expected.clone(),
            tolerance: self.tolerance,
        };
        let (s, d) = match dims {
            [1, s, d] if *s > 0 && *d > 0 => (*s as usize, *d as usize),
            _ => return fail(Vec::new()),
        };
        if full_output.len() != s * d || self.attention_mask.len() != s || d < self.expected.len() {
            return fail(Vec::new());
        }
        let mut pooled = vec![0f64; d];
        let mut count = 0f64;
        for (t, &m) in self.attention_mask.iter().enumerate() {
            if m != 0 {
                count += 1.0;
                for (p, &v) in pooled.iter_mut().zip(&full_output[t * d..(t + 1) * d]) {
                    *p += f64::from(v);
                }
            }
        }
        let count = count.max(1.0);
        pooled.iter_mut().for_each(|p| *p /= count);
        let norm = pooled.iter().map(|p| p * p).sum::<f64>().sqrt().max(1e-12);
        let got: Vec<f32> = pooled
            .iter()
            .take(self.expected.len())
            .map(|p| (p / norm) as f32)
            .collect();
        let max_abs_diff = got
            .iter()
            .zip(&self.expected)
            .map(|(g, e)| (f64::from(*g) - f64::from(*e)).abs())
            .fold(0.0, f64::max);
        if max_abs_diff.is_nan() {
            return fail(got);
        }
        GoldenCheck {
            passed: max_abs_diff <= self.tolerance,
            max_abs_diff,
            got,
            expected: self.expected.clone(),
            tolerance: self.tolerance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_over_mask_and_normalises() {
        let g = Golden {
            expected: vec![0.6, 0.8],
            tolerance: 1e-6,
            attention_mask: vec![1, 1, 0],
        };
        // Tokens: (3,4), (3,4), padding (100,-100) which must be ignored.
        let out = [3.0, 4.0, 3.0, 4.0, 100.0, -100.0];
        let r = g.check(&[1, 3, 2], &out);
        assert!(r.passed, "{r:?}");
        assert!(!g.check(&[1, 2, 2], &out[..4]).passed);
    }
}
