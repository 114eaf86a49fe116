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

pub use error::FaultError;
pub use plan::{choose, plan, Choice, FaultSpec, Planned, Target, When, WorkerView};

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A concrete fault: what it does to the worker it hits. Scenarios and flags name it in
/// snake_case (`kind: kill_browser`). A scenario's `kind: random`, which draws one of these when
/// it fires, is not a kind but a choice among them (`scenario::FaultChoice`, and here
/// [`Choice::Random`]).
///
/// The variant docs are the scenario schema's descriptions of the names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// SIGKILL the browser's main process.
    KillBrowser,
    /// Crash the worker's tab (renderer), keeping the browser.
    CrashTab,
    /// Stop the page's event loop for `duration`.
    Hang,
    /// Destroy the page's WebGPU device (`device.destroy()`).
    GpuDeviceLost,
    /// SIGKILL the WebDriver server (geckodriver, chromedriver).
    KillDriver,
    /// Drop the driver connection for `duration`.
    Disconnect,
    /// Add `delay` to every request on the target for `duration`.
    Slow,
    /// Make every request on the target throw in the page for `duration` (a deterministic
    /// model error: failed at once with class `page`, never recovered).
    PageError,
    /// The target's next answer comes back with one value of its first output changed (+1,
    /// in the page): the pool must fail that request as `wrong_answer`, or reject the placement
    /// whose first answer it is.
    CorruptAnswer,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 9] = [
        Self::KillBrowser,
        Self::CrashTab,
        Self::Hang,
        Self::GpuDeviceLost,
        Self::KillDriver,
        Self::Disconnect,
        Self::Slow,
        Self::PageError,
        Self::CorruptAnswer,
    ];

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
    pub const fn as_str(self) -> &'static str {
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

    /// The kind named `name` (snake_case, as [`Kind::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the fault lasts a while (a scenario's `duration` applies to it).
    pub fn has_duration(self) -> bool {
        matches!(
            self,
            Self::Hang | Self::Disconnect | Self::Slow | Self::PageError
        )
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
