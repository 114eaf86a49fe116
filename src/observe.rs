//! Terminal progress: prints engine events to stderr as plain lines (stdout carries only the
//! results, so `run > table.txt` stays clean).

use webgpu_pool::pool::{RunEvent, RunObserver};

/// Writes progress lines to stderr unless quiet.
#[derive(Debug)]
pub struct Stderr {
    pub quiet: bool,
}

impl Stderr {
    /// One progress line.
    pub fn line(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }
}

impl RunObserver for Stderr {
    fn on_event(&self, event: &RunEvent<'_>) {
        match event {
            RunEvent::Launching { browser } => self.line(&format!("launching {browser} ...")),
            RunEvent::Launched {
                worker,
                version,
                elapsed,
            } => self.line(&format!(
                "{worker} ready ({version}) in {:.1}s",
                elapsed.as_secs_f64()
            )),
            RunEvent::Loading { worker, model } => {
                self.line(&format!("{worker}: loading {model} ..."))
            }
            RunEvent::CellDone { row } => match &row.error {
                None => self.line(&format!(
                    "{}: {} on {}: load {:.0} ms, first run {:.1} ms, warm p50 {:.1} ms ({} runs)",
                    row.browser,
                    row.model,
                    row.backend,
                    row.load_ms,
                    row.first_run_ms,
                    row.latency_ms.p50,
                    row.runs
                )),
                Some(e) => self.line(&format!("{}: {}: {e}", row.browser, row.model)),
            },
            RunEvent::Warning { message } => eprintln!("warning: {message}"),
            _ => {}
        }
    }
}
