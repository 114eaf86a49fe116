//! `webgpu-pool history` and `webgpu-pool recommend`: read the performance history every run
//! adds to, show its series and trends, and name (and apply) the measured best placements.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use webgpu_pool::app;
use webgpu_pool::history::{
    self, CellRun, History, RecommendOptions, Recorded, RoutingProfile, TrendOptions,
};
use webgpu_pool::metrics::compare::{CompareOptions, Verdict};
use webgpu_pool::report;

use super::common::{print, print_json};
use super::Outcome;
use crate::cli::{HistoryCmdArgs, HistoryMetric, HistorySource, RecommendArgs};

/// The history file `source` names.
fn file(source: &HistorySource) -> PathBuf {
    source
        .history
        .clone()
        .unwrap_or_else(|| source.results_dir.join(history::DEFAULT_FILE))
}

/// The cells `source` selects, each with its samples, oldest first.
fn select(source: &HistorySource) -> Result<(PathBuf, Vec<Recorded>)> {
    let since = history::since_ms(&source.since, std::time::SystemTime::now())
        .map_err(|e| app::UsageError(format!("--since: {e}")))?;
    let model = match &source.model {
        Some(m) => Some(
            webgpu_pool::models::resolve(m)
                .map_err(|e| app::UsageError(format!("--model: {e}")))?
                .name,
        ),
        None => None,
    };
    let path = file(source);
    let h = History::open_read(&path).map_err(|e| app::UsageError(e.to_string()))?;
    let mut out = Vec::new();
    for c in h.cells(since)? {
        if model.is_some_and(|m| m != c.key.model)
            || source.model_type.is_some_and(|t| t.as_str() != c.task)
            || source
                .load
                .is_some_and(|l| l.to_kind() != c.key.load.context)
        {
            continue;
        }
        let samples = h.samples(&c)?;
        out.push((c, samples));
    }
    Ok((path, out))
}

#[derive(Serialize)]
struct HistoryJson<'a> {
    history: String,
    since: &'a str,
    cells: Vec<&'a CellRun>,
    trends: &'a history::TrendReport,
}

/// Prints the series and trends; exit 1 with `--fail-on-regression` when a latest run regressed.
///
/// # Errors
/// The history is missing, locked or damaged (naming the file), or a filter is invalid.
pub fn execute(args: HistoryCmdArgs) -> Result<Outcome> {
    let (path, cells) = select(&args.source)?;
    let options = TrendOptions {
        compare: CompareOptions {
            threshold: args.threshold,
            timing: args.timing.to_timing(),
            ..CompareOptions::default()
        },
        ..TrendOptions::default()
    };
    let trends = history::trends(&cells, &options);
    let runs: Vec<CellRun> = cells.into_iter().map(|(c, _)| c).collect();
    if let Some(html) = &args.html {
        let title = format!("webgpu-pool history: {}", path.display());
        std::fs::write(html, report::history::html(&title, &runs, &trends))
            .map_err(|e| anyhow::anyhow!("writing '{}': {e}", html.display()))?;
    }
    if args.source.json {
        print_json(&HistoryJson {
            history: path.display().to_string(),
            since: &args.source.since,
            cells: runs.iter().collect(),
            trends: &trends,
        })?;
    } else if runs.is_empty() {
        print(&format!(
            "{}: no recorded run matches (since {})\n",
            path.display(),
            args.source.since
        ))?;
    } else {
        let cols = report::history::Columns {
            latency: args.metrics.contains(&HistoryMetric::Latency),
            throughput: args.metrics.contains(&HistoryMetric::Throughput),
            browser_utilization: args.metrics.contains(&HistoryMetric::BrowserUtilization),
            timing: args.timing.to_timing(),
        };
        print(&report::history::render(&runs, &trends, cols))?;
    }
    // The latest step of each configuration: did its newest run regress?
    let latest_regressed = trends.steps.iter().enumerate().any(|(i, s)| {
        !trends.steps[i + 1..].iter().any(|later| later.key == s.key)
            && s.deltas.iter().any(|d| d.verdict == Verdict::Regression)
    });
    Ok(if args.fail_on_regression && latest_regressed {
        eprintln!("history: the latest run of a configuration regressed (see above)");
        Outcome::Failed
    } else {
        Outcome::Pass
    })
}

/// Prints the recommendations, and writes the routing profile with `--apply`.
///
/// # Errors
/// As [`execute`], or the profile cannot be written (naming the file).
pub fn recommend(args: RecommendArgs) -> Result<Outcome> {
    let (path, cells) = select(&args.source)?;
    let options = RecommendOptions {
        min_samples: args.min_samples as usize,
        window: args.window as usize,
    };
    let recs = history::recommend(&cells, &options);
    if args.source.json {
        print_json(&recs)?;
    } else if recs.models.is_empty() {
        let matched = match recs.unknown_load {
            0 => "no recorded run matches".to_string(),
            n => format!(
                "the {n} recorded cell run(s) that match are of unknown load context (recorded \
                 before load contexts were) and are compared with nothing"
            ),
        };
        print(&format!(
            "{}: {matched} (since {}); run some first, e.g. `webgpu-pool run --models bert --backends wasm`\n",
            path.display(),
            args.source.since
        ))?;
    } else {
        print(&report::history::render_recommendations(
            &recs,
            options.min_samples,
        ))?;
    }
    if let Some(apply) = &args.apply {
        let to = apply
            .clone()
            .unwrap_or_else(|| args.source.results_dir.join(history::PROFILE_FILE));
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let profile =
            RoutingProfile::from_recommendations(&recs, &path.display().to_string(), created);
        if profile.models.is_empty() {
            anyhow::bail!(app::UsageError(format!(
                "--apply: nothing to apply, no model has a configuration measured isolated (a \
                 matrix `run`) with {} samples; the profile is made from isolated runs only; \
                 '{}' is unchanged",
                options.min_samples,
                to.display()
            )));
        }
        profile.save(&to)?;
        let used = match apply {
            None => format!(
                "routed runs with --results-dir {} use it unless given --no-routing-profile",
                args.source.results_dir.display()
            ),
            Some(_) => format!("routed runs use it with --routing-profile {}", to.display()),
        };
        eprintln!(
            "wrote routing profile {} ({} model(s), {} type(s)); {used}",
            to.display(),
            profile.models.len(),
            profile.model_types.len(),
        );
    }
    Ok(Outcome::Pass)
}
