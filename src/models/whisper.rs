//! Whisper audio encoder (pre-LN), exact to OpenAI/HF whisper's `AudioEncoder`.
//!
//! Inputs: a [`WhisperConfig`] and a [`WeightSource`] answering CTranslate2 `WhisperSpec` names
//! (`encoder/conv1/weight`, `encoder/layer_N/self_attention/linear_0/weight` with fused Q,K,V, ...),
//! which both the real CT2 checkpoint and the seeded source serve.
//! Output: a graph with input `input_features` (float32 `[1, mels, frames]`) and output
//! `last_hidden_state` (float32 `[1, frames / 2, D]`). Must not import `cli` or `report`.

use super::blocks::Ctx;
use super::error::ModelError;
use super::onnx::{AttributeProto, ModelProto, DATA_TYPE_FLOAT};
use super::shard::{HIDDEN_IN, HIDDEN_OUT};
use super::weights::{Init, WeightSource};
use super::WeightsKind;

/// Architecture of a whisper encoder plus its fixed input length.
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperConfig {
    /// Transformer layers.
    pub layers: usize,
    /// Model width D.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP inner size.
    pub intermediate: usize,
    /// Mel bins (input channels).
    pub mels: usize,
    /// Input frames (10 ms hop); the encoder emits `frames / 2` positions.
    pub frames: usize,
}

/// Whisper's LayerNorm epsilon (PyTorch default).
const EPS: f32 = 1e-5;

/// Whisper's sinusoidal position table `[length, channels]`: `[sin | cos]` halves with
/// timescales `10000^(i / (channels/2 - 1))`.
pub fn sinusoids(length: usize, channels: usize) -> Vec<f32> {
    let half = channels / 2;
    let inc = (10000f64).ln() / (half.saturating_sub(1).max(1)) as f64;
    let mut out = vec![0.0; length * channels];
    for t in 0..length {
        for i in 0..half {
            let arg = t as f64 * (-inc * i as f64).exp();
            out[t * channels + i] = arg.sin() as f32;
            out[t * channels + half + i] = arg.cos() as f32;
        }
    }
    out
}

/// Builds encoder layers `layers` as one graph (the whole model is `0..layers`; with real
/// weights the position table is read from the checkpoint, seeded models compute it): with the convolution stem and positions when the
/// range starts at 0 (else input [`HIDDEN_IN`] `[1, frames/2, D]`), with the final LayerNorm and
/// output `last_hidden_state` when it ends at the last layer (else [`HIDDEN_OUT`]). The whole
/// model is `build_range(0..layers)`. Returns the graph, its parameter count and output name.
///
/// # Errors
/// Whatever the weight source returns.
pub fn build_range(
    cfg: &WhisperConfig,
    w: &mut dyn WeightSource,
    kind: WeightsKind,
    layers: std::ops::Range<usize>,
) -> Result<(ModelProto, u64, String), ModelError> {
    let d = cfg.hidden;
    let positions = cfg.frames / 2;
    let mut c = Ctx::new(w);
    let mut x = if layers.start == 0 {
        stem(&mut c, cfg, kind)?
    } else {
        c.g.input(HIDDEN_IN, DATA_TYPE_FLOAT, &[1, positions as i64, d as i64])
    };
    for i in layers.clone() {
        x = layer(&mut c, cfg, i, &x)?;
    }
    let output = if layers.end == cfg.layers {
        x = c.layer_norm(
            &x,
            "encoder/layer_norm/gamma",
            "encoder/layer_norm/beta",
            d,
            EPS,
        )?;
        "last_hidden_state"
    } else {
        HIDDEN_OUT
    };
    c.g.output(
        &x,
        output,
        DATA_TYPE_FLOAT,
        &[1, positions as i64, d as i64],
    );
    let params = c.g.parameters;
    Ok((
        c.g.finish("whisper_encoder", "Whisper encoder written by webgpu-pool"),
        params,
        output.to_owned(),
    ))
}

/// Input `input_features`, two convolutions with GELU, then the position table.
fn stem(c: &mut Ctx<'_>, cfg: &WhisperConfig, kind: WeightsKind) -> Result<String, ModelError> {
    let d = cfg.hidden;
    let positions = cfg.frames / 2;
    let x = c.g.input(
        "input_features",
        DATA_TYPE_FLOAT,
        &[1, cfg.mels as i64, cfg.frames as i64],
    );
    let w1 = c.weight("encoder/conv1/weight", &[d, cfg.mels, 3], Init::Normal)?;
    let b1 = c.weight("encoder/conv1/bias", &[d], Init::Zeros)?;
    let h = c.g.node(
        "Conv",
        &[&x, &w1, &b1],
        vec![
            AttributeProto::ints("kernel_shape", &[3]),
            AttributeProto::ints("pads", &[1, 1]),
        ],
    );
    let h = c.gelu(&h);
    let w2 = c.weight("encoder/conv2/weight", &[d, d, 3], Init::Normal)?;
    let b2 = c.weight("encoder/conv2/bias", &[d], Init::Zeros)?;
    let h = c.g.node(
        "Conv",
        &[&h, &w2, &b2],
        vec![
            AttributeProto::ints("kernel_shape", &[3]),
            AttributeProto::ints("strides", &[2]),
            AttributeProto::ints("pads", &[1, 1]),
        ],
    );
    let h = c.gelu(&h);
    let h = c.g.node(
        "Transpose",
        &[&h],
        vec![AttributeProto::ints("perm", &[0, 2, 1])],
    );
    let table = match kind {
        WeightsKind::Real => c.w.tensor(
            "encoder/position_encodings/encodings",
            &[positions, d],
            Init::Zeros,
        )?,
        WeightsKind::Seeded => sinusoids(positions, d),
    };
    let pos = c.g.const_f32(
        "encoder/position_encodings/encodings",
        &[positions, d],
        &table,
    );
    Ok(c.g.node("Add", &[&h, &pos], vec![]))
}

/// One pre-LN layer. CT2 stores Q, K, V fused as `linear_0` (`[3D, D]`, rows Q then K then V;
/// K's bias is zero as whisper's key projection has none); we split it back into three MatMuls.
fn layer(c: &mut Ctx<'_>, cfg: &WhisperConfig, i: usize, x: &str) -> Result<String, ModelError> {
    let d = cfg.hidden;
    let p = format!("encoder/layer_{i}");
    let sa = format!("{p}/self_attention");
    let h = c.layer_norm(
        x,
        &format!("{sa}/layer_norm/gamma"),
        &format!("{sa}/layer_norm/beta"),
        d,
        EPS,
    )?;
    let qkv_w =
        c.w.tensor(&format!("{sa}/linear_0/weight"), &[3 * d, d], Init::Normal)?;
    let qkv_b =
        c.w.tensor(&format!("{sa}/linear_0/bias"), &[3 * d], Init::Zeros)?;
    let mut proj = Vec::with_capacity(3);
    for (j, part) in ["q", "k", "v"].iter().enumerate() {
        let wn = format!("{sa}/linear_0/weight/{part}");
        let bn = format!("{sa}/linear_0/bias/{part}");
        let w = &qkv_w[j * d * d..(j + 1) * d * d];
        let b = &qkv_b[j * d..(j + 1) * d];
        proj.push(c.linear_data(&h, &wn, w, Some((&bn, b)), d, d));
    }
    let ctx = c.self_attention(&proj[0], &proj[1], &proj[2], cfg.heads, d, None);
    let a = c.linear(
        &ctx,
        &format!("{sa}/linear_1/weight"),
        Some(&format!("{sa}/linear_1/bias")),
        d,
        d,
    )?;
    let x = c.g.node("Add", &[&a, x], vec![]);
    let f = format!("{p}/ffn");
    let h = c.layer_norm(
        &x,
        &format!("{f}/layer_norm/gamma"),
        &format!("{f}/layer_norm/beta"),
        d,
        EPS,
    )?;
    let h = c.linear(
        &h,
        &format!("{f}/linear_0/weight"),
        Some(&format!("{f}/linear_0/bias")),
        d,
        cfg.intermediate,
    )?;
    let h = c.gelu(&h);
    let o = c.linear(
        &h,
        &format!("{f}/linear_1/weight"),
        Some(&format!("{f}/linear_1/bias")),
        cfg.intermediate,
        d,
    )?;
    Ok(c.g.node("Add", &[&o, &x], vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoid_table_starts_with_sin0_cos0() {
        let t = sinusoids(3, 4);
        assert_eq!(&t[0..4], &[0.0, 0.0, 1.0, 1.0]);
        assert!((t[4] - 1f32.sin()).abs() < 1e-7);
        // Last timescale is 1/10000.
        assert!((t[5] - (1e-4f32).sin()).abs() < 1e-7);
    }
}
