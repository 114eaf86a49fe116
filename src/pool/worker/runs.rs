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
#[derive(Debug, Clone, Default)]
pub struct RunBooks {
    /// Sent to any of its pages, by purpose.
    asked: BTreeMap<&'static str, u64>,
    /// Of those, the calls that got no answer.
    unanswered: BTreeMap<&'static str, u64>,
    /// What earlier pages counted.
    earlier_page: BTreeMap<String, u64>,
    /// Why an earlier page's count is unknown (the first such reason).
    unknown: Option<CountUnknown>,
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

    /// A call counted by [`RunBooks::sent`] was refused before anything reached the browser.
    pub fn not_sent(&mut self, purpose: RunFor) {
        if let Some(n) = self.asked.get_mut(purpose.as_str()) {
            *n = n.saturating_sub(1);
        }
    }

    /// The current page is replaced (a reset): what it counted, or why that is unknown.
    pub fn page_replaced(&mut self, counted: Counted) {
        match counted {
            Ok(c) => {
                for (k, n) in c {
                    *self.earlier_page.entry(k).or_default() += n;
                }
            }
            Err(why) => {
                self.unknown.get_or_insert(why);
            }
        }
    }

    /// Both witnesses over the worker's life, given the last page's count (or why it is
    /// unknown).
    pub fn close(&self, last: Counted) -> PageRuns {
        let owned = |m: &BTreeMap<&'static str, u64>| {
            m.iter().map(|(k, n)| ((*k).to_string(), *n)).collect()
        };
        let (page, unknown) = match (&self.unknown, last) {
            (Some(why), _) => (None, Some(why.to_string())),
            (None, Err(why)) => (None, Some(why.to_string())),
            (None, Ok(c)) => {
                let mut page = self.earlier_page.clone();
                for (k, n) in c {
                    *page.entry(k).or_default() += n;
                }
                (Some(page), None)
            }
        };
        PageRuns {
            asked: owned(&self.asked),
            unanswered: owned(&self.unanswered),
            page,
            unknown,
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
    fn a_page_lost_before_its_reset_makes_the_count_unknown_for_good() {
        let mut b = RunBooks::default();
        b.sent(RunFor::Request);
        b.page_replaced(Err(CountUnknown::SilentAtReset { ms: 900 }));
        b.sent(RunFor::Request);
        let r = b.close(Ok(page(&[("request", 1)])));
        assert_eq!(
            (r.page, r.unknown.as_deref()),
            (
                None,
                Some("its page was silent for 900 ms when it was reset")
            )
        );
        assert_eq!(r.asked, page(&[("request", 2)]));
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
