//! Part 1 of `bench overhead`: bare `Browser::call("echo")` vs the pool path
//! (`Worker::call("echo")`) on one driver path, in the same page, interleaved pair by pair.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::{self, Browser, BrowserKind, DriverKind, LaunchSpec, WorkerError};
use crate::pool::worker::WorkerContext;
use crate::pool::{Page, PageSettings, Worker, WorkerTimeouts};
use crate::server::AssetServer;

use super::{BenchError, LatencyRow, OverheadOptions, Series};

/// Part 1 on one driver path: one browser, reached both bare and through a pool worker, so the
/// two kinds of call land in the same page; interleaved pair by pair.
pub(super) async fn latency_path(
    o: &OverheadOptions,
    spec: &LaunchSpec,
    server: &Arc<AssetServer>,
    cancel: &CancellationToken,
    progress: &dyn Fn(&str),
) -> Result<LatencyRow, BenchError> {
    let mut spec = spec.clone();
    spec.page_url = server.page_url();
    let started = Instant::now();
    let bare: Arc<dyn Browser> = Arc::from(browser::launch(&spec).await?);
    let launch_time = started.elapsed();
    let page = Page::from_browser(
        format!("{}#1", spec.kind),
        spec.clone(),
        Box::new(Shared(bare.clone())),
        launch_time,
    );
    let t = WorkerTimeouts::default();
    let caps = match page.capabilities(false, t.call).await {
        Ok(c) => c,
        Err(e) => {
            let _ = bare.close().await;
            return Err(e.into());
        }
    };
    // No pool upkeep: no heartbeat can queue in front of a measured call.
    let ctx = Arc::new(WorkerContext {
        server: server.clone(),
        page: PageSettings {
            backends: vec![Backend::Wasm],
            allow_fallback_adapter: false,
            wasm_threads: None,
            heartbeat: false,
        },
        timeouts: t,
    });
    let worker = Worker::spawn(page, &caps, ctx);
    progress(&format!(
        "latency: {} over {}: {} warm-up + {} measured pairs in one page ...",
        spec.kind,
        spec.driver.as_str(),
        o.warmup,
        o.iterations
    ));
    let measured = interleave(bare.as_ref(), &worker, o, cancel).await;
    worker.close().await;
    let closed = bare.close().await;
    let (bare_t, pool_t) = measured?;
    closed?;
    let (b, p) = (Series::of(&bare_t), Series::of(&pool_t));
    Ok(LatencyRow {
        browser: spec.kind,
        driver: spec.driver,
        same_page: true,
        added_p50_ms: p.p50_ms - b.p50_ms,
        added_p99_ms: p.p99_ms - b.p99_ms,
        bare: b,
        pool: p,
    })
}

/// One browser shared by the worker and the bare calls: every method forwards.
#[derive(Debug)]
struct Shared(Arc<dyn Browser>);

#[async_trait::async_trait]
impl Browser for Shared {
    fn kind(&self) -> BrowserKind {
        self.0.kind()
    }
    fn driver(&self) -> DriverKind {
        self.0.driver()
    }
    fn version(&self) -> &str {
        self.0.version()
    }
    fn pid(&self) -> Option<u32> {
        self.0.pid()
    }
    fn driver_pid(&self) -> Option<u32> {
        self.0.driver_pid()
    }
    fn profile_dir(&self) -> Option<&std::path::Path> {
        self.0.profile_dir()
    }
    async fn call(
        &self,
        method: &str,
        args: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, WorkerError> {
        self.0.call(method, args, timeout).await
    }
    async fn close(&self) -> Result<(), WorkerError> {
        self.0.close().await
    }
    async fn reset(&self, timeout: Duration) -> Result<(), WorkerError> {
        self.0.reset(timeout).await
    }
    async fn crash_tab(&self) -> Result<String, WorkerError> {
        self.0.crash_tab().await
    }
    async fn disconnect(&self, hold: Duration) -> Result<String, WorkerError> {
        self.0.disconnect(hold).await
    }
}

/// `warmup + iterations` pairs of bare and pool-path `echo`, the order flipped every pair.
async fn interleave(
    bare: &dyn Browser,
    worker: &Worker,
    o: &OverheadOptions,
    cancel: &CancellationToken,
) -> Result<(Vec<Duration>, Vec<Duration>), BenchError> {
    let call_timeout = WorkerTimeouts::default().call;
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
                worker.call("echo", a).await?;
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
