//! The one way this crate takes a std mutex: a poisoned lock is taken anyway. Every mutex here
//! guards plain data updated in one step (a list pushed to, a counter set), so a holder that
//! panicked left nothing half-done; refusing the data would turn one panic into many. A std
//! mutex, never held across an `.await` (mini-redis `db.rs`), rather than tokio's: nothing here
//! waits while holding one. Imports nothing else of the crate.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the data of a poisoned lock.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
