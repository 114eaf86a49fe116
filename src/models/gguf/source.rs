//! A GGUF file as a [`WeightSource`] answering HF `LlamaForCausalLM` names, and the
//! [`LlamaConfig`] its metadata describes.
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so its RoPE can rotate
//! adjacent pairs; the graphs here rotate halves as HF does, so those rows are put back in HF
//! order on the way out ([`unpermute_rows`]). The output head is tied: `lm_head.weight` is
//! `token_embd.weight`. Must not import `cli` or `report`.

use std::path::Path;

use super::q4::{q4_1_blocks, unpermute_blocks};
use super::{Gguf, TensorType};
use crate::models::error::ModelError;
use crate::models::llama::LlamaConfig;
use crate::models::weights::{Init, Q4Blocks, WeightSource, Q4_BLOCK};

/// A GGUF llama checkpoint, dequantized tensor by tensor as the graph asks, or its Q4_1
/// matrices kept 4-bit ([`GgufWeights::keeping_q4`]).
#[derive(Debug)]
pub struct GgufWeights {
    file: Gguf,
    heads: usize,
    kv_heads: usize,
    keep_q4: bool,
}

impl GgufWeights {
    /// Wraps a parsed file after checking it holds a llama model.
    ///
    /// # Errors
    /// [`ModelError::BadWeights`] when the architecture is not llama or a key is missing.
    pub fn new(file: Gguf) -> Result<Self, ModelError> {
        let cfg = config(&file, 0)?;
        Ok(GgufWeights {
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            file,
            keep_q4: false,
        })
    }

    /// The source that gives its Q4_1 matrices to the graph as 4-bit blocks.
    pub fn keeping_q4(mut self) -> Self {
        self.keep_q4 = true;
        self
    }

    /// The GGUF name of `name`, checked to have `shape`, and its RoPE permutation's heads.
    fn lookup(&self, name: &str, shape: &[usize]) -> Result<(String, Option<usize>), ModelError> {
        let (gname, perm) = gguf_name(name, self.heads, self.kv_heads).ok_or_else(|| {
            ModelError::bad_weights(
                self.file.path(),
                format!("no GGUF tensor corresponds to '{name}'"),
            )
        })?;
        let info = self.file.info(&gname)?;
        if info.shape() != shape {
            return Err(ModelError::bad_weights(
                self.file.path(),
                format!(
                    "tensor '{gname}' (for '{name}') has shape {:?}, expected {shape:?}",
                    info.shape()
                ),
            ));
        }
        Ok((gname, perm))
    }

    /// The parsed file.
    pub fn file(&self) -> &Gguf {
        &self.file
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// The decoder described by a llama GGUF file's metadata, with sequence length `seq_len`.
///
/// # Errors
/// [`ModelError::BadWeights`] naming the file and the key when it is not a llama model or a
/// number is missing or inconsistent.
pub fn config(g: &Gguf, seq_len: usize) -> Result<LlamaConfig, ModelError> {
    let arch = g.str("general.architecture")?;
    if arch != "llama" {
        return Err(ModelError::bad_weights(
            g.path(),
            format!("general.architecture is '{arch}'; only llama models are supported"),
        ));
    }
    let n = |k: &str| g.u64(&format!("llama.{k}")).map(|v| v as usize);
    let cfg = LlamaConfig {
        layers: n("block_count")?,
        hidden: n("embedding_length")?,
        heads: n("attention.head_count")?,
        kv_heads: n("attention.head_count_kv")?,
        intermediate: n("feed_forward_length")?,
        vocab: g.info("token_embd.weight")?.shape()[0],
        seq_len,
        eps: g.f64("llama.attention.layer_norm_rms_epsilon")? as f32,
        rope_theta: g.f64("llama.rope.freq_base")? as f32,
        tied_embeddings: g.info("output.weight").is_err(),
    };
    let bad = |m: String| Err(ModelError::bad_weights(g.path(), m));
    if cfg.heads == 0 || cfg.kv_heads == 0 || cfg.heads % cfg.kv_heads != 0 {
        return bad(format!(
            "{} attention heads cannot share {} key/value heads",
            cfg.heads, cfg.kv_heads
        ));
    }
    if cfg.hidden % cfg.heads != 0 || (cfg.hidden / cfg.heads) % 2 != 0 {
        return bad(format!(
            "hidden size {} over {} heads is not an even head size",
            cfg.hidden, cfg.heads
        ));
    }
    if let Ok(rope) = n("rope.dimension_count") {
        if rope != cfg.hidden / cfg.heads {
            return bad(format!(
                "llama.rope.dimension_count {rope} differs from the head size {}: partial rotary embeddings are not supported",
                cfg.hidden / cfg.heads
            ));
        }
    }
    Ok(cfg)
}

/// The GGUF name of an HF `LlamaForCausalLM` tensor name, and whether its rows are permuted
/// for RoPE (with the head count that permutation used).
fn gguf_name(hf: &str, heads: usize, kv_heads: usize) -> Option<(String, Option<usize>)> {
    match hf {
        "model.embed_tokens.weight" => return Some(("token_embd.weight".into(), None)),
        "model.norm.weight" => return Some(("output_norm.weight".into(), None)),
        "lm_head.weight" => return Some(("output.weight".into(), None)),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (i, part) = rest.split_once('.')?;
    let (name, perm) = match part {
        "input_layernorm.weight" => ("attn_norm", None),
        "post_attention_layernorm.weight" => ("ffn_norm", None),
        "self_attn.q_proj.weight" => ("attn_q", Some(heads)),
        "self_attn.k_proj.weight" => ("attn_k", Some(kv_heads)),
        "self_attn.v_proj.weight" => ("attn_v", None),
        "self_attn.o_proj.weight" => ("attn_output", None),
        "mlp.gate_proj.weight" => ("ffn_gate", None),
        "mlp.up_proj.weight" => ("ffn_up", None),
        "mlp.down_proj.weight" => ("ffn_down", None),
        _ => return None,
    };
    Some((format!("blk.{i}.{name}.weight"), perm))
}

/// Undoes llama.cpp's RoPE row permutation of a `[heads * dh, cols]` matrix: the stored row
/// `h*dh + 2*i + t` is HF's row `h*dh + t*dh/2 + i`.
pub fn unpermute_rows<T: Copy + Default>(data: &[T], heads: usize, cols: usize) -> Vec<T> {
    let rows = data.len() / cols;
    let dh = rows / heads;
    let half = dh / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for i in 0..half {
            for t in 0..2 {
                let stored = h * dh + 2 * i + t;
                let hf = h * dh + t * half + i;
                out[hf * cols..(hf + 1) * cols]
                    .copy_from_slice(&data[stored * cols..(stored + 1) * cols]);
            }
        }
    }
    out
}

impl WeightSource for GgufWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>, ModelError> {
        let (gname, perm) = self.lookup(name, shape)?;
        let data = self.file.dequantize(&gname)?;
        Ok(match perm {
            Some(heads) => unpermute_rows(&data, heads, shape[1]),
            None => data,
        })
    }

    fn q4_blocks(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<Q4Blocks>, ModelError> {
        if !self.keep_q4 || cols % Q4_BLOCK != 0 {
            return Ok(None);
        }
        let (gname, perm) = self.lookup(name, &[rows, cols])?;
        let (info, raw) = self.file.raw(&gname)?;
        if info.kind != TensorType::Q4_1 {
            return Ok(None);
        }
        let q = q4_1_blocks(raw, rows, cols);
        Ok(Some(match perm {
            Some(heads) => unpermute_blocks(&q, heads, cols),
            None => q,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `permute` from `convert_hf_to_gguf.py`, on row indices:
    /// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
    fn llama_cpp_permute(rows: &[f32], heads: usize, cols: usize) -> Vec<f32> {
        let n = rows.len() / cols;
        let half = n / heads / 2;
        let mut out = Vec::with_capacity(rows.len());
        for h in 0..heads {
            for i in 0..half {
                for t in 0..2 {
                    let src = h * 2 * half + t * half + i;
                    out.extend_from_slice(&rows[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_converters_permutation() {
        let (heads, dh, cols) = (3, 8, 2);
        let hf: Vec<f32> = (0..heads * dh * cols).map(|v| v as f32).collect();
        let stored = llama_cpp_permute(&hf, heads, cols);
        assert_ne!(stored, hf);
        assert_eq!(unpermute_rows(&stored, heads, cols), hf);
    }

    #[test]
    fn names_map_to_gguf() {
        assert_eq!(
            gguf_name("model.layers.7.self_attn.k_proj.weight", 9, 3),
            Some(("blk.7.attn_k.weight".into(), Some(3)))
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight", 9, 3),
            Some(("blk.0.ffn_down.weight".into(), None))
        );
        assert_eq!(gguf_name("model.layers.0.rotary.inv_freq", 9, 3), None);
    }
}
