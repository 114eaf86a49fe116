//! What each page run is for ([`RunFor`]), and one worker's books of them ([`RunBooks`]): the
//! runs the harness sent to each of its pages, by purpose, beside what each page counted
//! receiving, carried across page resets. Every run call names its purpose (the page API
//! requires it), so a run nobody accounted for shows as a difference. Must not import
//! `report`, `cli` or terminal crates.

use std::collections::BTreeMap;

use crate::metrics::PageRuns;

/// Why the harness runs a model on a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFor {
    /// An attempt of a ledger ticket (first, warm-up or measured request; a sharded request's
    /// call to one shard).
    Request,
    /// A run outside the ledger.
    Probe(Probe),
}

/// The named runs outside the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A model's first answer on a page reset and reloaded, judged before it serves again.
    ReloadCheck,
    /// A standby copy's first answer, judged before it may be promoted.
    StandbyCheck,
    /// Adaptive routing timing a candidate placement.
    AdaptiveProbe,
    /// A recovery's proof that a repaired worker answers.
    RecoveryProbe,
    /// `cost_balanced` timing one layer on each worker.
    LayerTiming,
    /// Timing the ways activations can travel between shards.
    RouteProbe,
    /// The unsharded model, the sharded run's baseline.
    Baseline,
}

impl RunFor {
    /// The name the page counts it under, and run.json reports it by.
    pub fn as_str(self) -> &'static str {
        match self {
            RunFor::Request => "request",
            RunFor::Probe(p) => match p {
                Probe::ReloadCheck => "reload_check",
                Probe::StandbyCheck => "standby_check",
                Probe::AdaptiveProbe => "adaptive_probe",
                Probe::RecoveryProbe => "recovery_probe",
                Probe::LayerTiming => "layer_timing",
                Probe::RouteProbe => "route_probe",
                Probe::Baseline => "baseline",
            },
        }
    }
}

/// Why a page's own run count could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountUnknown {
    /// The page was silent (hung) when it was reset: it was not asked.
    #[error("its page was silent for {ms} ms when it was reset")]
    SilentAtReset {
        /// How long its heartbeat had been silent.
        ms: u128,
    },
    /// The page did not answer `stats` before its reset (a crashed tab answers at once).
    #[error("its page did not answer 'stats' before its reset: {0}")]
    NoAnswerAtReset(String),
    /// The worker was out of service at its close, so its page was not asked.
    #[error("it was taken out of service ({0})")]
    OutOfService(String),
    /// The page did not answer `stats` at close.
    #[error("its page did not answer 'stats' before it closed")]
    NoAnswerAtClose,
    /// The page answered without its counts.
    #[error("the page's stats have no 'runs_for': {0}")]
    NoCounts(String),
    /// A count that is not one.
    #[error("the page's run count for '{purpose}' is not a count: {value}")]
    NotACount {
        /// The purpose counted.
        purpose: String,
        /// What the page gave.
        value: String,
    },
}

/// What a page counted, by purpose.
pub type Counted = Result<BTreeMap<String, u64>, CountUnknown>;

/// One worker's runs: sent by the harness and counted by its pages, over every page it had.
/// Only totals are compared, so what was sent needs no split by page; what earlier pages
/// counted is summed as each is replaced.
///
/// A page that can no longer be asked (crashed, hung, killed) still vouches for what its
/// answers carried: each successful run answer carries the page's counts as they stood when it
/// left, and the highest of them is at least the number of calls answered that way (each such
/// call was counted on arrival, under a distinct index, before its answer left). So a lost
/// page's count is that highest count, a lower bound; the calls it answered with an error
/// (which carries no counts) join the calls it never answered as the ones it may or may not
/// have counted.
#[derive(Debug, Clone, Default)]
pub struct RunBooks {
    /// Sent to any of its pages, by purpose.
    asked: BTreeMap<&'static str, u64>,
    /// Of those, the calls that got no answer.
    unanswered: BTreeMap<&'static str, u64>,
    /// Of those, calls a page answered with an error (no counts) and was then lost unasked.
    uncounted: BTreeMap<&'static str, u64>,
    /// What earlier pages counted (or, for a lost page, vouched for in its answers).
    earlier_page: BTreeMap<String, u64>,
    /// The highest counts the current page's answers carried.
    seen: BTreeMap<String, u64>,
    /// Calls the current page answered with an error.
    seen_uncounted: BTreeMap<&'static str, u64>,
    /// Why an earlier page's count is only what its answers carried (the first such reason).
    lost: Option<CountUnknown>,
}

impl RunBooks {
    /// Counts a run call about to go to the current page.
    pub fn sent(&mut self, purpose: RunFor) {
        *self.asked.entry(purpose.as_str()).or_default() += 1;
    }

    /// A call counted by [`RunBooks::sent`] got no answer (a timeout, a connection failing
    /// under it): the page may have received it or not.
    pub fn unanswered(&mut self, purpose: RunFor) {
        *self.unanswered.entry(purpose.as_str()).or_default() += 1;
    }

    /// A call counted by [`RunBooks::sent`] was answered by the page, carrying its counts as
    /// they stood then (`None` for an error answer, which carries none).
    pub fn answered(&mut self, purpose: RunFor, counts: Option<&BTreeMap<String, u64>>) {
        match counts {
            Some(c) => {
                for (k, n) in c {
                    let seen = self.seen.entry(k.clone()).or_default();
                    *seen = (*seen).max(*n);
                }
            }
            None => *self.seen_uncounted.entry(purpose.as_str()).or_default() += 1,
        }
    }

    /// A call counted by [`RunBooks::sent`] was refused before anything reached the browser.
    pub fn not_sent(&mut self, purpose: RunFor) {
        if let Some(n) = self.asked.get_mut(purpose.as_str()) {
            *n = n.saturating_sub(1);
        }
    }

    /// The current page is replaced (a reset): what it counted, or why it could not be asked
    /// (then what its answers carried stands for its count).
    pub fn page_replaced(&mut self, counted: Counted) {
        let seen = std::mem::take(&mut self.seen);
        let seen_uncounted = std::mem::take(&mut self.seen_uncounted);
        let counted = match counted {
            Ok(c) => c,
            Err(why) => {
                self.lost.get_or_insert(why);
                for (k, n) in seen_uncounted {
                    *self.uncounted.entry(k).or_default() += n;
                }
                seen
            }
        };
        for (k, n) in counted {
            *self.earlier_page.entry(k).or_default() += n;
        }
    }

    /// Both witnesses over the worker's life, given the last page's count (or why it could not
    /// be asked).
    pub fn close(&self, last: Counted) -> PageRuns {
        let mut books = self.clone();
        books.page_replaced(last);
        let owned = |m: &BTreeMap<&'static str, u64>| {
            m.iter().map(|(k, n)| ((*k).to_string(), *n)).collect()
        };
        PageRuns {
            asked: owned(&books.asked),
            unanswered: owned(&books.unanswered),
            uncounted: owned(&books.uncounted),
            page: Some(books.earlier_page),
            lower_bound: books.lost.map(|why| why.to_string()),
        }
    }
}

/// The page's count by purpose, from its `stats` answer (`runs_for`).
pub fn counted(stats: &serde_json::Value) -> Counted {
    let Some(by) = stats.get("runs_for").and_then(serde_json::Value::as_object) else {
        return Err(CountUnknown::NoCounts(stats.to_string()));
    };
    by.iter()
        .map(|(k, v)| {
            v.as_u64()
                .map(|n| (k.clone(), n))
                .ok_or_else(|| CountUnknown::NotACount {
                    purpose: k.clone(),
                    value: v.to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{CountUnknown, Probe, RunBooks, RunFor};
    use std::collections::BTreeMap;

    fn page(v: &[(&str, u64)]) -> BTreeMap<String, u64> {
        v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn counts_carry_across_a_reset_whose_page_answered() {
        let mut b = RunBooks::default();
        b.sent(RunFor::Request);
        b.sent(RunFor::Request);
        b.page_replaced(Ok(page(&[("request", 2)])));
        b.sent(RunFor::Probe(Probe::ReloadCheck));
        b.sent(RunFor::Request);
        let r = b.close(Ok(page(&[("reload_check", 1), ("request", 1)])));
        assert_eq!(r.asked, page(&[("request", 3), ("reload_check", 1)]));
        assert_eq!(r.page, Some(page(&[("request", 3), ("reload_check", 1)])));
        assert_eq!(r.mismatch(), None);
    }

    #[test]
    fn a_page_lost_before_its_reset_vouches_for_what_its_answers_carried() {
        let mut b = RunBooks::default();
        b.sent(RunFor::Request);
        b.answered(RunFor::Request, Some(&page(&[("request", 1)])));
        b.sent(RunFor::Request);
        b.answered(RunFor::Request, Some(&page(&[("request", 2)])));
        // Answered with an error: no counts in the answer.
        b.sent(RunFor::Request);
        b.answered(RunFor::Request, None);
        // Lost with its answer.
        b.sent(RunFor::Request);
        b.unanswered(RunFor::Request);
        b.page_replaced(Err(CountUnknown::SilentAtReset { ms: 900 }));
        b.sent(RunFor::Request);
        let r = b.close(Ok(page(&[("request", 1)])));
        assert_eq!(r.asked, page(&[("request", 5)]));
        assert_eq!(r.page, Some(page(&[("request", 3)])));
        assert_eq!(r.uncounted, page(&[("request", 1)]));
        assert_eq!(
            r.lower_bound.as_deref(),
            Some("its page was silent for 900 ms when it was reset")
        );
        assert_eq!(r.mismatch(), None, "{r:?}");
    }

    #[test]
    fn a_lost_page_s_answers_show_a_run_it_did_unasked() {
        let mut b = RunBooks::default();
        b.sent(RunFor::Request);
        // The page counted a second request it was never sent before answering this one.
        b.answered(RunFor::Request, Some(&page(&[("request", 2)])));
        let r = b.close(Err(CountUnknown::NoAnswerAtClose));
        assert!(r.mismatch().is_some(), "{r:?}");
    }

    #[test]
    fn a_lost_page_s_answers_show_a_run_that_vanished() {
        let mut b = RunBooks::default();
        b.sent(RunFor::Request);
        b.answered(RunFor::Request, Some(&page(&[("request", 1)])));
        b.sent(RunFor::Request);
        // Answered, yet the page's count did not grow: it never counted this call.
        b.answered(RunFor::Request, Some(&page(&[("request", 1)])));
        let r = b.close(Err(CountUnknown::NoAnswerAtClose));
        assert!(r.mismatch().is_some(), "{r:?}");
    }

    #[test]
    fn a_page_asked_at_its_reset_is_taken_at_its_word_not_its_answers() {
        let mut b = RunBooks::default();
        b.sent(RunFor::Request);
        b.answered(RunFor::Request, None);
        b.page_replaced(Ok(page(&[("request", 1)])));
        let r = b.close(Ok(BTreeMap::new()));
        assert!(r.uncounted.is_empty());
        assert_eq!((r.lower_bound.as_deref(), r.mismatch()), (None, None));
    }

    #[test]
    fn a_run_the_page_did_unasked_shows_after_a_reset_too() {
        let mut b = RunBooks::default();
        b.sent(RunFor::Request);
        b.page_replaced(Ok(page(&[("request", 2)])));
        let r = b.close(Ok(BTreeMap::new()));
        assert!(r.mismatch().is_some(), "{r:?}");
    }

    #[test]
    fn the_stats_answer_must_carry_counts() {
        let ok = super::counted(&serde_json::json!({"runs_for": {"request": 3}})).unwrap();
        assert_eq!(ok, page(&[("request", 3)]));
        assert!(super::counted(&serde_json::json!({"runs": 3})).is_err());
        assert!(super::counted(&serde_json::json!({"runs_for": {"request": "x"}})).is_err());
    }
}
