//! The ledger: everything the pool observed, as records — each request's one sample and the
//! request counts, routing decisions, placements, scaling and health events, recovery episodes
//! and injected faults — turned into a [`PoolReport`] at shutdown.
//!
//! Request accounting is independent of the outcomes: a request gets a [`Ticket`] when it is
//! scheduled, before it is dispatched, and its outcome closes that ticket exactly once.
//! `issued` counts tickets, `lost` counts tickets still open at the end (a request the harness
//! forgot), and an outcome for a ticket already closed is counted as `closed_twice`. Neither
//! is derived from the other counts, so both can show.
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

/// A request's ticket: issued when the request is scheduled, closed once by its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(usize);

/// A ticket's state.
#[derive(Debug, Clone)]
enum TicketState {
    /// Issued; no outcome yet.
    Open {
        /// Catalog model name.
        model: String,
        /// Which part of the run.
        phase: Phase,
    },
    /// Its outcome was recorded.
    Closed,
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub struct RequestEnd<'a> {
    /// The ticket it was issued.
    pub ticket: Ticket,
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
    /// Every ticket issued, by number.
    tickets: Vec<TicketState>,
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
            tickets: Vec::new(),
            per_model: BTreeMap::new(),
        }
    }

    /// Issues a request's ticket, when it is scheduled (before it is dispatched).
    pub fn issue(&mut self, model: &str, phase: Phase) -> Ticket {
        self.tickets.push(TicketState::Open {
            model: model.to_string(),
            phase,
        });
        self.requests.issued += 1;
        Ticket(self.tickets.len() - 1)
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

    /// Accounts for one request that ended: its ticket is closed, it is counted succeeded or
    /// failed, and it leaves one sample. An outcome for a ticket that is not open (closed
    /// already, or never issued) is counted in `closed_twice` and leaves nothing else.
    pub fn request(&mut self, end: RequestEnd<'_>) {
        match self.tickets.get_mut(end.ticket.0) {
            Some(t @ TicketState::Open { .. }) => *t = TicketState::Closed,
            _ => {
                self.requests.closed_twice += 1;
                return;
            }
        }
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
        if sample.ok {
            self.requests.succeeded += 1;
        } else {
            self.requests.failed += 1;
        }
        self.samples.push(sample);
    }

    /// Every request's sample so far, in the order they ended.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
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
    pub fn into_report(mut self, workers: Vec<WorkerReport>, peak_workers: usize) -> PoolReport {
        let mut requests = self.requests;
        let open: Vec<(String, Phase)> = self
            .tickets
            .iter()
            .filter_map(|t| match t {
                TicketState::Open { model, phase } => Some((model.clone(), *phase)),
                TicketState::Closed => None,
            })
            .collect();
        requests.lost = open.len() as u64;
        for (model, phase) in open {
            self.event(
                "lost",
                "",
                format!("a {phase:?} request of {model} was issued and never ended"),
            );
        }
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

    fn ran() -> Ran<'static> {
        Ran {
            worker: "chromium#1",
            browser: BrowserKind::Chromium,
            backend: Backend::Wasm,
        }
    }

    fn end(ticket: Ticket, t0: Instant, outcome: Result<f64, ErrorClass>) -> RequestEnd<'static> {
        RequestEnd {
            ticket,
            model: "bert-tiny",
            ran: Some(ran()),
            phase: Phase::Measure,
            scheduled: t0,
            issued: t0,
            attempt: 1,
            outcome,
        }
    }

    #[test]
    fn each_request_leaves_one_sample_and_one_count() {
        let t0 = Instant::now();
        let mut l = Ledger::new(t0);
        let first = l.issue("bert-tiny", Phase::First);
        l.request(RequestEnd {
            phase: Phase::First,
            ..end(first, t0, Ok(3.0))
        });
        let a = l.issue("bert-tiny", Phase::Measure);
        let b = l.issue("bert-tiny", Phase::Measure);
        l.request(end(a, t0, Ok(2.0)));
        l.request(end(b, t0, Err(ErrorClass::Page)));
        assert_eq!(l.ended(), (2, 1));
        assert_eq!(l.per_model()["bert-tiny"], 2);
        let report = l.into_report(Vec::new(), 1);
        assert_eq!(report.samples.len(), 3);
        assert_eq!(report.samples[2].error, "page");
        assert_eq!(report.samples[2].seq, 2);
        assert_eq!(report.samples[0].backend, "wasm");
        assert_eq!(report.requests.issued, 3);
        assert_eq!((report.requests.lost, report.requests.closed_twice), (0, 0));
    }

    #[test]
    fn a_dropped_outcome_is_lost_and_a_second_outcome_is_counted() {
        let t0 = Instant::now();
        let mut l = Ledger::new(t0);
        let kept = l.issue("bert-tiny", Phase::Measure);
        let _dropped = l.issue("bert-tiny", Phase::Measure);
        l.request(end(kept, t0, Ok(1.0)));
        l.request(end(kept, t0, Err(ErrorClass::Timeout)));
        let report = l.into_report(Vec::new(), 1);
        let r = report.requests;
        assert_eq!((r.issued, r.succeeded, r.failed), (2, 1, 0));
        assert_eq!(r.lost, 1, "{r:?}");
        assert_eq!(r.closed_twice, 1, "{r:?}");
        assert_eq!(report.samples.len(), 1);
        assert!(report.events.iter().any(|e| e.kind == "lost"));
        // A run carrying these counts fails: metrics::summary's
        // a_run_that_did_not_finish_does_not_pass (lost, closed_twice -> not passed -> exit 1).
    }
}
