//! Reports: pure renderers of a finished run (one file per format) and the one place that
//! reads and writes run folders ([`store`]).
//!
//! Inputs: a [`RunSummary`](crate::metrics::RunSummary) and its raw
//! [`Sample`](crate::metrics::Sample)s. Outputs, in `results/<run-id>/`: `run.json` ([`json`]),
//! `samples.csv` ([`csv`]), `summary.md` ([`markdown`]), `report.html` ([`html`], charts from
//! [`svg`]) and `junit.xml` ([`junit`]); the terminal tables ([`terminal`], [`compare`]). The
//! cell text and notes every format shares are in [`view`]. Depends on `metrics` only; the
//! engine never imports this module.

use crate::metrics::compare::RunData;

pub mod compare;
pub mod csv;
pub mod events;
pub mod history;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod npy;
pub mod store;
pub mod svg;
mod template;
pub mod terminal;
pub mod view;

pub use store::{load_run, save_baseline, write_run, LoadedRun};

/// Renders a finished run into bytes. Pure: no I/O.
pub trait Reporter {
    /// The file name this format is written to inside the run folder.
    fn file_name(&self) -> &'static str;
    /// Renders `run`.
    ///
    /// # Errors
    /// When the run cannot be encoded.
    fn render(&self, run: RunData<'_>) -> Result<Vec<u8>, ReportError>;
}

/// The file formats, as `report --format` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `report.html`.
    Html,
    /// `summary.md`.
    Md,
    /// `samples.csv`.
    Csv,
    /// `run.json`.
    Json,
    /// `junit.xml`.
    Junit,
}

impl Format {
    /// Every format, in the order the files are written (`run.json` first: it is the contract,
    /// and the others are worth nothing without it).
    pub const ALL: [Format; 5] = [Self::Json, Self::Csv, Self::Md, Self::Html, Self::Junit];

    /// The renderer of this format.
    pub fn reporter(self) -> &'static dyn Reporter {
        match self {
            Self::Html => &html::HtmlReport,
            Self::Md => &markdown::MarkdownReport,
            Self::Csv => &csv::CsvReport,
            Self::Json => &json::JsonReport,
            Self::Junit => &junit::JunitReport,
        }
    }
}

/// Report failures, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Encoding failed.
    #[error("could not encode {format}: {message}")]
    Encode {
        /// Which format.
        format: &'static str,
        /// Why.
        message: String,
    },
    /// Writing failed.
    #[error("could not write '{path}'")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading failed (missing file, permissions).
    #[error("could not read '{path}'")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file exists but is not what a run writes.
    #[error("'{path}' is not a valid run file: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A bad baseline name.
    #[error(
        "baseline name '{0}' must be letters, digits, '.', '_' or '-' (and not start with '.')"
    )]
    BaselineName(String),
}
