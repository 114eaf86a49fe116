//! `webgpu-pool` binary: parse flags, build the runtime, call the app, map the outcome to an
//! exit code (0 pass, 1 a check or threshold failed, 2 usage/config/infrastructure error,
//! 130 interrupted).

mod cli;
mod observe;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, DriverChoice, ModelsCommand};
use webgpu_pool::app::{self, RunConfig, RunOptions};
use webgpu_pool::browser::DriverKind;
use webgpu_pool::report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping, closing browsers, writing the partial report (Ctrl-C again to force)");
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let result = runtime.block_on(dispatch(cli, shutdown));
    // Browsers are closed by now; don't wait on stray blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli, shutdown: CancellationToken) -> Result<ExitCode> {
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Run(args) => {
            let n_browsers = args.browsers.len();
            let options = RunOptions {
                models: args.models,
                browsers: args.browsers,
                backends: args.backends,
                iterations: args.iterations,
                warmup: args.warmup,
                seed: args.seed,
                chromium_driver: match args.driver {
                    DriverChoice::Cdp => DriverKind::Cdp,
                    DriverChoice::Webdriver => DriverKind::WebDriver,
                },
                results_dir: args.results_dir,
                load_timeout: args.load_timeout,
                run_timeout: args.run_timeout,
                command: command_line(),
                concurrent: args.concurrency.concurrent_models.then(|| {
                    let c = &args.concurrency;
                    app::Concurrent {
                        concurrency: c.concurrency as usize,
                        duration: c.duration,
                        rate: c.rate,
                        min_workers: c.min_connections.map_or(n_browsers, |m| m as usize),
                        max_workers: c.max_connections as usize,
                        idle_timeout: c.idle_timeout,
                    }
                }),
            };
            let explain = args.concurrency.explain_routing;
            let config = RunConfig::resolve(options)?;
            let observer = observe::Stderr { quiet };
            let (summary, dir) =
                app::run(&config, shutdown.clone(), &observer, &|m| observer.line(m)).await?;
            print(&report::table::render(&summary))?;
            if explain {
                print(&explain_routing(&summary))?;
            }
            observer.line(&format!("wrote {}", dir.join("run.json").display()));
            Ok(if shutdown.is_cancelled() {
                ExitCode::from(130)
            } else if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Browsers(args) => {
            let observer = observe::Stderr { quiet };
            let probe = app::probe_browsers(&args.only, &|m| observer.line(m)).await?;
            if args.json {
                print(&format!("{}\n", serde_json::to_string_pretty(&probe)?))?;
            } else {
                print(&report::table::render_browsers(
                    &probe.browsers,
                    &probe.drivers,
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(ModelsCommand::List { json }) => {
            let list = app::model_list();
            if json {
                print(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
            } else {
                print(&report::table::render_models(&list))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(ModelsCommand::Prepare { models, seed }) => {
            let observer = observe::Stderr { quiet };
            let prepared = app::prepare_named(&models, seed, &|m| observer.line(m)).await?;
            for p in prepared {
                print(&format!(
                    "{}\t{}\t{}\n",
                    p.name,
                    p.weights.as_str(),
                    p.onnx_file.display()
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--explain-routing`: each decision with its reasons, then what the pool did.
fn explain_routing(summary: &webgpu_pool::metrics::RunSummary) -> String {
    let mut out = String::from("routing:\n");
    for r in &summary.routing {
        out.push_str(&format!("  {} -> {}\n", r.model, r.target));
        for why in &r.reasons {
            out.push_str(&format!("      because {why}\n"));
        }
    }
    out.push_str(&format!("pool: peak {} worker(s)\n", summary.peak_workers));
    for e in &summary.pool_events {
        out.push_str(&format!(
            "  {:>8.1}s {:<16} {:<12} {}\n",
            e.at_ms as f64 / 1e3,
            e.kind,
            e.worker,
            e.detail
        ));
    }
    out
}

fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "webgpu-pool".to_string();
    }
    args.join(" ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
