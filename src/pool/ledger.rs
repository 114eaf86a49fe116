//! The ledger: everything the pool observed, as records — each request's one sample and the
//! request counts, routing decisions, placements, scaling and health events, recovery episodes
//! and injected faults — turned into a [`PoolReport`] at shutdown.
//!
//! It knows nothing of the pool: callers hand it plain records under the pool's one lock. Must
//! not import `report`, `cli` or terminal crates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::{Phase, Requests, Sample};

use super::attribution::FaultNote;
use super::error::ErrorClass;
use super::placement::PlacementRecord;
use super::recover::RecoveryRecord;
use super::router::Decision;
use super::worker::WorkerStatus;

/// A pool event: scaling, health, placement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolEvent {
    /// Since the pool started, ms.
    pub at_ms: u64,
    /// `launched`, `closed_idle`, `unhealthy`, `placed`, `unloaded`, ...
    pub kind: String,
    /// Worker id.
    pub worker: String,
    /// Details.
    pub detail: String,
}

/// A worker's final numbers.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Worker id.
    pub id: String,
    /// Browser kind.
    pub kind: BrowserKind,
    /// Final status.
    pub status: WorkerStatus,
    /// Busy time over the worker's lifetime.
    pub utilization: f64,
    /// Lifetime.
    pub alive: Duration,
}

/// Everything the pool observed, at shutdown.
#[derive(Debug, Clone, Default)]
pub struct PoolReport {
    /// Every worker that ever existed.
    pub workers: Vec<WorkerReport>,
    /// Every routing decision.
    pub decisions: Vec<Decision>,
    /// Every placement.
    pub placements: Vec<PlacementRecord>,
    /// Scaling and health events.
    pub events: Vec<PoolEvent>,
    /// Request accounting.
    pub requests: Requests,
    /// Every request.
    pub samples: Vec<Sample>,
    /// Largest number of live workers at once.
    pub peak_workers: usize,
    /// Every recovery episode.
    pub recoveries: Vec<RecoveryRecord>,
    /// Every fault injected, skipped or failed.
    pub faults: Vec<FaultNote>,
}

/// Where a request ran: worker id, browser kind, backend.
#[derive(Debug, Clone, Copy)]
pub struct Ran<'a> {
    /// Worker id.
    pub worker: &'a str,
    /// Its browser kind.
    pub browser: BrowserKind,
    /// The session's backend.
    pub backend: Backend,
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub struct RequestEnd<'a> {
    /// Catalog model name.
    pub model: &'a str,
    /// Where it ran (`None` when it never reached a worker).
    pub ran: Option<Ran<'a>>,
    /// Which part of the run.
    pub phase: Phase,
    /// Its scheduled start (latency is measured from here: no coordinated omission).
    pub scheduled: Instant,
    /// When it was last issued to a worker.
    pub issued: Instant,
    /// Attempts it took.
    pub attempt: u32,
    /// The page's `session.run` ms, or the class of the failure.
    pub outcome: Result<f64, ErrorClass>,
}

/// The pool's records, in the order they happened.
#[derive(Debug)]
pub struct Ledger {
    t0: Instant,
    decisions: Vec<Decision>,
    placements: Vec<PlacementRecord>,
    events: Vec<PoolEvent>,
    requests: Requests,
    samples: Vec<Sample>,
    recoveries: Vec<RecoveryRecord>,
    faults: Vec<FaultNote>,
    /// Measured requests finished, per model.
    per_model: BTreeMap<String, u64>,
}

impl Ledger {
    /// An empty ledger whose times count from `t0`.
    pub fn new(t0: Instant) -> Self {
        Self {
            t0,
            decisions: Vec::new(),
            placements: Vec::new(),
            events: Vec::new(),
            requests: Requests::default(),
            samples: Vec::new(),
            recoveries: Vec::new(),
            faults: Vec::new(),
            per_model: BTreeMap::new(),
        }
    }

    /// Ms from the start to `t`.
    pub fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.t0).as_millis() as u64
    }

    /// Records a scaling or health event now.
    pub fn event(&mut self, kind: &str, worker: &str, detail: String) {
        let at_ms = self.ms(Instant::now());
        self.events.push(PoolEvent {
            at_ms,
            kind: kind.into(),
            worker: worker.into(),
            detail,
        });
    }

    /// Records a routing decision.
    pub fn decision(&mut self, d: Decision) {
        self.decisions.push(d);
    }

    /// Records a placement.
    pub fn placement(&mut self, p: PlacementRecord) {
        self.placements.push(p);
    }

    /// Records a recovery episode.
    pub fn recovery(&mut self, r: RecoveryRecord) {
        self.recoveries.push(r);
    }

    /// Records a fault as the injector carried it out (or skipped it).
    pub fn fault(&mut self, f: FaultNote) {
        self.faults.push(f);
    }

    /// Accounts for one request that ended: it is counted succeeded or failed, and leaves one
    /// sample.
    pub fn request(&mut self, end: RequestEnd<'_>) {
        let done = Instant::now();
        let ms = |t: Instant| t.saturating_duration_since(self.t0).as_secs_f64() * 1e3;
        let since = |t: Instant| done.saturating_duration_since(t).as_secs_f64() * 1e3;
        let sample = Sample {
            seq: self.samples.len() as u64,
            model: end.model.to_string(),
            browser: end.ran.map(|r| r.browser.to_string()).unwrap_or_default(),
            worker: end.ran.map(|r| r.worker.to_string()).unwrap_or_default(),
            backend: end.ran.map(|r| r.backend.to_string()).unwrap_or_default(),
            phase: end.phase,
            scheduled_ms: ms(end.scheduled),
            started_ms: ms(end.issued),
            latency_ms: since(end.scheduled),
            service_ms: if end.ran.is_some() {
                since(end.issued)
            } else {
                0.0
            },
            page_ms: *end.outcome.as_ref().unwrap_or(&0.0),
            ok: end.outcome.is_ok(),
            error: end
                .outcome
                .err()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            attempt: end.attempt,
        };
        if sample.phase == Phase::Measure {
            *self.per_model.entry(sample.model.clone()).or_default() += 1;
        }
        self.requests.issued += 1;
        if sample.ok {
            self.requests.succeeded += 1;
        } else {
            self.requests.failed += 1;
        }
        self.samples.push(sample);
    }

    /// Requests ended so far: `(succeeded, failed)`.
    pub fn ended(&self) -> (u64, u64) {
        (self.requests.succeeded, self.requests.failed)
    }

    /// Measured requests finished per model.
    pub fn per_model(&self) -> &BTreeMap<String, u64> {
        &self.per_model
    }

    /// The faults recorded after the first `seen`.
    pub fn faults_since(&self, seen: usize) -> Vec<FaultNote> {
        self.faults.iter().skip(seen).cloned().collect()
    }

    /// The recovery episodes recorded after the first `seen`.
    pub fn recoveries_since(&self, seen: usize) -> Vec<RecoveryRecord> {
        self.recoveries.iter().skip(seen).cloned().collect()
    }

    /// Closes the books: the report of everything recorded, with `workers` and `peak_workers`.
    pub fn into_report(self, workers: Vec<WorkerReport>, peak_workers: usize) -> PoolReport {
        let mut requests = self.requests;
        requests.settle();
        PoolReport {
            workers,
            decisions: self.decisions,
            placements: self.placements,
            events: self.events,
            requests,
            samples: self.samples,
            peak_workers,
            recoveries: self.recoveries,
            faults: self.faults,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_leaves_one_sample_and_one_count() {
        let t0 = Instant::now();
        let mut l = Ledger::new(t0);
        let ran = Ran {
            worker: "chromium#1",
            browser: BrowserKind::Chromium,
            backend: Backend::Wasm,
        };
        let end = |outcome, phase| RequestEnd {
            model: "bert-tiny",
            ran: Some(ran),
            phase,
            scheduled: t0,
            issued: t0,
            attempt: 1,
            outcome,
        };
        l.request(end(Ok(3.0), Phase::First));
        l.request(end(Ok(2.0), Phase::Measure));
        l.request(end(Err(ErrorClass::Page), Phase::Measure));
        assert_eq!(l.ended(), (2, 1));
        assert_eq!(l.per_model()["bert-tiny"], 2);
        let report = l.into_report(Vec::new(), 1);
        assert_eq!(report.samples.len(), 3);
        assert_eq!(report.samples[2].error, "page");
        assert_eq!(report.samples[2].seq, 2);
        assert_eq!(report.samples[0].backend, "wasm");
        assert_eq!(report.requests.issued, 3);
    }
}
