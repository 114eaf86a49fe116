//! Fault injection, the plan half: which faults fire when, and on which worker.
//!
//! Inputs: fault specs (from the scenario's `faults[]` or `stress --fault-*` flags) and, at
//! injection time, a view of the live workers. Outputs: [`Planned`] faults in time order, and for
//! each the concrete [`Kind`] and worker it hits, or the [`FaultError`] saying why none fits.
//! Everything here is pure and seeded, so the same seed gives the same faults; `pool::injector`
//! carries them out against real browsers (SIGKILL, killed renderers, a busy-looping page,
//! `device.destroy()`, a frozen driver, a closed socket).
//! Must not import `report`, `cli` or terminal crates.

mod error;
mod plan;
mod rng;

pub use error::FaultError;
pub use plan::{choose, plan, Choice, FaultSpec, Planned, Target, When, WorkerView};
pub use rng::Rng;

use std::fmt;

/// A concrete fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL the browser's main process.
    KillBrowser,
    /// Crash the renderer hosting the page.
    CrashTab,
    /// Busy-loop the page's main thread for the fault's duration.
    Hang,
    /// `device.destroy()` on the page's WebGPU device.
    GpuDeviceLost,
    /// SIGKILL the WebDriver server.
    KillDriver,
    /// Drop the harness's connection to the page.
    Disconnect,
    /// Add a delay to every run for the fault's duration.
    Slow,
    /// Make every run throw in the page for the fault's duration: a deterministic page error
    /// (what a model that throws looks like), which the pool fails at once and never recovers.
    PageError,
    /// Make the target's next answer wrong: the page changes one bit of its first output before
    /// digesting it (what a miscompiled kernel or a flipped bit gives). Only injected when
    /// named.
    CorruptAnswer,
}

impl Kind {
    /// Every kind a `random` fault chooses from: the worker failures. `page_error` is not one
    /// (it is the request's failure, not the worker's), so it is only injected when named.
    pub const RANDOM_POOL: [Kind; 7] = [
        Self::KillBrowser,
        Self::CrashTab,
        Self::Hang,
        Self::GpuDeviceLost,
        Self::KillDriver,
        Self::Disconnect,
        Self::Slow,
    ];

    /// The snake_case name used in scenarios, flags and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KillBrowser => "kill_browser",
            Self::CrashTab => "crash_tab",
            Self::Hang => "hang",
            Self::GpuDeviceLost => "gpu_device_lost",
            Self::KillDriver => "kill_driver",
            Self::Disconnect => "disconnect",
            Self::Slow => "slow",
            Self::PageError => "page_error",
            Self::CorruptAnswer => "corrupt_answer",
        }
    }

    /// Whether this fault can hit `w`: `kill_driver` needs a driver process and `kill_browser`
    /// a browser pid on this machine (a remote Grid worker has neither), `gpu_device_lost` a
    /// model running on WebGPU. The others go through the page or the connection, and work on
    /// remote workers too (`crash_tab` there navigates to the browser's crash URL).
    pub fn fits(self, w: &WorkerView) -> bool {
        match self {
            Self::KillDriver => w.has_driver,
            Self::KillBrowser => w.has_pid,
            // Remote Firefox refuses `about:crashcontent` through WebDriver.
            Self::CrashTab => w.has_pid || w.browser.is_chromium_family(),
            Self::GpuDeviceLost => w.runs_webgpu,
            _ => true,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
