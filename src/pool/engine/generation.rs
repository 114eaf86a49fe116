//! Generation cells of the matrix: after a browser's model cells, the language model's decoder
//! is placed on that browser's worker as a pipeline of one shard (wasm), and each prompt is one
//! request: a [`GenerationHandle`] writing it greedily through the pool's token loop. What each
//! generation wrote (its tokens, logits and steps) goes back with the engine's output; the
//! check against native onnxruntime runs after the browsers are closed (on 2 cores it must not
//! share the machine). Must not import `report`, `cli` or terminal crates.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::generate::choose::Chooser;
use crate::metrics::Phase;
use crate::models::PreparedModel;
use crate::recovery::ShardRecovery;

use super::super::ledger::Ticket;
use super::super::scheduler::Serve;
use super::super::{
    place_pipeline, ErrorClass, GenerationHandle, PipelineId, PipelineSpec, Pool, ShardLoads,
    Writing, Written,
};
use super::{RunEvent, RunObserver};

/// What a generation cell runs.
#[derive(Debug, Clone)]
pub struct GenerationPlan {
    /// The language model's name.
    pub model: String,
    /// Its whole decoder, one shard.
    pub prepared: PreparedModel,
    /// Its layers.
    pub layers: Range<usize>,
    /// Its cache's key/value heads and head width.
    pub cache: (usize, usize),
    /// Its hidden size.
    pub hidden: usize,
    /// Each prompt's tokens (the chat template applied).
    pub prompts: Vec<Vec<u32>>,
    /// Tokens each generation writes at most.
    pub max_new_tokens: usize,
    /// The token that ends the model's turn.
    pub eos: u32,
}

/// One prompt's generation in one browser.
#[derive(Debug, Clone, Default)]
pub struct GenerationRun {
    /// The browser kind of the cell.
    pub browser: Option<BrowserKind>,
    /// The prompt's index in the plan.
    pub prompt: usize,
    /// Warm-up or measured.
    pub phase: Phase,
    /// The worker that served it.
    pub worker: String,
    /// Its browser's version.
    pub version: String,
    /// The backend the decoder ran on.
    pub backend: Option<Backend>,
    /// The decoder's loads on that worker.
    pub load: ShardLoads,
    /// What it wrote and each step.
    pub written: Written,
    /// Why it did not finish, or why the cell could not place the decoder.
    pub error: Option<String>,
}

/// The generation cell of `kind`: the decoder placed on its worker, then each prompt in turn.
pub(super) async fn cell(
    plan: &GenerationPlan,
    kind: BrowserKind,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) -> Vec<GenerationRun> {
    let id = match place(plan, kind, pool, cancel, observer).await {
        Ok(Some(id)) => id,
        Ok(None) => return Vec::new(),
        Err(run) => return vec![run],
    };
    observer.on_event(&RunEvent::Driving {
        what: format!("{} on {kind}", plan.model),
    });
    let mut runs = Vec::new();
    for i in 0..plan.prompts.len() {
        if cancel.is_cancelled() {
            break;
        }
        let ticket = pool.ledger().issue(&plan.model, Phase::Measure);
        runs.push(
            write_one(
                plan,
                pool,
                id,
                (i, Phase::Measure),
                ticket,
                Instant::now(),
                cancel,
            )
            .await,
        );
    }
    runs
}

/// Places the decoder on `kind`'s worker as a pipeline of one shard on wasm. `Ok(None)` when
/// cancelled; `Err` is the failed run that reports why it could not be placed.
async fn place(
    plan: &GenerationPlan,
    kind: BrowserKind,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) -> Result<Option<PipelineId>, GenerationRun> {
    observer.on_event(&RunEvent::Loading {
        browser: Some(kind),
        model: &plan.model,
    });
    let spec = PipelineSpec {
        model: &plan.model,
        shards: std::slice::from_ref(&plan.prepared),
        ranges: std::slice::from_ref(&plan.layers),
        places: &[(kind, Some(Backend::Wasm))],
        recovery: ShardRecovery::RetryFailedShards,
    };
    let mut loaded = |_: usize, _: &super::super::Worker| {};
    let placed = tokio::select! {
        p = place_pipeline(pool, &spec, &mut loaded) => p,
        () = cancel.cancelled() => return Ok(None),
    };
    match placed {
        Ok((id, _)) => Ok(Some(id)),
        Err(e) => {
            observer.on_event(&RunEvent::Warning {
                message: format!("{} on {kind}: {e}", plan.model),
            });
            Err(GenerationRun {
                browser: Some(kind),
                error: Some(e.to_string()),
                ..GenerationRun::default()
            })
        }
    }
}

/// Writes prompt `prompt` greedily through pipeline `id` as the request of `ticket` (in
/// `phase`), latency from `scheduled`, and closes the ticket.
async fn write_one(
    plan: &GenerationPlan,
    pool: &Pool,
    id: PipelineId,
    (prompt, phase): (usize, Phase),
    ticket: Ticket,
    scheduled: Instant,
    cancel: &CancellationToken,
) -> GenerationRun {
    pool.ledger().start();
    // A handle per request: its first step sends an empty cache, so the page starts over.
    let mut handle = GenerationHandle::new(
        pool.clone(),
        id,
        vec![plan.layers.clone()],
        plan.cache,
        plan.hidden,
    );
    let mut written = Written::default();
    let writing = Writing {
        prompt: &plan.prompts[prompt],
        max_new_tokens: plan.max_new_tokens,
        eos: plan.eos,
        chooser: Chooser::new(None),
        kill: None,
        stop: cancel,
    };
    let result = handle.write(writing, &mut written, &mut |_| {}).await;
    let attempts = 1 + written
        .records
        .iter()
        .map(|r| r.stalls.len())
        .sum::<usize>() as u32;
    let outcome = match &result {
        Ok(()) => Ok(scheduled.elapsed().as_secs_f64() * 1e3),
        Err(e) => Err(e.class()),
    };
    handle.end((ticket, phase), scheduled, outcome, attempts);
    let worker = handle.workers().swap_remove(0);
    let version = pool
        .workers()
        .iter()
        .find(|w| w.id == worker)
        .map(|w| w.browser().version().to_string())
        .unwrap_or_default();
    GenerationRun {
        browser: handle.places()[0].map(|(k, _)| k),
        prompt,
        phase,
        worker,
        version,
        backend: handle.places()[0].map(|(_, b)| b),
        load: handle.loads().swap_remove(0),
        written,
        error: result.err().map(|e| e.to_string()),
    }
}

/// A routed run's generation requests: the decoder placed once, and each request of the
/// workload writes the next prompt through it (one at a time: the page holds one cache).
#[derive(Debug, Clone)]
pub(super) struct GenerationRequests {
    inner: Arc<Requests>,
}

#[derive(Debug)]
struct Requests {
    plan: GenerationPlan,
    pool: Pool,
    id: PipelineId,
    /// Held while a generation writes: the page's cache belongs to one at a time.
    writing: tokio::sync::Mutex<()>,
    /// The next request's prompt (round robin).
    next: AtomicUsize,
    /// Every generation that ran, finished or not.
    runs: std::sync::Mutex<Vec<GenerationRun>>,
    stop: CancellationToken,
}

impl GenerationRequests {
    /// Places the decoder for a routed run: on the browser kind the run prefers for text
    /// generation when it has a live worker of it, else on the first live worker's kind.
    /// `Err` is the run that reports why it could not be placed (`None`: cancelled).
    pub(super) async fn place(
        plan: &GenerationPlan,
        preferred: Option<BrowserKind>,
        pool: &Pool,
        cancel: &CancellationToken,
        observer: &dyn RunObserver,
    ) -> Result<Self, Option<GenerationRun>> {
        let mut live = pool.workers();
        live.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        let kind = preferred
            .filter(|k| live.iter().any(|w| w.kind == *k))
            .or_else(|| live.first().map(|w| w.kind))
            .ok_or_else(|| {
                Some(GenerationRun {
                    error: Some(format!("no live worker to place {} on", plan.model)),
                    ..GenerationRun::default()
                })
            })?;
        let id = match place(plan, kind, pool, cancel, observer).await {
            Ok(Some(id)) => id,
            Ok(None) => return Err(None),
            Err(run) => return Err(Some(run)),
        };
        Ok(Self {
            inner: Arc::new(Requests {
                plan: plan.clone(),
                pool: pool.clone(),
                id,
                writing: tokio::sync::Mutex::new(()),
                next: AtomicUsize::new(0),
                runs: std::sync::Mutex::new(Vec::new()),
                stop: cancel.clone(),
            }),
        })
    }

    /// The model's name.
    pub(super) fn model(&self) -> &str {
        &self.inner.plan.model
    }

    /// Every generation that ran so far.
    pub(super) fn runs(&self) -> Vec<GenerationRun> {
        lock(&self.inner.runs).clone()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Serve for GenerationRequests {
    fn ticket(&self, phase: Phase) -> Ticket {
        self.inner
            .pool
            .ledger()
            .issue(&self.inner.plan.model, phase)
    }

    async fn serve(&self, ticket: Ticket, scheduled: Instant, phase: Phase) -> bool {
        let r = &self.inner;
        let _writing = r.writing.lock().await;
        let n = r.next.fetch_add(1, Ordering::SeqCst);
        let prompt = n % r.plan.prompts.len();
        let mut run = write_one(
            &r.plan,
            &r.pool,
            r.id,
            (prompt, phase),
            ticket,
            scheduled,
            &r.stop,
        )
        .await;
        if n >= r.plan.prompts.len() && crate::breaks::once(crate::breaks::Break::RepeatLogits) {
            if let Some(v) = run.written.logits.last_mut().and_then(|l| l.first_mut()) {
                *v += 1.0;
            }
        }
        let ok = run.error.is_none();
        lock(&r.runs).push(run);
        ok
    }

    fn reject(&self, ticket: Ticket, scheduled: Instant, phase: Phase, class: ErrorClass) {
        let r = &self.inner;
        r.pool
            .never_ran((ticket, &r.plan.model), scheduled, phase, 1, class);
    }
}
