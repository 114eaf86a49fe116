//! Inventory records shown by `models list` and `browsers`: plain data, so reports can render
//! them without depending on the engine.

use serde::{Deserialize, Serialize};

use super::BrowserEnv;

/// One catalog entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Catalog name.
    pub name: String,
    /// Other names accepted.
    pub aliases: Vec<String>,
    /// Task type.
    pub task: String,
    /// One line about the architecture and its weights.
    pub summary: String,
    /// A small variant meant for tests.
    pub test_variant: bool,
}

/// A browser or driver executable found on the machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolInfo {
    /// `chromium`, `geckodriver`, ...
    pub name: String,
    /// Executable path.
    pub path: String,
    /// Version it reported.
    pub version: String,
}

/// What `webgpu-pool browsers` found and measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrowserProbe {
    /// Browsers launched, with their capabilities (or the launch error in `webgpu.reason`).
    pub browsers: Vec<BrowserEnv>,
    /// Browsers that failed to launch: `kind: error`.
    pub errors: Vec<String>,
    /// Drivers found.
    pub drivers: Vec<ToolInfo>,
}
