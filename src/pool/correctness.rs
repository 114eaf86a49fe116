//! Output checks: every browser x backend of a model must agree with a reference cell
//! (allclose), outputs must be finite, and a model with a golden vector must match it.
//!
//! Pure logic over output samples; the engine gathers the samples.

use crate::metrics::Correctness;
use crate::models::GoldenCheck;

/// Absolute tolerance of the cross-browser comparison.
pub const ATOL: f64 = 1e-3;
/// Relative tolerance of the cross-browser comparison (of the reference's magnitude).
pub const RTOL: f64 = 1e-3;

/// What one cell produced for the check.
#[derive(Debug, Clone)]
pub struct CellOutput {
    /// `browser/backend`, for messages.
    pub label: String,
    /// The backend the cell used (the reference prefers a wasm cell).
    pub backend: String,
    /// Strided output sample (the same positions in every cell of a model).
    pub sample: Vec<f32>,
    /// The golden check, for models that have one.
    pub golden: Option<GoldenCheck>,
}

/// Judges every cell of one model. The result has one verdict per cell, in order.
pub fn judge(cells: &[CellOutput]) -> Vec<Correctness> {
    let reference = cells
        .iter()
        .position(|c| c.backend == "wasm" && !c.sample.is_empty())
        .or_else(|| cells.iter().position(|c| !c.sample.is_empty()));
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let mut checks = vec!["finite"];
            let mut passed = !cell.sample.is_empty() && cell.sample.iter().all(|v| v.is_finite());
            let mut details = Vec::new();
            if cell.sample.is_empty() {
                details.push("no output to check".to_string());
            } else if !passed {
                details.push("output has NaN or infinite values".to_string());
            }
            let mut max_abs_diff = 0.0f64;
            let mut tolerance = ATOL;
            if let Some(g) = &cell.golden {
                checks.push("golden");
                passed &= g.passed;
                max_abs_diff = max_abs_diff.max(g.max_abs_diff);
                tolerance = g.tolerance;
                details.push(format!(
                    "golden: max |diff| {:.2e} over the first {} values (tolerance {:.0e})",
                    g.max_abs_diff,
                    g.expected.len(),
                    g.tolerance
                ));
            }
            if let Some(r) = reference {
                let others: Vec<usize> = if i == r {
                    (0..cells.len()).filter(|&j| j != r).collect()
                } else {
                    vec![r]
                };
                for j in others.into_iter().filter(|&j| !cells[j].sample.is_empty()) {
                    let (diff, ok) = allclose(&cell.sample, &cells[j].sample);
                    if !checks.contains(&"cross") {
                        checks.push("cross");
                    }
                    passed &= ok;
                    max_abs_diff = max_abs_diff.max(diff);
                    details.push(format!(
                        "vs {}: max |diff| {diff:.2e}{}",
                        cells[j].label,
                        if ok {
                            ""
                        } else {
                            " (outside atol 1e-3 + rtol 1e-3)"
                        }
                    ));
                }
            }
            Correctness {
                passed,
                check: checks.join("+"),
                max_abs_diff,
                tolerance,
                detail: details.join("; "),
            }
        })
        .collect()
}

/// Largest absolute difference, and whether `|a - b| <= ATOL + RTOL * |b|` everywhere.
fn allclose(a: &[f32], b: &[f32]) -> (f64, bool) {
    if a.len() != b.len() {
        return (f64::INFINITY, false);
    }
    a.iter().zip(b).fold((0.0f64, true), |(max, ok), (&x, &y)| {
        let d = (f64::from(x) - f64::from(y)).abs();
        (
            if d.is_nan() {
                f64::INFINITY
            } else {
                max.max(d)
            },
            ok && d <= ATOL + RTOL * f64::from(y).abs(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(label: &str, backend: &str, sample: Vec<f32>) -> CellOutput {
        CellOutput {
            label: label.into(),
            backend: backend.into(),
            sample,
            golden: None,
        }
    }

    #[test]
    fn agreeing_cells_pass_and_wasm_is_the_reference() {
        let v = judge(&[
            cell("chromium/webgpu", "webgpu", vec![1.0, 2.0]),
            cell("firefox/wasm", "wasm", vec![1.0, 2.0000005]),
        ]);
        assert!(v.iter().all(|c| c.passed), "{v:?}");
        assert_eq!(v[0].check, "finite+cross");
        assert!(v[0].detail.contains("vs firefox/wasm"));
    }

    #[test]
    fn disagreement_fails_both_sides() {
        let v = judge(&[
            cell("a/wasm", "wasm", vec![1.0]),
            cell("b/wasm", "wasm", vec![1.1]),
        ]);
        assert!(!v[0].passed && !v[1].passed);
        assert!((v[1].max_abs_diff - 0.1).abs() < 1e-6);
    }

    #[test]
    fn nan_and_empty_fail() {
        assert!(!judge(&[cell("a/wasm", "wasm", vec![f32::NAN])])[0].passed);
        assert!(!judge(&[cell("a/wasm", "wasm", vec![])])[0].passed);
        assert!(judge(&[cell("a/wasm", "wasm", vec![0.5])])[0].passed);
    }
}
