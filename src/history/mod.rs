//! Performance history: every finished run's cells and raw samples in an embedded SQLite file
//! (`results/history.sqlite` by default), the trends across runs, and the recommendations
//! (which browser x backend serves each model best) that steer the router.
//!
//! - `store.rs`: the file, its versioned schema and migrations, recording and reading.
//! - `trends.rs`: per configuration ([`CellKey`]: model, browser, backend, adapter, threads,
//!   build, load context), each run against the one before with `compare`'s noise-aware tests
//!   over raw samples, and anomalies (a run far from the configuration's usual median). Pure.
//! - `recommend.rs`: per model and load context, the measured best configuration, with its
//!   numbers, a confidence and the sample count; per model type the same. Pure.
//! - `profile.rs`: the routing profile `recommend --apply` writes from the isolated answers and
//!   routed runs read. Pure but for its file.
//!
//! The run's own files are always written before the history is touched: a history that is
//! locked, damaged or on a full disk is a warning for the run, never a lost result. Must not
//! import `report`, `cli` or terminal crates.

use std::path::Path;

use serde::Serialize;

mod profile;
mod recommend;
mod store;
mod trends;

pub use profile::{ProfileChoice, RoutingProfile};
pub use recommend::{
    recommend, Choice, Confidence, Config, ModelRecommendation, RecommendOptions, Recommendations,
    TypeRecommendation, Unanswered,
};
pub use store::{schema_version, History, BUSY_WAIT};
pub use trends::{p50_of, trends, Anomaly, TrendOptions, TrendReport, TrendStep};

/// The history file next to the run folders when none is named.
pub const DEFAULT_FILE: &str = "history.sqlite";

/// The routing profile `recommend --apply` writes next to it.
pub const PROFILE_FILE: &str = "routing-profile.json";

/// What identifies a measured configuration: model, browser, backend, adapter, wasm threads,
/// browser build and load context (`metrics::CellKey`, the key `compare` uses too). Cells with
/// different keys are never pooled or compared, and neither are cells of an unknown load
/// context (recorded before schema version 2).
pub use crate::metrics::CellKey;

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
    /// Browser version as the run reported it (the key has it normalised as `build`).
    pub browser_version: String,
    /// Weights (`seeded` or a checkpoint).
    pub weights: String,
    /// Measured samples.
    pub runs: u64,
    /// Failed requests.
    pub failed: u64,
    /// Warm page run time (the page's `session.run`) p50, ms.
    pub p50_ms: f64,
    /// Warm page run time p95, ms.
    pub p95_ms: f64,
    /// Warm page run time p99, ms.
    pub p99_ms: f64,
    /// Warm end-to-end latency (scheduled start to answer, as the harness saw it) p50, ms;
    /// `None` for a cell recorded before schema version 2.
    pub e2e_p50_ms: Option<f64>,
    /// The same, p95.
    pub e2e_p95_ms: Option<f64>,
    /// The same, p99.
    pub e2e_p99_ms: Option<f64>,
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
    /// A database whose tables are not those its schema version says.
    #[error("history '{path}' (schema version {version}) is not a webgpu-pool history or is damaged: {message}; move it away and the next run starts a new one")]
    Schema {
        /// The file.
        path: String,
        /// Its schema version.
        version: u32,
        /// What is missing or wrong.
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
