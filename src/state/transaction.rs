//! [`Transaction`]: a guard over one transaction of a [`TxLog`], so that an error part way
//! (an early `?` return, a panic) writes an Abort instead of leaving the transaction open.

use super::{Op, StateError, TxId, TxLog};

/// A transaction begun with [`TxLog::begin`]. Dropped without [`Transaction::commit`] it
/// writes an Abort ("dropped before commit"), so an error part way rolls back in the log too.
#[derive(Debug)]
pub struct Transaction<'a> {
    log: &'a mut TxLog,
    id: TxId,
    done: bool,
}

impl<'a> Transaction<'a> {
    pub(super) fn new(log: &'a mut TxLog, id: TxId) -> Self {
        Self {
            log,
            id,
            done: false,
        }
    }

    /// The transaction id.
    pub fn id(&self) -> TxId {
        self.id
    }

    /// Records one op; it takes effect on commit. Returns the record's sequence number.
    ///
    /// # Errors
    /// As [`TxLog::op`].
    pub fn op(&mut self, op: &Op) -> Result<u64, StateError> {
        self.log.op(self.id, op)
    }

    /// Commits; see [`TxLog::commit`].
    ///
    /// # Errors
    /// As [`TxLog::commit`].
    pub fn commit(mut self) -> Result<u64, StateError> {
        self.done = true;
        self.log.commit(self.id)
    }

    /// Aborts with a reason; see [`TxLog::abort`].
    ///
    /// # Errors
    /// As [`TxLog::abort`].
    pub fn abort(mut self, reason: &str) -> Result<u64, StateError> {
        self.done = true;
        self.log.abort(self.id, reason)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.log.abort(self.id, "dropped before commit");
        }
    }
}
