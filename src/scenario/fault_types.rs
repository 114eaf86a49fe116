//! The scenario's fault types: what a fault does (`FaultKind`), which worker it hits
//! (`FaultTarget`) and when (`Fault`). Plain data with serde and JSON Schema derives, as in
//! `types.rs`, which re-exports them.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration;
use crate::browser::BrowserKind;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
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
    /// The target's next answer comes back with one value of its first output changed (one
    /// bit flipped in the page): the pool must fail that request as `wrong_answer`.
    CorruptAnswer,
    /// One of the worker failures above (not `page_error` or `corrupt_answer`), chosen with
    /// the fault's seed.
    Random,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 10] = [
        Self::KillBrowser,
        Self::CrashTab,
        Self::Hang,
        Self::GpuDeviceLost,
        Self::KillDriver,
        Self::Disconnect,
        Self::Slow,
        Self::PageError,
        Self::CorruptAnswer,
        Self::Random,
    ];

    /// The snake_case name used in scenario files.
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
            Self::Random => "random",
        }
    }

    /// Whether the fault lasts a while (`duration` applies).
    pub fn has_duration(self) -> bool {
        matches!(
            self,
            Self::Hang | Self::Disconnect | Self::Slow | Self::PageError | Self::Random
        )
    }
}

/// Which worker a fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// A worker chosen with the fault's seed (default).
    #[default]
    Random,
    /// A worker of this browser kind: `{browser: firefox}`.
    Browser(BrowserKind),
    /// One worker by id, `<browser>#<n>` with n from 1: `{worker: "chromium#1"}`.
    Worker(String),
    /// In a sharded run, the worker hosting this shard (from 0): `{shard: 1}`.
    Shard(u32),
    /// The worker hosting this model: `{model: whisper}`.
    Model(String),
}

/// One fault and its schedule. Give exactly one of `at`, `every` and `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What to do.
    pub kind: FaultKind,
    /// Once, this long after the measured part starts.
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub at: Option<Duration>,
    /// Periodically, first after one period.
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub every: Option<Duration>,
    /// At random (Poisson) times, this many per minute on average, drawn with `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// At most this many occurrences (for `every` and `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Seed for random times, kinds and targets (default: the scenario seed plus the index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Which worker (default `random`).
    #[serde(default)]
    pub target: FaultTarget,
    /// How long a hang, disconnect or slowdown lasts (default 5s).
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub duration: Option<Duration>,
    /// `slow` only: latency added to each request (default 250ms).
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub delay: Option<Duration>,
    /// `random` only: the kinds to draw from (default: every kind that fits the target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<FaultKind>,
}

impl Fault {
    /// A one-shot fault at `at` on a random worker.
    pub fn at(kind: FaultKind, at: Duration) -> Self {
        Fault {
            kind,
            at: Some(at),
            every: None,
            rate: None,
            count: None,
            seed: None,
            target: FaultTarget::Random,
            duration: None,
            delay: None,
            kinds: Vec::new(),
        }
    }
}

/// Parses a snake_case name (`kill_browser`, ...), naming the known kinds on error (the
/// `stress --fault-kinds` flag).
impl std::str::FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown fault kind '{s}' (known: {})", names.join(", "))
            })
    }
}
