//! Performance history: every finished run's cells and raw samples in an embedded SQLite file
//! (`results/history.sqlite` by default), the trends across runs, and the recommendations
//! (which browser x backend serves each model best) that steer the router.
//!
//! - `store.rs`: the file, its versioned schema and migrations, recording and reading.
//! - `trends.rs`: per cell, each run against the one before with `compare`'s noise-aware tests
//!   over raw samples, and anomalies (a run far from the cell's usual median). Pure.
//! - `recommend.rs`: the measured best pair per model and per model type, with its numbers, a
//!   confidence and the sample count; the routing profile `recommend --apply` writes. Pure but
//!   for the profile's file.
//!
//! The run's own files are always written before the history is touched: a history that is
//! locked, damaged or on a full disk is a warning for the run, never a lost result. Must not
//! import `report`, `cli` or terminal crates.

use std::path::Path;

use serde::Serialize;

mod recommend;
mod store;
mod trends;

pub use recommend::{
    recommend, Choice, Confidence, ModelRecommendation, ProfileChoice, RecommendOptions,
    Recommendations, RoutingProfile, TypeRecommendation,
};
pub use store::{schema_version, History, BUSY_WAIT};
pub use trends::{trends, Anomaly, TrendOptions, TrendReport, TrendStep};

/// The history file next to the run folders when none is named.
pub const DEFAULT_FILE: &str = "history.sqlite";

/// The routing profile `recommend --apply` writes next to it.
pub const PROFILE_FILE: &str = "routing-profile.json";

/// What identifies a measured configuration: one model on one browser, backend, adapter and
/// thread count. Browser versions are kept per run (a new version is a point in the series, so
/// trends show what it changed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CellKey {
    /// Catalog model name.
    pub model: String,
    /// Browser kind.
    pub browser: String,
    /// Backend that ran.
    pub backend: String,
    /// WebGPU adapter (`vendor/architecture`), WebNN device (`webnn-cpu`) or `cpu` for wasm.
    pub adapter: String,
    /// wasm threads (1 for the other backends unless set).
    pub threads: u32,
}

impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{} ({}, {} thread{})",
            self.model,
            self.browser,
            self.backend,
            self.adapter,
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        )
    }
}

/// One cell of one recorded run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellRun {
    /// Row id (for its samples).
    #[serde(skip)]
    pub id: i64,
    /// The run.
    pub run_id: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The same, unix ms.
    pub started_ms: i64,
    /// The run folder when it was recorded.
    pub run_dir: String,
    /// The configuration.
    #[serde(flatten)]
    pub key: CellKey,
    /// Model type.
    pub task: String,
    /// Browser version.
    pub browser_version: String,
    /// Weights (`seeded` or a checkpoint).
    pub weights: String,
    /// Measured samples.
    pub runs: u64,
    /// Failed requests.
    pub failed: u64,
    /// Warm latency p50, ms.
    pub p50_ms: f64,
    /// Warm latency p95, ms.
    pub p95_ms: f64,
    /// Warm latency p99, ms.
    pub p99_ms: f64,
    /// Warm requests per second.
    pub throughput_per_s: f64,
    /// Mean busy fraction of the workers that served the cell, when known.
    pub utilization: Option<f64>,
    /// Where the raw samples were written (`samples.csv`; also kept in the history).
    pub samples_csv: String,
}

/// A recorded cell with its measured samples, as trends and recommendations take them.
pub type Recorded = (CellRun, Vec<crate::metrics::Sample>);

/// Why the history could not be used. Each names the file, or the bad `--since` value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// No history file yet.
    #[error("no history at '{path}': it is written by every run (run, stress, scenario) into its --results-dir")]
    Missing {
        /// The file.
        path: String,
    },
    /// Another process holds the lock.
    #[error("history '{path}' is locked by another process (waited {}ms): {message}", BUSY_WAIT.as_millis())]
    Locked {
        /// The file.
        path: String,
        /// SQLite's words.
        message: String,
    },
    /// Not a database, or damaged.
    #[error("history '{path}' is not a webgpu-pool history or is damaged ({message}); move it away and the next run starts a new one")]
    Corrupt {
        /// The file.
        path: String,
        /// SQLite's words.
        message: String,
    },
    /// The disk refused the write.
    #[error("history '{path}': the disk is full ({message})")]
    Full {
        /// The file.
        path: String,
        /// SQLite's words.
        message: String,
    },
    /// Written by a newer webgpu-pool.
    #[error("history '{path}' has schema version {found}; this webgpu-pool knows up to {known}: upgrade it, or use another --history file")]
    Newer {
        /// The file.
        path: String,
        /// Its version.
        found: u32,
        /// Ours.
        known: u32,
    },
    /// Any other SQLite or I/O failure.
    #[error("history '{path}': {message}")]
    Other {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The routing profile cannot be read or written.
    #[error("routing profile '{path}': {message}")]
    Profile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A time range ([`since_ms`]) that is neither a duration nor `all`.
    #[error("'{value}' is not a duration like 7d, 12h or 30m, or `all`: {reason}")]
    Since {
        /// The value as given.
        value: String,
        /// Why it is not a duration (in the message, not its `source()`: printed once).
        reason: humantime::DurationError,
    },
}

impl HistoryError {
    fn at(path: &Path, e: impl Into<AnyError>) -> Self {
        let path = path.display().to_string();
        match e.into() {
            AnyError::Io(e) => Self::Other {
                path,
                message: e.to_string(),
            },
            AnyError::Sql(e) => {
                let message = e.to_string();
                match e.sqlite_error_code() {
                    Some(
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked,
                    ) => Self::Locked { path, message },
                    Some(
                        rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt,
                    ) => Self::Corrupt { path, message },
                    Some(rusqlite::ErrorCode::DiskFull) => Self::Full { path, message },
                    _ => Self::Other { path, message },
                }
            }
        }
    }
}

enum AnyError {
    Io(std::io::Error),
    Sql(rusqlite::Error),
}

impl From<std::io::Error> for AnyError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<rusqlite::Error> for AnyError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

/// Parses `--since`: a duration back from now (`7d`, `12h`, `30m`), or `all`. Returns the
/// earliest start time kept, unix ms.
///
/// # Errors
/// [`HistoryError::Since`] naming the bad value.
pub fn since_ms(value: &str, now: std::time::SystemTime) -> Result<i64, HistoryError> {
    if value.trim() == "all" {
        return Ok(i64::MIN);
    }
    let back = humantime::parse_duration(value.trim()).map_err(|reason| HistoryError::Since {
        value: value.to_owned(),
        reason,
    })?;
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(now_ms.saturating_sub(back.as_millis() as i64))
}

#[cfg(test)]
mod tests;
