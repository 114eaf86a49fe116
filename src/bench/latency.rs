//! Part 1 of `bench overhead`: bare `Browser::call("echo")` vs the pool path
//! (`Slot::call("echo")`) on one driver path, interleaved pair by pair.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::browser::{self, Browser, LaunchSpec};
use crate::pool::Pool;
use crate::server::AssetServer;

use super::{pool_config, timeouts, BenchError, LatencyRow, OverheadOptions, Series};

/// Part 1 on one driver path: a one-worker pool and a twin bare browser, interleaved.
pub(super) async fn latency_path(
    o: &OverheadOptions,
    spec: &LaunchSpec,
    server: &Arc<AssetServer>,
    cancel: &CancellationToken,
    progress: &dyn Fn(&str),
) -> Result<LatencyRow, BenchError> {
    let mut bare_spec = spec.clone();
    bare_spec.page_url = server.page_url();
    // Heartbeats are pool traffic on the same slot; push them out of the measured window so
    // they do not queue in front of a measured call (they are not what is being measured).
    let config = pool_config(spec, 1, 1, Duration::from_secs(24 * 3600));
    let (bare, pool) = tokio::join!(
        browser::launch(&bare_spec),
        Pool::start(config, server.clone(), cancel.clone())
    );
    let (bare, pool) = match (bare, pool) {
        (Ok(b), Ok(p)) => (b, p),
        (Err(e), p) => {
            if let Ok(p) = p {
                p.shutdown().await;
            }
            return Err(e.into());
        }
        (Ok(b), Err(e)) => {
            let _ = b.close().await;
            return Err(e.into());
        }
    };
    progress(&format!(
        "latency: {} over {}: {} warm-up + {} measured pairs ...",
        spec.kind,
        spec.driver.as_str(),
        o.warmup,
        o.iterations
    ));
    let measured = interleave(bare.as_ref(), &pool, o, cancel).await;
    pool.shutdown().await;
    let closed = bare.close().await;
    let (bare_t, pool_t) = measured?;
    closed?;
    let (b, p) = (Series::of(&bare_t), Series::of(&pool_t));
    Ok(LatencyRow {
        browser: spec.kind,
        driver: spec.driver,
        same_page: false,
        added_p50_ms: p.p50_ms - b.p50_ms,
        added_p99_ms: p.p99_ms - b.p99_ms,
        bare: b,
        pool: p,
    })
}

/// `warmup + iterations` pairs of bare and pool-path `echo`, the order flipped every pair.
async fn interleave(
    bare: &dyn Browser,
    pool: &Pool,
    o: &OverheadOptions,
    cancel: &CancellationToken,
) -> Result<(Vec<Duration>, Vec<Duration>), BenchError> {
    let slot = pool
        .workers()
        .into_iter()
        .next()
        .ok_or_else(|| BenchError::Setup("the pool started without a worker".into()))?;
    let call_timeout = timeouts().call;
    let args = serde_json::json!({});
    let n = o.iterations as usize;
    let (mut b, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..(o.warmup + o.iterations) {
        if cancel.is_cancelled() {
            break;
        }
        let mut bare_took = Duration::ZERO;
        let mut pool_took = Duration::ZERO;
        for leg in 0..2 {
            // Even pairs run bare first, odd pairs pool first.
            if (leg == 0) == (i % 2 == 0) {
                let a = args.clone();
                let t = Instant::now();
                bare.call("echo", a, call_timeout).await?;
                bare_took = t.elapsed();
            } else {
                let a = args.clone();
                let t = Instant::now();
                slot.call("echo", a).await?;
                pool_took = t.elapsed();
            }
        }
        if i >= o.warmup {
            b.push(bare_took);
            p.push(pool_took);
        }
    }
    Ok((b, p))
}
