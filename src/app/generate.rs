//! `generate`: SmolLM2 writes text through the pool, token by token: its decoder placed as a
//! pipeline of one shard or several, each on its own browser, each page keeping its layers'
//! key/value cache, only the hidden state crossing between shards. Then native onnxruntime runs
//! the whole (unsharded) graph teacher-forced on the browser's tokens, and every step's logits
//! and choice are checked against it.
//!
//! Order matters on 2 cores: the browsers generate first and are closed, then the native runs
//! (reference and timings) have the machine to themselves.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use crate::browser::{self, BrowserKind, DriverKind};
use crate::generate::check::{native_check, Chosen, SideTimes, StepCheck};
use crate::generate::choose::{Chooser, Sampling};
use crate::generate::model::{
    architecture, decoder_file, open_weights, prepared, DecoderFile, Precision, MAX_POSITIONS,
    SMOLLM2,
};
use crate::models::gguf::chat::{render_chat, ChatMessage};
use crate::models::gguf::tokenizer::LlmTokenizer;
use crate::models::{Cache, LlamaConfig, ModelError};
use crate::pool::{
    place_pipeline, Backend, GenerationHandle, PageSettings, PipelineSpec, Pool, PoolConfig,
    RecoveryConfig, Stall, StepRecord, WorkerTimeouts,
};
use crate::recovery::{self, ShardRecovery};
use crate::server::AssetServer;

use super::{launch_spec, web_dir, UsageError};

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
    /// How the decoder's matrices are kept.
    pub precision: Precision,
    /// Browsers, used in turn for the shards' workers.
    pub browsers: Vec<BrowserKind>,
    /// What a failed shard's worker gets.
    pub recovery: ShardRecovery,
    /// A planned fault: SIGKILL the browser of shard `.0` once token `.1` is written.
    pub kill: Option<(usize, usize)>,
    /// Bound on one page call (a load, or one shard's step).
    pub call_timeout: Duration,
    /// Cancelled on Ctrl-C: the generation stops after the step in flight, and what was
    /// generated is checked and reported.
    pub shutdown: CancellationToken,
}

/// One shard as it ran.
#[derive(Debug, Clone)]
pub struct ShardFigures {
    /// Its layers.
    pub layers: Range<usize>,
    /// The worker serving it at the end.
    pub worker: String,
    /// Its backend there.
    pub backend: String,
    /// The page's `session.run` ms of each decode step.
    pub compute_ms: Vec<f64>,
    /// To the next shard: each decode step's hop ms (none for the last shard).
    pub hop_ms: Vec<f64>,
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
    /// The planned fault, as carried out.
    pub fault: Option<String>,
    /// What a failed shard's worker got.
    pub recovery: ShardRecovery,
    /// How the decoder's matrices were kept.
    pub precision: Precision,
    /// How tokens were chosen (`None`: greedy).
    pub sampling: Option<Sampling>,
    /// Ctrl-C stopped the generation early.
    pub interrupted: bool,
}

impl GenerateOutcome {
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
    shards: Vec<DecoderFile>,
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
    let p = prepare(&req, &cache, progress).await?;
    let installed = browser::discover();
    let mut launches = Vec::new();
    for &kind in &req.browsers {
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
    let places: Vec<(BrowserKind, Option<Backend>)> = (0..p.shards.len())
        .map(|k| (req.browsers[k % req.browsers.len()], Some(Backend::Wasm)))
        .collect();
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
    let ran = in_pool(&pool, &p, &places, &req, on_text, progress).await;
    // Every browser closed, whatever happened in the pool.
    drop(pool.shutdown().await);
    stop_server(server).await;
    let mut out = ran?;

    progress("checking every step against native onnxruntime (the whole graph) ...");
    let (checks, native_tokens, native_times) = {
        let (cache, path, layers) = (cache.clone(), p.whole.path.clone(), p.whole.layers.clone());
        let (tokens, logits) = (out.tokens.clone(), std::mem::take(&mut out.logits));
        let (kv, dh) = (p.cfg.kv_heads, p.cfg.head_dim());
        let (prompt, sampling, draws) = (p.prompt.clone(), p.sampling, out.draws.clone());
        tokio::task::spawn_blocking(move || {
            let chosen = Chosen {
                sampling,
                draws: &draws,
            };
            native_check(
                &cache, &path, layers, kv, dh, &prompt, &tokens, &logits, chosen,
            )
        })
        .await
        .context("the native check")??
    };
    let text = p.tokenizer.decode(&out.tokens, true)?;
    let native_text = if native_tokens == out.tokens {
        None
    } else {
        Some(p.tokenizer.decode(&native_tokens, true)?)
    };
    Ok(GenerateOutcome {
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
        precision: req.precision,
        sampling: p.sampling,
        interrupted: out.interrupted,
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
    let ranges = even_ranges(cfg.layers, req.shards);
    progress(&format!(
        "building the decoder graphs ({} layers in {} shard(s): {}; {} prompt tokens) ...",
        cfg.layers,
        ranges.len(),
        ranges
            .iter()
            .map(|r| format!("{}..{}", r.start, r.end))
            .collect::<Vec<_>>()
            .join(", "),
        prompt.len()
    ));
    let (cache2, cfg2) = (cache.clone(), cfg.clone());
    let precision = req.precision;
    let (whole, shards) = tokio::task::spawn_blocking(move || {
        let file =
            |r: Range<usize>| decoder_file(&cache2, open_weights(&cache2)?, &cfg2, r, precision);
        let whole = file(0..cfg2.layers)?;
        let shards = if ranges.len() == 1 {
            vec![whole.clone()]
        } else {
            ranges
                .iter()
                .map(|r| file(r.clone()))
                .collect::<Result<Vec<_>, ModelError>>()?
        };
        Ok::<_, ModelError>((whole, shards))
    })
    .await
    .context("building the decoder graphs")??;
    Ok(Prepared {
        cfg,
        sampling,
        tokenizer,
        prompt,
        whole,
        shards,
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

/// `layers` cut into `n` contiguous ranges of as even a size as can be, the larger first (every
/// layer of this model holds the same parameters).
pub fn even_ranges(layers: usize, n: usize) -> Vec<Range<usize>> {
    let (size, extra) = (layers / n, layers % n);
    let mut start = 0;
    (0..n)
        .map(|k| {
            let len = size + usize::from(k < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// A pool whose first workers are the shards', on wasm, recovering a failed shard by `req`'s
/// step of the ladder; it never scales or closes an idle worker.
fn pool_config(
    launches: Vec<browser::LaunchSpec>,
    places: &[(BrowserKind, Option<Backend>)],
    req: &GenerateRequest,
    cache: &Cache,
) -> PoolConfig {
    let mut config = PoolConfig::fixed(launches);
    config.page = PageSettings {
        backends: vec![Backend::Wasm],
        ..PageSettings::default()
    };
    config.initial = Some(places.iter().map(|p| p.0).collect());
    config.min_workers = 0;
    // Room for a relaunch before the failed worker is gone.
    config.max_workers = places.len() + 1;
    config.idle_timeout = Duration::from_secs(24 * 3600);
    config.cache = cache.clone();
    config.timeouts = WorkerTimeouts {
        load: req.call_timeout,
        run: req.call_timeout,
        ..WorkerTimeouts::default()
    };
    config.recovery = RecoveryConfig {
        strategy: recovery::Strategy::Progressive,
        timeout: req.call_timeout,
        max_attempts: 3,
    };
    config
}

/// What the pool did.
struct InPool {
    browsers: Vec<String>,
    tokens: Vec<u32>,
    draws: Vec<f64>,
    logits: Vec<Vec<f32>>,
    load_ms: f64,
    ttft_ms: f64,
    times: SideTimes,
    shards: Vec<ShardFigures>,
    stalls: Vec<(usize, Stall)>,
    rebuilt: Vec<(usize, usize, usize)>,
    fault: Option<String>,
    interrupted: bool,
}

/// Places the shards and generates greedily, streaming the text; the generation is one request
/// of the pool's ledger.
async fn in_pool(
    pool: &Pool,
    p: &Prepared,
    places: &[(BrowserKind, Option<Backend>)],
    req: &GenerateRequest,
    on_text: &mut dyn FnMut(&str),
    progress: &dyn Fn(&str),
) -> Result<InPool> {
    let n = p.shards.len();
    let models: Vec<_> = p
        .shards
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let name = if n == 1 {
                SMOLLM2.to_owned()
            } else {
                crate::models::shard_id(SMOLLM2, k, n, &f.layers)
            };
            prepared(&name, f, &p.cfg)
        })
        .collect();
    let ranges: Vec<_> = p.shards.iter().map(|f| f.layers.clone()).collect();
    let spec = PipelineSpec {
        model: SMOLLM2,
        shards: &models,
        ranges: &ranges,
        places,
        recovery: req.recovery,
    };
    progress(&format!(
        "loading {SMOLLM2} ({} MB in {n} shard(s)) ...",
        models.iter().map(|m| m.onnx_bytes).sum::<u64>() / 1_000_000
    ));
    let launched = pss_by_worker(pool);
    let t0 = Instant::now();
    let mut loaded = |k: usize, w: &crate::pool::Worker| {
        progress(&format!("shard {k} ({:?}) loaded on {}", ranges[k], w.id));
    };
    let (id, _) = place_pipeline(pool, &spec, &mut loaded).await?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut handle = GenerationHandle::new(
        pool.clone(),
        id,
        ranges.clone(),
        (p.cfg.kv_heads, p.cfg.head_dim()),
        p.cfg.hidden,
    );
    let ticket = handle.ticket();
    let scheduled = Instant::now();
    let mut gen = Generation::default();
    let result = generate_in(&mut handle, p, req, &mut gen, on_text).await;
    let attempts = 1 + gen.records.iter().map(|r| r.stalls.len()).sum::<usize>() as u32;
    let outcome = match &result {
        Ok(()) => Ok(scheduled.elapsed().as_secs_f64() * 1e3),
        Err(e) => Err(e
            .downcast_ref::<crate::pool::ShardError>()
            .map_or(crate::pool::ErrorClass::Page, |e| e.class())),
    };
    handle.end(ticket, scheduled, outcome, attempts);
    result?;
    let workers = handle.workers();
    let backends = handle.places();
    let now = pss_by_worker(pool);
    let live = pool.workers();
    let browsers = workers
        .iter()
        .map(|id| {
            live.iter().find(|w| &w.id == id).map_or_else(
                || id.clone(),
                |w| format!("{} {}", w.kind, w.browser().version()),
            )
        })
        .collect();
    let shards = ranges
        .iter()
        .enumerate()
        .map(|(k, r)| ShardFigures {
            layers: r.clone(),
            worker: workers[k].clone(),
            backend: backends[k].map_or_else(|| "-".to_owned(), |(_, b)| b.to_string()),
            compute_ms: steady(&gen.records)
                .map(|s| s.compute_ms[k])
                .filter(|&ms| ms > 0.0)
                .collect(),
            hop_ms: steady(&gen.records)
                .filter_map(|s| s.hop_ms.get(k).copied().flatten())
                .collect(),
            parameters: p.shards[k].parameters,
            graph_bytes: models[k].onnx_bytes,
            memory_mib: now
                .iter()
                .find(|(id, _)| id == &workers[k])
                .map(|(id, kib)| {
                    let before = launched.iter().find(|(b, _)| b == id).map(|(_, k)| *k);
                    (
                        *kib as f64 / 1024.0,
                        before.map(|b| (*kib as f64 - b as f64) / 1024.0),
                    )
                }),
        })
        .collect();
    let times = SideTimes {
        prefill_ms: gen.records.first().map_or(0.0, |r| r.wall_ms),
        decode_ms: steady(&gen.records).map(|r| r.wall_ms).collect(),
    };
    let mut stalls = Vec::new();
    let mut rebuilt = Vec::new();
    for (i, r) in gen.records.iter().enumerate() {
        stalls.extend(r.stalls.iter().map(|s| (i, s.clone())));
        rebuilt.extend(r.rebuilt.iter().map(|&(k, pos)| (i, k, pos)));
    }
    Ok(InPool {
        browsers,
        tokens: gen.tokens,
        draws: gen.draws,
        logits: gen.logits,
        load_ms,
        ttft_ms: gen.ttft_ms,
        times,
        shards,
        stalls,
        rebuilt,
        fault: gen.fault,
        interrupted: gen.interrupted,
    })
}

/// Each live worker's browser process tree PSS, KiB.
fn pss_by_worker(pool: &Pool) -> Vec<(String, u64)> {
    pool.workers()
        .iter()
        .filter_map(|w| {
            let kib = w
                .browser()
                .pid()
                .and_then(crate::browser::process::tree_pss_kib)?;
            Some((w.id.clone(), kib))
        })
        .collect()
}

/// The decode steps that neither waited for a recovery nor rebuilt a cache (those are reported
/// on their own, not mixed into the step times).
fn steady(records: &[StepRecord]) -> impl Iterator<Item = &StepRecord> {
    records
        .iter()
        .skip(1)
        .filter(|r| r.stalls.is_empty() && r.rebuilt.is_empty())
}

/// The generation so far.
#[derive(Debug, Default)]
struct Generation {
    tokens: Vec<u32>,
    draws: Vec<f64>,
    logits: Vec<Vec<f32>>,
    records: Vec<StepRecord>,
    ttft_ms: f64,
    fault: Option<String>,
    interrupted: bool,
}

/// The token loop: prefill, then one step per token until the model ends its turn, the
/// budget is spent or Ctrl-C; the planned kill between the steps it names.
async fn generate_in(
    handle: &mut GenerationHandle,
    p: &Prepared,
    req: &GenerateRequest,
    gen: &mut Generation,
    on_text: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut stream = p.tokenizer.stream(true);
    let mut chooser = Chooser::new(p.sampling);
    let t0 = Instant::now();
    let first = handle.step(&p.prompt).await?;
    gen.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
    gen.records.push(first.record);
    let mut next = first.logits;
    loop {
        let token = chooser.choose(&next);
        gen.tokens.push(token);
        gen.logits.push(next);
        on_text(&stream.push(token)?);
        if token == p.tokenizer.eos() || gen.tokens.len() == req.max_new_tokens {
            break;
        }
        if req.shutdown.is_cancelled() {
            gen.interrupted = true;
            break;
        }
        if let Some((shard, at)) = req.kill.filter(|&(_, at)| at == gen.tokens.len()) {
            let note = handle.kill(shard).await;
            gen.fault = Some(match note {
                Some(n) => format!(
                    "after token {at}: shard {shard} on {}: {}",
                    n.target, n.detail
                ),
                None => format!("after token {at}: shard {shard} had no worker to kill"),
            });
        }
        let step = handle.step(&[token]).await?;
        gen.records.push(step.record);
        next = step.logits;
    }
    gen.draws = std::mem::take(&mut chooser.draws);
    on_text(&stream.finish());
    on_text("\n");
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_cut_evenly_the_larger_first() {
        assert_eq!(even_ranges(30, 3), vec![0..10, 10..20, 20..30]);
        assert_eq!(even_ranges(30, 4), vec![0..8, 8..16, 16..23, 23..30]);
        assert_eq!(even_ranges(30, 1), vec![0..30]);
    }
}
