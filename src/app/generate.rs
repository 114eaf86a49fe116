//! `generate`: SmolLM2 writes text through the pool, token by token: its decoder placed as a
//! pipeline of one shard or several, each on its own browser, each page keeping its layers'
//! key/value cache, only the hidden state crossing between shards. Then native onnxruntime runs
//! the whole (unsharded) graph teacher-forced on the browser's tokens, and every step's logits
//! and choice are checked against it.
//!
//! Order matters on 2 cores: the browsers generate first and are closed, then the native runs
//! (reference and timings) have the machine to themselves.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use crate::browser::{self, BrowserKind, DriverKind};
use crate::generate::check::{native_check, Chosen, SideTimes, StepCheck};
use crate::generate::choose::Sampling;
use crate::generate::model::{
    architecture, open_weights, DecoderFile, Precision, MAX_POSITIONS, SMOLLM2,
};
use crate::models::gguf::chat::{render_chat, ChatMessage};
use crate::models::gguf::tokenizer::LlmTokenizer;
use crate::models::{Cache, LlamaConfig, ModelError};
use crate::pool::{Backend, Pool, Stall, StepRecord};
use crate::recovery::ShardRecovery;
use crate::server::AssetServer;

use super::{launch_spec, web_dir, UsageError};

mod cells;
mod in_pool;
mod record;
mod split;

pub use split::Split;

pub use cells::{check_cells, prepare_cells};

use in_pool::{in_pool, pool_config};

/// What to generate, and where.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The user's text.
    pub prompt: String,
    /// Wrap it in the model's chat template (with its default system prompt), or give it raw.
    pub chat: bool,
    /// Tokens to generate at most (fewer when the model ends its turn).
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    pub temperature: f32,
    /// Sampling's nucleus (default 1: every token).
    pub top_p: Option<f32>,
    /// Sampling's seed (default 0).
    pub seed: Option<u64>,
    /// Shards of the decoder's layers, one worker each.
    pub shards: usize,
    /// How the layers are cut into the shards.
    pub split: Split,
    /// How the decoder's matrices are kept.
    pub precision: Precision,
    /// Browsers, used in turn for the shards' workers, on wasm.
    pub browsers: Vec<BrowserKind>,
    /// Each shard's browser and backend (`None`: wasm), in order, instead of `browsers`; its
    /// length is the shard count.
    pub placement: Vec<(BrowserKind, Option<Backend>)>,
    /// What a failed shard's worker gets.
    pub recovery: ShardRecovery,
    /// A planned fault: SIGKILL the browser of shard `.0` once token `.1` is written.
    pub kill: Option<(usize, usize)>,
    /// Bound on one page call (a load, or one shard's step).
    pub call_timeout: Duration,
    /// Cancelled on Ctrl-C: the generation stops after the step in flight, and what was
    /// generated is checked and reported.
    pub shutdown: CancellationToken,
    /// Where the run folder goes (`results/<run id>/`: run.json, samples.csv, report.html,
    /// ...), also when the generation fails part way.
    pub results_dir: PathBuf,
    /// The command line, for run.json.
    pub command: String,
}

/// One shard as it ran.
#[derive(Debug, Clone)]
pub struct ShardFigures {
    /// Its name in the pool.
    pub model: String,
    /// Its layers.
    pub layers: Range<usize>,
    /// The worker serving it at the end.
    pub worker: String,
    /// That worker's browser kind.
    pub kind: String,
    /// Its backend there.
    pub backend: String,
    /// The page's `session.run` ms of each decode step.
    pub compute_ms: Vec<f64>,
    /// To the next shard: each decode step's hop ms (none for the last shard).
    pub hop_ms: Vec<f64>,
    /// Its last load (fetch and session creation), ms, and its loads (1, plus one per
    /// recovery that reloaded it).
    pub load: (f64, u32),
    /// Threads of onnxruntime-web's wasm backend in its page, as the page reported.
    pub wasm_threads: Option<u32>,
    /// Its graph's parameters.
    pub parameters: u64,
    /// Its graph file's bytes.
    pub graph_bytes: u64,
    /// Its browser's process tree (PSS, MiB) after the generation, and the growth since the
    /// browser was launched (the model, its session and its cache), when the same browser
    /// served it throughout.
    pub memory_mib: Option<(f64, Option<f64>)>,
}

/// What a generation produced and measured.
#[derive(Debug, Clone)]
pub struct GenerateOutcome {
    /// The browsers of the shards, with versions.
    pub browsers: Vec<String>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// The browser's tokens.
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Native's own greedy text where it differs from the browser's (after a near tie).
    pub native_text: Option<String>,
    /// Per step, against native.
    pub checks: Vec<StepCheck>,
    /// Placing every shard (launches excluded: fetch, session creation), ms.
    pub load_ms: f64,
    /// Prompt sent to first token back, measured by the harness, ms.
    pub time_to_first_token_ms: f64,
    /// Each step as the harness saw it (sent to logits back, transfers included).
    pub browser_times: SideTimes,
    /// Native onnxruntime on the whole graph at 1 thread and at every core.
    pub native_times: [(usize, SideTimes); 2],
    /// Per shard.
    pub shards: Vec<ShardFigures>,
    /// The recoveries steps waited for, with the token being written.
    pub stalls: Vec<(usize, Stall)>,
    /// Shards rebuilt from their kept inputs: (token being written, shard, positions run).
    pub rebuilt: Vec<(usize, usize, usize)>,
    /// Every step as it ran (the prefill first).
    pub steps: Vec<StepRecord>,
    /// Each step's send, ms since the run started (a sample's `scheduled_ms`).
    pub step_started_ms: Vec<f64>,
    /// The planned fault, as carried out.
    pub fault: Option<String>,
    /// What a failed shard's worker got.
    pub recovery: ShardRecovery,
    /// How the layers were cut into the shards, and why.
    pub plan: (Split, Vec<String>),
    /// How the decoder's matrices were kept.
    pub precision: Precision,
    /// How tokens were chosen (`None`: greedy).
    pub sampling: Option<Sampling>,
    /// Ctrl-C stopped the generation early.
    pub interrupted: bool,
    /// The shards' fixed-capacity slots (a shard on WebNN), else `None`.
    pub capacity: Option<usize>,
    /// The run folder written.
    pub run_dir: PathBuf,
}

impl GenerateOutcome {
    /// What the report says of the backends: the fixed-capacity variant the shards ran for
    /// WebNN, or why no shard is on WebNN.
    pub fn backends_note(&self) -> String {
        record::backends_note(self.capacity)
    }

    /// Every step matched native (see [`StepCheck::matched`]).
    pub fn verified(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(StepCheck::matched)
    }
}

/// The prepared request: tokens, graphs, the model.
struct Prepared {
    cfg: LlamaConfig,
    sampling: Option<Sampling>,
    tokenizer: LlmTokenizer,
    prompt: Vec<u32>,
    whole: DecoderFile,
    /// Empty until `cost_balanced` has timed the pages.
    shards: Vec<DecoderFile>,
    /// How the layers were cut, and why.
    plan: Vec<String>,
    /// The shards' fixed-capacity slots, when a shard is on WebNN.
    capacity: Option<usize>,
}

/// `cost_balanced`: times a layer on each shard's worker, cuts the layers by those speeds and
/// writes the shards' graphs (nothing when the shards are written already).
async fn cut_by_speed(
    pool: &Pool,
    p: &mut Prepared,
    places: &[(BrowserKind, Option<Backend>)],
    req: &GenerateRequest,
    cache: &Cache,
    progress: &dyn Fn(&str),
) -> Result<()> {
    if !p.shards.is_empty() {
        return Ok(());
    }
    let variant = (req.precision, p.capacity);
    let (ranges, reasons) = split::measured(pool, places, cache, &p.cfg, variant, progress).await?;
    progress(&format!(
        "cost_balanced: {}; building the shards' graphs ...",
        ranges
            .iter()
            .map(|r| format!("{}..{}", r.start, r.end))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    p.shards = split::shard_files(cache, &p.cfg, &ranges, variant, &p.whole).await?;
    p.plan = reasons;
    Ok(())
}

/// Runs a generation and its native check; `on_text` gets the text as it is written, `progress`
/// the stages.
///
/// # Errors
/// [`UsageError`] for missing weights, a bad GGUF file, an empty prompt or one too long, or a
/// shard plan that cannot be; any pool, page or native failure otherwise. The browsers are
/// closed on every path.
pub async fn generate(
    req: GenerateRequest,
    on_text: &mut dyn FnMut(&str),
    progress: &dyn Fn(&str),
) -> Result<GenerateOutcome> {
    let cache = Cache::from_env();
    let started = std::time::SystemTime::now();
    let mut p = prepare(&req, &cache, progress).await?;
    let installed = browser::discover();
    let mut launches = Vec::new();
    for kind in places(&req, req.shards).into_iter().map(|p| p.0) {
        if launches
            .iter()
            .any(|l: &browser::LaunchSpec| l.kind == kind)
        {
            continue;
        }
        let driver = if kind.is_chromium_family() {
            DriverKind::Cdp
        } else {
            DriverKind::WebDriver
        };
        launches.push(launch_spec(&installed, kind, driver, false)?);
    }
    let places = places(&req, req.shards);
    let server = Arc::new(
        AssetServer::start(web_dir()?, cache.models_dir())
            .await
            .context("starting the asset server")?,
    );
    let config = pool_config(launches, &places, &req, &cache);
    progress(&format!(
        "launching {} ...",
        places
            .iter()
            .map(|p| p.0.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let cancel = CancellationToken::new();
    let pool = match Pool::start(config, server.clone(), None, cancel.clone()).await {
        Ok(pool) => pool,
        Err(e) => {
            stop_server(server).await;
            return Err(e.into());
        }
    };
    // cost_balanced: the layers are cut once each shard's page is timed.
    let ran = match cut_by_speed(&pool, &mut p, &places, &req, &cache, progress).await {
        Ok(()) => in_pool(&pool, &p, &places, &req, on_text, progress).await,
        Err(e) => Err(e),
    };
    // Every browser closed, whatever happened in the pool.
    let report = pool.shutdown().await;
    stop_server(server).await;
    let mut out = match ran {
        Ok(out) => out,
        Err(e) => {
            // Nothing generated is lost: the run folder says what the pool did and why it stopped.
            let run = record::Run::new(&req, started, &report);
            let dir = run.write_stopped(&e)?;
            return Err(e.context(format!("partial report in '{}'", dir.display())));
        }
    };

    progress("checking every step against native onnxruntime (the whole graph) ...");
    let Verdict {
        checks,
        native_times,
        text,
        native_text,
        ..
    } = against_native(
        &cache,
        &p.whole,
        (p.cfg.kv_heads, p.cfg.head_dim()),
        &p.tokenizer,
        Written {
            prompt: p.prompt.clone(),
            tokens: out.tokens.clone(),
            logits: std::mem::take(&mut out.logits),
            sampling: p.sampling,
            draws: out.draws.clone(),
        },
    )
    .await?;
    let mut outcome = GenerateOutcome {
        browsers: out.browsers,
        prompt_tokens: p.prompt.len(),
        tokens: out.tokens,
        text,
        native_text,
        checks,
        load_ms: out.load_ms,
        time_to_first_token_ms: out.ttft_ms,
        browser_times: out.times,
        native_times,
        shards: out.shards,
        stalls: out.stalls,
        rebuilt: out.rebuilt,
        fault: out.fault,
        recovery: req.recovery,
        plan: (req.split, p.plan.clone()),
        precision: req.precision,
        sampling: p.sampling,
        interrupted: out.interrupted,
        steps: out.steps,
        step_started_ms: out.step_started_ms,
        capacity: p.capacity,
        run_dir: PathBuf::new(),
    };
    outcome.run_dir = record::Run::new(&req, started, &report).write(&outcome)?;
    Ok(outcome)
}

/// One generation as native onnxruntime checks it.
struct Written {
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
    sampling: Option<Sampling>,
    draws: Vec<f64>,
}

/// What native onnxruntime said of a generation, and its texts.
#[derive(Clone)]
struct Verdict {
    checks: Vec<StepCheck>,
    native_times: [(usize, SideTimes); 2],
    text: String,
    /// Native's own text, where it differs.
    native_text: Option<String>,
    /// Native's logits at each step (another generation of the same tokens is judged by them).
    native_logits: Vec<Vec<f32>>,
}

/// Runs `whole` natively, teacher-forced on `w`'s tokens (off the async runtime), and decodes
/// both sides' texts.
///
/// # Errors
/// The native runtime cannot run the graph, or a token does not decode.
async fn against_native(
    cache: &Cache,
    whole: &DecoderFile,
    (kv, dh): (usize, usize),
    tokenizer: &LlmTokenizer,
    w: Written,
) -> Result<Verdict> {
    let (cache, path, layers) = (cache.clone(), whole.path.clone(), whole.layers.clone());
    let tokens = w.tokens.clone();
    let native = tokio::task::spawn_blocking(move || {
        let chosen = Chosen {
            sampling: w.sampling,
            draws: &w.draws,
        };
        native_check(
            &cache, &path, layers, kv, dh, &w.prompt, &w.tokens, &w.logits, chosen,
        )
    })
    .await
    .context("the native check")??;
    let text = tokenizer.decode(&tokens, true)?;
    let native_text = if native.tokens == tokens {
        None
    } else {
        Some(tokenizer.decode(&native.tokens, true)?)
    };
    Ok(Verdict {
        checks: native.checks,
        native_times: native.times,
        text,
        native_text,
        native_logits: native.logits,
    })
}

/// Checks the request, tokenizes the prompt and writes (or finds) the graphs: the whole
/// decoder, the native reference, and each shard's.
async fn prepare(
    req: &GenerateRequest,
    cache: &Cache,
    progress: &dyn Fn(&str),
) -> Result<Prepared> {
    if req.prompt.trim().is_empty() {
        bail!(UsageError("--prompt: the prompt is empty".into()));
    }
    if req.max_new_tokens == 0 {
        bail!(UsageError("--max-new-tokens must be at least 1".into()));
    }
    let sampling = sampling(req)?;
    if req.browsers.is_empty() {
        bail!(UsageError("--browsers: no browser given".into()));
    }
    let webnn = req.placement.iter().find(|p| p.1 == Some(Backend::Webnn));
    if let (Some((kind, _)), Some(_)) = (webnn, req.kill) {
        bail!(UsageError(format!(
            "--kill-shard with --placement {kind}:webnn: a fixed-capacity cache (WebNN's static shapes) cannot be rebuilt after a kill yet; kill a generation whose shards are on wasm or webgpu"
        )));
    }
    if !req.placement.is_empty() && req.placement.len() != req.shards {
        bail!(UsageError(format!(
            "--placement names {} shard(s) but --shards is {}",
            req.placement.len(),
            req.shards
        )));
    }
    let weights = open_weights(cache).map_err(usage)?;
    let tokenizer = LlmTokenizer::from_gguf(&weights).map_err(usage)?;
    let cfg = architecture(&weights).map_err(usage)?;
    if req.shards == 0 || req.shards > cfg.layers {
        bail!(UsageError(format!(
            "--shards {}: {SMOLLM2} has {} layers, so 1 to {} shards",
            req.shards, cfg.layers, cfg.layers
        )));
    }
    if let Some((shard, at)) = req.kill {
        if shard >= req.shards {
            bail!(UsageError(format!(
                "--kill-shard {shard}: there are {} shard(s), numbered from 0",
                req.shards
            )));
        }
        if at >= req.max_new_tokens {
            bail!(UsageError(format!(
                "--kill-at-token {at}: --max-new-tokens is {}, so the kill would never strike",
                req.max_new_tokens
            )));
        }
    }
    let text = if req.chat {
        render_chat(&weights, &[ChatMessage::user(req.prompt.clone())], true).map_err(usage)?
    } else {
        req.prompt.clone()
    };
    let prompt = tokenizer.encode(&text, req.chat).map_err(usage)?;
    if prompt.len() + req.max_new_tokens > MAX_POSITIONS {
        bail!(UsageError(format!(
            "--prompt is {} tokens and --max-new-tokens {}: together {} positions, over the {MAX_POSITIONS} the graph holds",
            prompt.len(),
            req.max_new_tokens,
            prompt.len() + req.max_new_tokens
        )));
    }
    // WebNN needs static shapes: every shard then runs the fixed-capacity variant, its cache
    // as many slots as the generation can fill, rounded up to 64.
    let capacity = webnn.map(|_| (prompt.len() + req.max_new_tokens).div_ceil(64) * 64);
    let planned = split::planned(req.split, &cfg, req.shards)?;
    match &planned {
        Some((ranges, _)) => progress(&format!(
            "building the decoder graphs ({} layers in {} shard(s), {}: {}; {} prompt tokens) ...",
            cfg.layers,
            ranges.len(),
            req.split.as_str(),
            ranges
                .iter()
                .map(|r| format!("{}..{}", r.start, r.end))
                .collect::<Vec<_>>()
                .join(", "),
            prompt.len()
        )),
        None => progress(&format!(
            "building the decoder graph ({} layers, {} prompt tokens; the shards' once their pages are timed) ...",
            cfg.layers,
            prompt.len()
        )),
    }
    let precision = req.precision;
    // Native checks against the growing graph, whatever the shards run.
    let whole = split::decoder_graph(cache, &cfg, 0..cfg.layers, (precision, None)).await?;
    let (shards, plan) = match planned {
        Some((ranges, reasons)) => (
            split::shard_files(cache, &cfg, &ranges, (precision, capacity), &whole).await?,
            reasons,
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Prepared {
        cfg,
        sampling,
        tokenizer,
        prompt,
        whole,
        shards,
        plan,
        capacity,
    })
}

/// The sampling `req` asks for: `None` (greedy) at temperature 0, where `--top-p` and
/// `--seed` would do nothing and are refused.
fn sampling(req: &GenerateRequest) -> Result<Option<Sampling>> {
    let t = req.temperature;
    if !(t.is_finite() && t >= 0.0) {
        bail!(UsageError(format!(
            "--temperature {t}: must be 0 (greedy) or above"
        )));
    }
    if let Some(p) = req.top_p {
        if !(p > 0.0 && p <= 1.0) {
            bail!(UsageError(format!("--top-p {p}: must be in (0, 1]")));
        }
    }
    if t == 0.0 {
        if req.top_p.is_some() || req.seed.is_some() {
            bail!(UsageError(
                "--top-p and --seed act only when sampling: give --temperature above 0 (0 is greedy)"
                    .into()
            ));
        }
        return Ok(None);
    }
    Ok(Some(Sampling {
        temperature: t,
        top_p: req.top_p.unwrap_or(1.0),
        seed: req.seed.unwrap_or(0),
    }))
}

/// Each shard's browser and backend: `--placement`'s, else the browsers in turn on wasm.
fn places(req: &GenerateRequest, shards: usize) -> Vec<(BrowserKind, Option<Backend>)> {
    if req.placement.is_empty() {
        (0..shards)
            .map(|k| (req.browsers[k % req.browsers.len()], Some(Backend::Wasm)))
            .collect()
    } else {
        req.placement
            .iter()
            .map(|&(kind, b)| (kind, Some(b.unwrap_or(Backend::Wasm))))
            .collect()
    }
}

/// Stops the asset server once the pool let go of it.
async fn stop_server(server: Arc<AssetServer>) {
    if let Ok(server) = Arc::try_unwrap(server) {
        server.shutdown().await;
    }
}

/// A [`ModelError`] about the user's files or input as a usage error (exit 2).
fn usage(e: ModelError) -> anyhow::Error {
    UsageError(e.to_string()).into()
}
