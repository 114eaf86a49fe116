//! `webgpu-pool bench overhead|recovery`: benchmark the harness itself against real browsers
//! (the latency the pool path adds, time to recover after a kill).

use anyhow::Result;

use webgpu_pool::app;
use webgpu_pool::bench::{self, recovery, OverheadOptions};
use webgpu_pool::browser::DriverKind;

use super::common::{print, print_json};
use super::{Context, Outcome};
use crate::cli::{BenchCommand, BenchOverheadArgs, BenchRecoveryArgs};
use crate::observe;

/// Runs the benchmark and prints its text, or JSON with `--json`.
///
/// # Errors
/// The web folder or a browser is missing, or the benchmark cannot run.
pub async fn execute(cmd: BenchCommand, ctx: &Context) -> Result<Outcome> {
    match cmd {
        BenchCommand::Overhead(args) => overhead(args, ctx).await?,
        BenchCommand::Recovery(args) => recover(args, ctx).await?,
    }
    // A benchmark has no thresholds: it passes unless Ctrl-C cut it short.
    Ok(Outcome::judge(&ctx.shutdown, true))
}

async fn overhead(args: BenchOverheadArgs, ctx: &Context) -> Result<()> {
    let observer = observe::Stderr { quiet: ctx.quiet };
    let options = OverheadOptions {
        browsers: args.browsers,
        chromium_driver: args.driver.map(DriverKind::from),
        iterations: args.iterations,
        warmup: args.warmup,
        model: args.model,
        duration: args.duration,
        concurrency: args.concurrency as usize,
        skip_throughput: args.no_throughput,
        web_dir: app::web_dir()?,
    };
    let measured = bench::overhead(&options, ctx.shutdown.clone(), &|m| observer.line(m)).await?;
    if args.json {
        print_json(&measured)
    } else {
        print(&bench::render(&measured))
    }
}

async fn recover(args: BenchRecoveryArgs, ctx: &Context) -> Result<()> {
    let observer = observe::Stderr { quiet: ctx.quiet };
    let options = recovery::RecoveryOptions {
        browser: args.browser,
        rounds: args.rounds,
        model: args.model,
        web_dir: app::web_dir()?,
    };
    let measured =
        recovery::recovery(&options, ctx.shutdown.clone(), &|m| observer.line(m)).await?;
    if args.json {
        print_json(&measured)
    } else {
        print(&recovery::render(&measured))
    }
}
