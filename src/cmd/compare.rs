//! `webgpu-pool compare`: a run against a baseline (two folders, or `--baseline NAME` and one
//! folder), per-metric deltas and a significance test over the raw samples.

use anyhow::Result;

use webgpu_pool::app;
use webgpu_pool::metrics::compare::{self as cmp, CompareOptions};
use webgpu_pool::report;

use super::common::print;
use super::Outcome;
use crate::cli::CompareArgs;

/// Prints the comparison, then one line per lost cell and per significant regression.
///
/// # Errors
/// The folders are given wrong, or a run is missing or unreadable (naming the file), or a cell
/// was measured under other conditions in the two runs (exit 2, naming both folders; the
/// `unlike:` lines say what differs). A regression, or a cell that had successful runs in the
/// baseline and has none now, is [`Outcome::Failed`] (exit 1).
pub fn execute(args: CompareArgs) -> Result<Outcome> {
    let (baseline_dir, current_dir) = match (&args.baseline, args.runs.as_slice()) {
        (Some(name), [current]) => (
            report::store::baseline_dir(&args.results_dir, name)
                .map_err(|e| app::UsageError(format!("--baseline: {e}")))?,
            current.clone(),
        ),
        (None, [baseline, current]) => (baseline.clone(), current.clone()),
        (Some(_), _) => anyhow::bail!(app::UsageError(
            "compare: with --baseline NAME give only the current run folder".into()
        )),
        (None, _) => anyhow::bail!(app::UsageError(
            "compare: give BASELINE_DIR CURRENT_DIR, or --baseline NAME CURRENT_DIR".into()
        )),
    };
    let baseline = report::load_run(&baseline_dir)?;
    let current = report::load_run(&current_dir)?;
    let options = CompareOptions {
        threshold: args.threshold,
        timing: args.timing.to_timing(),
        ..CompareOptions::default()
    };
    let result = cmp::compare(baseline.data(), current.data(), &options);
    let mut out = report::compare::render(&result);
    for line in report::compare::failure_lines(&result) {
        out.push_str(&line);
        out.push('\n');
    }
    print(&out)?;
    if !result.alike() {
        // Not a regression (exit 1): the two runs given cannot say whether there is one.
        anyhow::bail!(app::UsageError(format!(
            "compare: {} cell(s) of the baseline '{}' were measured under other conditions in \
             '{}' (see `unlike:` above) and were not compared; compare runs measured alike, e.g. \
             a baseline saved from the same kind of run (`run --save-baseline`)",
            result.unlike.len(),
            baseline_dir.display(),
            current_dir.display()
        )));
    }
    Ok(if result.passed() {
        Outcome::Pass
    } else {
        Outcome::Failed
    })
}
