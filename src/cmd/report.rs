//! `webgpu-pool report RUN_DIR --format F`: re-render a finished run in one format, to stdout.

use anyhow::Result;

use webgpu_pool::report;

use super::common::print;
use super::Outcome;
use crate::cli::{ReportArgs, ReportFormat};

/// Loads the run and prints it.
///
/// # Errors
/// The run folder is missing or unreadable (naming the file), or rendering fails.
pub fn execute(args: ReportArgs) -> Result<Outcome> {
    let run = report::load_run(&args.run_dir)?;
    let format = match args.format {
        ReportFormat::Html => report::Format::Html,
        ReportFormat::Md => report::Format::Md,
        ReportFormat::Csv => report::Format::Csv,
        ReportFormat::Json => report::Format::Json,
        ReportFormat::Junit => report::Format::Junit,
    };
    let bytes = format.reporter().render(run.data())?;
    print(&String::from_utf8_lossy(&bytes))?;
    Ok(Outcome::Pass)
}
