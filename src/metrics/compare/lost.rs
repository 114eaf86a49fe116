//! Lost cells: a model x browser x backend that had successful measured runs in the baseline and
//! has none in the current run (every request failed, the model failed to load, or the cell is
//! gone from the run). There is nothing left to test for significance, so without this check a
//! model that stopped working would pass the gate; [`super::Comparison::passed`] fails on it.
//!
//! Inputs: the cell, its baseline successes and the current run. Output: a [`LostCell`] that
//! says what the current run shows instead. Pure: imports only serde and `crate::metrics`.

use serde::{Deserialize, Serialize};

use super::{CellKey, RunData};
use crate::metrics::{Phase, ResultRow};

/// A cell with successful measured runs in the baseline and none in the current run. (No
/// `current_runs` field: it would always be 0.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostCell {
    /// The cell.
    pub cell: CellKey,
    /// Successful measured runs in the baseline (at least 1).
    pub baseline_runs: usize,
    /// Measured requests of the cell that failed in the current run (0 when none was issued).
    pub current_failed: usize,
    /// Why, from the current run's `run.json`: the `error` of the cell's row, or, when loading
    /// failed before a backend was chosen, of the model's row on that browser with no backend.
    pub current_error: Option<String>,
}

impl LostCell {
    /// `bert-tiny/chromium/wasm: 40 successful runs in the baseline, none now: 40 of 40 requests
    /// failed (40 timeout)`; the part after `none now` is `current_error`, else the failed
    /// count, else `not in the current run`.
    pub fn describe(&self) -> String {
        let runs = match self.baseline_runs {
            1 => "1 successful run".to_string(),
            n => format!("{n} successful runs"),
        };
        let why = match (&self.current_error, self.current_failed) {
            (Some(e), _) => e.clone(),
            (None, 0) => "not in the current run".to_string(),
            (None, n) => format!("{n} measured requests failed"),
        };
        format!("{}: {runs} in the baseline, none now: {why}", self.cell)
    }
}

/// What `current` shows for `cell`, which had `baseline_runs` successes in the baseline and has
/// none in `current`.
pub(super) fn lost_cell(cell: &CellKey, baseline_runs: usize, current: RunData<'_>) -> LostCell {
    let current_failed = current
        .samples
        .iter()
        .filter(|s| {
            s.phase == Phase::Measure
                && !s.ok
                && s.model == cell.model
                && s.browser == cell.browser
                && s.backend == cell.backend
        })
        .count();
    let rows = &current.summary.results;
    let same_model = |r: &&ResultRow| r.model == cell.model && r.error.is_some();
    // A load failure's row has no backend (none was chosen), and no browser when the model
    // failed before one was picked.
    let row = rows
        .iter()
        .filter(same_model)
        .find(|r| r.browser == cell.browser && r.backend == cell.backend)
        .or_else(|| {
            rows.iter().filter(same_model).find(|r| {
                r.backend.is_empty() && (r.browser == cell.browser || r.browser.is_empty())
            })
        });
    LostCell {
        cell: cell.clone(),
        baseline_runs,
        current_failed,
        current_error: row.and_then(|r| r.error.clone()),
    }
}
