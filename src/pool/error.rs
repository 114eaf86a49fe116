//! [`PoolError`], and [`ErrorClass`]: what kind of failure a request met, typed from the worker
//! error's classification methods once, at the worker boundary, and never compared as text.
//!
//! The class decides what the pool does next: a transient class (the browser, tab, connection or
//! device failed, or the page did not answer in time) starts a recovery episode and the request
//! runs again; a deterministic page error (the page threw, and will throw the same way on every
//! retry) fails the request at once. Its stable name (`as_str`) is what samples, CSV and reports
//! carry. [`ShardError`] is a sharded request's failure, classed the same way. Must not import
//! `report`, `cli` or terminal crates.

use std::fmt;
use std::time::Duration;

use crate::browser::WorkerError;
use crate::models;
use crate::sharding::transfer::DecodeError;

/// Why a request failed, or why it never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The browser (or its driver) died.
    Crash,
    /// The renderer hosting the page crashed; the browser lives on.
    TabCrash,
    /// The connection to the page dropped.
    Disconnect,
    /// The page's WebGPU device was lost (or onnxruntime-web is wedged by it).
    DeviceLost,
    /// No answer within the bound: the page may be hung.
    Timeout,
    /// The page threw or refused: deterministic, a retry fails the same way.
    Page,
    /// The session cannot take calls (closed, or broken by an earlier failure).
    SessionLost,
    /// Any other driver or protocol failure.
    Driver,
    /// Nowhere to run it: every placement was down or being recovered.
    NoPlacement,
    /// The run was stopped (Ctrl-C) before it could run.
    Interrupted,
    /// The scheduler's queue was full (open loop).
    Rejected,
    /// Its deadline passed before it could start.
    Deadline,
    /// The page answered, but its output's digest differs from the first verified answer of
    /// the same model, browser and backend (same input, so it must be the same bits).
    WrongAnswer,
}

impl ErrorClass {
    /// The class of a worker error, from its classification methods.
    pub fn of(e: &WorkerError) -> Self {
        if e.is_browser_crash() {
            Self::Crash
        } else if e.is_tab_crash() {
            Self::TabCrash
        } else if e.is_disconnect() {
            Self::Disconnect
        } else if e.is_device_lost() {
            Self::DeviceLost
        } else if e.is_timeout() {
            Self::Timeout
        } else if e.is_page_error() {
            Self::Page
        } else if e.is_session_lost() {
            Self::SessionLost
        } else {
            Self::Driver
        }
    }

    /// The stable name samples and reports use: `crash`, `tab_crash`, `page`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::TabCrash => "tab_crash",
            Self::Disconnect => "disconnect",
            Self::DeviceLost => "device_lost",
            Self::Timeout => "timeout",
            Self::Page => "page",
            Self::SessionLost => "session_lost",
            Self::Driver => "driver",
            Self::NoPlacement => "no_placement",
            Self::Interrupted => "interrupted",
            Self::Rejected => "rejected",
            Self::Deadline => "deadline",
            Self::WrongAnswer => "wrong_answer",
        }
    }

    /// Whether the worker, not the request, failed: recovering the worker and running the
    /// request again may succeed. A page error is not transient: the same input on the same
    /// model throws the same way, so a recovery would only cost time and hide the error.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Crash
                | Self::TabCrash
                | Self::Disconnect
                | Self::DeviceLost
                | Self::Timeout
                | Self::SessionLost
                | Self::Driver
        )
    }

    /// Whether the browser or its tab died.
    pub fn is_crash(self) -> bool {
        matches!(self, Self::Crash | Self::TabCrash)
    }

    /// Whether the worker's session can still take calls after this failure (a retry on the
    /// same page may work); otherwise the page must be reset or the browser replaced.
    pub fn session_usable(self) -> bool {
        !matches!(
            self,
            Self::Crash
                | Self::TabCrash
                | Self::Disconnect
                | Self::DeviceLost
                | Self::Timeout
                | Self::SessionLost
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors from the pool. Classify with the methods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A worker failed.
    #[error(transparent)]
    Worker(#[from] Box<WorkerError>),
    /// A model could not be prepared.
    #[error("model '{model}': {source}")]
    Model {
        /// Which model.
        model: String,
        /// Why.
        source: Box<models::ModelError>,
    },
    /// The router found nowhere to put the model.
    #[error("no placement for '{model}': {reason}")]
    NoPlacement {
        /// Which model.
        model: String,
        /// Why.
        reason: String,
    },
    /// A browser kind was asked for that the pool has no launch for.
    #[error("{kind} is not configured in the pool")]
    NotConfigured {
        /// The kind asked for.
        kind: crate::browser::BrowserKind,
    },
    /// The pool is shutting down.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// Another worker would take the pool over its maximum.
    #[error("no room for another worker: the pool may have {max} and has {counted}")]
    NoRoom {
        /// The pool's `max_workers`.
        max: usize,
        /// Live workers plus launches in progress.
        counted: usize,
    },
    /// An answer's digest differs from the model's verified answer.
    #[error("wrong answer from {worker} for '{model}': {detail}")]
    WrongAnswer {
        /// Which model.
        model: String,
        /// The worker that answered.
        worker: String,
        /// Which output, and both digests.
        detail: String,
    },
}

impl PoolError {
    /// The underlying worker error, if this is one.
    pub fn as_worker(&self) -> Option<&WorkerError> {
        match self {
            Self::Worker(e) => Some(e),
            _ => None,
        }
    }

    /// The class a request that ended with this error is counted under.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Worker(e) => ErrorClass::of(e),
            Self::ShuttingDown => ErrorClass::Interrupted,
            Self::WrongAnswer { .. } => ErrorClass::WrongAnswer,
            Self::Model { .. }
            | Self::NoPlacement { .. }
            | Self::NotConfigured { .. }
            | Self::NoRoom { .. } => ErrorClass::NoPlacement,
        }
    }
}

impl From<WorkerError> for PoolError {
    fn from(e: WorkerError) -> Self {
        Self::Worker(Box::new(e))
    }
}

/// Why a sharded request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// A shard call failed and recovery could not make it answer.
    #[error("shard {shard} on {worker} (after {recoveries} recoveries): {source}")]
    Call {
        /// The shard.
        shard: usize,
        /// Its worker.
        worker: String,
        /// Recoveries the request waited for.
        recoveries: u32,
        /// The call's error.
        source: WorkerError,
    },
    /// No worker served the shard for the whole recovery timeout.
    #[error("shard {shard} has had no live worker for {waited:?}")]
    NoWorker {
        /// The shard.
        shard: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// A shard's answer was not what the next step needs.
    #[error("shard {shard} on {worker}: {what}")]
    Answer {
        /// The shard.
        shard: usize,
        /// Its worker.
        worker: String,
        /// What was wrong.
        what: AnswerFault,
    },
    /// A fixed-capacity shard lost its cache: running its positions again one at a time is
    /// not built yet.
    #[error("shard {shard}'s fixed-capacity cache is gone; rebuilding {positions} positions one at a time is not built yet")]
    NotRebuildable {
        /// The shard.
        shard: usize,
        /// Positions its cache held.
        positions: usize,
    },
    /// The pool is shutting down.
    #[error("the pool is shutting down")]
    ShuttingDown,
}

impl ShardError {
    /// The error class the ledger records.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Call { source, .. } => ErrorClass::of(source),
            Self::NoWorker { .. } => ErrorClass::NoPlacement,
            Self::Answer { .. } | Self::NotRebuildable { .. } => ErrorClass::Page,
            Self::ShuttingDown => ErrorClass::Interrupted,
        }
    }
}

/// What was wrong with a shard's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerFault {
    /// The output it should have returned is missing.
    #[error("returned no output '{0}'")]
    Missing(String),
    /// It returned the output without its values.
    #[error("returned '{0}' without its values")]
    NoValues(String),
    /// The values could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The relay slot holding the last output was empty.
    #[error("relay slot '{0}' is empty after the run")]
    EmptySlot(String),
    /// The harness's digest of the values differs from the page's.
    #[error("the output changed on the way: the page's digest {page}, the harness's {harness}")]
    Changed {
        /// The page's digest.
        page: String,
        /// The harness's.
        harness: String,
    },
    /// A generation step's page did not keep the cache grown to the positions written.
    #[error("kept '{output}' with {kept:?} positions after a step to {positions}")]
    CacheNotKept {
        /// The carried output checked.
        output: String,
        /// Positions it should hold.
        positions: usize,
        /// Positions it holds, as the page said.
        kept: Option<i64>,
    },
    /// A shard returned a hidden state of the wrong size for the positions it was given.
    #[error(
        "returned '{output}' of {values} values for {positions} new position(s) of width {width}"
    )]
    WrongSize {
        /// The output.
        output: String,
        /// Values it returned.
        values: usize,
        /// New positions run.
        positions: usize,
        /// Values per position.
        width: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn page(name: &str) -> WorkerError {
        WorkerError::Page {
            method: "run".into(),
            name: name.into(),
            message: "boom".into(),
        }
    }

    #[test]
    fn a_page_exception_is_not_transient_but_a_lost_device_is() {
        assert_eq!(ErrorClass::of(&page("Error")), ErrorClass::Page);
        assert!(!ErrorClass::Page.is_transient());
        assert!(ErrorClass::Page.session_usable());
        let lost = ErrorClass::of(&page("GpuDeviceLost"));
        assert_eq!(lost, ErrorClass::DeviceLost);
        assert!(lost.is_transient() && !lost.session_usable());
    }

    #[test]
    fn browser_failures_are_transient_and_classed_by_kind() {
        let timeout = WorkerError::Timeout {
            method: "run".into(),
            after: Duration::from_secs(1),
        };
        let crashed = WorkerError::Crashed {
            method: "run".into(),
            message: "socket closed".into(),
        };
        let tab = WorkerError::TabCrashed {
            method: "run".into(),
            message: "targetCrashed".into(),
        };
        for (e, class) in [
            (timeout, ErrorClass::Timeout),
            (crashed, ErrorClass::Crash),
            (tab, ErrorClass::TabCrash),
        ] {
            let c = ErrorClass::of(&e);
            assert_eq!(c, class);
            assert!(c.is_transient() && !c.session_usable(), "{c}");
        }
        assert!(ErrorClass::Crash.is_crash() && ErrorClass::TabCrash.is_crash());
        assert!(!ErrorClass::Timeout.is_crash());
    }

    #[test]
    fn requests_that_never_ran_are_not_transient() {
        for c in [
            ErrorClass::NoPlacement,
            ErrorClass::Interrupted,
            ErrorClass::Rejected,
            ErrorClass::Deadline,
            ErrorClass::WrongAnswer,
        ] {
            assert!(!c.is_transient(), "{c}");
        }
        assert_eq!(PoolError::ShuttingDown.class(), ErrorClass::Interrupted);
    }
}
