//! Where parameter values come from: the [`WeightSource`] trait and the seeded source.
//!
//! Architectures ask for each tensor by its checkpoint name and checkpoint shape (for HF Linear
//! layers that is `[out, in]`); the graph code transposes. Real sources (`safetensors_source`,
//! `ct2_source`) look the name up in a file; [`SeededWeights`] makes values from (seed, name).
//! Must not import `cli` or `report`.

use super::error::ModelError;
use crate::rng::Seeded;

/// The standard deviation of seeded matrices and embeddings (BERT's `initializer_range`).
pub const SEEDED_STD: f32 = 0.02;

/// How a seeded source fills a tensor (real sources ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// N(0, 0.02^2): matrices, embeddings, conv kernels.
    Normal,
    /// All ones: norm gains.
    Ones,
    /// All zeros: biases, norm shifts.
    Zeros,
}

/// A matrix `[rows, cols]` kept in blocks of 32 4-bit codes along each row: element
/// `[r, 32*b + j]` is `scales[r, b] * (code - 8) + offsets[r, b]` (offset 0 for a symmetric
/// block). The codes of a block are packed two a byte, the lower-numbered element in the low
/// nibble: onnxruntime's `MatMulNBits` layout with its default zero point, 8.
#[derive(Debug, Clone, PartialEq)]
pub struct Q4Blocks {
    /// `[rows, cols / 32, 16]` bytes.
    pub codes: Vec<u8>,
    /// `[rows, cols / 32]`.
    pub scales: Vec<f32>,
    /// `[rows, cols / 32]`.
    pub offsets: Vec<f32>,
}

/// Elements of one 4-bit block.
pub const Q4_BLOCK: usize = 32;

/// A provider of named f32 tensors.
pub trait WeightSource {
    /// The tensor `name` with exactly `shape` (checkpoint layout), as row-major f32.
    ///
    /// # Errors
    /// [`ModelError::BadWeights`] when a real source lacks the tensor or its shape differs.
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError>;

    /// The matrix `name` (`[rows, cols]`) in 4-bit blocks, when the source holds it so and the
    /// graph is to keep it so; `None` (the default) gives the graph f32 values.
    ///
    /// # Errors
    /// As [`WeightSource::tensor`].
    fn q4_blocks(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<Q4Blocks>, ModelError> {
        let _ = (name, rows, cols);
        Ok(None)
    }
}

/// Deterministic seeded values: N(0, 0.02) per [`Init::Normal`], ones, zeros.
#[derive(Debug, Clone)]
pub struct SeededWeights {
    seed: u64,
}

impl SeededWeights {
    /// A source whose every tensor is a function of (`seed`, tensor name).
    pub fn new(seed: u64) -> Self {
        SeededWeights { seed }
    }
}

impl WeightSource for SeededWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError> {
        let n: usize = shape.iter().product();
        Ok(match init {
            Init::Normal => Seeded::for_stream(self.seed, name).normals(n, SEEDED_STD),
            Init::Ones => vec![1.0; n],
            Init::Zeros => vec![0.0; n],
        })
    }
}

/// Converts an IEEE 754 half-precision value to f32 (subnormals, infinities and NaN included).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    let out = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(out)
}

/// Converts a bfloat16 value to f32.
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Decodes little-endian element bytes of a float dtype into f32.
pub(crate) fn decode_le(bytes: &[u8], width: usize, f: impl Fn(&[u8]) -> f32) -> Vec<f32> {
    bytes.chunks_exact(width).map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_tensor_depends_only_on_seed_and_name() {
        let mut a = SeededWeights::new(3);
        let x = a.tensor("w", &[4, 4], Init::Normal).unwrap();
        let _ = a.tensor("other", &[10], Init::Normal).unwrap();
        let y = SeededWeights::new(3)
            .tensor("w", &[4, 4], Init::Normal)
            .unwrap();
        assert_eq!(x, y);
        assert_eq!(a.tensor("g", &[2], Init::Ones).unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn half_conversions() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }
}
