//! The native onnxruntime baseline beside a cell, and how far the cell is from it. Pure.

use crate::metrics::NativeBaseline;

/// The native baseline beside a cell whose warm p50 is `p50` over `runs` runs, having used
/// `cores` cores: `x_native` is taken at the native thread count nearest to them.
pub(super) fn native_baseline(
    n: &crate::oracle::NativeResult,
    runs: u64,
    p50: f64,
    cores: f64,
) -> NativeBaseline {
    let ratio = |native: f64| (runs > 0 && native > 0.0).then(|| p50 / native);
    let threads = nearest_threads(cores, n.all_threads);
    let same = if threads == 1 {
        n.one_thread_ms.p50
    } else {
        n.all_threads_ms.p50
    };
    NativeBaseline {
        runtime: format!("onnxruntime {}", crate::oracle::ORT_VERSION),
        p50_ms_1_thread: n.one_thread_ms.p50,
        p50_ms_all_threads: n.all_threads_ms.p50,
        all_threads: n.all_threads,
        x_native: ratio(same),
        x_native_threads: threads,
        x_native_all_threads: ratio(n.all_threads_ms.p50),
    }
}

/// Of the thread counts native was measured at (1 and `all`), the one nearest to `cores`; a
/// tie goes to 1.
fn nearest_threads(cores: f64, all: usize) -> usize {
    if all > 1 && (cores - all as f64).abs() < (cores - 1.0).abs() {
        all
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::{native_baseline, nearest_threads};
    use crate::metrics::Percentiles;
    use crate::oracle::NativeResult;

    #[test]
    fn x_native_is_the_cells_time_over_natives() {
        let p50 = |p50| Percentiles {
            p50,
            ..Percentiles::default()
        };
        let n = NativeResult {
            dims: vec![1],
            output: vec![0.0],
            one_thread_ms: p50(5.0),
            all_threads_ms: p50(2.0),
            all_threads: 2,
        };
        // A cell four times slower than native at one thread reads 4x, not 0.25x.
        let b = native_baseline(&n, 10, 20.0, 1.0);
        assert_eq!((b.x_native, b.x_native_threads), (Some(4.0), 1));
        assert_eq!(b.x_native_all_threads, Some(10.0));
        let b = native_baseline(&n, 10, 20.0, 2.0);
        assert_eq!((b.x_native, b.x_native_threads), (Some(10.0), 2));
        // A cell with no runs has no ratio.
        assert_eq!(native_baseline(&n, 0, 20.0, 1.0).x_native, None);
    }

    #[test]
    fn x_native_is_taken_at_the_thread_count_nearest_the_cores_used() {
        // A WebNN cell that used about one core, and a 1-thread wasm cell with the browser's
        // own threads on top, compare with native at 1 thread; a 2-thread wasm cell at 2.
        assert_eq!(nearest_threads(1.04, 2), 1);
        assert_eq!(nearest_threads(1.35, 2), 1);
        assert_eq!(nearest_threads(1.5, 2), 1);
        assert_eq!(nearest_threads(1.9, 2), 2);
        assert_eq!(nearest_threads(3.0, 2), 2);
        assert_eq!(nearest_threads(0.4, 8), 1);
        assert_eq!(nearest_threads(6.0, 8), 8);
        // One core: there is nothing else to compare with.
        assert_eq!(nearest_threads(1.9, 1), 1);
    }
}
