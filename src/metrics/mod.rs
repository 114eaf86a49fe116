//! Metrics: raw samples, latency statistics and the [`RunSummary`] that reports consume.
//!
//! Inputs: per-request samples from the engine. Outputs: [`stats::Percentiles`] and the
//! serialisable [`RunSummary`] (the `run.json` contract in ARCHITECTURE.md). Imports only std,
//! serde and itself, so reports can depend on it without pulling in the engine.

pub mod compare;
pub mod listing;
pub mod sample;
pub mod stats;
pub mod summary;
pub mod thresholds;

pub use listing::*;
pub use sample::{Phase, Sample};
pub use stats::Percentiles;
pub use summary::*;
