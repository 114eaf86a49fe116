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

use cli::{BenchCommand, Cli, Command, DriverChoice, ModelsCommand};
use webgpu_pool::app::{self, RunConfig, RunExtras};
use webgpu_pool::browser::DriverKind;
use webgpu_pool::report;

use cli::{CompareArgs, ReportFormat};

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
            let scenario = args.to_scenario();
            if args.print_scenario {
                print(&webgpu_pool::scenario::to_yaml(&scenario))?;
                return Ok(ExitCode::SUCCESS);
            }
            flags_valid(&scenario)?;
            if let Some(name) = &args.save_baseline {
                report::store::baseline_dir(&args.results_dir, name)
                    .map_err(|e| app::UsageError(format!("--save-baseline: {e}")))?;
            }
            let save_baseline = args.save_baseline.clone();
            let results_dir = args.results_dir.clone();
            let extras = RunExtras {
                results_dir: args.results_dir,
                command: command_line(),
            };
            let code = run_scenario(
                scenario,
                extras,
                args.concurrency.explain_routing,
                quiet,
                shutdown,
                save_baseline,
            )
            .await?;
            if args.test_state_management {
                verify_latest(&results_dir)?;
            }
            Ok(code)
        }
        Command::Stress(args) => {
            let scenario = args.to_scenario();
            if args.print_scenario {
                print(&webgpu_pool::scenario::to_yaml(&scenario))?;
                return Ok(ExitCode::SUCCESS);
            }
            flags_valid(&scenario)?;
            run_in(
                scenario,
                args.results_dir,
                args.explain_routing,
                quiet,
                shutdown,
            )
            .await
        }
        Command::Resume(args) => resume(args, quiet, shutdown).await,
        Command::Scenario(args) => {
            let scenario = load_scenario(&args.file)?;
            if args.print_scenario {
                print(&webgpu_pool::scenario::to_yaml(&scenario))?;
                return Ok(ExitCode::SUCCESS);
            }
            run_in(
                scenario,
                args.results_dir,
                args.explain_routing,
                quiet,
                shutdown,
            )
            .await
        }
        Command::Validate { files } => {
            let mut bad = 0;
            for f in &files {
                match webgpu_pool::scenario::load_file(f) {
                    Ok(_) => print(&format!("ok: {}\n", f.display()))?,
                    Err(errors) => {
                        bad += 1;
                        for e in errors {
                            eprintln!("{e}");
                        }
                    }
                }
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Schema => {
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&webgpu_pool::scenario::json_schema())?
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(args) => compare(args),
        Command::State(cmd) => state_command(cmd),
        Command::Browsers(args) => {
            let observer = observe::Stderr { quiet };
            let probe = app::probe_browsers(&args.only, &|m| observer.line(m)).await?;
            if args.json {
                print(&format!("{}\n", serde_json::to_string_pretty(&probe)?))?;
            } else {
                print(&report::terminal::render_browsers(
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
                print(&report::terminal::render_models(&list))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Recovery(args)) => {
            let observer = observe::Stderr { quiet };
            let options = webgpu_pool::bench::recovery::RecoveryOptions {
                browser: args.browser,
                rounds: args.rounds,
                model: args.model,
                web_dir: app::web_dir()?,
            };
            let measured =
                webgpu_pool::bench::recovery::recovery(&options, shutdown.clone(), &|m| {
                    observer.line(m)
                })
                .await?;
            if args.json {
                print(&format!("{}\n", serde_json::to_string_pretty(&measured)?))?;
            } else {
                print(&webgpu_pool::bench::recovery::render(&measured))?;
            }
            Ok(if shutdown.is_cancelled() {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Bench(BenchCommand::Overhead(args)) => {
            let observer = observe::Stderr { quiet };
            let options = webgpu_pool::bench::OverheadOptions {
                browsers: args.browsers,
                chromium_driver: args.driver.map(|d| match d {
                    DriverChoice::Cdp => DriverKind::Cdp,
                    DriverChoice::Webdriver => DriverKind::WebDriver,
                }),
                iterations: args.iterations,
                warmup: args.warmup,
                model: args.model,
                duration: args.duration,
                concurrency: args.concurrency as usize,
                skip_throughput: args.no_throughput,
                web_dir: app::web_dir()?,
            };
            let measured =
                webgpu_pool::bench::overhead(&options, shutdown.clone(), &|m| observer.line(m))
                    .await?;
            if args.json {
                print(&format!("{}\n", serde_json::to_string_pretty(&measured)?))?;
            } else {
                print(&webgpu_pool::bench::render(&measured))?;
            }
            Ok(if shutdown.is_cancelled() {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            })
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

/// Runs `scenario` into `results_dir` (no baseline saved): `scenario` and `stress`.
async fn run_in(
    scenario: webgpu_pool::scenario::Scenario,
    results_dir: std::path::PathBuf,
    explain: bool,
    quiet: bool,
    shutdown: CancellationToken,
) -> Result<ExitCode> {
    let extras = RunExtras {
        results_dir,
        command: command_line(),
    };
    run_scenario(scenario, extras, explain, quiet, shutdown, None).await
}

/// Validates a scenario compiled from flags, naming the flag each error came from (exit 2).
fn flags_valid(scenario: &webgpu_pool::scenario::Scenario) -> Result<()> {
    if let Err(errors) = scenario.validate() {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", cli::flag_for(e.path()), e))
            .collect();
        return Err(app::UsageError(lines.join("\n")).into());
    }
    Ok(())
}

/// Runs a validated scenario, prints the tables, and maps the outcome to an exit code.
async fn run_scenario(
    scenario: webgpu_pool::scenario::Scenario,
    extras: RunExtras,
    explain: bool,
    quiet: bool,
    shutdown: CancellationToken,
    save_baseline: Option<String>,
) -> Result<ExitCode> {
    let config = RunConfig::resolve(scenario, extras)?;
    // The bar grows as cells start, so no count is needed up front.
    let observer = observe::Progress::new(quiet, 0);
    let (summary, dir) =
        app::run(&config, shutdown.clone(), &observer, &|m| observer.line(m)).await?;
    finish(summary, dir, &observer, explain, shutdown, save_baseline)
}

/// `resume RUN_DIR`: finishes a run whose harness died.
async fn resume(
    args: cli::ResumeArgs,
    quiet: bool,
    shutdown: CancellationToken,
) -> Result<ExitCode> {
    let observer = observe::Progress::new(quiet, 0);
    let (summary, dir) = app::resume(
        &args.run_dir,
        command_line(),
        shutdown.clone(),
        &observer,
        &|m| observer.line(m),
    )
    .await?;
    finish(
        summary,
        dir,
        &observer,
        args.explain_routing,
        shutdown,
        None,
    )
}

/// Prints a finished run's tables and maps its outcome to an exit code.
fn finish(
    summary: webgpu_pool::metrics::RunSummary,
    dir: std::path::PathBuf,
    observer: &observe::Progress,
    explain: bool,
    shutdown: CancellationToken,
    save_baseline: Option<String>,
) -> Result<ExitCode> {
    observer.finish();
    print(&report::terminal::render(&summary))?;
    print(&report::terminal::render_resilience(&summary))?;
    if let Some(e) = &summary.resumed {
        print(&format!(
            "resumed: before the harness died {} requests ({} succeeded, {} failed, {} in flight, counted failed) in {:.1}s; transactions: {}\n",
            e.issued,
            e.succeeded,
            e.failed,
            e.interrupted,
            e.elapsed_ms as f64 / 1e3,
            e.transactions
        ))?;
    }
    print(&report::terminal::render_workers(&summary))?;
    if explain {
        print(&explain_routing(&summary))?;
    }
    for t in summary.thresholds.iter().filter(|t| !t.passed) {
        eprintln!(
            "threshold broken: {} = {:.4} (limit {})",
            t.name, t.value, t.limit
        );
    }
    observer.line(&format!(
        "wrote {} (run.json, samples.csv, summary.md, report.html, junit.xml)",
        dir.display()
    ));
    if let (Some(name), Some(results_dir)) = (&save_baseline, dir.parent()) {
        let to = report::save_baseline(&dir, results_dir, name)?;
        observer.line(&format!("saved baseline '{name}' in {}", to.display()));
    }
    Ok(if shutdown.is_cancelled() {
        ExitCode::from(130)
    } else if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A scenario file, or a built-in scenario by name.
fn load_scenario(file: &str) -> Result<webgpu_pool::scenario::Scenario> {
    let path = std::path::Path::new(file);
    let loaded = match webgpu_pool::scenario::builtin(file) {
        Some(text) if !path.exists() => {
            webgpu_pool::scenario::load_str(&format!("(built-in) {file}"), text)
        }
        _ => webgpu_pool::scenario::load_file(path),
    };
    loaded.map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        app::UsageError(lines.join("\n")).into()
    })
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

/// `compare`: exit 0 when nothing regressed, 1 naming each significant regression, 2 for a
/// missing or unreadable run (the error names the file).
fn compare(args: CompareArgs) -> Result<ExitCode> {
    use webgpu_pool::metrics::compare::{self as cmp, CompareOptions};
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
        ..CompareOptions::default()
    };
    let result = cmp::compare(baseline.data(), current.data(), &options);
    let regressions = report::compare::regression_lines(&result);
    let mut out = report::compare::render(&result);
    for r in &regressions {
        out.push_str(r);
        out.push('\n');
    }
    print(&out)?;
    Ok(if regressions.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `state verify` and `state show`: exit 0 when sound (a torn tail is a warning on stderr);
/// damage is an error naming the file, byte offset and seq, which exits 2.
/// `run --test-state-management`: verifies the newest run's log and snapshot and says so.
fn verify_latest(results_dir: &std::path::Path) -> Result<()> {
    let newest = std::fs::read_dir(results_dir)?
        .flatten()
        .filter(|e| e.path().join("txlog.log").exists())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    if let Some(run) = newest {
        let report = webgpu_pool::state::verify(&run.path())?;
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        eprint!("state: {}", webgpu_pool::state::render_verify(&report));
    }
    Ok(())
}

fn state_command(cmd: cli::StateCommand) -> Result<ExitCode> {
    use webgpu_pool::state;
    let (warnings, out) = match cmd {
        cli::StateCommand::Verify { run_dir } => {
            let report = state::verify(&run_dir)?;
            (report.warnings.clone(), state::render_verify(&report))
        }
        cli::StateCommand::Show { run_dir, json } => {
            let replayed = state::show(&run_dir)?;
            let out = if json {
                format!("{}\n", serde_json::to_string_pretty(&replayed)?)
            } else {
                state::render_state(&replayed)
            };
            (replayed.warnings, out)
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    print(&out)?;
    Ok(ExitCode::SUCCESS)
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
