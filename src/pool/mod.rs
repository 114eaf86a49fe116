//! The engine: workers (a browser plus its page) and the run loop that loads models on them,
//! measures warm runs and checks outputs.
//!
//! Inputs: a [`RunPlan`] of prepared models and launch specs, the asset server that serves them,
//! a cancellation token. Output: [`EngineOutput`] (environment, one row per model x browser x
//! backend, request accounting), which `app` turns into a `RunSummary`. Must not import `cli`,
//! `report` or any terminal crate: progress goes out through [`RunObserver`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod correctness;
pub mod engine;
pub mod injector;
pub mod journal;
pub mod manager;
pub mod router;
pub mod scheduler;
pub mod slot;
pub mod worker;

pub use engine::{execute, EngineOutput, Placement, PoolShape, RunEvent, RunObserver, RunPlan};
pub use journal::Journal;
pub use manager::{
    FaultNote, FaultTolerance, Inference, Input, ModelHandle, Pool, PoolConfig, PoolError,
    RecoveryConfig, RecoveryRecord,
};
pub use router::{HardwarePreferences, Preferences};
pub use scheduler::{Bound, Schedule, Workload};
pub use worker::Worker;

/// An onnxruntime-web execution provider, as the page names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// WebGPU (the JSEP WebGPU EP).
    Webgpu,
    /// WebNN (`navigator.ml`).
    Webnn,
    /// WebAssembly (SIMD, threads where cross-origin isolated).
    Wasm,
}

impl Backend {
    /// Every backend, in the default priority order: webgpu, webnn, wasm.
    pub const DEFAULT_PRIORITY: [Backend; 3] = [Self::Webgpu, Self::Webnn, Self::Wasm];

    /// The name the page and the reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webgpu => "webgpu",
            Self::Webnn => "webnn",
            Self::Wasm => "wasm",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "webgpu" => Ok(Self::Webgpu),
            "webnn" => Ok(Self::Webnn),
            "wasm" => Ok(Self::Wasm),
            _ => Err(format!(
                "unknown backend '{s}' (known: webgpu, webnn, wasm)"
            )),
        }
    }
}
