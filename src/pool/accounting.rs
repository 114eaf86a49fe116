//! How a request's end is accounted for: its ticket closed in the ledger (a failure judged
//! against the live copies as they stand), and the end on the event stream. Every request path
//! (a model's, a sharded pipeline's, a generation's) ends here. Must not import `report`,
//! `cli` or terminal crates.

use std::time::Instant;

use super::events::PoolEvent;
use super::ledger::{RequestEnd, Ticket};
use super::{ErrorClass, Pool};

impl Pool {
    /// Accounts for one request that ended, and says so on the event stream. A failure is
    /// judged against the live copies as they stand now, too.
    pub(super) fn request_ended(&self, end: RequestEnd<'_>) {
        if end.phase == crate::metrics::Phase::Measure
            && crate::breaks::once(crate::breaks::Break::DropOutcome)
        {
            return;
        }
        let ok = end.outcome.is_ok();
        if !ok {
            self.record_coverage();
        }
        self.inner.ledger.end(end);
        self.emit(PoolEvent::RequestEnded { ok });
    }

    /// Closes `ticket` of `model` for a request that never ran (or whose run was abandoned),
    /// failed with `class` after `attempt` attempts.
    pub(super) fn never_ran(
        &self,
        (ticket, model): (Ticket, &str),
        scheduled: Instant,
        phase: crate::metrics::Phase,
        attempt: u32,
        class: ErrorClass,
    ) {
        self.request_ended(RequestEnd {
            ticket,
            model,
            ran: None,
            phase,
            scheduled,
            issued: Instant::now(),
            attempt,
            outcome: Err(class),
        });
    }
}
