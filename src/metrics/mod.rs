//! Metrics: raw samples, latency statistics and the [`RunSummary`] that reports consume.
//!
//! Inputs: per-request samples from the engine. Outputs: [`stats::Percentiles`], the
//! serialisable [`RunSummary`] (the `run.json` contract in ARCHITECTURE.md) and what the reports
//! derive from it ([`Resilience`]: faults and recovery). Imports only std, serde and itself, so
//! reports can depend on it without pulling in the engine.

pub mod adaptive;
pub mod aggregate;
pub mod cell_key;
pub mod compare;
pub mod generation;
pub mod listing;
pub mod load;
pub mod page_runs;
pub mod resilience;
pub mod sample;
pub mod sharding;
pub mod stats;
pub mod summary;
pub mod thresholds;
pub mod webnn;

pub use adaptive::{AdaptiveEvaluation, AdaptiveMove, AdaptiveReport, PairTiming};
pub use cell_key::{browser_build, CellKey};
pub use generation::GenerationReport;
pub use listing::*;
pub use load::{LoadContext, LoadKind};
pub use page_runs::PageRuns;
pub use resilience::{served_ms, FaultKindStats, RecoveryStats, Resilience, Retries};
pub use sample::{FailureCause, Phase, Sample};
pub use sharding::ShardingReport;
pub use stats::Percentiles;
pub use summary::*;
pub use webnn::{OpCount, WebnnGraph, WebnnUse};
