//! [`Resilience`]: how a run stood up to faults, computed from its [`RunSummary`] (and its raw
//! [`Sample`]s when they are at hand): success rate, retried requests, faults by kind, and
//! recovery events by ladder level and by fault kind with detection, recovery and
//! time-to-recover percentiles.
//!
//! Pure: imports only std, serde and this module's siblings; the terminal, Markdown and HTML
//! reports all render from this one computation so they cannot disagree.

use serde::Serialize;

use super::{Percentiles, RecoveryEvent, Requests, RunSummary, Sample};

/// The order levels are listed in: the ladder from the bottom, then `none` (no level ran).
/// Levels a future ladder adds come after these, by name.
const LEVEL_ORDER: [&str; 5] = ["retry", "reset", "migrate", "rebuild", "none"];

/// The fault kind of a failure nobody injected.
pub const EXTERNAL: &str = "external";

/// Fault tolerance of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resilience {
    /// Request accounting, as in the summary.
    pub requests: Requests,
    /// `succeeded / issued`; `None` when nothing was issued.
    pub success_rate: Option<f64>,
    /// Requests that took more than one attempt; `None` when the samples were not given.
    pub retries: Option<Retries>,
    /// One row per fault kind that was injected, skipped or recovered from, by name, with
    /// `external` last.
    pub fault_kinds: Vec<FaultKindStats>,
    /// Recovery events per highest ladder level reached, lowest level first.
    pub by_level: Vec<RecoveryStats>,
    /// Every recovery event (key `all`).
    pub overall: RecoveryStats,
}

/// Requests that were re-run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retries {
    /// Requests with `attempt > 1`.
    pub retried: u64,
    /// Most attempts any request took (0 when there were no samples).
    pub max_attempts: u32,
}

/// Faults of one kind and the recoveries attributed to them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultKindStats {
    /// Fault kind, e.g. `kill_browser`, or `external`.
    pub kind: String,
    /// Faults of this kind carried out.
    pub injected: u64,
    /// Faults of this kind skipped or failed to inject.
    pub skipped: u64,
    /// Recovery events attributed to this kind (key = the kind).
    pub recovery: RecoveryStats,
}

/// Recovery events of one group (a ladder level, a fault kind, or all of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecoveryStats {
    /// The level, the fault kind, or `all`.
    pub key: String,
    /// Events in the group.
    pub events: u64,
    /// Events that restored service.
    pub succeeded: u64,
    /// Events on a worker that served nothing: no service was lost, so they are in neither
    /// the recovery nor the time-to-recover figures.
    #[serde(default)]
    pub idle: u64,
    /// Fault to detection over every event, ms.
    pub detection_ms: Option<Percentiles>,
    /// Detection to serving again over the events that restored service, ms.
    pub recovery_ms: Option<Percentiles>,
    /// Fault to serving again (detection + recovery) over the events that restored service, ms.
    pub time_to_recover_ms: Option<Percentiles>,
}

impl RecoveryStats {
    /// The statistics of `events`, under `key`.
    ///
    /// Recovery and time-to-recover cover only the events that restored service: a failed
    /// event's `recovery_ms` is the time until the ladder gave up, and mixing it in would make
    /// a run that never recovered look fast; an event on a worker that served nothing restored
    /// no service, and its 0 ms would make the pool look fast. Detection covers every event,
    /// since each was detected whatever came after.
    pub fn of<'a>(key: &str, events: impl IntoIterator<Item = &'a RecoveryEvent>) -> Self {
        let events: Vec<&RecoveryEvent> = events.into_iter().collect();
        let ok: Vec<&RecoveryEvent> = events
            .iter()
            .copied()
            .filter(|e| e.succeeded && !e.served_nothing)
            .collect();
        let ms = |v: &[&RecoveryEvent], f: fn(&RecoveryEvent) -> u64| {
            Percentiles::from_ms(&v.iter().map(|&e| f(e) as f64).collect::<Vec<_>>())
        };
        Self {
            key: key.to_string(),
            events: events.len() as u64,
            succeeded: events.iter().filter(|e| e.succeeded).count() as u64,
            idle: events.iter().filter(|e| e.served_nothing).count() as u64,
            detection_ms: ms(&events, |e| e.detection_ms),
            recovery_ms: ms(&ok, |e| e.recovery_ms),
            time_to_recover_ms: ms(&ok, |e| {
                e.detection_ms + e.served_ms.unwrap_or(e.recovery_ms)
            }),
        }
    }

    /// Events that did not restore service.
    pub fn failed(&self) -> u64 {
        self.events - self.succeeded
    }
}

/// Ms from `at_ms` (a detection, ms from the pool's start) to when every one of `models` had
/// answered a request issued after it: for each model the end of its first successful such
/// request, the latest of those. `None` without models, or when one never answered again.
pub fn served_ms(at_ms: u64, models: &[String], samples: &[Sample]) -> Option<u64> {
    let at = at_ms as f64;
    let mut latest: Option<f64> = None;
    for m in models {
        let first = samples
            .iter()
            .filter(|s| s.ok && &s.model == m && s.started_ms >= at)
            .map(|s| s.started_ms + s.service_ms)
            .min_by(f64::total_cmp)?;
        latest = Some(latest.map_or(first, |l: f64| l.max(first)));
    }
    latest.map(|end| (end - at).ceil() as u64)
}

impl Resilience {
    /// Computes the fault tolerance of `summary`. `samples` (the run's `samples.csv`) gives
    /// the retried requests; without them [`Resilience::retries`] is `None`.
    pub fn from_run(summary: &RunSummary, samples: Option<&[Sample]>) -> Self {
        let q = summary.requests;
        let events = &summary.recovery_events;

        let mut kinds: Vec<&str> = summary
            .faults
            .iter()
            .map(|f| f.kind.as_str())
            .chain(events.iter().map(|e| e.fault_kind.as_str()))
            .collect();
        kinds.sort_by_key(|k| (*k == EXTERNAL, *k));
        kinds.dedup();
        let fault_kinds = kinds
            .into_iter()
            .map(|kind| {
                let of_kind = summary.faults.iter().filter(|f| f.kind == kind);
                let injected = of_kind.clone().filter(|f| f.injected).count() as u64;
                FaultKindStats {
                    kind: kind.to_string(),
                    injected,
                    skipped: of_kind.count() as u64 - injected,
                    recovery: RecoveryStats::of(
                        kind,
                        events.iter().filter(|e| e.fault_kind == kind),
                    ),
                }
            })
            .collect();

        let mut levels: Vec<&str> = events.iter().map(|e| e.level.as_str()).collect();
        levels.sort_by_key(|l| {
            let rank = LEVEL_ORDER.iter().position(|o| o == l);
            (rank.unwrap_or(LEVEL_ORDER.len()), *l)
        });
        levels.dedup();
        let by_level = levels
            .into_iter()
            .map(|level| RecoveryStats::of(level, events.iter().filter(|e| e.level == level)))
            .collect();

        Self {
            requests: q,
            success_rate: (q.issued > 0).then(|| q.succeeded as f64 / q.issued as f64),
            retries: samples.map(|s| Retries {
                retried: s.iter().filter(|x| x.attempt > 1).count() as u64,
                max_attempts: s.iter().map(|x| x.attempt).max().unwrap_or(0),
            }),
            fault_kinds,
            by_level,
            overall: RecoveryStats::of("all", events),
        }
    }

    /// Whether the run had no faults and no recovery events (the reports then leave their
    /// fault section out).
    pub fn is_empty(&self) -> bool {
        self.fault_kinds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{FaultRecord, Phase};

    fn summary() -> RunSummary {
        serde_json::from_str(
            r#"{"schema_version":1,"run_id":"r","command":"c","started_at":"","finished_at":"",
            "complete":true,"environment":{"harness_version":"","os":"","cpus":1,"browsers":[]},
            "requests":{"issued":0,"succeeded":0,"failed":0,"lost":0},"results":[],"faults":[],
            "recovery_events":[],"thresholds":[]}"#,
        )
        .unwrap()
    }

    fn fault(kind: &str, at_ms: u64, injected: bool) -> FaultRecord {
        FaultRecord {
            kind: kind.into(),
            at_ms,
            target: if injected {
                "chromium#1".into()
            } else {
                "".into()
            },
            injected,
            detail: String::new(),
        }
    }

    fn event(kind: &str, level: &str, detection: u64, recovery: u64, ok: bool) -> RecoveryEvent {
        RecoveryEvent {
            fault_kind: kind.into(),
            level: level.into(),
            detection_ms: detection,
            recovery_ms: recovery,
            succeeded: ok,
            ..Default::default()
        }
    }

    fn sample(seq: u64, attempt: u32, ok: bool) -> Sample {
        Sample {
            seq,
            model: "bert".into(),
            browser: "chromium".into(),
            worker: "chromium#1".into(),
            backend: "wasm".into(),
            phase: Phase::Measure,
            scheduled_ms: 0.0,
            started_ms: 0.0,
            latency_ms: 1.0,
            service_ms: 1.0,
            page_ms: 1.0,
            ok,
            error: String::new(),
            attempt,
            cause: None,
        }
    }

    #[test]
    fn service_is_back_when_every_model_served_answered_a_request_issued_after_detection() {
        let at = |model: &str, started: f64, service: f64, ok: bool| Sample {
            model: model.into(),
            started_ms: started,
            service_ms: service,
            ..sample(0, 1, ok)
        };
        let samples = [
            at("bert", 90.0, 5.0, true), // issued before the detection at 100: not a witness
            at("bert", 101.0, 1.0, false), // failed
            at("bert", 105.0, 10.0, true), // ends at 115
            at("bert", 106.0, 20.0, true), // ends at 126: a later answer
            at("vit", 102.0, 30.0, true), // ends at 132: the later model
        ];
        let models = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(served_ms(100, &models(&["bert"]), &samples), Some(15));
        assert_eq!(
            served_ms(100, &models(&["bert", "vit"]), &samples),
            Some(32)
        );
        // A model that never answered again, or a worker that served nothing: not served.
        assert_eq!(
            served_ms(100, &models(&["bert", "whisper"]), &samples),
            None
        );
        assert_eq!(served_ms(100, &[], &samples), None);
    }

    #[test]
    fn a_run_without_faults_is_empty() {
        let mut s = summary();
        s.requests = Requests {
            issued: 4,
            succeeded: 4,
            failed: 0,
            lost: 0,
            ..Default::default()
        };
        let r = Resilience::from_run(&s, None);
        assert!(r.is_empty());
        assert_eq!(r.success_rate, Some(1.0));
        assert_eq!(r.retries, None);
        assert!(r.by_level.is_empty());
        assert_eq!(r.overall.events, 0);
        assert_eq!(r.overall.detection_ms, None);
        assert_eq!(Resilience::from_run(&summary(), None).success_rate, None);
    }

    #[test]
    fn counts_faults_by_kind_and_retries() {
        let mut s = summary();
        s.requests = Requests {
            issued: 200,
            succeeded: 199,
            failed: 1,
            lost: 0,
            ..Default::default()
        };
        s.faults = vec![
            fault("kill_browser", 1000, true),
            fault("hang", 2000, true),
            fault("kill_browser", 3000, false),
            fault("kill_browser", 4000, true),
        ];
        s.recovery_events = vec![
            event("kill_browser", "migrate", 50, 900, true),
            event("hang", "reset", 3000, 400, true),
            event("kill_browser", "rebuild", 60, 2000, true),
            event(EXTERNAL, "migrate", 10, 800, true),
        ];
        let samples = [sample(0, 1, true), sample(1, 3, true), sample(2, 2, false)];
        let r = Resilience::from_run(&s, Some(&samples));
        assert!(!r.is_empty());
        assert_eq!(r.success_rate, Some(0.995));
        assert_eq!(
            r.retries,
            Some(Retries {
                retried: 2,
                max_attempts: 3
            })
        );
        let kinds: Vec<(&str, u64, u64, u64)> = r
            .fault_kinds
            .iter()
            .map(|k| (k.kind.as_str(), k.injected, k.skipped, k.recovery.events))
            .collect();
        assert_eq!(
            kinds,
            [
                ("hang", 1, 0, 1),
                ("kill_browser", 2, 1, 2),
                (EXTERNAL, 0, 0, 1)
            ]
        );
        let kill = &r.fault_kinds[1].recovery;
        assert_eq!(kill.time_to_recover_ms.unwrap().p50, 950.0);
        assert_eq!(kill.time_to_recover_ms.unwrap().p95, 2060.0);
        assert_eq!(
            Resilience::from_run(&s, Some(&[])).retries,
            Some(Retries::default())
        );
    }

    #[test]
    fn groups_recoveries_by_level_in_ladder_order() {
        let mut s = summary();
        s.recovery_events = vec![
            event("kill_browser", "rebuild", 40, 3000, true),
            event("hang", "none", 5000, 0, false),
            event("crash_tab", "reset", 20, 600, true),
            event("kill_browser", "migrate", 30, 800, true),
            event("kill_driver", "migrate", 100, 1200, true),
            event("disconnect", "migrate", 200, 9000, false),
            event("slow", "retry", 1000, 5, true),
        ];
        let r = Resilience::from_run(&s, None);
        let levels: Vec<&str> = r.by_level.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(levels, ["retry", "reset", "migrate", "rebuild", "none"]);
        let migrate = &r.by_level[2];
        assert_eq!(
            (migrate.events, migrate.succeeded, migrate.failed()),
            (3, 2, 1)
        );
        // Detection over all three, recovery and time to recover over the two that recovered.
        let d = migrate.detection_ms.unwrap();
        assert_eq!((d.p50, d.p95), (100.0, 200.0));
        let rec = migrate.recovery_ms.unwrap();
        assert_eq!((rec.p50, rec.p95), (800.0, 1200.0));
        let ttr = migrate.time_to_recover_ms.unwrap();
        assert_eq!((ttr.p50, ttr.p95), (830.0, 1300.0));
        // A level where nothing recovered has detection but no recovery times.
        let none = &r.by_level[4];
        assert_eq!(none.detection_ms.unwrap().p50, 5000.0);
        assert_eq!((none.recovery_ms, none.time_to_recover_ms), (None, None));
        assert_eq!(
            (
                r.overall.key.as_str(),
                r.overall.events,
                r.overall.succeeded
            ),
            ("all", 7, 5)
        );
        // Times to recover of the five: 5+1000, 620, 830, 1300, 3040.
        let all = r.overall.time_to_recover_ms.unwrap();
        assert_eq!((all.p50, all.p95, all.max), (1005.0, 3040.0, 3040.0));
    }

    #[test]
    fn a_worker_that_served_nothing_is_not_in_the_recovery_times() {
        let mut s = summary();
        let idle = RecoveryEvent {
            served_nothing: true,
            ..event("kill_browser", "migrate", 30, 0, true)
        };
        s.recovery_events = vec![idle, event("kill_browser", "migrate", 40, 500, true)];
        let r = Resilience::from_run(&s, None);
        let m = &r.by_level[0];
        assert_eq!((m.events, m.succeeded, m.idle), (2, 2, 1));
        // Its 0 ms would halve the p50: only the worker that served is timed.
        let rec = m.recovery_ms.unwrap();
        assert_eq!((rec.p50, rec.max), (500.0, 500.0));
        assert_eq!(m.time_to_recover_ms.unwrap().p50, 540.0);
        // Detection still covers both.
        assert_eq!(m.detection_ms.unwrap().p50, 30.0);
    }

    #[test]
    fn unknown_levels_sort_after_the_ladder() {
        let mut s = summary();
        s.recovery_events = vec![
            event("hang", "teleport", 1, 1, true),
            event("hang", "none", 1, 1, false),
            event("hang", "retry", 1, 1, true),
        ];
        let r = Resilience::from_run(&s, None);
        let levels: Vec<&str> = r.by_level.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(levels, ["retry", "none", "teleport"]);
        assert_eq!(r.fault_kinds.len(), 1);
        assert_eq!(r.fault_kinds[0].injected, 0);
    }
}
