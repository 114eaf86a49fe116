//! GGUF Q4_1 blocks as the graph's 4-bit blocks ([`Q4Blocks`]), unchanged in value: a Q4_1
//! element `d * q + m` is `d * (q - 8) + (m + 8 d)`, a symmetric 4-bit block (onnxruntime's
//! `MatMulNBits` with its default zero point) plus a per-block offset. The codes are repacked
//! from Q4_1's halves (low nibbles elements 0-15, high nibbles 16-31) to `MatMulNBits`'s pairs
//! (byte `j` holds elements `2j` and `2j + 1`, the first in the low nibble). Must not import
//! `cli` or `report`.

use crate::models::weights::{f16_to_f32, Q4Blocks, Q4_BLOCK};

/// Bytes of one Q4_1 block: f16 `d`, f16 `m`, 16 bytes of codes.
const Q4_1_BYTES: usize = 20;

/// The `[rows, cols]` matrix stored as Q4_1 in `raw` (`rows * cols / 32` blocks, row-major).
/// `cols` must be a multiple of 32 and `raw` hold exactly the blocks (the reader checked).
pub fn q4_1_blocks(raw: &[u8], rows: usize, cols: usize) -> Q4Blocks {
    let n = rows * cols / Q4_BLOCK;
    let mut out = Q4Blocks {
        codes: Vec::with_capacity(n * Q4_BLOCK / 2),
        scales: Vec::with_capacity(n),
        offsets: Vec::with_capacity(n),
    };
    for block in raw.chunks_exact(Q4_1_BYTES).take(n) {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
        let qs = &block[4..];
        let code = |e: usize| {
            if e < 16 {
                qs[e] & 0x0f
            } else {
                qs[e - 16] >> 4
            }
        };
        for j in 0..Q4_BLOCK / 2 {
            out.codes.push(code(2 * j) | (code(2 * j + 1) << 4));
        }
        out.scales.push(d);
        out.offsets.push(m + 8.0 * d);
    }
    out
}

/// Undoes llama.cpp's RoPE row permutation on blocks: as
/// [`unpermute_rows`](super::source::unpermute_rows), each of the `heads * dh` rows being
/// `cols / 32` blocks.
pub fn unpermute_blocks(q: &Q4Blocks, heads: usize, cols: usize) -> Q4Blocks {
    let blocks = cols / Q4_BLOCK;
    Q4Blocks {
        codes: super::source::unpermute_rows(&q.codes, heads, blocks * Q4_BLOCK / 2),
        scales: super::source::unpermute_rows(&q.scales, heads, blocks),
        offsets: super::source::unpermute_rows(&q.offsets, heads, blocks),
    }
}

/// The values of `q` (`[rows, cols]`), as the graph computes them.
pub fn values(q: &Q4Blocks) -> Vec<f32> {
    let mut out = Vec::with_capacity(q.scales.len() * Q4_BLOCK);
    for (b, (&s, &o)) in q.scales.iter().zip(&q.offsets).enumerate() {
        for &byte in &q.codes[b * Q4_BLOCK / 2..(b + 1) * Q4_BLOCK / 2] {
            for code in [byte & 0x0f, byte >> 4] {
                out.push(s * (f32::from(code) - 8.0) + o);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gguf::{dequantize, TensorType};

    /// A Q4_1 block of f16 scale bits `d`, minimum bits `m` and codes `q` (element order).
    fn block(d: u16, m: u16, q: &[u8; 32]) -> Vec<u8> {
        let mut b = d.to_le_bytes().to_vec();
        b.extend(m.to_le_bytes());
        for j in 0..16 {
            b.push(q[j] | (q[j + 16] << 4));
        }
        b
    }

    #[test]
    fn repacked_blocks_keep_every_value_and_their_order() {
        let mut raw = Vec::new();
        let mut q = [0u8; 32];
        for (e, c) in q.iter_mut().enumerate() {
            *c = (e % 16) as u8 ^ ((e / 16) as u8 * 5);
        }
        // 0.5 and -1.25, then 0.03125 and 0.75, as f16 bits.
        raw.extend(block(0x3800, 0xbd00, &q));
        q.reverse();
        raw.extend(block(0x2800, 0x3a00, &q));
        let want = dequantize(TensorType::Q4_1, &raw);
        let got = values(&q4_1_blocks(&raw, 1, 64));
        assert_eq!(got.len(), want.len());
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "element {e}: {g} != {w}"
            );
        }
        // Elements 0 and 1 share byte 0 (low nibble first), not elements 0 and 16.
        let first = q4_1_blocks(&raw, 1, 64).codes[0];
        assert_eq!(first & 0x0f, 0);
        assert_eq!(first >> 4, 1);
    }
}
