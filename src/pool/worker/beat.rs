//! A page's own heartbeat: how it beats, and when its silence means a hang (read by
//! [`super::Worker::beat_silence`], watched by upkeep). Must not import `report`, `cli` or
//! terminal crates.

use std::time::Duration;

/// How a page's heartbeat can be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeatMode {
    /// Inference runs in onnxruntime-web's proxy worker: the main thread beats through a run,
    /// so silence means a hang even while a call is in flight. Without it, silence only counts
    /// while the worker has nothing in flight.
    pub proxy: bool,
}

/// Time between a page's heartbeats.
pub const BEAT_INTERVAL: Duration = Duration::from_millis(250);
/// The default silence after which a page is taken for hung (`pool.hang_after`): the
/// interval plus 200 ms of slack for a beat delayed by a busy machine.
pub const HANG_AFTER: Duration = Duration::from_millis(450);

/// Whether a silent heartbeat means a hang, given how the page beats, whether a load is in
/// flight, the calls queued or running, and the runs the page answered (see
/// [`super::Worker::beat_silence`]).
pub(super) fn silence_counts(
    beat: Option<BeatMode>,
    loading: bool,
    queued: usize,
    answered: u64,
) -> bool {
    let Some(mode) = beat else {
        return false;
    };
    !loading && (queued == 0 || (mode.proxy && answered > 0))
}

#[cfg(test)]
mod tests {
    use super::{silence_counts, BeatMode};

    const PROXY: Option<BeatMode> = Some(BeatMode { proxy: true });
    const MAIN: Option<BeatMode> = Some(BeatMode { proxy: false });

    #[test]
    fn silence_counts_only_where_a_beat_is_due() {
        // Idle pages are judged, whichever thread runs inference.
        assert!(silence_counts(PROXY, false, 0, 0));
        assert!(silence_counts(MAIN, false, 0, 5));
        // A run in the proxy worker leaves the main thread free to beat.
        assert!(silence_counts(PROXY, false, 1, 5));
        // A run on the main thread, a load, or no heartbeat at all: silence means nothing.
        assert!(!silence_counts(MAIN, false, 1, 5));
        assert!(!silence_counts(PROXY, true, 0, 5));
        assert!(!silence_counts(None, false, 0, 5));
        // A page's first call, before it ever answered a run, is judged like a load.
        assert!(!silence_counts(PROXY, false, 1, 0));
    }
}
