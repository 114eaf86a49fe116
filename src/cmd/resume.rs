//! `webgpu-pool resume RUN_DIR`: finish a run whose harness died, from its snapshot and
//! transaction log, and report both parts.

use anyhow::Result;

use webgpu_pool::app;

use super::common::{command_line, finish, history_file, AfterRun};
use super::{Context, Outcome};
use crate::cli::ResumeArgs;
use crate::observe;

/// Resumes the run in `args.run_dir` and prints its tables.
///
/// # Errors
/// The folder is not a run to resume, its log is damaged (naming the record), or the run
/// cannot restart.
pub async fn execute(args: ResumeArgs, ctx: &Context) -> Result<Outcome> {
    let observer = observe::Progress::new(ctx.quiet, 0);
    let (summary, dir) = app::resume(
        &args.run_dir,
        command_line(),
        ctx.shutdown.clone(),
        &observer,
    )
    .await?;
    let results_dir = args.run_dir.parent().unwrap_or(std::path::Path::new("."));
    let after = AfterRun {
        explain_routing: args.explain_routing,
        history: history_file(&args.history, results_dir),
        ..AfterRun::default()
    };
    finish(&summary, &dir, &observer, &after, ctx)
}
