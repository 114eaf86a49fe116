//! [`Backend`]: an onnxruntime-web execution provider, as the page, the scenario and the reports
//! name it.
//!
//! A leaf module: it imports nothing from the crate, so `scenario`, `pool` and the reports can
//! all name a backend without depending on each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An onnxruntime-web execution provider, as the page names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A backend name that is not one of `webgpu`, `webnn`, `wasm`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend '{0}' (known: webgpu, webnn, wasm)")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::DEFAULT_PRIORITY
            .into_iter()
            .find(|b| b.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| UnknownBackend(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for b in Backend::DEFAULT_PRIORITY {
            assert_eq!(b.as_str().parse::<Backend>(), Ok(b));
        }
        assert_eq!("WASM".parse::<Backend>(), Ok(Backend::Wasm));
        let e = "webgl".parse::<Backend>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown backend 'webgl' (known: webgpu, webnn, wasm)"
        );
    }
}
