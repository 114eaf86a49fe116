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
            RunEvent::Starting { browsers } => {
                let names: Vec<String> = browsers.iter().map(|b| b.to_string()).collect();
                self.line(&format!("launching {} ...", names.join(", ")))
            }
            RunEvent::Loading { browser, model } => match browser {
                Some(b) => self.line(&format!("{b}: loading {model} ...")),
                None => self.line(&format!("placing {model} ...")),
            },
            RunEvent::Driving { what } => self.line(&format!("running {what} ...")),
            RunEvent::Warning { message } => eprintln!("warning: {message}"),
            _ => {}
        }
    }
}
