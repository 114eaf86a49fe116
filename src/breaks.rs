//! Deliberate breakage, so a test can show a guarantee's check failing: in a debug build,
//! `WEBGPU_POOL_BREAK=<name>[,<name>...]` breaks each named guarantee once. A release build has no such
//! switch (it reads nothing and breaks nothing). Must not import `report`, `cli` or terminal
//! crates.

/// A guarantee to break once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// `drop-outcome`: the first measured request's outcome is dropped (its ticket is never
    /// closed): the ledger must count it lost.
    DropOutcome,
    /// `unasked-run`: the first request's run is sent to the page twice, the second time
    /// outside the harness's books: the page's count must differ from what the harness sent.
    UnaskedRun,
    /// `unread-at-close`: the first page count read at a worker's close is skipped, as if its
    /// page had been lost: the count its answers carried must stand in for it.
    UnreadAtClose,
    /// `unheard-drop`: the first injected CDP disconnect wakes no call and leaves the socket to
    /// the next call, as when it lands while a call holds the socket after its wait ended: the
    /// drop must still be noticed.
    UnheardDrop,
    /// `lost-inputs`: the first rebuild of a generation shard's lost cache gets zeros for the
    /// kept inputs of the earlier positions: the text after it must differ from native's.
    LostInputs,
    /// `repeat-logits`: a routed run's first generation of a prompt written before shifts one
    /// logit of its last step: the check must fail it, though its tokens are the earlier one's.
    RepeatLogits,
}

impl Break {
    fn name(self) -> &'static str {
        match self {
            Break::DropOutcome => "drop-outcome",
            Break::UnaskedRun => "unasked-run",
            Break::UnreadAtClose => "unread-at-close",
            Break::UnheardDrop => "unheard-drop",
            Break::LostInputs => "lost-inputs",
            Break::RepeatLogits => "repeat-logits",
        }
    }
}

/// Whether `b` is asked for and not yet done: true once, then false.
#[cfg(debug_assertions)]
pub fn once(b: Break) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;
    // Read once: this is asked on the request path.
    static ASKED: OnceLock<Option<String>> = OnceLock::new();
    static DONE: [AtomicBool; 6] = [const { AtomicBool::new(false) }; 6];
    let asked = ASKED.get_or_init(|| std::env::var("WEBGPU_POOL_BREAK").ok());
    asked
        .as_deref()
        .is_some_and(|a| a.split(',').any(|n| n.trim() == b.name()))
        && !DONE[b as usize].swap(true, Ordering::SeqCst)
}

/// Whether `b` is asked for: never, in a release build.
#[cfg(not(debug_assertions))]
pub fn once(b: Break) -> bool {
    let _ = b.name();
    false
}
