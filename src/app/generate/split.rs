//! How `generate --strategy` cuts the decoder's layers into shards: evenly by layer count (the
//! default), by parameters (`layer_balanced`: the first shard holds the embedding and the last
//! the tied head, so they get fewer layers and every page holds about the same memory), or by
//! each shard's browser measured running one layer (`cost_balanced`: a faster page gets more
//! layers, the head counted as the layers of compute it costs). The last needs the browsers up,
//! so its graphs are written after the pool starts.

use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::generate::model::{decoder_file, open_weights, prepared, DecoderFile, Precision};
use crate::models::{Cache, LayerParameters, LlamaConfig};
use crate::pool::{in_place_order, layer_ms, Pool};
use crate::scenario::ShardStrategy;
use crate::sharding::{self, PlanRequest};

/// Rounds of the probe on each shard's worker, the median taken: Firefox's wasm starts on its
/// baseline tier, and with 5 rounds it measured slower than Chromium where its optimized tier
/// ran the layers faster.
const PROBE_RUNS: usize = 15;

/// Layers of the probe graph: one layer's step is a few ms, too close to a call's fixed cost
/// in the page to tell the pages apart.
const PROBE_LAYERS: Range<usize> = 1..5;

/// How the layers are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// The same number of layers in each shard, the larger first.
    #[default]
    Even,
    /// Parameters per shard as even as contiguous ranges allow.
    LayerBalanced,
    /// By the ms per layer measured on each shard's worker.
    CostBalanced,
}

impl Split {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Even => "even",
            Split::LayerBalanced => "layer_balanced",
            Split::CostBalanced => "cost_balanced",
        }
    }
}

/// Each shard's layers, and why they were cut so (a line each).
pub type Cut = (Vec<Range<usize>>, Vec<String>);

/// `layers` cut into `n` contiguous ranges of as even a size as can be, the larger first.
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

/// The decoder's parameters by part: the embedding (shard 0), each layer (grouped-query
/// attention: keys and values are `kv_heads` heads wide), and the final norm with the head (the
/// last shard; tied, so the embedding's matrix again).
pub fn decoder_parameters(cfg: &LlamaConfig) -> LayerParameters {
    let u = |x: usize| x as u64;
    let (d, i, v) = (u(cfg.hidden), u(cfg.intermediate), u(cfg.vocab));
    let kv = u(cfg.kv_heads * cfg.head_dim());
    LayerParameters {
        embed: v * d,
        per_layer: vec![2 * d * d + 2 * d * kv + 3 * d * i + 2 * d; cfg.layers],
        head: d + d * v,
        activation: d,
    }
}

/// The ranges of `split` for `shards` shards, and the reasons, where no measurement is needed;
/// `None` for `cost_balanced` (see [`measured`]).
///
/// # Errors
/// The planner cannot cut the layers so.
pub fn planned(split: Split, cfg: &LlamaConfig, shards: usize) -> Result<Option<Cut>> {
    match split {
        Split::Even => Ok(Some((
            even_ranges(cfg.layers, shards),
            vec![format!(
                "{} layers cut evenly into {shards} shard(s)",
                cfg.layers
            )],
        ))),
        Split::LayerBalanced => {
            let p = plan(cfg, shards, ShardStrategy::LayerBalanced, None)?;
            Ok(Some(p))
        }
        Split::CostBalanced => Ok(None),
    }
}

fn plan(
    cfg: &LlamaConfig,
    shards: usize,
    strategy: ShardStrategy,
    speeds: Option<&[f64]>,
) -> Result<Cut> {
    let params = decoder_parameters(cfg);
    let p = sharding::plan(&PlanRequest {
        model: crate::generate::model::SMOLLM2,
        params: &params,
        shards: Some(shards),
        strategy,
        workers: shards,
        ms_per_layer: speeds,
        budget_bytes: None,
    })?;
    Ok((p.ranges, p.reasons))
}

/// `cost_balanced`: a graph of a few middle layers (of the shards' precision and cache
/// variant) timed on each shard's worker, then the layers cut by those speeds per layer.
///
/// # Errors
/// The probe graph cannot be written or loaded, or a worker fails its runs.
pub async fn measured(
    pool: &Pool,
    places: &[(BrowserKind, Option<Backend>)],
    cache: &Cache,
    cfg: &LlamaConfig,
    (precision, capacity): (Precision, Option<usize>),
    progress: &dyn Fn(&str),
) -> Result<Cut> {
    let model = crate::generate::model::SMOLLM2;
    let workers = in_place_order(pool, model, places)?;
    let file = decoder_graph(cache, cfg, PROBE_LAYERS, (precision, capacity)).await?;
    let (from, to) = (PROBE_LAYERS.start, PROBE_LAYERS.end);
    let probe = prepared(&format!("{model}/probe/L{from}-{to}"), &file, cfg);
    progress(&format!(
        "timing layers {from}..{to} on each shard's worker ({PROBE_RUNS} rounds) ..."
    ));
    let per_layer = PROBE_LAYERS.len() as f64;
    let backends: Vec<_> = places.iter().map(|p| p.1).collect();
    let speeds: Vec<f64> = layer_ms(&workers, &backends, Arc::new(probe), PROBE_RUNS)
        .await?
        .into_iter()
        .map(|ms| ms / per_layer)
        .collect();
    let (ranges, mut reasons) = plan(
        cfg,
        places.len(),
        ShardStrategy::CostBalanced,
        Some(&speeds),
    )?;
    for (w, ms) in workers.iter().zip(&speeds) {
        reasons.push(format!(
            "{}: {ms:.2} ms per layer (layers {from}..{to}, median of {PROBE_RUNS} runs)",
            w.id
        ));
    }
    Ok((ranges, reasons))
}

/// Each shard's graph (`whole` itself when one growing shard holds every layer).
///
/// # Errors
/// A graph cannot be written.
pub async fn shard_files(
    cache: &Cache,
    cfg: &LlamaConfig,
    ranges: &[Range<usize>],
    variant: (Precision, Option<usize>),
    whole: &DecoderFile,
) -> Result<Vec<DecoderFile>> {
    if ranges.len() == 1 && variant.1.is_none() {
        return Ok(vec![whole.clone()]);
    }
    let mut files = Vec::new();
    for r in ranges {
        files.push(decoder_graph(cache, cfg, r.clone(), variant).await?);
    }
    Ok(files)
}

/// The decoder graph of `layers` in `precision` (with `capacity` slots: the fixed-capacity
/// variant), written off the async runtime, or found in the cache.
///
/// # Errors
/// The weights cannot be read or the graph cannot be written.
pub async fn decoder_graph(
    cache: &Cache,
    cfg: &LlamaConfig,
    layers: Range<usize>,
    (precision, capacity): (Precision, Option<usize>),
) -> Result<DecoderFile> {
    let what = format!(
        "building the decoder graph of layers {}..{}",
        layers.start, layers.end
    );
    let (cache, cfg) = (cache.clone(), cfg.clone());
    let file = tokio::task::spawn_blocking(move || {
        decoder_file(
            &cache,
            open_weights(&cache)?,
            &cfg,
            layers,
            precision,
            capacity,
        )
    })
    .await
    .context(what.clone())?
    .context(what)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> LlamaConfig {
        LlamaConfig {
            layers: 30,
            hidden: 576,
            heads: 9,
            kv_heads: 3,
            intermediate: 1536,
            vocab: 49_152,
            seq_len: 1,
            eps: 1e-5,
            rope_theta: 100_000.0,
            tied_embeddings: true,
        }
    }

    #[test]
    fn layers_are_cut_evenly_the_larger_first() {
        assert_eq!(even_ranges(30, 3), vec![0..10, 10..20, 20..30]);
        assert_eq!(even_ranges(30, 4), vec![0..8, 8..16, 16..23, 23..30]);
        assert_eq!(even_ranges(30, 1), vec![0..30]);
    }

    #[test]
    fn a_layer_holds_its_grouped_query_attention_and_mlp() {
        let p = decoder_parameters(&smollm2());
        // q, o: 576x576; k, v: 576x192; gate, up, down: 576x1536; two norms.
        assert_eq!(
            p.per_layer[0],
            2 * 331_776 + 2 * 110_592 + 3 * 884_736 + 2 * 576
        );
        assert_eq!((p.embed, p.head), (28_311_552, 28_312_128));
    }

    #[test]
    fn layer_balanced_gives_the_embedding_and_head_shards_fewer_layers() {
        let (ranges, _) = planned(Split::LayerBalanced, &smollm2(), 3)
            .unwrap()
            .unwrap();
        let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
        assert_eq!(lens.iter().sum::<usize>(), 30);
        assert!(lens[1] > lens[0] && lens[1] > lens[2], "{ranges:?}");
        assert!(planned(Split::CostBalanced, &smollm2(), 3)
            .unwrap()
            .is_none());
    }

    #[test]
    fn cost_balanced_gives_a_slower_page_fewer_layers() {
        let even = plan(
            &smollm2(),
            3,
            ShardStrategy::CostBalanced,
            Some(&[1.0, 1.0, 1.0]),
        )
        .unwrap()
        .0;
        let slow_middle = plan(
            &smollm2(),
            3,
            ShardStrategy::CostBalanced,
            Some(&[1.0, 4.0, 1.0]),
        )
        .unwrap()
        .0;
        assert!(
            slow_middle[1].len() < even[1].len(),
            "{even:?} {slow_middle:?}"
        );
        // The head costs the last shard layers of compute.
        assert!(even[2].len() < even[0].len(), "{even:?}");
    }
}
