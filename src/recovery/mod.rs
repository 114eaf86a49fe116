//! Recovery: what to do when a worker fails a request, decided from the failure's class and the
//! worker's circuit breaker, never from message text.
//!
//! The progressive ladder, one level at a time until one restores service:
//! 1. [`Level::Retry`]: run again on the same worker (only when its session is still usable);
//! 2. [`Level::Reset`]: reopen the worker page (a new tab, or the page navigated again) and load
//!    its models again;
//! 3. [`Level::Migrate`]: move the models to another live worker, of another browser kind when
//!    the pool has one;
//! 4. [`Level::Rebuild`]: launch a new browser and load from scratch.
//!
//! `immediate` starts at migrate. A worker whose breaker is open skips straight to migrate too.
//! A worker that holds pipeline shards climbs one step, its pipeline's [`ShardRecovery`]:
//! `retry_failed_shards` and `full_retry` are a rebuild (a new browser of the same kind),
//! `reassign_shards` a migration (the shards go to the live workers).
//! The pool (`pool::manager`) carries the levels out against real browsers; this module is pure
//! logic (no browsers, no I/O) so its decisions are unit-tested. Must not import `report`, `cli`
//! or terminal crates.

mod breaker;

pub use breaker::{Breaker, BreakerState};

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One rung of the recovery ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Run again on the same worker.
    Retry,
    /// Reopen the page on the same browser and reload its models.
    Reset,
    /// Move the models to another live worker.
    Migrate,
    /// Launch a new browser and load the models there.
    Rebuild,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 4] = [Self::Retry, Self::Reset, Self::Migrate, Self::Rebuild];

    /// The name used in reports: `retry`, `reset`, `migrate`, `rebuild`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Reset => "reset",
            Self::Migrate => "migrate",
            Self::Rebuild => "rebuild",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the pool answers a failed worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Climb the ladder from retry.
    #[default]
    Progressive,
    /// Fail over at once: migrate, then rebuild.
    Immediate,
    /// Do not recover: the request fails and the worker stays down.
    None,
}

/// What is known about a failure, from the error's classification methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failure {
    /// The worker's session can still take calls (a page error, a slow answer that arrived).
    pub session_usable: bool,
    /// The browser process itself is gone (reset cannot help).
    pub browser_gone: bool,
}

/// The levels to try for `failure`, in order.
pub fn ladder(strategy: Strategy, failure: Failure, breaker_open: bool) -> Vec<Level> {
    let from = match strategy {
        Strategy::None => return Vec::new(),
        Strategy::Immediate => Level::Migrate,
        Strategy::Progressive if breaker_open || failure.browser_gone => Level::Migrate,
        Strategy::Progressive if !failure.session_usable => Level::Reset,
        Strategy::Progressive => Level::Retry,
    };
    Level::ALL.into_iter().filter(|l| *l >= from).collect()
}

/// What happens when a shard's worker fails mid-stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShardRecovery {
    /// Relaunch the failed worker's browser, reload only the shards it held, rerun the request
    /// from the failed shard.
    RetryFailedShards,
    /// Move the failed worker's shards to the other live workers (one journaled transaction),
    /// rerun the request from the failed shard.
    ReassignShards,
    /// Relaunch the failed browser, reload every shard everywhere, rerun the request from the
    /// first shard.
    FullRetry,
}

impl ShardRecovery {
    /// The ladder step it is for a worker that holds pipeline shards: a relaunch is a
    /// rebuild, a move to the live workers a migration.
    pub fn level(self) -> Level {
        match self {
            Self::RetryFailedShards | Self::FullRetry => Level::Rebuild,
            Self::ReassignShards => Level::Migrate,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetryFailedShards => "retry_failed_shards",
            Self::ReassignShards => "reassign_shards",
            Self::FullRetry => "full_retry",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progressive_starts_where_the_failure_allows() {
        let usable = Failure {
            session_usable: true,
            browser_gone: false,
        };
        assert_eq!(
            ladder(Strategy::Progressive, usable, false),
            Level::ALL.to_vec()
        );
        let lost = Failure::default();
        assert_eq!(
            ladder(Strategy::Progressive, lost, false),
            vec![Level::Reset, Level::Migrate, Level::Rebuild]
        );
        let gone = Failure {
            session_usable: false,
            browser_gone: true,
        };
        assert_eq!(
            ladder(Strategy::Progressive, gone, false),
            vec![Level::Migrate, Level::Rebuild]
        );
    }

    #[test]
    fn an_open_breaker_and_immediate_skip_to_migrate() {
        let usable = Failure {
            session_usable: true,
            browser_gone: false,
        };
        assert_eq!(
            ladder(Strategy::Progressive, usable, true),
            vec![Level::Migrate, Level::Rebuild]
        );
        assert_eq!(
            ladder(Strategy::Immediate, usable, false),
            vec![Level::Migrate, Level::Rebuild]
        );
        assert!(ladder(Strategy::None, usable, false).is_empty());
    }

    #[test]
    fn levels_order_and_names() {
        assert!(Level::Retry < Level::Rebuild);
        let names: Vec<_> = Level::ALL.iter().map(|l| l.to_string()).collect();
        assert_eq!(names, ["retry", "reset", "migrate", "rebuild"]);
    }
}
