//! `webgpu-pool` binary: parse flags, build the runtime and the Ctrl-C cancellation token, run
//! the subcommand ([`cmd`]), and map its [`Outcome`] or error to an exit code in one place
//! ([`exit_code`]): 0 pass, 1 a check, threshold or regression failed, 2 usage, config or
//! infrastructure error, 130 interrupted.
//!
//! `cli`, `cmd` and `observe` are the binary's own modules: the library (the engine) never sees
//! clap or the terminal.

mod cli;
mod cmd;
mod observe;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::Cli;
use cmd::Outcome;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        cli::Command::Run(_)
            | cli::Command::Stress(_)
            | cli::Command::Resume(_)
            | cli::Command::Shard(_)
            | cli::Command::Generate(_)
            | cli::Command::Scenario(_)
    ) {
        // Before the runtime's threads exist: see `oracle::preload`.
        webgpu_pool::oracle::preload(&webgpu_pool::models::Cache::from_env());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return exit_code(Err(
                anyhow::Error::new(e).context("cannot start the async runtime")
            ))
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(cancel_on_ctrl_c(shutdown.clone()));
    let result = runtime.block_on(cmd::dispatch(cli, shutdown));
    // Browsers are closed by now; don't wait on stray blocking tasks.
    runtime.shutdown_timeout(Duration::from_secs(5));
    exit_code(result)
}

/// The first Ctrl-C cancels `shutdown`, so the command stops, closes its browsers and writes its
/// partial report; a second one exits at once.
async fn cancel_on_ctrl_c(shutdown: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("interrupted: stopping, closing browsers, writing the partial report (Ctrl-C again to force)");
        shutdown.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    }
}

/// The one place a command's result becomes an exit code. An error is printed as
/// `Error: {:#}` (exit 2), except a broken pipe (`webgpu-pool ... | head`), which exits 0.
fn exit_code(result: Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Pass) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Invalid) => ExitCode::from(2),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
