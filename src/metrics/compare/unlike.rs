//! Unlike cells: a model x browser x backend measured in both runs, but under other conditions
//! (another adapter, wasm thread count, browser build or load context), so its times say
//! nothing about a change in the code. Found in a user's history: bert-base on Chromium's wasm
//! "+160%, REGRESSION" between a matrix run (alone) and a `--concurrent-models` run (three other
//! models computing on the same 2 cores). Such a cell is named, not compared, and fails the
//! gate ([`super::Comparison::passed`]); passing it silently was rejected, as for a lost cell:
//! a gate that cannot compare must not say "no regression".
//!
//! Inputs: the two keys. Output: an [`Unlike`] that says what differs. Pure: imports only serde
//! and `crate::metrics`.

use serde::{Deserialize, Serialize};

use super::CellKey;

/// A cell measured in both runs under other conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlike {
    /// The cell's key in the baseline.
    pub baseline: CellKey,
    /// Its key in the current run.
    pub current: CellKey,
}

impl Unlike {
    /// `bert-tiny/chromium/wasm: measured unlike, not compared (baseline vs current): load
    /// isolated vs routed x4`.
    pub fn describe(&self) -> String {
        format!(
            "{}: measured unlike, not compared (baseline vs current): {}",
            self.baseline,
            self.baseline.differences(&self.current).join("; ")
        )
    }
}
