//! Reports: pure renderers of a [`RunSummary`] (one file per format) and the one place that
//! writes them to disk.
//!
//! Depends on `metrics` only; the engine never imports this module.

use std::path::Path;

use crate::metrics::{RunSummary, Sample};

pub mod json;
pub mod table;

/// Renders a finished run into bytes. Pure: no I/O.
pub trait Reporter {
    /// The file name this format is written to inside the run folder.
    fn file_name(&self) -> &'static str;
    /// Renders `summary`.
    ///
    /// # Errors
    /// When the summary cannot be encoded.
    fn render(&self, summary: &RunSummary) -> Result<Vec<u8>, ReportError>;
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
    #[error("could not write '{path}': {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Writes every file report of `summary` into `run_dir`, each atomically (temp file + rename),
/// so a reader never sees half a `run.json`.
///
/// # Errors
/// [`ReportError`] naming the file that could not be written.
pub fn write_run(
    summary: &RunSummary,
    samples: &[Sample],
    run_dir: &Path,
) -> Result<(), ReportError> {
    let _ = samples; // samples.csv lands with the reports issue
    let reporters: [&dyn Reporter; 1] = [&json::JsonReport];
    for r in reporters {
        let bytes = r.render(summary)?;
        let path = run_dir.join(r.file_name());
        let tmp = run_dir.join(format!(".{}.tmp", r.file_name()));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| ReportError::Write {
                path: path.display().to_string(),
                source,
            })?;
    }
    Ok(())
}
