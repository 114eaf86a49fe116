//! Transformer building blocks shared by the architectures: linear, LayerNorm, exact GELU,
//! multi-head attention, with parameters drawn from a [`WeightSource`].
//!
//! Only ops that both onnxruntime-web execution providers (WebGPU and wasm) support are used.
//! Inputs: value names and checkpoint tensor names. Outputs: value names in the [`GraphBuilder`].
//! Must not import `cli` or `report`.

use super::error::ModelError;
use super::graph::{GraphBuilder, MS_DOMAIN};
use super::onnx::AttributeProto;
use super::weights::{Init, Q4Blocks, WeightSource, Q4_BLOCK};

/// A graph under construction plus the source of its parameters.
pub struct Ctx<'a> {
    /// The graph.
    pub g: GraphBuilder,
    /// Where parameters come from.
    pub w: &'a mut dyn WeightSource,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("g", &self.g)
            .finish_non_exhaustive()
    }
}

/// Row-major `[rows, cols]` -> `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

impl<'a> Ctx<'a> {
    /// A context with an empty graph.
    pub fn new(w: &'a mut dyn WeightSource) -> Self {
        Ctx {
            g: GraphBuilder::new(),
            w,
        }
    }

    /// Fetches a parameter and adds it as an initializer named `name`.
    ///
    /// # Errors
    /// Whatever the weight source returns.
    pub fn weight(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
    ) -> Result<String, ModelError> {
        let data = self.w.tensor(name, shape, init)?;
        Ok(self.g.param(name, shape, &data))
    }

    /// `x @ W^T + b` for an HF-style Linear stored `[out, in]`; written transposed as `[in, out]`
    /// so the graph needs a plain MatMul. `bias` is the bias tensor name, if the layer has one.
    ///
    /// # Errors
    /// Whatever the weight source returns.
    pub fn linear(
        &mut self,
        x: &str,
        weight: &str,
        bias: Option<&str>,
        d_in: usize,
        d_out: usize,
    ) -> Result<String, ModelError> {
        if let Some(q) = self.w.q4_blocks(weight, d_out, d_in)? {
            let y = self.linear_q4(x, weight, &q, d_in, d_out);
            return match bias {
                Some(name) => {
                    let b = self.w.tensor(name, &[d_out], Init::Zeros)?;
                    let b = self.g.param(name, &[d_out], &b);
                    Ok(self.g.node("Add", &[&y, &b], vec![]))
                }
                None => Ok(y),
            };
        }
        let w = self.w.tensor(weight, &[d_out, d_in], Init::Normal)?;
        let b = match bias {
            Some(name) => Some((name, self.w.tensor(name, &[d_out], Init::Zeros)?)),
            None => None,
        };
        Ok(self.linear_data(
            x,
            weight,
            &w,
            b.as_ref().map(|(n, d)| (*n, d.as_slice())),
            d_in,
            d_out,
        ))
    }

    /// `x @ W^T` for `W` `[d_out, d_in]` kept in 4-bit blocks: onnxruntime's `MatMulNBits`
    /// (symmetric, zero point 8) for `scale * (code - 8)`, plus each block's offset times the
    /// sum of the 32 inputs it multiplies (a `[.., d_in / 32]` by `[d_in / 32, d_out]` MatMul),
    /// which is exact for blocks of the form `scale * code + min`.
    pub fn linear_q4(
        &mut self,
        x: &str,
        name: &str,
        q: &Q4Blocks,
        d_in: usize,
        d_out: usize,
    ) -> String {
        let blocks = d_in / Q4_BLOCK;
        let codes = self.g.param_u8(
            &format!("{name}.q4"),
            &[d_out, blocks, Q4_BLOCK / 2],
            &q.codes,
            (d_out * d_in) as u64,
        );
        let scales = self
            .g
            .const_f32(&format!("{name}.scales"), &[d_out * blocks], &q.scales);
        let attrs = vec![
            AttributeProto::int("K", d_in as i64),
            AttributeProto::int("N", d_out as i64),
            AttributeProto::int("bits", 4),
            AttributeProto::int("block_size", Q4_BLOCK as i64),
        ];
        let y = self
            .g
            .node_in(MS_DOMAIN, "MatMulNBits", &[x, &codes, &scales], attrs);
        if q.offsets.iter().all(|&o| o == 0.0) {
            return y;
        }
        let shape = self.g.ints(&[0, 0, blocks as i64, Q4_BLOCK as i64]);
        let split = self.g.node("Reshape", &[x, &shape], vec![]);
        let axes = self.g.ints(&[-1]);
        let sums = self.g.node(
            "ReduceSum",
            &[&split, &axes],
            vec![AttributeProto::int("keepdims", 0)],
        );
        let offsets = transpose(&q.offsets, d_out, blocks);
        let offsets = self
            .g
            .const_f32(&format!("{name}.offsets"), &[blocks, d_out], &offsets);
        let shift = self.g.node("MatMul", &[&sums, &offsets], vec![]);
        self.g.node("Add", &[&y, &shift], vec![])
    }

    /// Like [`Ctx::linear`] for weights already in memory (`w` is `[out, in]`).
    pub fn linear_data(
        &mut self,
        x: &str,
        name: &str,
        w: &[f32],
        bias: Option<(&str, &[f32])>,
        d_in: usize,
        d_out: usize,
    ) -> String {
        let wt = transpose(w, d_out, d_in);
        let w_name = self.g.param(name, &[d_in, d_out], &wt);
        let y = self.g.node("MatMul", &[x, &w_name], vec![]);
        match bias {
            Some((b_name, b)) => {
                let b_name = self.g.param(b_name, &[d_out], b);
                self.g.node("Add", &[&y, &b_name], vec![])
            }
            None => y,
        }
    }

    /// LayerNormalization over the last axis (opset 17).
    ///
    /// # Errors
    /// Whatever the weight source returns.
    pub fn layer_norm(
        &mut self,
        x: &str,
        gamma: &str,
        beta: &str,
        dim: usize,
        eps: f32,
    ) -> Result<String, ModelError> {
        let s = self.weight(gamma, &[dim], Init::Ones)?;
        let b = self.weight(beta, &[dim], Init::Zeros)?;
        Ok(self.g.node(
            "LayerNormalization",
            &[x, &s, &b],
            vec![
                AttributeProto::int("axis", -1),
                AttributeProto::float("epsilon", eps),
            ],
        ))
    }

    /// Exact GELU: `0.5 * x * (1 + erf(x / sqrt(2)))`.
    pub fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.g.scalar(std::f32::consts::SQRT_2);
        let one = self.g.scalar(1.0);
        let half = self.g.scalar(0.5);
        let d = self.g.node("Div", &[x, &sqrt2], vec![]);
        let e = self.g.node("Erf", &[&d], vec![]);
        let p = self.g.node("Add", &[&e, &one], vec![]);
        let m = self.g.node("Mul", &[x, &p], vec![]);
        self.g.node("Mul", &[&m, &half], vec![])
    }

    /// `[1, S, H*dh]` -> `[1, H, S, dh]` (or `[1, H, dh, S]` when `keys` is true, ready for Q @ K^T).
    pub fn split_heads(&mut self, x: &str, heads: usize, head_dim: usize, keys: bool) -> String {
        let shape = self.g.ints(&[0, 0, heads as i64, head_dim as i64]);
        let r = self.g.node("Reshape", &[x, &shape], vec![]);
        let perm: &[i64] = if keys { &[0, 2, 3, 1] } else { &[0, 2, 1, 3] };
        self.g
            .node("Transpose", &[&r], vec![AttributeProto::ints("perm", perm)])
    }

    /// `[1, H, S, dh]` -> `[1, S, H*dh]`.
    pub fn merge_heads(&mut self, x: &str, dim: usize) -> String {
        let t = self.g.node(
            "Transpose",
            &[x],
            vec![AttributeProto::ints("perm", &[0, 2, 1, 3])],
        );
        let shape = self.g.ints(&[0, 0, dim as i64]);
        self.g.node("Reshape", &[&t, &shape], vec![])
    }

    /// Scaled dot-product attention on split heads: `softmax(q k^T / sqrt(dh) + mask) v`.
    /// `q`, `v` are `[1, H, S, dh]`, `k_t` is `[1, H, dh, S]`; `mask` broadcasts to `[1, H, S, S]`.
    pub fn attention_core(
        &mut self,
        q: &str,
        k_t: &str,
        v: &str,
        head_dim: usize,
        mask: Option<&str>,
    ) -> String {
        let scale = self.g.scalar(1.0 / (head_dim as f32).sqrt());
        let qs = self.g.node("Mul", &[q, &scale], vec![]);
        let mut scores = self.g.node("MatMul", &[&qs, k_t], vec![]);
        if let Some(m) = mask {
            scores = self.g.node("Add", &[&scores, m], vec![]);
        }
        let p = self
            .g
            .node("Softmax", &[&scores], vec![AttributeProto::int("axis", -1)]);
        self.g.node("MatMul", &[&p, v], vec![])
    }

    /// Full multi-head self-attention from already-projected `q`, `k`, `v` (`[1, S, D]`) to the
    /// merged context `[1, S, D]` (before the output projection).
    pub fn self_attention(
        &mut self,
        q: &str,
        k: &str,
        v: &str,
        heads: usize,
        dim: usize,
        mask: Option<&str>,
    ) -> String {
        let dh = dim / heads;
        let qh = self.split_heads(q, heads, dh, false);
        let kh = self.split_heads(k, heads, dh, true);
        let vh = self.split_heads(v, heads, dh, false);
        let ctx = self.attention_core(&qh, &kh, &vh, dh, mask);
        self.merge_heads(&ctx, dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
