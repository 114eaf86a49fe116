//! Shard slicing: a contiguous range of a model's layers as its own ONNX graph, written by the
//! same builders as the whole model (`build_range`), so the shards compose to exactly it.
//!
//! Shard 0 holds the embeddings (or whisper's convolution stem) and takes the model's inputs;
//! the last shard holds the head and gives the model's output; every other boundary is one
//! float32 activation, [`HIDDEN_OUT`] of one shard fed as [`HIDDEN_IN`] of the next. BERT's
//! later shards also read `attention_mask` (each layer needs it), from the same input file.
//! Inputs: a [`ModelSpec`], layer ranges. Outputs: [`PreparedModel`]s, parameter counts.
//! Must not import `cli`, `report` or `pool`.

use std::ops::Range;

use super::catalog::{Arch, ModelSpec};
use super::error::ModelError;
use super::{Cache, DType, PreparedModel, RuntimeInput};

/// The activation a shard after the first takes.
pub const HIDDEN_IN: &str = "hidden_in";
/// The activation a shard before the last gives.
pub const HIDDEN_OUT: &str = "hidden_out";

/// Learned parameters of a shardable model, by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerParameters {
    /// Embeddings or stem (in shard 0).
    pub embed: u64,
    /// Each layer, in order (all equal for these architectures).
    pub per_layer: Vec<u64>,
    /// Final norm and head (in the last shard).
    pub head: u64,
    /// Elements of the activation passed between shards (`[1, S, D]`).
    pub activation: u64,
}

impl LayerParameters {
    /// Parameters of the shard holding `layers` (with the embeddings and head where it ends).
    pub fn of_range(&self, layers: &Range<usize>) -> u64 {
        let mut n: u64 = self.per_layer[layers.clone()].iter().sum();
        if layers.start == 0 {
            n += self.embed;
        }
        if layers.end == self.per_layer.len() {
            n += self.head;
        }
        n
    }

    /// Parameters of the whole model.
    pub fn total(&self) -> u64 {
        self.of_range(&(0..self.per_layer.len()))
    }
}

/// The parameters of `spec` by part, computed from its architecture; `None` for a model that
/// cannot be sharded (ViT).
pub fn layer_parameters(spec: &ModelSpec) -> Option<LayerParameters> {
    let u = |x: usize| x as u64;
    match &spec.arch {
        Arch::Llama(c) => {
            let (d, i, v) = (u(c.hidden), u(c.intermediate), u(c.vocab));
            Some(LayerParameters {
                embed: v * d,
                per_layer: vec![4 * d * d + 3 * d * i + 2 * d; c.layers],
                head: d + d * v,
                activation: u(c.seq_len) * d,
            })
        }
        Arch::Bert(c) => {
            let (d, i) = (u(c.hidden), u(c.intermediate));
            Some(LayerParameters {
                embed: (u(c.vocab) + u(c.max_positions) + u(c.type_vocab)) * d + 2 * d,
                per_layer: vec![4 * d * d + 2 * d * i + i + 9 * d; c.layers],
                head: 0,
                activation: u(c.seq_len) * d,
            })
        }
        Arch::Whisper(c) => {
            let (d, i, m) = (u(c.hidden), u(c.intermediate), u(c.mels));
            Some(LayerParameters {
                embed: d * m * 3 + d + d * d * 3 + d,
                per_layer: vec![4 * d * d + 2 * d * i + i + 9 * d; c.layers],
                head: 2 * d,
                activation: u(c.frames / 2) * d,
            })
        }
        _ => None,
    }
}

/// A model cut into shards, with the whole model it composes to (its inputs, the oracle's
/// reference and the unsharded baseline).
#[derive(Debug, Clone)]
pub struct ShardedModel {
    /// The unsharded model.
    pub whole: PreparedModel,
    /// The shards, in pipeline order.
    pub shards: Vec<PreparedModel>,
    /// Each shard's layers.
    pub ranges: Vec<Range<usize>>,
}

/// Writes (or reuses) the whole model and one graph per range of `ranges`.
///
/// # Errors
/// [`ModelError::Shard`] when `spec` cannot be sharded or the ranges do not tile its layers in
/// order; otherwise as [`super::prepare`].
pub fn prepare_shards(
    spec: &ModelSpec,
    cache: &Cache,
    seed: u64,
    ranges: &[Range<usize>],
) -> Result<ShardedModel, ModelError> {
    let params = layer_parameters(spec).ok_or_else(|| ModelError::Shard {
        model: spec.name.to_owned(),
        message: format!(
            "a {} model has no layer stack this tool can split; shardable: llama-tiny, bert-base-uncased, whisper-tiny and their variants",
            spec.task.as_str()
        ),
    })?;
    check_tiling(spec.name, ranges, params.per_layer.len())?;
    let whole = super::prepare(spec, cache, seed)?;
    let mut shards = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let mut shard = super::prepare::prepare_shard(spec, cache, seed, &whole, r.clone())?;
        shard.name = shard_id(spec.name, i, ranges.len(), r);
        shard.inputs.retain(|input| needed(spec, r, &input.name));
        if r.start > 0 {
            shard.runtime_inputs = vec![RuntimeInput {
                name: HIDDEN_IN.to_owned(),
                dtype: DType::Float32,
                dims: activation_dims(spec),
                dynamic: false,
            }];
        }
        shards.push(shard);
    }
    Ok(ShardedModel {
        whole,
        shards,
        ranges: ranges.to_vec(),
    })
}

/// The page's id of shard `i` of `n`, e.g. `llama-tiny/shard1of3/L3-6`.
pub fn shard_id(model: &str, i: usize, n: usize, r: &Range<usize>) -> String {
    format!("{model}/shard{i}of{n}/L{}-{}", r.start, r.end)
}

/// Whether the shard holding `r` reads the model input `name` from its file.
fn needed(spec: &ModelSpec, r: &Range<usize>, name: &str) -> bool {
    r.start == 0 || (matches!(spec.arch, Arch::Bert(_)) && name == "attention_mask")
}

fn activation_dims(spec: &ModelSpec) -> Vec<i64> {
    let (s, d) = match &spec.arch {
        Arch::Llama(c) => (c.seq_len, c.hidden),
        Arch::Bert(c) => (c.seq_len, c.hidden),
        Arch::Whisper(c) => (c.frames / 2, c.hidden),
        Arch::Vit(c) => (0, c.hidden),
    };
    vec![1, s as i64, d as i64]
}

/// Ranges must be non-empty, contiguous, in order, and cover `0..layers`.
fn check_tiling(model: &str, ranges: &[Range<usize>], layers: usize) -> Result<(), ModelError> {
    let bad = |message: String| ModelError::Shard {
        model: model.to_owned(),
        message,
    };
    let mut next = 0;
    for r in ranges {
        if r.start != next || r.end <= r.start {
            return Err(bad(format!(
                "layer ranges must tile 0..{layers} in order, each non-empty; got {ranges:?}"
            )));
        }
        next = r.end;
    }
    if next != layers || ranges.is_empty() {
        return Err(bad(format!(
            "layer ranges must tile 0..{layers} in order, each non-empty; got {ranges:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::resolve;

    #[test]
    fn parameter_counts_match_what_the_builders_write() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        for name in ["llama-micro", "bert-tiny", "whisper-micro"] {
            let spec = resolve(name).unwrap();
            let p = layer_parameters(spec).unwrap();
            let layers = p.per_layer.len();
            let cut = layers / 2;
            let ranges = [0..cut, cut..layers];
            let sharded = prepare_shards(spec, &cache, 3, &ranges).unwrap();
            assert_eq!(p.total(), sharded.whole.parameters, "{name} whole");
            for (s, r) in sharded.shards.iter().zip(&ranges) {
                assert_eq!(p.of_range(r), s.parameters, "{name} {r:?}");
            }
        }
    }

    #[test]
    fn shards_take_the_activation_and_the_inputs_they_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let spec = resolve("bert-tiny").unwrap();
        let s = prepare_shards(spec, &cache, 3, &[0..1, 1..2]).unwrap();
        let names = |m: &PreparedModel| m.inputs.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&s.shards[0]).len(), 3);
        assert!(s.shards[0].runtime_inputs.is_empty());
        assert_eq!(s.shards[0].output_name, HIDDEN_OUT);
        assert_eq!(names(&s.shards[1]), vec!["attention_mask".to_string()]);
        assert_eq!(s.shards[1].runtime_inputs[0].name, HIDDEN_IN);
        assert_eq!(s.shards[1].output_name, "last_hidden_state");
    }

    #[test]
    fn ranges_that_do_not_tile_the_layers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let spec = resolve("bert-tiny").unwrap();
        let one = |r: Range<usize>| vec![r];
        for bad in [one(0..1), vec![0..1, 0..2], vec![0..0, 0..2], one(1..2)] {
            let e = prepare_shards(spec, &cache, 3, &bad).unwrap_err();
            assert!(e.to_string().contains("tile 0..2"), "{e}");
        }
        let e = prepare_shards(resolve("vit-micro").unwrap(), &cache, 3, &one(0..1)).unwrap_err();
        assert!(e.to_string().contains("no layer stack"), "{e}");
    }
}
