//! `webgpu-pool state verify|show RUN_DIR`: check or print a run's crash-safe state (its
//! transaction log and snapshot); and the check `run --test-state-management` ends with.

use std::path::Path;

use anyhow::Result;

use webgpu_pool::state;

use super::common::print;
use super::Outcome;
use crate::cli::StateCommand;

/// Verifies or prints the state. Sound is [`Outcome::Pass`]; a torn tail is a warning on
/// stderr.
///
/// # Errors
/// Damage, naming the file, byte offset and seq (exit 2); or the folder has no log.
pub fn execute(cmd: StateCommand) -> Result<Outcome> {
    let (warnings, out) = match cmd {
        StateCommand::Verify { run_dir } => {
            let report = state::verify(&run_dir)?;
            (report.warnings.clone(), state::render_verify(&report))
        }
        StateCommand::Show { run_dir, json } => {
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
    Ok(Outcome::Pass)
}

/// `run --test-state-management`: verifies the newest run's log and snapshot in
/// `results_dir` and says so on stderr.
///
/// # Errors
/// `results_dir` cannot be read, or the log is damaged.
pub fn verify_latest(results_dir: &Path) -> Result<()> {
    let newest = std::fs::read_dir(results_dir)?
        .flatten()
        .filter(|e| e.path().join("txlog.log").exists())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    if let Some(run) = newest {
        let report = state::verify(&run.path())?;
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        eprint!("state: {}", state::render_verify(&report));
    }
    Ok(())
}
