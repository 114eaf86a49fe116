//! BERT encoder (post-LN), exact to HF `BertModel`: bert-base-uncased, all-MiniLM-L6-v2, bert-tiny.
//!
//! Inputs: a [`BertConfig`] and a [`WeightSource`] answering HF checkpoint names
//! (`embeddings.word_embeddings.weight`, `encoder.layer.N.attention.self.query.weight`, ...).
//! Output: a graph with inputs `input_ids`, `attention_mask`, `token_type_ids` (int64 `[1, S]`)
//! and output `last_hidden_state` (float32 `[1, S, D]`). Must not import `cli` or `report`.

use super::blocks::Ctx;
use super::error::ModelError;
use super::onnx::{AttributeProto, ModelProto, DATA_TYPE_FLOAT, DATA_TYPE_INT64};
use super::shard::{HIDDEN_IN, HIDDEN_OUT};
use super::weights::{Init, WeightSource};

/// Architecture of a BERT encoder plus the fixed sequence length of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// Transformer layers.
    pub layers: usize,
    /// Hidden size D.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP inner size.
    pub intermediate: usize,
    /// Token vocabulary.
    pub vocab: usize,
    /// Rows of the position table.
    pub max_positions: usize,
    /// Rows of the token-type table.
    pub type_vocab: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Static sequence length S of the graph.
    pub seq_len: usize,
}

/// The additive attention bias HF BERT applies to padded positions (`(1 - mask) * -10000`).
const MASK_BIAS: f32 = -10000.0;

/// Builds encoder layers `layers` as one graph: with the embeddings when the range starts at 0
/// (else input [`HIDDEN_IN`] `[1, S, D]`; every range takes `attention_mask`, which each layer
/// reads), with output `last_hidden_state` when it ends at the last layer (else
/// [`HIDDEN_OUT`]). The whole model is `build_range(0..layers)`. Returns the graph, its
/// learned-parameter count and its output name.
///
/// # Errors
/// Whatever the weight source returns (a missing or misshapen tensor).
pub fn build_range(
    cfg: &BertConfig,
    w: &mut dyn WeightSource,
    layers: std::ops::Range<usize>,
) -> Result<(ModelProto, u64, String), ModelError> {
    let (s, d) = (cfg.seq_len, cfg.hidden);
    let dims = [1, s as i64];
    let mut c = Ctx::new(w);
    let (mask_in, mut x) = if layers.start == 0 {
        let ids = c.g.input("input_ids", DATA_TYPE_INT64, &dims);
        let mask_in = c.g.input("attention_mask", DATA_TYPE_INT64, &dims);
        let types = c.g.input("token_type_ids", DATA_TYPE_INT64, &dims);
        let x = embeddings(&mut c, cfg, &ids, &types)?;
        (mask_in, x)
    } else {
        let x =
            c.g.input(HIDDEN_IN, DATA_TYPE_FLOAT, &[1, s as i64, d as i64]);
        let mask_in = c.g.input("attention_mask", DATA_TYPE_INT64, &dims);
        (mask_in, x)
    };

    // Padding mask -> additive bias broadcast over heads and query positions: [1, 1, 1, S].
    let mf = c.g.node(
        "Cast",
        &[&mask_in],
        vec![AttributeProto::int("to", i64::from(DATA_TYPE_FLOAT))],
    );
    let one = c.g.scalar(1.0);
    let big = c.g.scalar(MASK_BIAS);
    let inv = c.g.node("Sub", &[&one, &mf], vec![]);
    let bias = c.g.node("Mul", &[&inv, &big], vec![]);
    let shape = c.g.ints(&[1, 1, 1, s as i64]);
    let mask = c.g.node("Reshape", &[&bias, &shape], vec![]);

    for i in layers.clone() {
        x = layer(&mut c, cfg, i, &x, &mask)?;
    }
    let output = if layers.end == cfg.layers {
        "last_hidden_state"
    } else {
        HIDDEN_OUT
    };
    c.g.output(&x, output, DATA_TYPE_FLOAT, &[1, s as i64, d as i64]);
    let params = c.g.parameters;
    Ok((
        c.g.finish("bert", "BERT encoder written by webgpu-pool"),
        params,
        output.to_owned(),
    ))
}

/// Word + position + token-type embeddings, then LayerNorm.
fn embeddings(
    c: &mut Ctx<'_>,
    cfg: &BertConfig,
    ids: &str,
    types: &str,
) -> Result<String, ModelError> {
    let (s, d) = (cfg.seq_len, cfg.hidden);
    let we = c.weight(
        "embeddings.word_embeddings.weight",
        &[cfg.vocab, d],
        Init::Normal,
    )?;
    let pe = c.weight(
        "embeddings.position_embeddings.weight",
        &[cfg.max_positions, d],
        Init::Normal,
    )?;
    let te = c.weight(
        "embeddings.token_type_embeddings.weight",
        &[cfg.type_vocab, d],
        Init::Normal,
    )?;
    let positions: Vec<i64> = (0..s as i64).collect();
    let pos_ids = c.g.const_i64("position_ids", &[1, s], &positions);
    let e_word = c.g.node("Gather", &[&we, ids], vec![]);
    let e_pos = c.g.node("Gather", &[&pe, &pos_ids], vec![]);
    let e_type = c.g.node("Gather", &[&te, types], vec![]);
    let e = c.g.node("Add", &[&e_word, &e_pos], vec![]);
    let e = c.g.node("Add", &[&e, &e_type], vec![]);
    c.layer_norm(
        &e,
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
        d,
        cfg.eps,
    )
}

/// One post-LN encoder layer: attention, add & norm, GELU MLP, add & norm.
fn layer(
    c: &mut Ctx<'_>,
    cfg: &BertConfig,
    i: usize,
    x: &str,
    mask: &str,
) -> Result<String, ModelError> {
    let d = cfg.hidden;
    let p = format!("encoder.layer.{i}");
    let lin = |c: &mut Ctx<'_>, x: &str, name: &str, d_in: usize, d_out: usize| {
        c.linear(
            x,
            &format!("{p}.{name}.weight"),
            Some(&format!("{p}.{name}.bias")),
            d_in,
            d_out,
        )
    };
    let q = lin(c, x, "attention.self.query", d, d)?;
    let k = lin(c, x, "attention.self.key", d, d)?;
    let v = lin(c, x, "attention.self.value", d, d)?;
    let ctx = c.self_attention(&q, &k, &v, cfg.heads, d, Some(mask));
    let a = lin(c, &ctx, "attention.output.dense", d, d)?;
    let r = c.g.node("Add", &[&a, x], vec![]);
    let ln = format!("{p}.attention.output.LayerNorm");
    let x = c.layer_norm(
        &r,
        &format!("{ln}.weight"),
        &format!("{ln}.bias"),
        d,
        cfg.eps,
    )?;
    let h = lin(c, &x, "intermediate.dense", d, cfg.intermediate)?;
    let h = c.gelu(&h);
    let o = lin(c, &h, "output.dense", cfg.intermediate, d)?;
    let r = c.g.node("Add", &[&o, &x], vec![]);
    let ln = format!("{p}.output.LayerNorm");
    c.layer_norm(
        &r,
        &format!("{ln}.weight"),
        &format!("{ln}.bias"),
        d,
        cfg.eps,
    )
}
