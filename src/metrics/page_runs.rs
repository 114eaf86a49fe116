//! [`PageRuns`]: one worker's page runs as two witnesses saw them - the harness, which names
//! what every run it sends is for (a ledger request or a named probe), and the page, which
//! counts every run call it receives under the name it was given - and the verdict that fails
//! a run in which they differ.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A worker's page runs by purpose: `request` (an attempt of a ledger ticket: first, warm-up
/// or measured) or a named probe (`reload_check`, `standby_check`, `adaptive_probe`,
/// `recovery_probe`, `layer_timing`, `route_probe`, `baseline`), summed over every page the
/// worker had (a reset opens a new one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageRuns {
    /// Run calls the harness sent, by purpose.
    pub asked: BTreeMap<String, u64>,
    /// Of those, calls that got no answer (timed out, or the connection failed under them):
    /// the page may or may not have received them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unanswered: BTreeMap<String, u64>,
    /// Of those, calls a page answered with an error (which carries no counts) before it was
    /// lost unasked: like unanswered ones, they may or may not be in `page`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uncounted: BTreeMap<String, u64>,
    /// Run calls the worker's pages counted receiving, by the purpose each carried: each
    /// page's own count, or for a page lost before it could be asked (`lower_bound` says why),
    /// the highest count its answers carried. Absent only in run.json files written before
    /// answers carried counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<BTreeMap<String, u64>>,
    /// Why `page` is a lower bound: a page lost (its browser killed, its tab crashed or hung)
    /// before its count could be read vouches only for what its answers carried.
    #[serde(default, alias = "unknown", skip_serializing_if = "Option::is_none")]
    pub lower_bound: Option<String>,
}

impl PageRuns {
    /// Runs the harness sent.
    pub fn asked_total(&self) -> u64 {
        self.asked.values().sum()
    }

    /// Runs the pages counted, when known.
    pub fn page_total(&self) -> Option<u64> {
        self.page.as_ref().map(|p| p.values().sum())
    }

    /// How the two witnesses differ, purpose by purpose: a page counted more than the harness
    /// sent (a run nobody accounted for), or fewer than the calls it answered (a run that
    /// vanished). A call with no answer, or answered with an error by a page lost unasked, may
    /// have been counted or not, so it counts either way. Both checks hold for a lower bound of
    /// the pages' count too: it is at most what they counted, and at least the calls they
    /// answered with counts.
    pub fn mismatch(&self) -> Option<String> {
        let page = self.page.as_ref()?;
        let purposes: std::collections::BTreeSet<&String> =
            self.asked.keys().chain(page.keys()).collect();
        let at_least = if self.lower_bound.is_some() {
            "at least "
        } else {
            ""
        };
        let differ: Vec<String> = purposes
            .into_iter()
            .filter_map(|p| {
                let count = |m: &BTreeMap<String, u64>| m.get(p).copied().unwrap_or(0);
                let (a, c) = (count(&self.asked), count(page));
                let (u, e) = (count(&self.unanswered), count(&self.uncounted));
                let mut open = Vec::new();
                if u > 0 {
                    open.push(format!("{u} unanswered"));
                }
                if e > 0 {
                    open.push(format!("{e} answered with an error by a lost page"));
                }
                let open = if open.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", open.join(", "))
                };
                (c > a || c < a.saturating_sub(u + e))
                    .then(|| format!("{p}: harness sent {a}{open}, page counted {at_least}{c}"))
            })
            .collect();
        (!differ.is_empty()).then(|| differ.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::PageRuns;

    fn runs(asked: &[(&str, u64)], page: Option<&[(&str, u64)]>) -> PageRuns {
        let map = |v: &[(&str, u64)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        PageRuns {
            asked: map(asked),
            page: page.map(map),
            ..PageRuns::default()
        }
    }

    #[test]
    fn equal_counts_by_purpose_agree() {
        let r = runs(
            &[("request", 40), ("standby_check", 2)],
            Some(&[("request", 40), ("standby_check", 2)]),
        );
        assert_eq!(r.mismatch(), None);
        assert_eq!((r.asked_total(), r.page_total()), (42, Some(42)));
    }

    #[test]
    fn a_run_the_harness_did_not_send_or_that_never_arrived_is_a_mismatch() {
        let extra = runs(&[("request", 40)], Some(&[("request", 41)]));
        assert_eq!(
            extra.mismatch().as_deref(),
            Some("request: harness sent 40, page counted 41")
        );
        // Same totals, other purposes: still a mismatch.
        let relabelled = runs(
            &[("request", 40), ("standby_check", 1)],
            Some(&[("request", 41)]),
        );
        assert!(relabelled.mismatch().unwrap().contains("standby_check"));
    }

    #[test]
    fn an_unanswered_call_may_or_may_not_have_reached_the_page() {
        let mut r = runs(&[("request", 40)], Some(&[("request", 39)]));
        assert!(r.mismatch().is_some());
        r.unanswered.insert("request".into(), 1);
        assert_eq!(r.mismatch(), None);
        r.page = Some([("request".to_string(), 40)].into());
        assert_eq!(r.mismatch(), None);
        // One unanswered call covers one run, not two.
        r.page = Some([("request".to_string(), 38)].into());
        assert_eq!(
            r.mismatch().as_deref(),
            Some("request: harness sent 40 (1 unanswered), page counted 38")
        );
    }

    #[test]
    fn a_count_from_before_answers_carried_counts_is_no_verdict() {
        let r = runs(&[("request", 3)], None);
        assert_eq!(r.mismatch(), None);
    }

    #[test]
    fn a_lost_page_s_lower_bound_still_shows_both_ways_it_can_differ() {
        let mut r = runs(&[("request", 10)], Some(&[("request", 9)]));
        r.lower_bound = Some("its page was silent for 900 ms when it was reset".into());
        r.unanswered.insert("request".into(), 1);
        assert_eq!(r.mismatch(), None);
        // One call the lost page answered with an error: it may be uncounted too.
        r.page = Some([("request".to_string(), 8)].into());
        assert!(r.mismatch().is_some());
        r.uncounted.insert("request".into(), 1);
        assert_eq!(r.mismatch(), None);
        r.page = Some([("request".to_string(), 11)].into());
        assert_eq!(
            r.mismatch().as_deref(),
            Some("request: harness sent 10 (1 unanswered, 1 answered with an error by a lost page), page counted at least 11")
        );
    }
}
