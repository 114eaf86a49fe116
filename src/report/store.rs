//! Run folders on disk: writes every report of a run, reads a finished run back for `report`
//! and `compare`, and copies a run into a named baseline. All report file I/O is here; the
//! renderers stay pure.

use std::path::{Path, PathBuf};

use crate::metrics::compare::RunData;
use crate::metrics::{RunSummary, Sample};

use super::{csv, Format, ReportError};

/// A finished run read back from its folder.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// `run.json`.
    pub summary: RunSummary,
    /// `samples.csv`.
    pub samples: Vec<Sample>,
}

impl LoadedRun {
    /// The run as the renderers take it.
    pub fn data(&self) -> RunData<'_> {
        RunData {
            summary: &self.summary,
            samples: &self.samples,
        }
    }
}

/// Writes every file report of the run into `run_dir`, each atomically (temp file + rename),
/// so a reader never sees half a `run.json`. Called after each run, also for partial runs.
///
/// # Errors
/// [`ReportError`] naming the file that could not be rendered or written.
pub fn write_run(
    summary: &RunSummary,
    samples: &[Sample],
    run_dir: &Path,
) -> Result<(), ReportError> {
    let run = RunData { summary, samples };
    for format in Format::ALL {
        let r = format.reporter();
        let bytes = r.render(run)?;
        write_atomic(&run_dir.join(r.file_name()), &bytes)?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let name = path
        .file_name()
        .map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ReportError::Write {
            path: path.display().to_string(),
            source,
        })
}

/// Reads `run.json` and `samples.csv` from a run folder.
///
/// # Errors
/// [`ReportError::Read`] or [`ReportError::Corrupt`] naming the missing or bad file.
pub fn load_run(dir: &Path) -> Result<LoadedRun, ReportError> {
    let json_path = dir.join(Format::Json.reporter().file_name());
    let text = std::fs::read_to_string(&json_path).map_err(|source| ReportError::Read {
        path: json_path.display().to_string(),
        source,
    })?;
    let summary: RunSummary = serde_json::from_str(&text).map_err(|e| ReportError::Corrupt {
        path: json_path.display().to_string(),
        message: e.to_string(),
    })?;
    let csv_path = dir.join(Format::Csv.reporter().file_name());
    let bytes = std::fs::read(&csv_path).map_err(|source| ReportError::Read {
        path: csv_path.display().to_string(),
        source,
    })?;
    let samples = csv::parse(&bytes).map_err(|e| ReportError::Corrupt {
        path: csv_path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        summary,
        samples,
    })
}

/// Where baseline `name` lives: `<results_dir>/baselines/<name>/`.
///
/// # Errors
/// [`ReportError::BaselineName`] for a name that is not a plain file name.
pub fn baseline_dir(results_dir: &Path, name: &str) -> Result<PathBuf, ReportError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(ReportError::BaselineName(name.to_string()));
    }
    Ok(results_dir.join("baselines").join(name))
}

/// Copies the report files of `run_dir` into baseline `name` under `results_dir`, replacing
/// the previous baseline of that name only once the copy is complete.
///
/// # Errors
/// A bad name, or the file that could not be copied.
pub fn save_baseline(
    run_dir: &Path,
    results_dir: &Path,
    name: &str,
) -> Result<PathBuf, ReportError> {
    let dest = baseline_dir(results_dir, name)?;
    let parent = dest.parent().unwrap_or(results_dir);
    let staging = parent.join(format!(".{name}.tmp"));
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReportError::Write { path, source }
    };
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    for format in Format::ALL {
        let file = format.reporter().file_name();
        let from = run_dir.join(file);
        std::fs::copy(&from, staging.join(file)).map_err(|source| ReportError::Read {
            path: from.display().to_string(),
            source,
        })?;
    }
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
    }
    std::fs::rename(&staging, &dest).map_err(io(&dest))?;
    Ok(dest)
}
