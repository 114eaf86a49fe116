//! The llama decoder with a key/value cache, for generation: one graph serves the prefill
//! (`S` prompt tokens, no past) and every decode step (`S = 1`, `P` past positions), because
//! every sequence axis is a named run-time size.
//!
//! A graph covers a range of layers, so a shard is a range. Its inputs:
//! - `input_ids` int64 `[1, S]` when the range starts at layer 0, else [`HIDDEN_IN`] f32
//!   `[1, S, D]`;
//! - [`POSITION_IDS`] int64 `[S]`: the positions of the `S` new tokens (`P .. P+S`), which pick
//!   the RoPE rows out of a table of `max_positions`;
//! - [`ATTENTION_BIAS`] f32 `[1, 1, S, T]` (`T = P + S`): 0 where a new token may attend, a
//!   large negative number where it may not (the future);
//! - per layer `i`: `past_key.i` and `past_value.i`, f32 `[1, KV, P, dh]` (`P` may be 0).
//!
//! Its outputs: per layer `present_key.i` and `present_value.i` `[1, KV, T, dh]` (the past with
//! the new positions appended, fed back as the next step's past), and `logits` f32 `[1, 1, V]`
//! for the last new position when the range ends at the last layer, else [`HIDDEN_OUT`]
//! `[1, S, D]`.
//!
//! The fixed-capacity variant (for WebNN, whose graphs need static shapes) has no named sizes:
//! one position a run (`S = 1`), and every cache holds `C` slots (`P = T = C`). The new
//! position's keys and values are written into its slot by a one-hot [`CACHE_SLOT`] input
//! `[1, 1, C, 1]` (`present = past * (1 - slot) + new * slot`), and the bias `[1, 1, 1, C]`
//! masks the slots after it. Must not import `cli` or `report`.

use std::ops::Range;

use super::blocks::Ctx;
use super::error::ModelError;
use super::llama::{
    attention_inputs, attention_out_and_mlp, embedding, lm_head, repeat_kv, rms_norm, rope_tables,
    LlamaConfig,
};
use super::onnx::{AttributeProto, Dim, ModelProto, DATA_TYPE_FLOAT, DATA_TYPE_INT64};
use super::shard::{HIDDEN_IN, HIDDEN_OUT};
use super::weights::WeightSource;

/// The input naming the new tokens' positions.
pub const POSITION_IDS: &str = "position_ids";
/// The input holding the additive attention mask.
pub const ATTENTION_BIAS: &str = "attention_bias";
/// The additive bias of a position a token may not attend to (finite, as in [`super::llama`]).
pub const MASKED: f32 = -1e9;
/// The fixed-capacity variant's input marking the slot of the new position.
pub const CACHE_SLOT: &str = "cache_slot";

/// The name of layer `i`'s past keys input.
pub fn past_key(i: usize) -> String {
    format!("past_key.{i}")
}

/// The name of layer `i`'s past values input.
pub fn past_value(i: usize) -> String {
    format!("past_value.{i}")
}

/// The name of layer `i`'s present keys output.
pub fn present_key(i: usize) -> String {
    format!("present_key.{i}")
}

/// The name of layer `i`'s present values output.
pub fn present_value(i: usize) -> String {
    format!("present_value.{i}")
}

/// A decoder graph over a range of layers, and what it holds.
#[derive(Debug)]
pub struct DecoderGraph {
    /// The graph.
    pub model: ModelProto,
    /// Learned parameters in it.
    pub parameters: u64,
    /// Its main output: `logits` or [`HIDDEN_OUT`].
    pub output: String,
}

/// Builds layers `layers` of `cfg` with a key/value cache; RoPE covers positions
/// `0..max_positions`. With `capacity`, the fixed-capacity variant of that many slots.
///
/// # Errors
/// Whatever the weight source returns.
pub fn build(
    cfg: &LlamaConfig,
    w: &mut dyn WeightSource,
    layers: Range<usize>,
    max_positions: usize,
    capacity: Option<usize>,
) -> Result<DecoderGraph, ModelError> {
    let (d, dh, kv) = (
        cfg.hidden as i64,
        cfg.head_dim() as i64,
        cfg.kv_heads as i64,
    );
    let (s, p, t) = match capacity {
        Some(cap) => (
            Dim::Fixed(1),
            Dim::Fixed(cap as i64),
            Dim::Fixed(cap as i64),
        ),
        None => (Dim::Named("S"), Dim::Named("P"), Dim::Named("T")),
    };
    let mut c = Ctx::new(w);
    let mut x = if layers.start == 0 {
        let ids =
            c.g.input_dims("input_ids", DATA_TYPE_INT64, &[Dim::Fixed(1), s]);
        let emb = embedding(&mut c, cfg)?;
        c.g.node("Gather", &[&emb, &ids], vec![])
    } else {
        c.g.input_dims(
            HIDDEN_IN,
            DATA_TYPE_FLOAT,
            &[Dim::Fixed(1), s, Dim::Fixed(d)],
        )
    };
    let positions = c.g.input_dims(POSITION_IDS, DATA_TYPE_INT64, &[s]);
    let bias = c.g.input_dims(
        ATTENTION_BIAS,
        DATA_TYPE_FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(1), s, t],
    );
    let (cos_table, sin_table) = rope_tables(cfg, max_positions);
    let shape = [max_positions, cfg.head_dim()];
    let cos_table = c.g.const_f32("rope_cos", &shape, &cos_table);
    let sin_table = c.g.const_f32("rope_sin", &shape, &sin_table);
    let cos = c.g.node("Gather", &[&cos_table, &positions], vec![]);
    let sin = c.g.node("Gather", &[&sin_table, &positions], vec![]);
    let cache = [Dim::Fixed(1), Dim::Fixed(kv), p, Dim::Fixed(dh)];
    let present = [Dim::Fixed(1), Dim::Fixed(kv), t, Dim::Fixed(dh)];
    // The fixed variant's slot of the new position, and the slots it leaves as they were.
    let slot = capacity.map(|cap| {
        let slot = c.g.input_dims(
            CACHE_SLOT,
            DATA_TYPE_FLOAT,
            &[
                Dim::Fixed(1),
                Dim::Fixed(1),
                Dim::Fixed(cap as i64),
                Dim::Fixed(1),
            ],
        );
        let one = c.g.const_f32("one", &[1], &[1.0]);
        let keep = c.g.node("Sub", &[&one, &slot], vec![]);
        (slot, keep)
    });
    let mut presents = Vec::new();
    for i in layers.clone() {
        let past_k = c.g.input_dims(&past_key(i), DATA_TYPE_FLOAT, &cache);
        let past_v = c.g.input_dims(&past_value(i), DATA_TYPE_FLOAT, &cache);
        let a = attention_inputs(&mut c, cfg, i, &x, &cos, &sin)?;
        let (k_all, v_all) = match &slot {
            Some((slot, keep)) => {
                let mut write = |past: &str, new: &str| {
                    let kept = c.g.node("Mul", &[past, keep], vec![]);
                    let put = c.g.node("Mul", &[new, slot], vec![]);
                    c.g.node("Add", &[&kept, &put], vec![])
                };
                (write(&past_k, &a.k), write(&past_v, &a.v))
            }
            None => {
                let axis2 = || vec![AttributeProto::int("axis", 2)];
                (
                    c.g.node("Concat", &[&past_k, &a.k], axis2()),
                    c.g.node("Concat", &[&past_v, &a.v], axis2()),
                )
            }
        };
        presents.push((i, k_all.clone(), v_all.clone()));
        let k = repeat_kv(&mut c, cfg, &k_all);
        let v = repeat_kv(&mut c, cfg, &v_all);
        let kt = c.g.node(
            "Transpose",
            &[&k],
            vec![AttributeProto::ints("perm", &[0, 1, 3, 2])],
        );
        let ctx = c.attention_core(&a.q, &kt, &v, cfg.head_dim(), Some(&bias));
        x = attention_out_and_mlp(&mut c, cfg, i, &x, &ctx)?;
    }
    let output = if layers.end == cfg.layers {
        // Only the last new position predicts the next token.
        let last = c.g.ints(&[-1]);
        let x =
            c.g.node("Gather", &[&x, &last], vec![AttributeProto::int("axis", 1)]);
        let x = rms_norm(&mut c, &x, "model.norm.weight", cfg)?;
        let logits = lm_head(&mut c, cfg, &x)?;
        let logits = c.g.node("Identity", &[&logits], vec![]);
        let dims = [Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(cfg.vocab as i64)];
        c.g.output_dims(&logits, "logits", DATA_TYPE_FLOAT, &dims);
        "logits"
    } else {
        let x = c.g.node("Identity", &[&x], vec![]);
        let dims = [Dim::Fixed(1), s, Dim::Fixed(d)];
        c.g.output_dims(&x, HIDDEN_OUT, DATA_TYPE_FLOAT, &dims);
        HIDDEN_OUT
    };
    for (i, k, v) in presents {
        let k = c.g.node("Identity", &[&k], vec![]);
        c.g.output_dims(&k, &present_key(i), DATA_TYPE_FLOAT, &present);
        let v = c.g.node("Identity", &[&v], vec![]);
        c.g.output_dims(&v, &present_value(i), DATA_TYPE_FLOAT, &present);
    }
    let parameters = c.g.parameters;
    Ok(DecoderGraph {
        model: c.g.finish(
            "llama_kv",
            "llama decoder with a key/value cache, by webgpu-pool",
        ),
        parameters,
        output: output.to_owned(),
    })
}

/// The attention bias for `new` tokens after `past` cached ones: row `i` (position
/// `past + i`) may attend to positions `0..=past + i`. Row-major `[new, past + new]`.
pub fn causal_bias(past: usize, new: usize) -> Vec<f32> {
    let total = past + new;
    let mut bias = vec![0.0; new * total];
    for i in 0..new {
        for j in past + i + 1..total {
            bias[i * total + j] = MASKED;
        }
    }
    bias
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_bias_masks_only_the_future() {
        // Prefill of 3: a lower triangle.
        let b = causal_bias(0, 3);
        assert_eq!(b[0..3], [0.0, MASKED, MASKED]);
        assert_eq!(b[3..6], [0.0, 0.0, MASKED]);
        assert_eq!(b[6..9], [0.0, 0.0, 0.0]);
        // A decode step sees every past position and itself.
        assert_eq!(causal_bias(4, 1), vec![0.0; 5]);
        // Two new tokens after 2 past: the first may not see the second.
        assert_eq!(
            causal_bias(2, 2),
            [0.0, 0.0, 0.0, MASKED, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
