//! `resume`: finishes a run whose harness died, from its run folder's scenario, snapshot and
//! transaction log: reaps what the dead harness left, rolls back its open transactions, and
//! runs what is left of the workload where each model was placed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use crate::browser::{self, BrowserKind};
use crate::metrics::RunSummary;
use crate::pool::{self, RunEvent, RunObserver};

use super::{run_part, Part, RunConfig, RunExtras, UsageError};

/// Finishes a run whose harness died (SIGKILL, power loss): rebuilds its state from the run
/// folder's snapshot and transaction log, reaps the browsers and drivers the dead harness left
/// (found by their recorded profile directories, so nothing else is touched), rolls back the
/// transactions it left open, relaunches workers and reloads each model where it was placed,
/// and runs what is left of the workload. The report covers both parts.
///
/// # Errors
/// [`UsageError`] (exit 2) when the folder is not a resumable run: no log or scenario, a damaged
/// log (the error names the record's byte offset), or a run that already finished.
pub async fn resume(
    run_dir: &Path,
    command: String,
    shutdown: CancellationToken,
    observer: &dyn RunObserver,
) -> Result<(RunSummary, PathBuf)> {
    let note = |line: String| observer.on_event(&RunEvent::Note { line });
    let scenario_file = run_dir.join("scenario.yaml");
    if !scenario_file.is_file() {
        bail!(UsageError(format!(
            "'{}' is not a run folder to resume: it has no scenario.yaml",
            run_dir.display()
        )));
    }
    let mut scenario = crate::scenario::load_file(&scenario_file).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        UsageError(lines.join("\n"))
    })?;
    let sync = scenario
        .state
        .as_ref()
        .map_or(Duration::from_secs(5), |s| s.sync_interval);
    let policy = crate::state::CommitPolicy::Group { interval: sync };
    let (log, replayed) = crate::state::TxLog::open_append(run_dir, policy)
        .map_err(|e| UsageError(format!("cannot resume '{}': {e}", run_dir.display())))?;
    for w in &replayed.warnings {
        observer.on_event(&RunEvent::Warning { message: w.clone() });
    }
    let state = log.state().clone();
    if state.finished {
        bail!(UsageError(format!(
            "run {} in '{}' finished; there is nothing to resume",
            state.run_id,
            run_dir.display()
        )));
    }
    let journal = pool::Journal::wrap(log, sync);

    // The dead harness's browsers and drivers: reap them, and say so in the log.
    let reap = journal.begin();
    for w in state.workers.values() {
        let reaped = reap_worker(w).await;
        note(format!("reaped {}: {reaped}", w.id));
        if let Some(tx) = reap {
            journal.op(tx, crate::state::Op::WorkerRemoved { id: w.id.clone() });
        }
    }
    if let Some(tx) = reap {
        journal.commit_tx(tx);
    }
    // Transactions the crash cut short (a migration half done): their browsers are gone with
    // the rest, so rolling back is recording the abort.
    let open: Vec<crate::state::TxId> = replayed.incomplete.iter().map(|t| t.txid).collect();
    for tx in &open {
        journal.abort(
            *tx,
            "the harness died mid-transaction; rolled back on resume",
        );
    }

    // What is left, and where each model was.
    let p = &state.progress;
    let w = &mut scenario.workload;
    match state.workload {
        Some(crate::state::WorkloadBound::DurationMs(total)) => {
            let left = total.saturating_sub(p.elapsed_ms).max(1000);
            w.duration = Some(Duration::from_millis(left));
            w.iterations = None;
        }
        Some(crate::state::WorkloadBound::Iterations(total)) => {
            let done: u64 = p.per_model.values().sum();
            let models = scenario.models.len().max(1) as u64;
            w.iterations = Some(total.saturating_sub(done).div_ceil(models).max(1));
            w.duration = None;
        }
        _ => {}
    }
    w.warmup = w.warmup.min(1);
    for m in &mut scenario.models {
        if m.browser.is_some() {
            continue;
        }
        // The saved scenario carries catalog names (`RunConfig::resolve` rewrote them).
        let placed = state
            .placements
            .get(&m.name)
            .and_then(|ws| ws.first())
            .and_then(|id| state.workers.get(id))
            .and_then(|w| w.browser.parse::<BrowserKind>().ok());
        if let Some(kind) = placed.filter(|k| scenario.pool.browsers.contains(k)) {
            m.browser = Some(kind);
        }
    }
    let earlier = crate::metrics::EarlierPart {
        issued: p.issued,
        succeeded: p.succeeded,
        failed: p.failed,
        interrupted: p.issued.saturating_sub(p.succeeded + p.failed),
        elapsed_ms: p.elapsed_ms,
        transactions: format!(
            "{} committed, {} aborted, {} rolled back on resume",
            replayed.applied,
            replayed.aborted,
            open.len()
        ),
        per_model: p.per_model.clone(),
    };
    note(format!(
        "resuming run {}: {} requests before the harness died ({} succeeded, {} failed, {} in flight), {}",
        state.run_id,
        earlier.issued,
        earlier.succeeded,
        earlier.failed,
        earlier.interrupted,
        earlier.transactions
    ));
    let results_dir = run_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let config = RunConfig::resolve(
        scenario,
        RunExtras {
            results_dir,
            command,
            save_outputs: false,
            not_installed: Vec::new(),
        },
    )?;
    let part = Part {
        run_id: state.run_id.clone(),
        run_dir: run_dir.to_path_buf(),
        started: SystemTime::now(),
        journal,
        earlier: Some(earlier),
    };
    run_part(&config, part, shutdown, observer).await
}

/// Kills every process that carries `w`'s profile directory (the browser, its children, its
/// driver) and removes the directory. Returns what was done.
async fn reap_worker(w: &crate::state::WorkerRecord) -> String {
    let Some(dir) = w.profile_dir.as_deref().map(Path::new) else {
        return "no profile directory on record".into();
    };
    let pids = browser::process::mentioning(dir);
    for &p in &pids {
        let _ = browser::process::kill(p, browser::process::Signal::Kill);
    }
    let survivors = browser::process::kill_until_dead(&pids, Duration::from_secs(5)).await;
    let removed = if dir.exists() {
        std::fs::remove_dir_all(dir).is_ok()
    } else {
        false
    };
    format!(
        "{} process(es) killed{}{}",
        pids.len(),
        if removed { ", profile removed" } else { "" },
        match survivors {
            Ok(()) => String::new(),
            Err(alive) => format!(", {alive:?} survived"),
        }
    )
}
