//! The part of `generate` that runs in the pool: the pool's settings, placing the decoder's
//! shards, the token loop (with the planned kill), and what each shard and step measured.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{GenerateRequest, Prepared, ShardFigures};
use crate::browser::{self, BrowserKind};
use crate::generate::check::SideTimes;
use crate::generate::choose::Chooser;
use crate::generate::model::{prepared, SMOLLM2};
use crate::metrics::Phase;
use crate::models::Cache;
use crate::pool::{
    place_pipeline, Backend, GenerationHandle, PageSettings, PipelineSpec, Pool, PoolConfig,
    RecoveryConfig, Stall, StepRecord, WorkerTimeouts, Writing, Written,
};
use crate::recovery;

/// A pool whose first workers are the shards', on wasm, recovering a failed shard by `req`'s
/// step of the ladder; it never scales or closes an idle worker.
pub(super) fn pool_config(
    launches: Vec<browser::LaunchSpec>,
    places: &[(BrowserKind, Option<Backend>)],
    req: &GenerateRequest,
    cache: &Cache,
) -> PoolConfig {
    let mut config = PoolConfig::fixed(launches);
    // The backends the shards ask for, WebGPU first where one does (the order detection
    // tries them in).
    let mut backends: Vec<Backend> = Vec::new();
    for b in places.iter().filter_map(|p| p.1) {
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    backends.sort_by_key(|b| *b != Backend::Webgpu);
    // Asked for by name, WebGPU is taken on this machine's software adapters too.
    config.page = PageSettings {
        allow_fallback_adapter: backends.contains(&Backend::Webgpu),
        backends,
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
pub(super) struct InPool {
    pub(super) browsers: Vec<String>,
    pub(super) tokens: Vec<u32>,
    pub(super) draws: Vec<f64>,
    pub(super) logits: Vec<Vec<f32>>,
    pub(super) load_ms: f64,
    pub(super) ttft_ms: f64,
    pub(super) times: SideTimes,
    pub(super) shards: Vec<ShardFigures>,
    pub(super) stalls: Vec<(usize, Stall)>,
    pub(super) rebuilt: Vec<(usize, usize, usize)>,
    pub(super) steps: Vec<StepRecord>,
    pub(super) step_started_ms: Vec<f64>,
    pub(super) fault: Option<String>,
    pub(super) interrupted: bool,
}

/// Places the shards and generates greedily, streaming the text; the generation is one request
/// of the pool's ledger.
pub(super) async fn in_pool(
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
    if let Some(cap) = p.capacity {
        handle = handle.fixed(cap);
    }
    let ticket = handle.ticket();
    let scheduled = Instant::now();
    let mut gen = Written::default();
    let result = generate_in(&mut handle, p, req, &mut gen, on_text).await;
    let attempts = 1 + gen.records.iter().map(|r| r.stalls.len()).sum::<usize>() as u32;
    let outcome = match &result {
        Ok(()) => Ok(scheduled.elapsed().as_secs_f64() * 1e3),
        Err(e) => Err(e
            .downcast_ref::<crate::pool::ShardError>()
            .map_or(crate::pool::ErrorClass::Page, |e| e.class())),
    };
    handle.end((ticket, Phase::Measure), scheduled, outcome, attempts);
    result?;
    let workers = handle.workers();
    let backends = handle.places();
    let loads = handle.loads();
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
            model: models[k].name.clone(),
            layers: r.clone(),
            worker: workers[k].clone(),
            kind: backends[k].map_or_else(|| places[k].0.to_string(), |(b, _)| b.to_string()),
            backend: backends[k].map_or_else(|| "-".to_owned(), |(_, b)| b.to_string()),
            compute_ms: steady(&gen.records)
                .map(|s| s.compute_ms[k])
                .filter(|&ms| ms > 0.0)
                .collect(),
            hop_ms: steady(&gen.records)
                .filter_map(|s| s.hop_ms.get(k).copied().flatten())
                .collect(),
            load: (loads[k].last_ms, loads[k].loads),
            wasm_threads: loads[k].wasm_threads,
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
        steps: gen.records,
        step_started_ms: gen.started_ms.iter().map(|t| t + gen.sent_ms).collect(),
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
pub(super) fn steady(records: &[StepRecord]) -> impl Iterator<Item = &StepRecord> {
    records.iter().skip(1).filter(|r| r.steady())
}

/// The token loop of the pool, the text streamed as it is written.
async fn generate_in(
    handle: &mut GenerationHandle,
    p: &Prepared,
    req: &GenerateRequest,
    gen: &mut Written,
    on_text: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut stream = p.tokenizer.stream(true);
    let mut broken = None;
    let writing = Writing {
        prompt: &p.prompt,
        max_new_tokens: req.max_new_tokens,
        eos: p.tokenizer.eos(),
        chooser: Chooser::new(p.sampling),
        kill: req.kill,
        stop: &req.shutdown,
    };
    let mut on_token = |token: u32| {
        if broken.is_none() {
            match stream.push(token) {
                Ok(text) => on_text(&text),
                Err(e) => broken = Some(e),
            }
        }
    };
    let wrote = handle.write(writing, gen, &mut on_token).await;
    wrote?;
    if let Some(e) = broken {
        return Err(e.into());
    }
    on_text(&stream.finish());
    on_text("\n");
    Ok(())
}
