//! Generation cells of the matrix: after a browser's model cells, the language model's decoder
//! is placed on that browser's worker as a pipeline of one shard (wasm), and each prompt is one
//! request: a [`GenerationHandle`] writing it greedily through the pool's token loop. What each
//! generation wrote (its tokens, logits and steps) goes back with the engine's output; the
//! check against native onnxruntime runs after the browsers are closed (on 2 cores it must not
//! share the machine). Must not import `report`, `cli` or terminal crates.

use std::ops::Range;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::generate::choose::Chooser;
use crate::models::PreparedModel;
use crate::recovery::ShardRecovery;

use super::super::{
    place_pipeline, GenerationHandle, PipelineSpec, Pool, ShardLoads, Writing, Written,
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
        () = cancel.cancelled() => return Vec::new(),
    };
    let id = match placed {
        Ok((id, _)) => id,
        Err(e) => {
            observer.on_event(&RunEvent::Warning {
                message: format!("{} on {kind}: {e}", plan.model),
            });
            return vec![GenerationRun {
                browser: Some(kind),
                error: Some(e.to_string()),
                ..GenerationRun::default()
            }];
        }
    };
    observer.on_event(&RunEvent::Driving {
        what: format!("{} on {kind}", plan.model),
    });
    let mut runs = Vec::new();
    for (i, prompt) in plan.prompts.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        // A handle per prompt: its first step sends an empty cache, so the page starts over.
        let mut handle = GenerationHandle::new(
            pool.clone(),
            id,
            vec![plan.layers.clone()],
            plan.cache,
            plan.hidden,
        );
        let ticket = handle.ticket();
        let scheduled = Instant::now();
        let mut written = Written::default();
        let writing = Writing {
            prompt,
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
        handle.end(ticket, scheduled, outcome, attempts);
        let worker = handle.workers().swap_remove(0);
        let version = pool
            .workers()
            .iter()
            .find(|w| w.id == worker)
            .map(|w| w.browser().version().to_string())
            .unwrap_or_default();
        runs.push(GenerationRun {
            browser: Some(kind),
            prompt: i,
            worker,
            version,
            backend: handle.places()[0].map(|(_, b)| b),
            load: handle.loads().swap_remove(0),
            written,
            error: result.err().map(|e| e.to_string()),
        });
    }
    runs
}
