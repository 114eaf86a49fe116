//! Vision Transformer (pre-LN), exact to HF `ViTForImageClassification`: ViT-B/16, ViT-Ti/16, a micro test variant.
//!
//! Inputs: a [`VitConfig`] and a [`WeightSource`] answering HF names (`vit.embeddings.cls_token`,
//! `vit.encoder.layer.N.attention.attention.query.weight`, `classifier.weight`, ...).
//! Output: a graph with input `pixel_values` (float32 `[1, 3, H, W]`) and output `logits`
//! (float32 `[1, classes]`, from the CLS token). Must not import `cli` or `report`.

use super::blocks::Ctx;
use super::error::ModelError;
use super::onnx::{AttributeProto, ModelProto, DATA_TYPE_FLOAT};
use super::weights::{Init, WeightSource};

/// Architecture of a ViT classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    /// Transformer layers.
    pub layers: usize,
    /// Hidden size D.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP inner size.
    pub intermediate: usize,
    /// Square input side in pixels.
    pub image_size: usize,
    /// Square patch side (conv kernel and stride).
    pub patch: usize,
    /// Output classes.
    pub classes: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// The output is `log_probs` (a `LogSoftmax` over the logits) instead of `logits`: an
    /// operator onnxruntime-web's WebNN EP does not take, so onnxruntime runs that node on wasm
    /// and the rest on WebNN (what the `vit-micro-logprobs` test variant shows).
    pub log_probs: bool,
}

impl VitConfig {
    /// Tokens after patching, CLS included.
    pub fn tokens(&self) -> usize {
        let side = self.image_size / self.patch;
        side * side + 1
    }
}

/// Builds the graph; returns it with its learned-parameter count.
///
/// # Errors
/// Whatever the weight source returns.
pub fn build(cfg: &VitConfig, w: &mut dyn WeightSource) -> Result<(ModelProto, u64), ModelError> {
    let d = cfg.hidden;
    let n = cfg.tokens();
    let side = cfg.image_size as i64;
    let mut c = Ctx::new(w);
    let px =
        c.g.input("pixel_values", DATA_TYPE_FLOAT, &[1, 3, side, side]);
    let kw = c.weight(
        "vit.embeddings.patch_embeddings.projection.weight",
        &[d, 3, cfg.patch, cfg.patch],
        Init::Normal,
    )?;
    let kb = c.weight(
        "vit.embeddings.patch_embeddings.projection.bias",
        &[d],
        Init::Zeros,
    )?;
    let p = cfg.patch as i64;
    let conv = c.g.node(
        "Conv",
        &[&px, &kw, &kb],
        vec![
            AttributeProto::ints("kernel_shape", &[p, p]),
            AttributeProto::ints("strides", &[p, p]),
        ],
    );
    let flat_shape = c.g.ints(&[0, 0, -1]);
    let flat = c.g.node("Reshape", &[&conv, &flat_shape], vec![]);
    let patches = c.g.node(
        "Transpose",
        &[&flat],
        vec![AttributeProto::ints("perm", &[0, 2, 1])],
    );
    let cls = c.weight("vit.embeddings.cls_token", &[1, 1, d], Init::Normal)?;
    let tokens = c.g.node(
        "Concat",
        &[&cls, &patches],
        vec![AttributeProto::int("axis", 1)],
    );
    let pos = c.weight(
        "vit.embeddings.position_embeddings",
        &[1, n, d],
        Init::Normal,
    )?;
    let mut x = c.g.node("Add", &[&tokens, &pos], vec![]);

    for i in 0..cfg.layers {
        x = layer(&mut c, cfg, i, &x)?;
    }
    let x = c.layer_norm(&x, "vit.layernorm.weight", "vit.layernorm.bias", d, cfg.eps)?;
    let zero = c.g.const_i64("cls_index", &[], &[0]);
    let cls_out =
        c.g.node("Gather", &[&x, &zero], vec![AttributeProto::int("axis", 1)]);
    let logits = c.linear(
        &cls_out,
        "classifier.weight",
        Some("classifier.bias"),
        d,
        cfg.classes,
    )?;
    let (out, name) = if cfg.log_probs {
        let p = c.g.node(
            "LogSoftmax",
            &[&logits],
            vec![AttributeProto::int("axis", -1)],
        );
        (p, "log_probs")
    } else {
        (logits, "logits")
    };
    c.g.output(&out, name, DATA_TYPE_FLOAT, &[1, cfg.classes as i64]);
    let params = c.g.parameters;
    Ok((
        c.g.finish("vit", "ViT classifier written by webgpu-pool"),
        params,
    ))
}

/// One pre-LN layer: `x + attn(LN(x))`, then `x + mlp(LN(x))`.
fn layer(c: &mut Ctx<'_>, cfg: &VitConfig, i: usize, x: &str) -> Result<String, ModelError> {
    let d = cfg.hidden;
    let p = format!("vit.encoder.layer.{i}");
    let lin = |c: &mut Ctx<'_>, x: &str, name: &str, d_in: usize, d_out: usize| {
        c.linear(
            x,
            &format!("{p}.{name}.weight"),
            Some(&format!("{p}.{name}.bias")),
            d_in,
            d_out,
        )
    };
    let h = c.layer_norm(
        x,
        &format!("{p}.layernorm_before.weight"),
        &format!("{p}.layernorm_before.bias"),
        d,
        cfg.eps,
    )?;
    let q = lin(c, &h, "attention.attention.query", d, d)?;
    let k = lin(c, &h, "attention.attention.key", d, d)?;
    let v = lin(c, &h, "attention.attention.value", d, d)?;
    let ctx = c.self_attention(&q, &k, &v, cfg.heads, d, None);
    let a = lin(c, &ctx, "attention.output.dense", d, d)?;
    let x = c.g.node("Add", &[&a, x], vec![]);
    let h = c.layer_norm(
        &x,
        &format!("{p}.layernorm_after.weight"),
        &format!("{p}.layernorm_after.bias"),
        d,
        cfg.eps,
    )?;
    let h = lin(c, &h, "intermediate.dense", d, cfg.intermediate)?;
    let h = c.gelu(&h);
    let o = lin(c, &h, "output.dense", cfg.intermediate, d)?;
    Ok(c.g.node("Add", &[&o, &x], vec![]))
}
