//! The one error type of the `faults` layer: why a planned fault hits no worker. The injector
//! records it as a skipped fault, never as an abort.

use super::{Kind, Target};

/// Why [`super::choose`] found no kind or worker for an occurrence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// No live worker matches the fault's target.
    #[error("no live worker matches the target {target:?}")]
    NoTarget {
        /// The target as configured.
        target: Target,
    },
    /// Among `random` kinds, none fits any live target worker.
    #[error("none of the kinds fits a live target worker")]
    NoKindFits,
    /// Target workers exist, but none can take this kind.
    #[error("{kind}: no target worker {}", needs(*kind))]
    NoWorkerFits {
        /// The kind that was chosen.
        kind: Kind,
    },
}

/// What a worker needs to take `kind`, for the message.
fn needs(kind: Kind) -> &'static str {
    match kind {
        Kind::KillDriver => {
            "has a driver process on this machine (CDP workers and remote Grid workers have none)"
        }
        Kind::KillBrowser => {
            "has a browser pid on this machine (a remote Grid worker's browser runs on its node)"
        }
        Kind::GpuDeviceLost => "runs a model on WebGPU",
        Kind::CrashTab => {
            "has a renderer pid on this machine or is a remote Chromium (a remote Firefox \
             refuses about:crashcontent through WebDriver)"
        }
        _ => "fits",
    }
}
