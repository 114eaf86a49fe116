//! Terminal progress on stderr (stdout carries only the results, so `run > table.txt` stays
//! clean).
//!
//! - [`Stderr`]: plain progress lines, for commands without a run (`browsers`, `models`, ...).
//! - [`Progress`]: the `run` view. On a terminal: indicatif spinners for model preparation and
//!   browser launch, and a bar over the model x browser cells (advanced as each placement
//!   starts: the engine reports starts, not ends). When stderr is not a terminal (CI logs,
//!   pipes): the same plain lines as [`Stderr`], since redrawn bars are noise there. With
//!   `--quiet`: nothing but warnings. `NO_COLOR` (<https://no-color.org>) drops the colour
//!   from the bar templates.
//!
//! It receives [`RunEvent`]s from the app and the engine: `Preparing`/`Prepared` turn the
//! preparation spinners, `Starting`/`Loading`/`Driving` the launch spinner and the cell bar;
//! `Note` lines and the pool events worth a line (faults, recoveries, migrations: worded by
//! `report::events`) are printed above the bars as they come, and the pool's events keep the
//! live counts.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use webgpu_pool::pool::{RunEvent, RunObserver};
use webgpu_pool::report::events::{self as words, Tally};
use webgpu_pool::report::terminal::colour_disabled;

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
        if let RunEvent::Warning { message } = event {
            eprintln!("warning: {message}");
        } else if let Some(line) = event_line(event) {
            self.line(&line);
        }
    }
}

/// The plain line for an event, if it has one (warnings are printed even when quiet).
fn event_line(event: &RunEvent<'_>) -> Option<String> {
    Some(match event {
        RunEvent::Starting { browsers } => {
            let names: Vec<String> = browsers.iter().map(|b| b.to_string()).collect();
            format!("launching {} ...", names.join(", "))
        }
        RunEvent::Loading { browser, model } => match browser {
            Some(b) => format!("{b}: loading {model} ..."),
            None => format!("placing {model} ..."),
        },
        RunEvent::Driving { what } => format!("running {what} ..."),
        RunEvent::Preparing { model } => format!("preparing {model} ..."),
        RunEvent::Prepared { model, took } => format!(
            "prepared {} ({} weights, {:.1} MB ONNX) in {:.1}s",
            model.name,
            model.weights.as_str(),
            model.onnx_bytes as f64 / 1e6,
            took.as_secs_f64()
        ),
        RunEvent::Note { line } => line.clone(),
        RunEvent::ShardPlan { reasons } => reasons
            .iter()
            .map(|r| format!("plan: {r}"))
            .collect::<Vec<_>>()
            .join("\n"),
        RunEvent::LayerTimed { worker, ms, runs } => {
            format!("probe: {worker} runs one layer in {ms:.1} ms (p50 of {runs})")
        }
        RunEvent::ShardLoaded {
            shard,
            layers,
            worker,
        } => format!(
            "shard {shard}: layers {}..{} on {worker}",
            layers.start, layers.end
        ),
        RunEvent::TransferChosen {
            probe,
            rounds,
            chosen,
        } => {
            let ms =
                |v: Option<f64>| v.map_or_else(|| "failed".to_string(), |v| format!("{v:.0} ms"));
            format!(
                "transfer: one request takes {} through the harness, {} through the asset server (best of {rounds}, side by side): using the {}",
                ms(probe.harness_ms),
                ms(probe.server_ms),
                match chosen {
                    webgpu_pool::sharding::transfer::Route::Harness => "harness",
                    webgpu_pool::sharding::transfer::Route::Server => "asset server",
                }
            )
        }
        RunEvent::Pool(e) => return words::line(e),
        RunEvent::StandbysReady {
            per_model,
            took,
            copies,
        } => words::standbys_line(per_model, took.as_secs_f64(), *copies),
        _ => return None,
    })
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// indicatif bars on a terminal.
    Bars,
    /// Plain lines (stderr is not a terminal).
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

/// The `run` progress view.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    runs: ProgressBar,
    /// Spinners still turning, by key (`prepare:bert`, `launch`).
    spinners: Mutex<Vec<(String, ProgressBar)>>,
    /// Whether a cell has started and not yet been counted.
    cell_started: AtomicBool,
    /// When the last plain counts line was printed (Lines mode prints one every 10 s).
    last_counts: Mutex<Option<std::time::Instant>>,
    /// Live counts from the pool's events.
    tally: Mutex<Tally>,
    /// What runs now (the bar's message, before the counts).
    running: Mutex<String>,
}

impl Progress {
    /// A view for a run of about `cells` model x browser cells (the bar grows if there are
    /// more).
    pub fn new(quiet: bool, cells: usize) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        // Hidden targets draw nothing, so the Lines and Quiet modes never emit escape codes.
        let target = if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let runs = multi.add(ProgressBar::new(cells as u64));
        // Without a count up front a bar would read full at 0/0: count cells instead.
        runs.set_style(if cells == 0 {
            style(
                "{prefix:>9} {spinner:.cyan} {pos} placed  {elapsed}  {wide_msg}",
                "{prefix:>9} {spinner} {pos} placed  {elapsed}  {wide_msg}",
            )
        } else {
            style(
                "{prefix:>9} [{bar:30.cyan/blue}] {pos}/{len} cells  {elapsed}  {wide_msg}",
                "{prefix:>9} [{bar:30}] {pos}/{len} cells  {elapsed}  {wide_msg}",
            )
        });
        runs.set_prefix("runs");
        if mode == Mode::Bars {
            runs.enable_steady_tick(Duration::from_millis(250));
        }
        Self {
            mode,
            multi,
            runs,
            spinners: Mutex::new(Vec::new()),
            cell_started: AtomicBool::new(false),
            last_counts: Mutex::new(None),
            tally: Mutex::new(Tally::default()),
            running: Mutex::new(String::new()),
        }
    }

    /// One plain line above the bars (or on stderr when there are none).
    pub fn line(&self, message: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{message}"),
            Mode::Bars => {
                let _ = self.multi.println(message);
            }
        }
    }

    /// Clears the bars (before the result table goes to stdout).
    pub fn finish(&self) {
        if self.cell_started.swap(false, Ordering::Relaxed) {
            self.advance();
        }
        for (_, s) in self.spinners.lock().expect("spinners").drain(..) {
            s.finish_and_clear();
        }
        self.runs.finish_and_clear();
        let _ = self.multi.clear();
    }

    fn spin(&self, key: String, prefix: &'static str, message: String) {
        let s = self
            .multi
            .insert_before(&self.runs, ProgressBar::new_spinner());
        s.set_style(style(
            "{prefix:>9} {spinner:.green} {msg} {elapsed}",
            "{prefix:>9} {spinner} {msg} {elapsed}",
        ));
        s.set_prefix(prefix);
        s.set_message(message);
        s.enable_steady_tick(Duration::from_millis(100));
        self.spinners.lock().expect("spinners").push((key, s));
    }

    fn done(&self, key: &str) {
        let mut spinners = self.spinners.lock().expect("spinners");
        if let Some(i) = spinners.iter().position(|(k, _)| k == key) {
            spinners.remove(i).1.finish_and_clear();
        }
    }

    fn advance(&self) {
        if self.runs.position() >= self.runs.length().unwrap_or(0) {
            self.runs.inc_length(1);
        }
        self.runs.inc(1);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn style(colour: &str, plain: &str) -> ProgressStyle {
    let template = if colour_disabled() { plain } else { colour };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl RunObserver for Progress {
    fn on_event(&self, event: &RunEvent<'_>) {
        if let RunEvent::Warning { message } = event {
            match self.mode {
                Mode::Bars => {
                    let _ = self.multi.println(format!("warning: {message}"));
                }
                _ => eprintln!("warning: {message}"),
            }
            return;
        }
        if let RunEvent::Pool(e) = event {
            let counts = {
                let mut tally = self.tally.lock().expect("tally");
                tally.add(&e.event);
                tally.line()
            };
            match self.mode {
                Mode::Bars => {
                    let running = self.running.lock().expect("running").clone();
                    self.runs.set_message(format!("{running}  {counts}"));
                    if let Some(line) = words::line(e) {
                        let _ = self.multi.println(line);
                    }
                }
                Mode::Lines => {
                    if let Some(line) = words::line(e) {
                        eprintln!("{line}");
                    }
                    let mut last = self.last_counts.lock().expect("last_counts");
                    if last.is_some_and(|t| t.elapsed() >= Duration::from_secs(10)) {
                        *last = Some(std::time::Instant::now());
                        eprintln!("{counts}");
                    } else if last.is_none() {
                        *last = Some(std::time::Instant::now());
                    }
                }
                Mode::Quiet => {}
            }
            return;
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => {
                if let Some(line) = event_line(event) {
                    eprintln!("{line}");
                }
            }
            Mode::Bars => match event {
                RunEvent::Starting { browsers } => {
                    let names: Vec<String> = browsers.iter().map(|b| b.to_string()).collect();
                    self.spin(
                        "launch".into(),
                        "launch",
                        format!("{} ...", names.join(", ")),
                    );
                }
                RunEvent::Loading { browser, model } => {
                    // The pool is up once it places a model; each placement starts a cell, so
                    // the one before it is done.
                    self.done("launch");
                    if self.cell_started.swap(true, Ordering::Relaxed) {
                        self.advance();
                    }
                    let running = match browser {
                        Some(b) => format!("{b}: {model}"),
                        None => format!("placing {model}"),
                    };
                    self.runs.set_message(running.clone());
                    *self.running.lock().expect("running") = running;
                }
                RunEvent::Driving { what } => {
                    self.done("launch");
                    let running = format!("running {what}");
                    self.runs.set_message(running.clone());
                    *self.running.lock().expect("running") = running;
                }
                RunEvent::Preparing { model } => {
                    self.spin(
                        format!("prepare:{model}"),
                        "prepare",
                        format!("{model} ..."),
                    );
                }
                RunEvent::Prepared { model, .. } => {
                    self.done(&format!("prepare:{}", model.name));
                    if let Some(line) = event_line(event) {
                        let _ = self.multi.println(line);
                    }
                }
                RunEvent::Note { .. }
                | RunEvent::StandbysReady { .. }
                | RunEvent::ShardPlan { .. }
                | RunEvent::LayerTimed { .. }
                | RunEvent::ShardLoaded { .. }
                | RunEvent::TransferChosen { .. } => {
                    if let Some(line) = event_line(event) {
                        let _ = self.multi.println(line);
                    }
                }
                _ => {}
            },
        }
    }
}
