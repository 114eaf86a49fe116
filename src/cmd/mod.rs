//! The subcommands, one file each (`run.rs` for `webgpu-pool run`, ...), and [`dispatch`].
//!
//! Each file maps its clap arguments onto the library (`scenario::flags`, `app`, `report`,
//! `state`, `bench`), prints its results to stdout and says how it went as an [`Outcome`];
//! `main` turns that, or the error, into the exit code. Shared helpers are in `common.rs`.
//!
//! Only the binary imports this module; the library never sees clap or the terminal.

mod bench;
mod browsers;
mod common;
mod compare;
mod generate;
mod history;
mod models;
mod report;
mod resume;
mod run;
mod scenario;
mod schema;
mod shard;
mod state;
mod stress;
mod validate;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};

/// How a command that did not fail with an error went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed (exit 0).
    Pass,
    /// A threshold, check or comparison failed; the reason is printed (exit 1).
    Failed,
    /// The input was invalid and every error is already printed (exit 2, as an error).
    Invalid,
    /// Ctrl-C stopped it; what was measured is printed and written (exit 130).
    Interrupted,
}

impl Outcome {
    /// A finished measurement: interrupted when Ctrl-C cancelled it, whatever it measured;
    /// otherwise pass or fail by `passed`.
    fn judge(shutdown: &CancellationToken, passed: bool) -> Self {
        if shutdown.is_cancelled() {
            Self::Interrupted
        } else if passed {
            Self::Pass
        } else {
            Self::Failed
        }
    }
}

/// What every command may use: the global flags and the Ctrl-C token.
#[derive(Debug)]
pub struct Context {
    /// `--quiet`: no progress, only errors and the results.
    pub quiet: bool,
    /// Cancelled on the first Ctrl-C.
    pub shutdown: CancellationToken,
}

/// Runs the subcommand `cli` names.
///
/// # Errors
/// Usage, config and infrastructure errors, which exit 2.
pub async fn dispatch(cli: Cli, shutdown: CancellationToken) -> Result<Outcome> {
    let ctx = Context {
        quiet: cli.global.quiet,
        shutdown,
    };
    match cli.command {
        Command::Run(args) => run::execute(args, &ctx).await,
        Command::Stress(args) => stress::execute(args, &ctx).await,
        Command::Shard(args) => shard::execute(args, &ctx).await,
        Command::Generate(args) => generate::execute(args, &ctx).await,
        Command::Resume(args) => resume::execute(args, &ctx).await,
        Command::Scenario(args) => scenario::execute(args, &ctx).await,
        Command::Validate { files } => validate::execute(&files),
        Command::Schema => schema::execute(),
        Command::Report(args) => report::execute(args),
        Command::Compare(args) => compare::execute(args),
        Command::History(args) => history::execute(args),
        Command::Recommend(args) => history::recommend(args),
        Command::State(cmd) => state::execute(cmd),
        Command::Browsers(args) => browsers::execute(args, &ctx).await,
        Command::Models(cmd) => models::execute(cmd, &ctx).await,
        Command::Bench(cmd) => bench::execute(cmd, &ctx).await,
    }
}
