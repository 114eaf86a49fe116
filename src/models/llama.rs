//! A llama-style decoder (RMSNorm, RoPE, SwiGLU, causal mask), the model that gets sharded by layers.
//!
//! Inputs: a [`LlamaConfig`] and a [`WeightSource`] answering HF `LlamaForCausalLM` names
//! (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, `lm_head.weight`, ...).
//! Output: a graph with input `input_ids` (int64 `[1, S]`) and output `logits` (float32 `[1, S, V]`).
//! RoPE tables and the causal mask are precomputed initializers (static shapes).
//! Layer construction is the reusable [`layer`] so a shard can emit a sub-range of layers.
//! Must not import `cli` or `report`.

use super::blocks::Ctx;
use super::error::ModelError;
use super::onnx::{AttributeProto, ModelProto, DATA_TYPE_FLOAT, DATA_TYPE_INT64};
use super::shard::{HIDDEN_IN, HIDDEN_OUT};
use super::weights::{Init, WeightSource};

/// Architecture of a llama-style decoder plus its fixed sequence length.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Decoder layers.
    pub layers: usize,
    /// Hidden size D.
    pub hidden: usize,
    /// Attention heads (no grouped-query attention).
    pub heads: usize,
    /// SwiGLU inner size.
    pub intermediate: usize,
    /// Token vocabulary.
    pub vocab: usize,
    /// Static sequence length S.
    pub seq_len: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
}

/// Value names of the shared per-graph constants every layer reads.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    cos: String,
    sin: String,
    mask: String,
}

/// The additive bias for masked (future) positions; finite so a row never becomes all -inf.
const MASKED: f32 = -1e9;

/// Builds decoder layers `layers` as one graph: with the token embedding when the range starts
/// at 0 (input `input_ids`, else input [`HIDDEN_IN`] `[1, S, D]`), with the final norm and LM
/// head when it ends at the last layer (output `logits`, else [`HIDDEN_OUT`]). The whole model is
/// `build_range(0..layers)`, so shards compose to exactly it. Returns the graph, its
/// learned-parameter count and its output name.
///
/// # Errors
/// Whatever the weight source returns.
pub fn build_range(
    cfg: &LlamaConfig,
    w: &mut dyn WeightSource,
    layers: std::ops::Range<usize>,
) -> Result<(ModelProto, u64, String), ModelError> {
    let (s, d) = (cfg.seq_len, cfg.hidden);
    let mut c = Ctx::new(w);
    let mut x = if layers.start == 0 {
        let ids = c.g.input("input_ids", DATA_TYPE_INT64, &[1, s as i64]);
        let emb = c.weight("model.embed_tokens.weight", &[cfg.vocab, d], Init::Normal)?;
        c.g.node("Gather", &[&emb, &ids], vec![])
    } else {
        c.g.input(HIDDEN_IN, DATA_TYPE_FLOAT, &[1, s as i64, d as i64])
    };
    let shared = shared(&mut c, cfg);
    for i in layers.clone() {
        x = layer(&mut c, cfg, i, &x, &shared)?;
    }
    let output = if layers.end == cfg.layers {
        let x = rms_norm(&mut c, &x, "model.norm.weight", cfg)?;
        let logits = c.linear(&x, "lm_head.weight", None, d, cfg.vocab)?;
        c.g.output(
            &logits,
            "logits",
            DATA_TYPE_FLOAT,
            &[1, s as i64, cfg.vocab as i64],
        );
        "logits"
    } else {
        c.g.output(&x, HIDDEN_OUT, DATA_TYPE_FLOAT, &[1, s as i64, d as i64]);
        HIDDEN_OUT
    };
    let params = c.g.parameters;
    Ok((
        c.g.finish("llama", "llama-style decoder written by webgpu-pool"),
        params,
        output.to_owned(),
    ))
}

/// Adds the RoPE cos/sin tables (`[S, dh]`, halves duplicated as HF does) and the causal mask.
pub(crate) fn shared(c: &mut Ctx<'_>, cfg: &LlamaConfig) -> Shared {
    let s = cfg.seq_len;
    let dh = cfg.hidden / cfg.heads;
    let half = dh / 2;
    let mut cos = vec![0.0; s * dh];
    let mut sin = vec![0.0; s * dh];
    for t in 0..s {
        for j in 0..half {
            let inv = f64::from(cfg.rope_theta).powf(-(2.0 * j as f64) / dh as f64);
            let a = t as f64 * inv;
            for k in [j, j + half] {
                cos[t * dh + k] = a.cos() as f32;
                sin[t * dh + k] = a.sin() as f32;
            }
        }
    }
    let mut mask = vec![0.0; s * s];
    for q in 0..s {
        for k in q + 1..s {
            mask[q * s + k] = MASKED;
        }
    }
    Shared {
        cos: c.g.const_f32("rope_cos", &[s, dh], &cos),
        sin: c.g.const_f32("rope_sin", &[s, dh], &sin),
        mask: c.g.const_f32("causal_mask", &[1, 1, s, s], &mask),
    }
}

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * g`.
fn rms_norm(c: &mut Ctx<'_>, x: &str, gain: &str, cfg: &LlamaConfig) -> Result<String, ModelError> {
    let g = c.weight(gain, &[cfg.hidden], Init::Ones)?;
    let eps = c.g.scalar(cfg.eps);
    let sq = c.g.node("Mul", &[x, x], vec![]);
    let ms = c.g.node(
        "ReduceMean",
        &[&sq],
        vec![
            AttributeProto::ints("axes", &[-1]),
            AttributeProto::int("keepdims", 1),
        ],
    );
    let ms = c.g.node("Add", &[&ms, &eps], vec![]);
    let rms = c.g.node("Sqrt", &[&ms], vec![]);
    let n = c.g.node("Div", &[x, &rms], vec![]);
    Ok(c.g.node("Mul", &[&n, &g], vec![]))
}

/// `x * cos + rotate_half(x) * sin` on `[1, H, S, dh]`, with `rotate_half(x) = [-x2, x1]`.
fn rope(c: &mut Ctx<'_>, x: &str, dh: usize, sh: &Shared) -> String {
    let half = (dh / 2) as i64;
    let axes = c.g.ints(&[-1]);
    let (z, h, e) = (c.g.ints(&[0]), c.g.ints(&[half]), c.g.ints(&[dh as i64]));
    let x1 = c.g.node("Slice", &[x, &z, &h, &axes], vec![]);
    let x2 = c.g.node("Slice", &[x, &h, &e, &axes], vec![]);
    let n2 = c.g.node("Neg", &[&x2], vec![]);
    let rot =
        c.g.node("Concat", &[&n2, &x1], vec![AttributeProto::int("axis", -1)]);
    let a = c.g.node("Mul", &[x, &sh.cos], vec![]);
    let b = c.g.node("Mul", &[&rot, &sh.sin], vec![]);
    c.g.node("Add", &[&a, &b], vec![])
}

/// Decoder layer `i`: `x + attn(rms(x))`, then `x + down(silu(gate(rms(x))) * up(rms(x)))`.
pub(crate) fn layer(
    c: &mut Ctx<'_>,
    cfg: &LlamaConfig,
    i: usize,
    x: &str,
    sh: &Shared,
) -> Result<String, ModelError> {
    let (d, heads) = (cfg.hidden, cfg.heads);
    let dh = d / heads;
    let p = format!("model.layers.{i}");
    let h = rms_norm(c, x, &format!("{p}.input_layernorm.weight"), cfg)?;
    let q = c.linear(&h, &format!("{p}.self_attn.q_proj.weight"), None, d, d)?;
    let k = c.linear(&h, &format!("{p}.self_attn.k_proj.weight"), None, d, d)?;
    let v = c.linear(&h, &format!("{p}.self_attn.v_proj.weight"), None, d, d)?;
    let qh = c.split_heads(&q, heads, dh, false);
    let kh = c.split_heads(&k, heads, dh, false);
    let vh = c.split_heads(&v, heads, dh, false);
    let qr = rope(c, &qh, dh, sh);
    let kr = rope(c, &kh, dh, sh);
    let kt = c.g.node(
        "Transpose",
        &[&kr],
        vec![AttributeProto::ints("perm", &[0, 1, 3, 2])],
    );
    let ctx = c.attention_core(&qr, &kt, &vh, dh, Some(&sh.mask));
    let ctx = c.merge_heads(&ctx, d);
    let o = c.linear(&ctx, &format!("{p}.self_attn.o_proj.weight"), None, d, d)?;
    let x = c.g.node("Add", &[x, &o], vec![]);
    let h = rms_norm(c, &x, &format!("{p}.post_attention_layernorm.weight"), cfg)?;
    let gate = c.linear(
        &h,
        &format!("{p}.mlp.gate_proj.weight"),
        None,
        d,
        cfg.intermediate,
    )?;
    let up = c.linear(
        &h,
        &format!("{p}.mlp.up_proj.weight"),
        None,
        d,
        cfg.intermediate,
    )?;
    let sg = c.g.node("Sigmoid", &[&gate], vec![]);
    let silu = c.g.node("Mul", &[&gate, &sg], vec![]);
    let m = c.g.node("Mul", &[&silu, &up], vec![]);
    let down = c.linear(
        &m,
        &format!("{p}.mlp.down_proj.weight"),
        None,
        cfg.intermediate,
        d,
    )?;
    Ok(c.g.node("Add", &[&x, &down], vec![]))
}
