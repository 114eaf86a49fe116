//! Fault attribution: faults the injector announced on a worker, waiting for the failure they
//! cause, so a recovery episode can say which fault it answered and time detection from the
//! moment the fault took effect. Matching is typed: a fault [`Kind`] against the way the failure
//! was [`Detection`]. Pure bookkeeping; the pool holds it under a lock. Must not import `report`,
//! `cli` or terminal crates.

use std::time::{Duration, Instant};

use crate::faults::Kind;

use super::error::ErrorClass;

/// How a failure was noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// A request's call failed with this class.
    Request(ErrorClass),
    /// A health check on an idle worker failed.
    Heartbeat,
    /// The browser's main process was found gone.
    ProcessExit,
}

impl Detection {
    /// The name reports use: the error class, or `heartbeat` / `process_exit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request(c) => c.as_str(),
            Self::Heartbeat => "heartbeat",
            Self::ProcessExit => "process_exit",
        }
    }

    /// Whether a fault of `kind` produces a failure noticed this way.
    pub fn explained_by(self, kind: Kind) -> bool {
        use ErrorClass as C;
        match self {
            Self::Request(C::Crash) | Self::ProcessExit => {
                matches!(kind, Kind::KillBrowser | Kind::KillDriver)
            }
            Self::Request(C::TabCrash) => kind == Kind::CrashTab,
            Self::Request(C::Disconnect) => kind == Kind::Disconnect,
            Self::Request(C::DeviceLost) => kind == Kind::GpuDeviceLost,
            Self::Request(C::Timeout | C::SessionLost) => {
                matches!(kind, Kind::Hang | Kind::Slow | Kind::Disconnect)
            }
            _ => true,
        }
    }
}

impl std::fmt::Display for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the detector knows about a failure.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// How it was noticed.
    pub seen: Detection,
    /// The model whose request failed, if a request found it.
    pub model: Option<String>,
    /// How long the failing call was in flight; for a failure found by upkeep, how long since
    /// the worker's last sign of health (its last answer, or its process last seen alive).
    pub in_flight: Duration,
    /// When the failure was seen: the failing call's return, or the watcher's marking. The
    /// episode's detection is stamped with it, not when the episode got its lock.
    pub seen_at: std::time::Instant,
}

impl Cause {
    /// Whether the worker's session can still take calls.
    pub fn session_usable(&self) -> bool {
        match self.seen {
            Detection::Request(class) => class.session_usable(),
            Detection::Heartbeat | Detection::ProcessExit => false,
        }
    }
}

/// A fault as the injector carried it out.
#[derive(Debug, Clone)]
pub struct FaultNote {
    /// The kind; `None` when a random choice found nothing that fits.
    pub kind: Option<Kind>,
    /// Ms since the pool started.
    pub at_ms: u64,
    /// Worker hit (empty when skipped).
    pub target: String,
    /// What was done, or why it was skipped.
    pub detail: String,
    /// Whether it was carried out.
    pub injected: bool,
}

impl FaultNote {
    /// The kind's name, `random` for a random choice that was skipped.
    pub fn kind_name(&self) -> &'static str {
        self.kind.map_or("random", Kind::as_str)
    }
}

/// A fault injected on a worker and not yet matched to a detected failure.
#[derive(Debug)]
struct Pending {
    worker: String,
    kind: Kind,
    at: Instant,
}

/// Injected faults waiting for their failure.
#[derive(Debug, Default)]
pub struct Attribution {
    pending: Vec<Pending>,
}

impl Attribution {
    /// A fault is about to hit `worker`: from now on a failure there is matched with it.
    pub fn starting(&mut self, worker: &str, kind: Kind) {
        self.pending.push(Pending {
            worker: worker.to_string(),
            kind,
            at: Instant::now(),
        });
    }

    /// The announced fault took effect now (a page fault answers once it has started).
    pub fn effective(&mut self, worker: &str, kind: Kind) {
        if let Some(f) = self
            .pending
            .iter_mut()
            .rev()
            .find(|f| f.worker == worker && f.kind == kind)
        {
            f.at = Instant::now();
        }
    }

    /// A fault ended without a failure (absorbed by the timeouts, or never carried out).
    pub fn absorbed(&mut self, worker: &str, kind: Kind) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|f| f.worker == worker && f.kind == kind)
        {
            self.pending.remove(i);
        }
    }

    /// The fault on `worker` that best explains a failure noticed as `seen`: the latest whose
    /// kind produces it, else the latest on that worker. Removed from the waiting list.
    pub fn take(&mut self, worker: &str, seen: Detection) -> Option<(Kind, Instant)> {
        let i = self
            .pending
            .iter()
            .rposition(|f| f.worker == worker && seen.explained_by(f.kind))
            .or_else(|| self.pending.iter().rposition(|f| f.worker == worker))?;
        let f = self.pending.remove(i);
        Some((f.kind, f.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_takes_the_fault_that_explains_it() {
        let mut a = Attribution::default();
        a.starting("chromium#1", Kind::Slow);
        a.starting("chromium#1", Kind::CrashTab);
        a.starting("firefox#1", Kind::KillBrowser);
        let seen = Detection::Request(ErrorClass::Timeout);
        assert_eq!(a.take("chromium#1", seen).map(|f| f.0), Some(Kind::Slow));
        // Nothing explains a crash on chromium#1 now: the latest fault there is taken.
        let crash = Detection::Request(ErrorClass::Crash);
        assert_eq!(
            a.take("chromium#1", crash).map(|f| f.0),
            Some(Kind::CrashTab)
        );
        assert!(a.take("chromium#1", crash).is_none());
        a.absorbed("firefox#1", Kind::KillBrowser);
        assert!(a.take("firefox#1", Detection::ProcessExit).is_none());
    }

    #[test]
    fn detections_are_explained_by_their_kinds() {
        assert!(Detection::ProcessExit.explained_by(Kind::KillDriver));
        assert!(!Detection::ProcessExit.explained_by(Kind::Hang));
        assert!(Detection::Request(ErrorClass::DeviceLost).explained_by(Kind::GpuDeviceLost));
        assert!(!Detection::Request(ErrorClass::TabCrash).explained_by(Kind::KillBrowser));
        assert_eq!(Detection::Heartbeat.as_str(), "heartbeat");
    }
}
