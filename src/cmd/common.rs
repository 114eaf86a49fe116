//! Helpers the subcommands share: stdout printing, the recorded command line, loading and
//! checking scenarios, and running one to the end ([`run_scenario`], the one call of
//! `app::run`) then printing its tables and saving a baseline ([`finish`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use webgpu_pool::app::{self, RunConfig, RunExtras};
use webgpu_pool::metrics::RunSummary;
use webgpu_pool::report;
use webgpu_pool::scenario::{self, flags, Scenario};

use super::{Context, Outcome};
use crate::observe;

/// Writes `s` to stdout and flushes it.
///
/// # Errors
/// Writing fails; a broken pipe is among them and exits 0.
pub fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints `value` as pretty JSON and a newline.
///
/// # Errors
/// As [`print`], or `value` does not serialize.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    print(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// `--print-scenario`: the scenario as YAML, defaults filled in, instead of running it.
///
/// # Errors
/// As [`print`].
pub fn print_scenario(scenario: &Scenario) -> Result<Outcome> {
    print(&scenario::to_yaml(scenario))?;
    Ok(Outcome::Pass)
}

/// The command line as typed, with the program named `webgpu-pool`, for `run.json`.
pub fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "webgpu-pool".to_string();
    }
    args.join(" ")
}

/// A scenario file, or a built-in scenario by name (a file of that name wins).
///
/// # Errors
/// Every problem found, one per line, as a usage error.
pub fn load_scenario(file: &str) -> Result<Scenario> {
    let path = Path::new(file);
    let loaded = match scenario::builtin(file) {
        Some(text) if !path.exists() => scenario::load_str(&format!("(built-in) {file}"), text),
        _ => scenario::load_file(path),
    };
    loaded.map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        app::UsageError(lines.join("\n")).into()
    })
}

/// Validates a scenario compiled from flags, naming the flag each error came from.
///
/// # Errors
/// Every problem found, one per line, as a usage error.
pub fn flags_valid(scenario: &Scenario) -> Result<()> {
    if let Err(errors) = scenario.validate() {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| {
                let line = format!("{}: {}", flags::flag_for(e.path()), e);
                // The key paths the message names, as the flags they came from too.
                line.replace(e.message(), &flags::in_flag_words(e.message()))
            })
            .collect();
        return Err(app::UsageError(lines.join("\n")).into());
    }
    Ok(())
}

/// What to do with a finished run besides printing its tables.
#[derive(Debug, Default)]
pub struct AfterRun {
    /// `--explain-routing`: print each routing decision and the pool's events.
    pub explain_routing: bool,
    /// `--save-baseline NAME`: copy the run's report files to `baselines/NAME/`.
    pub save_baseline: Option<String>,
    /// `--save-outputs`: write every cell's full output as `.npy` into the run folder.
    pub save_outputs: bool,
    /// The history file the run is added to (`None`: `--no-history`).
    pub history: Option<PathBuf>,
    /// Use `<results-dir>/routing-profile.json` when the scenario names no profile and the
    /// file exists (`--no-routing-profile` turns it off).
    pub default_profile: bool,
    /// Browser kinds not installed that a default `run` would have used (named under the table).
    pub not_installed: Vec<webgpu_pool::browser::BrowserKind>,
}

/// The history file `args` name: `--history`, else `<results_dir>/history.sqlite`; `None` with
/// `--no-history`.
pub fn history_file(args: &crate::cli::HistoryArgs, results_dir: &Path) -> Option<PathBuf> {
    if args.no_history {
        return None;
    }
    Some(
        args.history
            .clone()
            .unwrap_or_else(|| results_dir.join(webgpu_pool::history::DEFAULT_FILE)),
    )
}

/// Runs a validated scenario into `results_dir` (`run`, `stress`, `scenario`), prints its
/// tables, and says how it went.
///
/// # Errors
/// Config and infrastructure errors; a broken threshold is [`Outcome::Failed`] instead.
pub async fn run_scenario(
    mut scenario: Scenario,
    results_dir: PathBuf,
    after: &AfterRun,
    ctx: &Context,
) -> Result<Outcome> {
    let default = results_dir.join(webgpu_pool::history::PROFILE_FILE);
    if after.default_profile
        && scenario.pool.routing_profile.is_none()
        && scenario.pool.placement == scenario::PlacementMode::Routed
        && scenario.sharding.is_none()
        && default.is_file()
    {
        scenario.pool.routing_profile = Some(default.display().to_string());
        if !ctx.quiet {
            eprintln!(
                "routing by the measured best in {} (written by `recommend --apply`; --no-routing-profile ignores it)",
                default.display()
            );
        }
    }
    let extras = RunExtras {
        results_dir,
        command: command_line(),
        save_outputs: after.save_outputs,
        not_installed: after.not_installed.clone(),
    };
    let config = RunConfig::resolve(scenario, extras)?;
    // The bar grows as cells start, so no count is needed up front.
    let observer = observe::Progress::new(ctx.quiet, 0);
    let (summary, dir) = app::run(&config, ctx.shutdown.clone(), &observer).await?;
    finish(&summary, &dir, &observer, after, ctx)
}

/// Prints a finished run's tables, says where its files are, saves the baseline if asked, and
/// judges it (`run`, `stress`, `scenario`, `resume`).
///
/// # Errors
/// Printing fails, or the baseline cannot be saved.
pub fn finish(
    summary: &RunSummary,
    dir: &Path,
    observer: &observe::Progress,
    after: &AfterRun,
    ctx: &Context,
) -> Result<Outcome> {
    observer.finish();
    print(&report::terminal::render(summary))?;
    print(&report::terminal::render_resilience(summary))?;
    print(&report::terminal::render_adaptive(summary))?;
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
    print(&report::terminal::render_workers(summary))?;
    if after.explain_routing {
        print(&explain(summary))?;
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
    if let (Some(name), Some(results_dir)) = (&after.save_baseline, dir.parent()) {
        let to = report::save_baseline(dir, results_dir, name)?;
        observer.line(&format!("saved baseline '{name}' in {}", to.display()));
    }
    if let Some(file) = &after.history {
        add_history(file, dir, &|m: &str| observer.line(m));
    }
    Ok(Outcome::judge(&ctx.shutdown, summary.passed()))
}

/// Adds the run in `dir` to the history `file`, after its run.json is written: a history that
/// fails is a warning and loses nothing of the run.
pub fn add_history(file: &Path, dir: &Path, line: &dyn Fn(&str)) {
    match add_to_history(file, dir) {
        Ok(n) => line(&format!(
            "added {n} cell(s) to the history {}",
            file.display()
        )),
        Err(e) => eprintln!(
            "warning: {e:#}; the run is not in the history, its results are intact in {}",
            dir.display()
        ),
    }
}

/// Adds the run in `dir` (its run.json and samples.csv) to the history `file`.
fn add_to_history(file: &Path, dir: &Path) -> Result<usize> {
    let run = report::load_run(dir)?;
    let mut h = webgpu_pool::history::History::open(file)?;
    Ok(h.record(&run.summary, &run.samples, dir)?)
}

/// `--explain-routing`: each decision with its reasons, then what the pool did.
fn explain(summary: &RunSummary) -> String {
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
