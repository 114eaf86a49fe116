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
    /// Query heads.
    pub heads: usize,
    /// Key/value heads: `heads` for multi-head attention, fewer for grouped-query attention
    /// (each key/value head serves `heads / kv_heads` query heads).
    pub kv_heads: usize,
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
    /// The output head is the token embedding (`lm_head.weight` is not stored).
    pub tied_embeddings: bool,
}

impl LlamaConfig {
    /// The size of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// The width of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim()
    }
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
        let emb = embedding(&mut c, cfg)?;
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
        let logits = lm_head(&mut c, cfg, &x)?;
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

/// RoPE tables for positions `0..positions`: `cos` and `sin` `[positions, dh]`, each row's
/// halves duplicated as HF does (`rotate_half` pairs element `j` with `j + dh/2`).
pub(crate) fn rope_tables(cfg: &LlamaConfig, positions: usize) -> (Vec<f32>, Vec<f32>) {
    let dh = cfg.head_dim();
    let half = dh / 2;
    let mut cos = vec![0.0; positions * dh];
    let mut sin = vec![0.0; positions * dh];
    for t in 0..positions {
        for j in 0..half {
            let inv = f64::from(cfg.rope_theta).powf(-(2.0 * j as f64) / dh as f64);
            let a = t as f64 * inv;
            for k in [j, j + half] {
                cos[t * dh + k] = a.cos() as f32;
                sin[t * dh + k] = a.sin() as f32;
            }
        }
    }
    (cos, sin)
}

/// Adds the RoPE cos/sin tables (`[S, dh]`) and the causal mask.
pub(crate) fn shared(c: &mut Ctx<'_>, cfg: &LlamaConfig) -> Shared {
    let s = cfg.seq_len;
    let dh = cfg.head_dim();
    let (cos, sin) = rope_tables(cfg, s);
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

/// The output head on `x` `[1, S, D]` -> `[1, S, V]`: `lm_head.weight`, or the token
/// embedding itself when they are tied (one initializer read twice, through Gemm's `transB`, so
/// the 49k x 576 table is not stored again transposed).
pub(crate) fn lm_head(c: &mut Ctx<'_>, cfg: &LlamaConfig, x: &str) -> Result<String, ModelError> {
    let d = cfg.hidden;
    if !cfg.tied_embeddings {
        return c.linear(x, "lm_head.weight", None, d, cfg.vocab);
    }
    let emb = embedding(c, cfg)?;
    let flat = c.g.ints(&[-1, d as i64]);
    let x2 = c.g.node("Reshape", &[x, &flat], vec![]);
    let y =
        c.g.node("Gemm", &[&x2, &emb], vec![AttributeProto::int("transB", 1)]);
    let back = c.g.ints(&[1, -1, cfg.vocab as i64]);
    Ok(c.g.node("Reshape", &[&y, &back], vec![]))
}

/// The token embedding `[V, D]`, added once per graph however many times it is read.
pub(crate) fn embedding(c: &mut Ctx<'_>, cfg: &LlamaConfig) -> Result<String, ModelError> {
    const NAME: &str = "model.embed_tokens.weight";
    if c.g.has_initializer(NAME) {
        return Ok(NAME.to_owned());
    }
    c.weight(NAME, &[cfg.vocab, cfg.hidden], Init::Normal)
}

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * g`.
pub(crate) fn rms_norm(
    c: &mut Ctx<'_>,
    x: &str,
    gain: &str,
    cfg: &LlamaConfig,
) -> Result<String, ModelError> {
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
pub(crate) fn rope(c: &mut Ctx<'_>, x: &str, dh: usize, cos: &str, sin: &str) -> String {
    let half = (dh / 2) as i64;
    let axes = c.g.ints(&[-1]);
    let (z, h, e) = (c.g.ints(&[0]), c.g.ints(&[half]), c.g.ints(&[dh as i64]));
    let x1 = c.g.node("Slice", &[x, &z, &h, &axes], vec![]);
    let x2 = c.g.node("Slice", &[x, &h, &e, &axes], vec![]);
    let n2 = c.g.node("Neg", &[&x2], vec![]);
    let rot =
        c.g.node("Concat", &[&n2, &x1], vec![AttributeProto::int("axis", -1)]);
    let a = c.g.node("Mul", &[x, cos], vec![]);
    let b = c.g.node("Mul", &[&rot, sin], vec![]);
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
    let dh = cfg.head_dim();
    let a = attention_inputs(c, cfg, i, x, &sh.cos, &sh.sin)?;
    let k = repeat_kv(c, cfg, &a.k);
    let v = repeat_kv(c, cfg, &a.v);
    let kt = c.g.node(
        "Transpose",
        &[&k],
        vec![AttributeProto::ints("perm", &[0, 1, 3, 2])],
    );
    let ctx = c.attention_core(&a.q, &kt, &v, dh, Some(&sh.mask));
    attention_out_and_mlp(c, cfg, i, x, &ctx)
}

/// One layer's rotated queries `[1, H, S, dh]` and rotated keys and values `[1, KV, S, dh]`.
pub(crate) struct AttentionInputs {
    pub q: String,
    pub k: String,
    pub v: String,
}

/// The first half of layer `i`: RMSNorm, the Q/K/V projections, heads split, RoPE applied to
/// queries and keys with the tables `cos` and `sin` (broadcasting to `[S, dh]`).
pub(crate) fn attention_inputs(
    c: &mut Ctx<'_>,
    cfg: &LlamaConfig,
    i: usize,
    x: &str,
    cos: &str,
    sin: &str,
) -> Result<AttentionInputs, ModelError> {
    let (d, dh, kv) = (cfg.hidden, cfg.head_dim(), cfg.kv_dim());
    let p = format!("model.layers.{i}");
    let h = rms_norm(c, x, &format!("{p}.input_layernorm.weight"), cfg)?;
    let q = c.linear(&h, &format!("{p}.self_attn.q_proj.weight"), None, d, d)?;
    let k = c.linear(&h, &format!("{p}.self_attn.k_proj.weight"), None, d, kv)?;
    let v = c.linear(&h, &format!("{p}.self_attn.v_proj.weight"), None, d, kv)?;
    let qh = c.split_heads(&q, cfg.heads, dh, false);
    let kh = c.split_heads(&k, cfg.kv_heads, dh, false);
    let v = c.split_heads(&v, cfg.kv_heads, dh, false);
    let q = rope(c, &qh, dh, cos, sin);
    let k = rope(c, &kh, dh, cos, sin);
    Ok(AttentionInputs { q, k, v })
}

/// `[1, KV, T, dh]` -> `[1, H, T, dh]`: each key/value head repeated for the query heads it
/// serves (HF's `repeat_kv`: query head `h` reads key/value head `h / (H / KV)`).
pub(crate) fn repeat_kv(c: &mut Ctx<'_>, cfg: &LlamaConfig, x: &str) -> String {
    let group = cfg.heads / cfg.kv_heads;
    if group == 1 {
        return x.to_owned();
    }
    let axis = c.g.ints(&[2]);
    let u = c.g.node("Unsqueeze", &[x, &axis], vec![]);
    let by = c.g.ints(&[1, 1, group as i64, 1, 1]);
    let e = c.g.node("Expand", &[&u, &by], vec![]);
    let shape = c.g.ints(&[0, cfg.heads as i64, -1, cfg.head_dim() as i64]);
    c.g.node("Reshape", &[&e, &shape], vec![])
}

/// The second half of layer `i` from the attention context `[1, H, S, dh]`: heads merged, the
/// output projection and residual, then RMSNorm, the SwiGLU MLP and residual.
pub(crate) fn attention_out_and_mlp(
    c: &mut Ctx<'_>,
    cfg: &LlamaConfig,
    i: usize,
    x: &str,
    ctx: &str,
) -> Result<String, ModelError> {
    let d = cfg.hidden;
    let p = format!("model.layers.{i}");
    let ctx = c.merge_heads(ctx, d);
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
