//! `generate`: SmolLM2 writes text in a browser page, token by token, its key/value cache kept in
//! the page; then native onnxruntime runs the same graph teacher-forced on the browser's tokens,
//! and every step's logits and choice are checked against it.
//!
//! Order matters on 2 cores: the browser generates first and is closed, then the native runs
//! (reference and timings) have the machine to themselves.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use crate::browser::{self, BrowserKind, DriverKind};
use crate::generate::model::{architecture, decoder_file, open_weights, MAX_POSITIONS, SMOLLM2};
use crate::generate::native::NativeDecoder;
use crate::generate::page::{prepared, PageDecoder};
use crate::generate::{argmax, top_two_gap};
use crate::metrics::Percentiles;
use crate::models::gguf::chat::{render_chat, ChatMessage};
use crate::models::gguf::tokenizer::LlmTokenizer;
use crate::models::{Cache, ModelError};
use crate::oracle;
use crate::pool::{Backend, Page, PageSettings};
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
    /// The browser that runs it.
    pub browser: BrowserKind,
    /// Bound on one page call (load, or one step).
    pub call_timeout: Duration,
    /// Cancelled on Ctrl-C: the generation stops after the step in flight, and what was
    /// generated is checked and reported.
    pub shutdown: CancellationToken,
}

/// One step's check against native onnxruntime on the same tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCheck {
    /// Largest |browser - native| over the step's logits.
    pub max_abs_diff: f64,
    /// Every logit within the oracle's tolerance.
    pub close: bool,
    /// The browser chose what native would.
    pub same_choice: bool,
    /// Native's two best logits are within the tolerance of each other: a different choice is
    /// not a fault.
    pub near_tie: bool,
}

/// Timings of one side (browser or native), ms.
#[derive(Debug, Clone, Default)]
pub struct SideTimes {
    /// The prefill step (the whole prompt).
    pub prefill_ms: f64,
    /// Each decode step.
    pub decode_ms: Vec<f64>,
}

impl SideTimes {
    /// Prompt tokens per second in the prefill.
    pub fn prefill_tokens_per_s(&self, prompt: usize) -> f64 {
        prompt as f64 / (self.prefill_ms / 1e3)
    }

    /// Decode steps per second.
    pub fn decode_tokens_per_s(&self) -> f64 {
        let total: f64 = self.decode_ms.iter().sum();
        self.decode_ms.len() as f64 / (total / 1e3)
    }

    /// Inter-token latency percentiles.
    pub fn inter_token(&self) -> Option<Percentiles> {
        Percentiles::from_ms(&self.decode_ms)
    }
}

/// What a generation produced and measured.
#[derive(Debug, Clone)]
pub struct GenerateOutcome {
    /// The browser that ran it, and its version.
    pub browser: String,
    /// The backend the page's session ran on.
    pub backend: String,
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
    /// Page load (fetch and session creation), ms.
    pub load_ms: f64,
    /// Prompt sent to first token back, measured by the harness, ms.
    pub time_to_first_token_ms: f64,
    /// The page's own run times.
    pub browser_times: SideTimes,
    /// Native onnxruntime on the same graph at 1 thread and at every core.
    pub native_times: [(usize, SideTimes); 2],
    /// Ctrl-C stopped the generation early.
    pub interrupted: bool,
}

impl GenerateOutcome {
    /// Every step matched native (see [`StepCheck::matched`]).
    pub fn verified(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(StepCheck::matched)
    }
}

impl StepCheck {
    /// Logits within tolerance, and the same choice unless native's was a near tie: a near tie
    /// excuses a different token, never different logits.
    pub fn matched(&self) -> bool {
        self.close && (self.same_choice || self.near_tie)
    }
}

/// Runs a generation and its native check; `on_text` gets the text as it is written, `progress`
/// the stages.
///
/// # Errors
/// [`UsageError`] for missing weights, a bad GGUF file, an empty prompt or one too long; any
/// browser, page or native failure otherwise. The browser is closed on every path.
pub async fn generate(
    req: GenerateRequest,
    on_text: &mut dyn FnMut(&str),
    progress: &dyn Fn(&str),
) -> Result<GenerateOutcome> {
    if req.prompt.trim().is_empty() {
        bail!(UsageError("--prompt: the prompt is empty".into()));
    }
    if req.max_new_tokens == 0 {
        bail!(UsageError("--max-new-tokens must be at least 1".into()));
    }
    let cache = Cache::from_env();
    let weights = open_weights(&cache).map_err(usage)?;
    let tokenizer = LlmTokenizer::from_gguf(&weights).map_err(usage)?;
    let cfg = architecture(&weights).map_err(usage)?;
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
    progress(&format!(
        "building the decoder graph ({} layers, {} prompt tokens) ...",
        cfg.layers,
        prompt.len()
    ));
    let layers = 0..cfg.layers;
    let file = {
        let (cache, cfg, layers) = (cache.clone(), cfg.clone(), layers.clone());
        tokio::task::spawn_blocking(move || decoder_file(&cache, weights, &cfg, layers))
            .await
            .context("building the decoder graph")??
    };
    let model = prepared(
        SMOLLM2,
        &file.path,
        file.parameters,
        layers.clone(),
        cfg.kv_heads,
        cfg.head_dim(),
    );

    let installed = browser::discover();
    let driver = if req.browser.is_chromium_family() {
        DriverKind::Cdp
    } else {
        DriverKind::WebDriver
    };
    let mut spec = launch_spec(&installed, req.browser, driver, false)?;
    let server = AssetServer::start(web_dir()?, cache.models_dir())
        .await
        .context("starting the asset server")?;
    spec.page_url = server.page_url();
    progress(&format!("launching {} ...", req.browser));
    let page = match Page::start(format!("{}#1", req.browser), spec).await {
        Ok(p) => p,
        Err(e) => {
            server.shutdown().await;
            return Err(e.into());
        }
    };
    let ran = in_page(
        &page, &server, &model, &req, &prompt, &tokenizer, on_text, progress,
    )
    .await;
    let closed = page.close().await;
    server.shutdown().await;
    let mut out = ran?;
    if let Err(e) = closed {
        progress(&format!("closing the browser: {e}"));
    }

    progress("checking every step against native onnxruntime ...");
    let (checks, native_tokens, native_times) = {
        let (cache, path, layers) = (cache.clone(), file.path.clone(), layers.clone());
        let (tokens, logits) = (out.tokens.clone(), std::mem::take(&mut out.logits));
        let (kv, dh) = (cfg.kv_heads, cfg.head_dim());
        let prompt = prompt.clone();
        tokio::task::spawn_blocking(move || {
            native_check(&cache, &path, layers, kv, dh, &prompt, &tokens, &logits)
        })
        .await
        .context("the native check")??
    };
    let text = tokenizer.decode(&out.tokens, true)?;
    let native_text = if native_tokens == out.tokens {
        None
    } else {
        Some(tokenizer.decode(&native_tokens, true)?)
    };
    Ok(GenerateOutcome {
        browser: out.browser,
        backend: out.backend,
        prompt_tokens: prompt.len(),
        tokens: out.tokens,
        text,
        native_text,
        checks,
        load_ms: out.load_ms,
        time_to_first_token_ms: out.ttft_ms,
        browser_times: out.times,
        native_times,
        interrupted: out.interrupted,
    })
}

/// A [`ModelError`] about the user's files or input as a usage error (exit 2).
fn usage(e: ModelError) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

/// What the page did.
struct InPage {
    browser: String,
    backend: String,
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
    load_ms: f64,
    ttft_ms: f64,
    times: SideTimes,
    interrupted: bool,
}

/// Loads the decoder in `page` and generates greedily, streaming the text.
#[allow(clippy::too_many_arguments)]
async fn in_page(
    page: &Page,
    server: &AssetServer,
    model: &crate::models::PreparedModel,
    req: &GenerateRequest,
    prompt: &[u32],
    tokenizer: &LlmTokenizer,
    on_text: &mut dyn FnMut(&str),
    progress: &dyn Fn(&str),
) -> Result<InPage> {
    progress(&format!(
        "loading {} ({} MB) in {} ...",
        model.name,
        model.onnx_bytes / 1_000_000,
        req.browser
    ));
    let settings = PageSettings {
        backends: vec![Backend::Wasm],
        ..PageSettings::default()
    };
    let t0 = Instant::now();
    let loaded = page
        .load(model, server, &settings, &[Backend::Wasm], req.call_timeout)
        .await?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut decoder = PageDecoder::new(page, model, 0..model_layers(model), req.call_timeout);
    let mut stream = tokenizer.stream(true);
    let (mut tokens, mut logits, mut times) = (Vec::new(), Vec::new(), SideTimes::default());
    let mut interrupted = false;
    let t0 = Instant::now();
    let first = decoder.step(prompt).await?;
    let ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
    times.prefill_ms = first.run_ms;
    let mut next = first.logits;
    loop {
        let token = argmax(&next);
        tokens.push(token);
        logits.push(next);
        on_text(&stream.push(token)?);
        if token == tokenizer.eos() || tokens.len() == req.max_new_tokens {
            break;
        }
        if req.shutdown.is_cancelled() {
            interrupted = true;
            break;
        }
        let step = decoder.step(&[token]).await?;
        times.decode_ms.push(step.run_ms);
        next = step.logits;
    }
    on_text(&stream.finish());
    on_text("\n");
    Ok(InPage {
        browser: format!("{} {}", page.kind(), page.browser().version()),
        backend: loaded.backend.to_string(),
        tokens,
        logits,
        load_ms,
        ttft_ms,
        times,
        interrupted,
    })
}

/// The layers a prepared decoder holds (its `past_key.*` inputs).
fn model_layers(model: &crate::models::PreparedModel) -> usize {
    model
        .runtime_inputs
        .iter()
        .filter(|i| i.name.starts_with("past_key."))
        .count()
}

type NativeCheck = (Vec<StepCheck>, Vec<u32>, [(usize, SideTimes); 2]);

/// Native onnxruntime teacher-forced on the browser's `tokens`: each step's logits against the
/// browser's, then its own greedy continuation from the first step it would choose differently;
/// timed at 1 thread and at every core.
#[allow(clippy::too_many_arguments)]
fn native_check(
    cache: &Cache,
    file: &std::path::Path,
    layers: std::ops::Range<usize>,
    kv_heads: usize,
    head_dim: usize,
    prompt: &[u32],
    tokens: &[u32],
    browser_logits: &[Vec<f32>],
) -> Result<NativeCheck> {
    let all = std::thread::available_parallelism().map_or(1, usize::from);
    let mut checks = Vec::new();
    let mut native_tokens = Vec::new();
    let mut times = [(1, SideTimes::default()), (all, SideTimes::default())];
    for (threads, side) in &mut times {
        let mut d = NativeDecoder::open(
            cache,
            SMOLLM2,
            file,
            layers.clone(),
            kv_heads,
            head_dim,
            *threads,
        )?;
        let t0 = Instant::now();
        let mut logits = d.step(prompt)?;
        side.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        for (k, &token) in tokens.iter().enumerate() {
            if *threads == 1 {
                checks.push(check(&browser_logits[k], &logits));
                native_tokens.push(argmax(&logits));
            }
            if k + 1 == tokens.len() {
                break;
            }
            let t0 = Instant::now();
            logits = d.step(&[token])?;
            side.decode_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    // Where native would have chosen differently, its own text goes on from there.
    if let Some(at) = native_tokens.iter().zip(tokens).position(|(n, b)| n != b) {
        let mut d = NativeDecoder::open(cache, SMOLLM2, file, layers, kv_heads, head_dim, all)?;
        let mut ids = prompt.to_vec();
        ids.extend_from_slice(&tokens[..at]);
        let mut logits = d.step(&ids)?;
        native_tokens.truncate(at);
        while native_tokens.len() < tokens.len() {
            let t = argmax(&logits);
            native_tokens.push(t);
            logits = d.step(&[t])?;
        }
    }
    Ok((checks, native_tokens, times))
}

/// One step's browser logits against native's.
fn check(browser: &[f32], native: &[f32]) -> StepCheck {
    let (max_abs_diff, close) = oracle::allclose(browser, native);
    let top = native.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    StepCheck {
        max_abs_diff,
        close,
        same_choice: argmax(browser) == argmax(native),
        near_tie: f64::from(top_two_gap(native)) <= oracle::ATOL + oracle::RTOL * top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(close: bool, same_choice: bool, near_tie: bool) -> StepCheck {
        StepCheck {
            max_abs_diff: if close { 1e-5 } else { 4.0 },
            close,
            same_choice,
            near_tie,
        }
    }

    #[test]
    fn a_near_tie_excuses_a_choice_not_the_logits() {
        assert!(step(true, true, false).matched());
        assert!(step(true, false, true).matched());
        assert!(!step(true, false, false).matched());
        assert!(!step(false, true, true).matched());
        assert!(!step(false, false, true).matched());
    }
}
