//! Output checks over every value of each cell's first-run output (never a sample):
//!
//! - `finite`: the page's whole-output count of NaN and infinite values is 0;
//! - `transfer`: the values the harness decoded have the page's count and digest (nothing was
//!   changed between the page and the harness);
//! - `oracle`: every value is within `ATOL + RTOL * |native|` of the native onnxruntime output for
//!   the same ONNX file and input (a different runtime, outside the browser);
//! - `cross`: every value agrees the same way with the model's reference cell (a wasm cell where
//!   there is one), a second check between browsers and backends;
//! - `golden`: a model with a golden vector must match it.
//!
//! And for a pipeline's every answer ([`check_answer`]): every value against the unsharded
//! model's native output, and for a decoder the same argmax at every position.
//!
//! Pure logic over outputs; the engine gathers them.

use crate::metrics::Correctness;
use crate::models::GoldenCheck;
use crate::oracle::{allclose, ATOL, RTOL};

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::models::{PreparedModel, Task};

use super::worker::{OutputStats, RunReply};

/// What one cell produced for the checks.
#[derive(Debug, Clone)]
pub struct CellOutput {
    /// `browser/backend`, for messages.
    pub label: String,
    /// The backend the cell used (the reference prefers a wasm cell).
    pub backend: String,
    /// The output's shape.
    pub dims: Vec<i64>,
    /// Every value, as the harness decoded it (empty when the page sent none).
    pub full: Vec<f32>,
    /// What the page computed over every value.
    pub stats: Option<OutputStats>,
    /// Why the full output could not be decoded.
    pub transfer_error: Option<String>,
    /// The golden check, for models that have one.
    pub golden: Option<GoldenCheck>,
}

/// The native output a model's cells are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Oracle<'a> {
    /// Its shape.
    pub dims: &'a [i64],
    /// Every value.
    pub values: &'a [f32],
}

/// Judges every cell of one model, against `oracle` when there is one. One verdict per cell,
/// in order.
pub fn judge(cells: &[CellOutput], oracle: Option<Oracle<'_>>) -> Vec<Correctness> {
    let reference = cells
        .iter()
        .position(|c| c.backend == "wasm" && !c.full.is_empty())
        .or_else(|| cells.iter().position(|c| !c.full.is_empty()));
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let mut v = Verdict::default();
            v.finite(cell);
            v.transfer(cell);
            if let Some(g) = &cell.golden {
                v.checks.push("golden");
                v.passed &= g.passed;
                v.max_abs_diff = v.max_abs_diff.max(g.max_abs_diff);
                v.details.push(format!(
                    "golden: max |diff| {:.2e} over the first {} values (tolerance {:.0e})",
                    g.max_abs_diff,
                    g.expected.len(),
                    g.tolerance
                ));
            }
            if let Some(o) = oracle {
                v.checks.push("oracle");
                let (diff, ok) = if cell.dims == o.dims {
                    allclose(&cell.full, o.values)
                } else {
                    (f64::INFINITY, false)
                };
                v.passed &= ok;
                v.oracle_max_abs_diff = Some(diff);
                v.max_abs_diff = v.max_abs_diff.max(diff);
                v.details.push(if cell.dims == o.dims {
                    format!(
                        "vs native onnxruntime: max |diff| {diff:.2e} over {} values{}",
                        o.values.len(),
                        if ok {
                            ""
                        } else {
                            " (outside atol 1e-3 + rtol 1e-3)"
                        }
                    )
                } else {
                    format!(
                        "vs native onnxruntime: shape {:?}, native {:?}",
                        cell.dims, o.dims
                    )
                });
            }
            if let Some(r) = reference {
                let others: Vec<usize> = if i == r {
                    (0..cells.len()).filter(|&j| j != r).collect()
                } else {
                    vec![r]
                };
                for j in others.into_iter().filter(|&j| !cells[j].full.is_empty()) {
                    let (diff, ok) = allclose(&cell.full, &cells[j].full);
                    if !v.checks.contains(&"cross") {
                        v.checks.push("cross");
                    }
                    v.passed &= ok;
                    v.max_abs_diff = v.max_abs_diff.max(diff);
                    v.details.push(format!(
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
            v.into_correctness(cell)
        })
        .collect()
}

/// Judges a placement's first answer before it serves: finite, received as the page computed
/// it, its golden vector where it has one, and every value against native onnxruntime. The
/// same checks [`judge`] applies to a cell, on one answer alone.
pub fn verify_placement(cell: &CellOutput, oracle: Oracle<'_>) -> Correctness {
    judge(std::slice::from_ref(cell), Some(oracle))
        .pop()
        .unwrap_or_default()
}

/// One cell's verdict as it is built.
#[derive(Debug)]
struct Verdict {
    checks: Vec<&'static str>,
    passed: bool,
    details: Vec<String>,
    max_abs_diff: f64,
    oracle_max_abs_diff: Option<f64>,
}

impl Default for Verdict {
    fn default() -> Self {
        Self {
            checks: Vec::new(),
            passed: true,
            details: Vec::new(),
            max_abs_diff: 0.0,
            oracle_max_abs_diff: None,
        }
    }
}

impl Verdict {
    /// `finite`, from the page's count over every value.
    fn finite(&mut self, cell: &CellOutput) {
        self.checks.push("finite");
        match &cell.stats {
            Some(s) if s.count == 0 => {
                self.passed = false;
                self.details.push("the output is empty".into());
            }
            Some(s) if s.nan + s.inf > 0 => {
                self.passed = false;
                self.details.push(format!(
                    "{} NaN and {} infinite of {} values",
                    s.nan, s.inf, s.count
                ));
            }
            Some(_) => {}
            None => {
                self.passed = false;
                self.details
                    .push("the page returned no whole-output checks".into());
            }
        }
    }

    /// `transfer`: the decoded values are the page's (count and digest).
    fn transfer(&mut self, cell: &CellOutput) {
        self.checks.push("transfer");
        if let Some(e) = &cell.transfer_error {
            self.passed = false;
            self.details.push(format!("full output: {e}"));
            return;
        }
        let Some(s) = &cell.stats else { return };
        let digest = OutputStats::digest_of(&cell.full);
        if s.count != cell.full.len() as u64 || s.digest != digest {
            self.passed = false;
            self.details.push(format!(
                "the page computed {} values with digest {}, the harness received {} with digest \
                 {digest}",
                s.count,
                s.digest,
                cell.full.len()
            ));
        }
    }

    fn into_correctness(self, cell: &CellOutput) -> Correctness {
        Correctness {
            passed: self.passed,
            check: self.checks.join("+"),
            max_abs_diff: self.max_abs_diff,
            tolerance: cell.golden.as_ref().map_or(ATOL, |g| g.tolerance),
            rtol: RTOL,
            oracle_max_abs_diff: self.oracle_max_abs_diff,
            detail: self.details.join("; "),
            ..Correctness::default()
        }
    }
}

/// The correctness input of a first run: every value as decoded, the page's whole-output stats,
/// and the golden check where the model has one.
pub fn cell_output(
    browser: BrowserKind,
    model: &PreparedModel,
    backend: Backend,
    first: &RunReply,
) -> Option<CellOutput> {
    let tensor = first
        .outputs
        .get(&model.output_name)
        .or_else(|| first.outputs.values().next())?;
    let full = tensor.full();
    let golden = model.golden.as_ref().map(|g| match &full {
        Ok(full) => g.check(&tensor.dims, full),
        Err(_) => g.check(&tensor.dims, &[]),
    });
    let (full, transfer_error) = match full {
        Ok(v) => (v, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Some(CellOutput {
        label: format!("{browser}/{backend}"),
        backend: backend.to_string(),
        dims: tensor.dims.clone(),
        full,
        stats: tensor.stats.clone(),
        transfer_error,
        golden,
    })
}

/// The reference every answer is checked against: the unsharded model's output from native
/// onnxruntime.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Its shape.
    pub dims: Vec<i64>,
    /// Every value.
    pub output: Vec<f32>,
    /// The model's task (a text_generation answer must also have the same argmax).
    pub task: Task,
}

/// Checks `got` against the reference: (max abs diff, within tolerance, argmax equal).
pub fn check_answer(reference: &Reference, dims: &[i64], got: &[f32]) -> (f64, bool, Option<bool>) {
    if dims != reference.dims.as_slice() {
        return (f64::INFINITY, false, Some(false));
    }
    let (diff, close) = crate::oracle::allclose(got, &reference.output);
    let argmax = (reference.task == Task::TextGeneration).then(|| {
        let v = *reference.dims.last().unwrap_or(&1) as usize;
        got.chunks(v.max(1))
            .zip(reference.output.chunks(v.max(1)))
            .all(|(a, b)| argmax(a) == argmax(b))
    });
    (diff, close && argmax != Some(false), argmax)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(v: &[f32]) -> OutputStats {
        let finite: Vec<f64> = v
            .iter()
            .filter(|x| x.is_finite())
            .map(|&x| f64::from(x))
            .collect();
        OutputStats {
            count: v.len() as u64,
            nan: v.iter().filter(|x| x.is_nan()).count() as u64,
            inf: v.iter().filter(|x| x.is_infinite()).count() as u64,
            min: finite.iter().copied().reduce(f64::min),
            max: finite.iter().copied().reduce(f64::max),
            sum: finite.iter().sum(),
            l2: finite.iter().map(|x| x * x).sum::<f64>().sqrt(),
            digest: OutputStats::digest_of(v),
        }
    }

    fn cell(label: &str, backend: &str, full: Vec<f32>) -> CellOutput {
        CellOutput {
            label: label.into(),
            backend: backend.into(),
            dims: vec![full.len() as i64],
            stats: Some(stats_of(&full)),
            full,
            transfer_error: None,
            golden: None,
        }
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37).sin()).collect()
    }

    #[test]
    fn a_placement_whose_first_answer_is_off_by_one_value_is_rejected() {
        let native = ramp(1000);
        let o = Oracle {
            dims: &[1000],
            values: &native,
        };
        let mut near = native.clone();
        near[7] += 5e-4;
        let ok = verify_placement(&cell("chromium/wasm", "wasm", near), o);
        assert!(ok.passed, "{ok:?}");
        let mut off = native.clone();
        off[999] += 1.0;
        let bad = verify_placement(&cell("chromium/wasm", "wasm", off), o);
        assert!(!bad.passed, "{bad:?}");
        assert!(bad.detail.contains("outside atol"), "{}", bad.detail);
        let short = verify_placement(&cell("chromium/wasm", "wasm", native[..999].to_vec()), o);
        assert!(!short.passed, "{short:?}");
    }

    #[test]
    fn agreeing_cells_pass_against_the_oracle_and_wasm_is_the_reference() {
        let native = ramp(1000);
        let mut webgpu = native.clone();
        webgpu[10] += 2e-4;
        let o = Oracle {
            dims: &[1000],
            values: &native,
        };
        let v = judge(
            &[
                cell("chromium/webgpu", "webgpu", webgpu),
                cell("firefox/wasm", "wasm", native.clone()),
            ],
            Some(o),
        );
        assert!(v.iter().all(|c| c.passed), "{v:?}");
        assert_eq!(v[0].check, "finite+transfer+oracle+cross");
        assert!(v[0].detail.contains("vs firefox/wasm"));
        let d = v[0].oracle_max_abs_diff.unwrap();
        assert!(d > 1e-4 && d < 3e-4, "{d}");
    }

    #[test]
    fn one_corrupted_value_in_a_large_output_fails_finite_and_the_oracle() {
        // bert-base's output has 98,304 values; the last one is where a 256-value sample
        // would never look.
        let native = ramp(98_304);
        let mut got = native.clone();
        got[98_301] = f32::NAN;
        let o = Oracle {
            dims: &[98_304],
            values: &native,
        };
        let v = &judge(&[cell("chromium/wasm", "wasm", got.clone())], Some(o))[0];
        assert!(!v.passed);
        assert!(v.detail.contains("1 NaN"), "{}", v.detail);
        assert_eq!(v.oracle_max_abs_diff, Some(f64::INFINITY));
        got[98_301] = native[98_301] + 0.01;
        let v = &judge(&[cell("chromium/wasm", "wasm", got)], Some(o))[0];
        assert!(!v.passed, "{v:?}");
        assert!(v.detail.contains("outside atol"), "{}", v.detail);
    }

    #[test]
    fn a_value_changed_after_the_page_computed_its_stats_fails_transfer() {
        let mut c = cell("firefox/wasm", "wasm", ramp(300));
        c.full[7] = 5.0;
        let v = &judge(&[c], None)[0];
        assert!(!v.passed && v.detail.contains("digest"), "{v:?}");
    }

    #[test]
    fn disagreement_between_cells_fails_both_sides() {
        let v = judge(
            &[
                cell("a/wasm", "wasm", vec![1.0]),
                cell("b/wasm", "wasm", vec![1.1]),
            ],
            None,
        );
        assert!(!v[0].passed && !v[1].passed);
        assert!((v[1].max_abs_diff - 0.1).abs() < 1e-6);
    }

    #[test]
    fn no_stats_an_empty_output_or_a_wrong_shape_fail() {
        let mut c = cell("a/wasm", "wasm", vec![0.5]);
        c.stats = None;
        assert!(!judge(&[c], None)[0].passed);
        assert!(!judge(&[cell("a/wasm", "wasm", vec![])], None)[0].passed);
        let native = [0.5f32, 0.5];
        let o = Oracle {
            dims: &[2, 1],
            values: &native,
        };
        assert!(!judge(&[cell("a/wasm", "wasm", vec![0.5, 0.5])], Some(o))[0].passed);
        assert!(judge(&[cell("a/wasm", "wasm", vec![0.5])], None)[0].passed);
    }

    fn logits() -> Reference {
        // Two positions over a vocabulary of 3.
        Reference {
            dims: vec![1, 2, 3],
            output: vec![0.1, 0.9, 0.0, 0.5, 0.2, 0.3],
            task: Task::TextGeneration,
        }
    }

    #[test]
    fn an_answer_matches_within_tolerance_and_with_the_same_argmax() {
        let r = logits();
        let close: Vec<f32> = r.output.iter().map(|v| v + 1e-4).collect();
        assert!(check_answer(&r, &r.dims, &close).1);
        assert_eq!(check_answer(&r, &r.dims, &close).2, Some(true));
    }

    #[test]
    fn an_answer_off_by_more_than_the_tolerance_or_another_shape_fails() {
        let r = logits();
        let mut off = r.output.clone();
        off[5] += 0.01;
        let (diff, ok, argmax) = check_answer(&r, &r.dims, &off);
        assert!(!ok && (diff - 0.01).abs() < 1e-6, "{diff}");
        assert_eq!(argmax, Some(true));
        assert!(!check_answer(&r, &[1, 3, 2], &r.output).1);
    }

    #[test]
    fn another_argmax_fails_a_decoder_answer_even_within_tolerance() {
        let mut r = logits();
        r.output = vec![0.5, 0.5004, 0.0, 0.0, 0.0, 0.0];
        let swapped = vec![0.5004, 0.5, 0.0, 0.0, 0.0, 0.0];
        let (_, ok, argmax) = check_answer(&r, &r.dims, &swapped);
        assert_eq!(argmax, Some(false));
        assert!(!ok);
        r.task = Task::TextEmbedding;
        assert!(
            check_answer(&r, &r.dims, &swapped).1,
            "no argmax check for an encoder"
        );
    }
}
