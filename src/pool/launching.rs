//! Launching a worker into the pool: a browser started on the pool's page, its capabilities
//! read, admitted as a member (unless the pool is shutting down) and journaled as `Launched`;
//! and a worker whose page runs its own wasm thread count (a sharded run's unsharded
//! baseline). Must not import `report`, `cli` or terminal crates.

use std::sync::Arc;

use crate::backend::Backend;
use crate::browser::BrowserKind;

use super::config::PageSettings;
use super::events::{LaunchReason, PoolEvent};
use super::worker::{Page, Worker, WorkerContext};
use super::{Pool, PoolError};

/// Launches one worker of `kind` whose page runs onnxruntime-web's wasm backend on
/// `wasm_threads` threads, for a measurement beside the pool's own workers (a sharded run's
/// unsharded baseline). A page fixes its thread count at its first session, so a count unlike
/// the pool's needs a page of its own; the rest of the page settings are the pool's. It counts
/// against `max_workers` like any launch (the bound is on browsers at once: memory here,
/// session slots on a Grid), is a live worker like any other and is closed at shutdown like
/// any other.
///
/// # Errors
/// [`PoolError::NoRoom`] when the pool is at `max_workers`; a failed launch.
pub(super) async fn with_threads(
    pool: &Pool,
    kind: BrowserKind,
    wasm_threads: u32,
    why: LaunchReason,
) -> Result<Arc<Worker>, PoolError> {
    if !pool.has_room() {
        return Err(PoolError::NoRoom {
            max: pool.config().max_workers,
            counted: pool.members().counted(),
        });
    }
    let ctx = pool.ctx();
    let ctx = Arc::new(WorkerContext {
        server: ctx.server.clone(),
        page: PageSettings {
            wasm_threads: Some(wasm_threads),
            ..ctx.page.clone()
        },
        timeouts: ctx.timeouts,
    });
    launch(pool, kind, why, ctx).await
}

/// Launches one worker of `kind` sharing `ctx` and adds it to the pool.
///
/// # Errors
/// A kind the pool has no launch for, a browser that did not start or answer, a pool shutting
/// down.
pub(super) async fn launch(
    pool: &Pool,
    kind: BrowserKind,
    why: LaunchReason,
    ctx: Arc<WorkerContext>,
) -> Result<Arc<Worker>, PoolError> {
    let c = pool.config();
    let Some(mut spec) = c.launch_of(kind).cloned() else {
        return Err(PoolError::NotConfigured { kind });
    };
    spec.page_url = pool.ctx().server.page_url();
    let members = pool.members();
    let id = members.next_id(kind);
    // Counted until the new worker is in the list or closed: has_room() and shutdown() read it.
    let _launching = members.launch_started();
    let webnn = c.page.backends.contains(&Backend::Webnn);
    let page = Page::start(id, spec).await?;
    let caps = match page.capabilities(webnn, c.timeouts.call).await {
        Ok(caps) => caps,
        Err(e) => {
            let _ = page.close().await;
            return Err(e.into());
        }
    };
    let ready_ms = page.launch_time.as_millis() as u64;
    let worker = Worker::spawn(page, &caps, ctx);
    let Some(live) = members.admit(&worker, || pool.cancel().is_cancelled()) else {
        worker.close().await;
        members.keep_retired(worker);
        return Err(PoolError::ShuttingDown);
    };
    let browser = worker.browser();
    pool.emit(PoolEvent::Launched {
        record: crate::state::WorkerRecord {
            pid: browser.pid(),
            driver_pid: browser.driver_pid(),
            profile_dir: browser.profile_dir().map(|p| p.display().to_string()),
            status: "ready".into(),
            ..crate::state::WorkerRecord::new(
                worker.id.clone(),
                kind.as_str(),
                browser.driver().as_str(),
            )
        },
        why,
        ready_ms,
        live,
    });
    Ok(worker)
}
