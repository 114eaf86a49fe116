//! The pool's record of when each model had a live copy (serving or a hot standby, verified
//! against native onnxruntime before it was held, on a routable worker), and the cause of a
//! failed request judged from it: a request that failed while its model had no live copy for
//! its whole wait is a `capacity` failure; one that failed while a copy was live at some moment
//! of its wait is a `recovery` failure, which the pool must not have.
//!
//! Recorded by the upkeep's watch loop every tick (50 ms) and when a request fails, as the
//! changes of a yes/no per model: a copy live for less than a tick between two looks can be
//! missed, nothing else. Pure data behind one lock; the pool writes what it sees. Must not
//! import `report`, `cli` or terminal crates.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::metrics::FailureCause;

use super::error::ErrorClass;
use super::lock;

/// Per model, the moments its coverage changed: `(ms since the run started, live)`, in order,
/// the first one being the first look.
#[derive(Debug, Default)]
pub(super) struct Coverage {
    by_model: Mutex<BTreeMap<String, Vec<(f64, bool)>>>,
}

impl Coverage {
    /// Records what was seen at `at_ms`: whether each model had a live copy.
    pub fn record(&self, at_ms: f64, seen: impl IntoIterator<Item = (String, bool)>) {
        let mut by = lock(&self.by_model);
        for (model, live) in seen {
            let changes = by.entry(model).or_default();
            if changes.last().is_none_or(|&(_, was)| was != live) {
                changes.push((at_ms, live));
            }
        }
    }

    /// Whether `model` had a live copy at some moment of `[from_ms, to_ms]`. A model never
    /// seen had none.
    pub fn had_copy(&self, model: &str, from_ms: f64, to_ms: f64) -> bool {
        let by = lock(&self.by_model);
        let Some(changes) = by.get(model) else {
            return false;
        };
        // Live when the wait began (the last change at or before it), or became live during it.
        let at_start = changes
            .iter()
            .take_while(|(t, _)| *t <= from_ms)
            .last()
            .is_some_and(|&(_, live)| live);
        at_start
            || changes
                .iter()
                .any(|&(t, live)| live && t > from_ms && t <= to_ms)
    }
}

/// Why a request that failed with `class` failed, given whether its model had a live copy
/// while it waited.
pub(super) fn cause_of(class: ErrorClass, had_copy: bool) -> FailureCause {
    match class {
        ErrorClass::Page | ErrorClass::WrongAnswer => FailureCause::Answer,
        ErrorClass::Rejected => FailureCause::Overload,
        ErrorClass::Interrupted => FailureCause::Stopped,
        _ if had_copy => FailureCause::Recovery,
        _ => FailureCause::Capacity,
    }
}

/// Milliseconds from `t0` to `t`.
pub(super) fn ms_since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(c: &Coverage, at: f64, live: bool) {
        c.record(at, [("bert".to_string(), live)]);
    }

    #[test]
    fn a_wait_that_overlaps_a_live_moment_had_a_copy() {
        let c = Coverage::default();
        seen(&c, 0.0, false);
        seen(&c, 100.0, true);
        seen(&c, 150.0, true);
        seen(&c, 200.0, false);
        seen(&c, 500.0, true);
        // Inside the gap, and before the first live moment: none.
        assert!(!c.had_copy("bert", 250.0, 450.0));
        assert!(!c.had_copy("bert", 0.0, 99.0));
        // Live at its start, became live during it, or spanning a whole live stretch.
        assert!(c.had_copy("bert", 120.0, 130.0));
        assert!(c.had_copy("bert", 450.0, 600.0));
        assert!(c.had_copy("bert", 50.0, 300.0));
        assert!(c.had_copy("bert", 600.0, 700.0));
        // A model never seen had none.
        assert!(!c.had_copy("vit", 0.0, 1000.0));
        // Only changes are kept.
        assert_eq!(lock(&c.by_model)["bert"].len(), 4);
    }

    #[test]
    fn causes_follow_the_class_then_the_record() {
        assert_eq!(
            cause_of(ErrorClass::Deadline, false),
            FailureCause::Capacity
        );
        assert_eq!(cause_of(ErrorClass::Deadline, true), FailureCause::Recovery);
        assert_eq!(cause_of(ErrorClass::Crash, true), FailureCause::Recovery);
        assert_eq!(
            cause_of(ErrorClass::NoPlacement, false),
            FailureCause::Capacity
        );
        assert_eq!(cause_of(ErrorClass::Page, true), FailureCause::Answer);
        assert_eq!(
            cause_of(ErrorClass::WrongAnswer, true),
            FailureCause::Answer
        );
        assert_eq!(cause_of(ErrorClass::Rejected, true), FailureCause::Overload);
        assert_eq!(
            cause_of(ErrorClass::Interrupted, true),
            FailureCause::Stopped
        );
    }
}
