//! A reader of GGUF files (version 2 and 3): the metadata, the tensor directory, and each
//! tensor's values dequantized to f32 (F32, F16, Q8_0, Q4_1) or kept as raw blocks.
//!
//! Input: the bytes of a `.gguf` file. Output: [`Gguf`]. Every malformed or foreign file is a
//! [`ModelError::BadWeights`] naming the file and what is wrong (the offset where reading stopped,
//! the key, the tensor, the type), never a panic. Must not import `cli` or `report`.
//!
//! Layout (ggml's `gguf.h`): magic `GGUF`, version u32, tensor count u64, key-value count u64;
//! the key-values (string key, u32 type, value); the tensor infos (name, u32 dims, u64 each
//! dimension innermost first, u32 ggml type, u64 offset into the data); padding to
//! `general.alignment` (32 by default); the tensor data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod chat;
pub mod q4;
mod reader;
pub mod source;
pub mod tokenizer;

use super::error::ModelError;
pub use reader::dequantize;
use reader::{RawInfo, ReadError, Reader};

/// The four bytes every GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";
/// The data alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type (u8, u16, u32, u64).
    U64(u64),
    /// Any signed integer type (i8, i16, i32, i64).
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// bool.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// An array of one element type.
    Array(Vec<Value>),
}

/// The ggml tensor types this reader knows the block layout of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// Blocks of 32: f16 scale `d`, 32 int8; value = d * q.
    Q8_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit `q` (low nibbles are
    /// elements 0-15, high nibbles 16-31); value = d * q + m.
    Q4_1,
}

impl TensorType {
    /// The ggml type id as stored, or the id itself when this reader does not handle it.
    fn from_id(id: u32) -> Result<Self, u32> {
        match id {
            0 => Ok(TensorType::F32),
            1 => Ok(TensorType::F16),
            3 => Ok(TensorType::Q4_1),
            8 => Ok(TensorType::Q8_0),
            other => Err(other),
        }
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (u64, u64) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 => (1, 2),
            TensorType::Q8_0 => (32, 34),
            TensorType::Q4_1 => (32, 20),
        }
    }

    /// ggml's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::Q8_0 => "Q8_0",
            TensorType::Q4_1 => "Q4_1",
        }
    }
}

/// ggml's names of the types this reader does not handle, for the error that names them.
fn ggml_type_name(id: u32) -> String {
    const NAMES: [&str; 31] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    NAMES
        .get(id as usize)
        .map_or_else(|| format!("type {id}"), |n| format!("{n} (type {id})"))
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions innermost first, as ggml stores them: a `[rows, cols]` matrix is `[cols, rows]`.
    pub dims: Vec<u64>,
    /// The element type.
    pub kind: TensorType,
    /// Byte offset of the data from the start of the file.
    pub start: u64,
    /// Byte length of the data.
    pub len: u64,
}

impl TensorInfo {
    /// The number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape outermost first, as a row-major reader sees it (`[rows, cols]`).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A GGUF file held in memory.
#[derive(Debug)]
pub struct Gguf {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The format version (2 or 3).
    pub version: u32,
    /// Every metadata key and its value.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
}

impl Gguf {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// [`ModelError::Io`] when it cannot be read, [`ModelError::BadWeights`] when it is not a
    /// well-formed GGUF file of version 2 or 3.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(path, bytes)
    }

    /// Parses `bytes`, naming `path` in errors.
    ///
    /// # Errors
    /// [`ModelError::BadWeights`] when the bytes are not a well-formed GGUF file.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let bad = |m: String| ModelError::bad_weights(path, m);
        let read = |e: ReadError| bad(e.to_string());
        let mut r = Reader::new(&bytes);
        let magic = r.take(4).map_err(read)?;
        if magic != MAGIC {
            return Err(bad(format!(
                "not a GGUF file: it starts with {magic:02x?}, not the magic 'GGUF'"
            )));
        }
        let version = r.u32().map_err(read)?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!(
                "GGUF version {version} is not supported (2 and 3 are)"
            )));
        }
        let tensor_count = r.u64().map_err(read)?;
        let kv_count = r.u64().map_err(read)?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r
                .string()
                .map_err(|m| bad(format!("metadata entry {i}: {m}")))?;
            let kind = r.u32().map_err(|m| bad(format!("metadata '{key}': {m}")))?;
            let value = r
                .value(kind, 0)
                .map_err(|m| bad(format!("metadata '{key}': {m}")))?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::new();
        for i in 0..tensor_count {
            infos.push(
                r.tensor_info()
                    .map_err(|m| bad(format!("tensor {i}: {m}")))?,
            );
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U64(a)) if *a > 0 && a.is_power_of_two() => *a,
            Some(other) => {
                return Err(bad(format!(
                    "general.alignment must be a power of two, got {other:?}"
                )))
            }
        };
        let data = (r.offset() as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        for RawInfo {
            name,
            dims,
            type_id,
            offset,
        } in infos
        {
            let kind = TensorType::from_id(type_id).map_err(|id| {
                bad(format!(
                    "tensor '{name}' has quantization {}, which this reader does not handle (F32, F16, Q8_0 and Q4_1 are)",
                    ggml_type_name(id)
                ))
            })?;
            let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
            let (per, size) = kind.block();
            let len = match elements {
                Some(n) if n % per == 0 => (n / per).checked_mul(size),
                _ => None,
            }
            .ok_or_else(|| {
                bad(format!(
                    "tensor '{name}' dims {dims:?} do not fit {} blocks of {per}",
                    kind.name()
                ))
            })?;
            let start = data.checked_add(offset).filter(|s| s % alignment == 0);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(start), Some(end)) if end <= bytes.len() as u64 => tensors.push(TensorInfo {
                    name,
                    dims,
                    kind,
                    start,
                    len,
                }),
                _ => {
                    return Err(bad(format!(
                        "tensor '{name}' ({} {dims:?}) at data offset {offset} needs {len} bytes, past the end of the file ({} bytes): the file is truncated",
                        kind.name(),
                        bytes.len()
                    )))
                }
            }
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            bytes,
            version,
            metadata,
            tensors,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor named `name`.
    ///
    /// # Errors
    /// [`ModelError::BadWeights`] naming the tensor when the file lacks it.
    pub fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| {
            ModelError::bad_weights(&self.path, format!("the file has no tensor '{name}'"))
        })
    }

    /// The stored bytes of tensor `name` (its blocks as in the file).
    ///
    /// # Errors
    /// As [`Gguf::info`].
    pub fn raw(&self, name: &str) -> Result<(&TensorInfo, &[u8]), ModelError> {
        let t = self.info(name)?;
        Ok((t, &self.bytes[t.start as usize..(t.start + t.len) as usize]))
    }

    /// The values of tensor `name` as f32, row-major outermost first, dequantized exactly as
    /// ggml defines each block.
    ///
    /// # Errors
    /// As [`Gguf::info`].
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let (t, raw) = self.raw(name)?;
        Ok(dequantize(t.kind, raw))
    }

    /// The metadata value `key`.
    ///
    /// # Errors
    /// [`ModelError::BadWeights`] naming the key when it is absent.
    pub fn get(&self, key: &str) -> Result<&Value, ModelError> {
        self.metadata.get(key).ok_or_else(|| {
            ModelError::bad_weights(&self.path, format!("metadata key '{key}' is missing"))
        })
    }

    /// The unsigned integer `key`.
    ///
    /// # Errors
    /// When absent or of another type.
    pub fn u64(&self, key: &str) -> Result<u64, ModelError> {
        match self.get(key)? {
            Value::U64(v) => Ok(*v),
            Value::I64(v) if *v >= 0 => Ok(*v as u64),
            other => Err(self.wrong_type(key, "an unsigned integer", other)),
        }
    }

    /// The float `key`.
    ///
    /// # Errors
    /// When absent or of another type.
    pub fn f64(&self, key: &str) -> Result<f64, ModelError> {
        match self.get(key)? {
            Value::F64(v) => Ok(*v),
            other => Err(self.wrong_type(key, "a float", other)),
        }
    }

    /// The string `key`.
    ///
    /// # Errors
    /// When absent or of another type.
    pub fn str(&self, key: &str) -> Result<&str, ModelError> {
        match self.get(key)? {
            Value::Str(v) => Ok(v),
            other => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// The array of strings `key`.
    ///
    /// # Errors
    /// When absent or of another type.
    pub fn strings(&self, key: &str) -> Result<Vec<&str>, ModelError> {
        match self.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.as_str()),
                    other => Err(self.wrong_type(key, "an array of strings", other)),
                })
                .collect(),
            other => Err(self.wrong_type(key, "an array of strings", other)),
        }
    }

    fn wrong_type(&self, key: &str, want: &str, got: &Value) -> ModelError {
        let got = match got {
            Value::U64(_) => "an unsigned integer",
            Value::I64(_) => "a signed integer",
            Value::F64(_) => "a float",
            Value::Bool(_) => "a bool",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
        };
        ModelError::bad_weights(
            &self.path,
            format!("metadata '{key}' should be {want}, but is {got}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF file built by hand: `kvs` as (key, type, value bytes), `tensors` as (name, dims,
    /// type, data), each tensor's data aligned to 32.
    pub(crate) fn build(
        kvs: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, &[u64], u32, Vec<u8>)],
    ) -> Vec<u8> {
        let s = |v: &mut Vec<u8>, t: &str| {
            v.extend((t.len() as u64).to_le_bytes());
            v.extend(t.as_bytes());
        };
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend((tensors.len() as u64).to_le_bytes());
        f.extend((kvs.len() as u64).to_le_bytes());
        for (k, t, v) in kvs {
            s(&mut f, k);
            f.extend(t.to_le_bytes());
            f.extend(v);
        }
        let mut data = Vec::new();
        for (name, dims, t, bytes) in tensors {
            s(&mut f, name);
            f.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                f.extend(d.to_le_bytes());
            }
            f.extend(t.to_le_bytes());
            f.extend((data.len() as u64).to_le_bytes());
            data.extend(bytes);
            data.resize(data.len().div_ceil(32) * 32, 0);
        }
        f.resize(f.len().div_ceil(32) * 32, 0);
        f.extend(data);
        f
    }

    fn string_value(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    }

    fn q4_1_block(d: u16, m: u16, nibbles: [u8; 32]) -> Vec<u8> {
        let mut b = d.to_le_bytes().to_vec();
        b.extend(m.to_le_bytes());
        b.extend((0..16).map(|i| nibbles[i] | (nibbles[i + 16] << 4)));
        b
    }

    #[test]
    fn reads_metadata_and_dequantizes_each_type() {
        // Q4_1: d = 0.5, m = -1.0; q = i % 16, so value i = 0.5 * (i % 16) - 1.
        let nibbles: [u8; 32] = std::array::from_fn(|i| (i % 16) as u8);
        let q4 = q4_1_block(0x3800, 0xbc00, nibbles);
        // Q8_0: d = 2.0, q = -3 and 5 alternating.
        let mut q8 = 0x4000u16.to_le_bytes().to_vec();
        q8.extend((0..32).map(|i| if i % 2 == 0 { (-3i8) as u8 } else { 5 }));
        let f32s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut arr = 8u32.to_le_bytes().to_vec();
        arr.extend(2u64.to_le_bytes());
        arr.extend(string_value("a"));
        arr.extend(string_value("<b>"));
        let f = build(
            &[
                ("general.architecture", 8, string_value("llama")),
                ("llama.block_count", 4, 30u32.to_le_bytes().to_vec()),
                ("llama.eps", 6, 1e-5f32.to_le_bytes().to_vec()),
                ("tokenizer.ggml.tokens", 9, arr),
            ],
            &[
                ("q4", &[32], 3, q4),
                ("q8", &[32], 8, q8),
                ("f", &[2, 1], 0, f32s),
            ],
        );
        let g = Gguf::parse(Path::new("m.gguf"), f).unwrap();
        assert_eq!(g.str("general.architecture").unwrap(), "llama");
        assert_eq!(g.u64("llama.block_count").unwrap(), 30);
        assert!((g.f64("llama.eps").unwrap() - 1e-5).abs() < 1e-9);
        assert_eq!(g.strings("tokenizer.ggml.tokens").unwrap(), ["a", "<b>"]);
        let q4 = g.dequantize("q4").unwrap();
        let want: Vec<f32> = (0..32).map(|i| 0.5 * (i % 16) as f32 - 1.0).collect();
        assert_eq!(q4, want);
        let q8 = g.dequantize("q8").unwrap();
        assert_eq!(&q8[..4], &[-6.0, 10.0, -6.0, 10.0]);
        assert_eq!(g.dequantize("f").unwrap(), [1.5, -2.0]);
        assert_eq!(g.info("f").unwrap().shape(), [1, 2]);
    }

    #[test]
    fn q4_1_low_nibbles_are_the_first_half() {
        // Elements 0-15 are 1 and 16-31 are 2: swapped halves would read 2 first.
        let nibbles: [u8; 32] = std::array::from_fn(|i| if i < 16 { 1 } else { 2 });
        let v = dequantize(TensorType::Q4_1, &q4_1_block(0x3c00, 0, nibbles));
        assert_eq!(v[0], 1.0);
        assert_eq!(v[31], 2.0);
    }

    fn err(bytes: Vec<u8>) -> String {
        Gguf::parse(Path::new("/w/x.gguf"), bytes)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let e = err(b"PK\x03\x04 not a gguf at all".to_vec());
        assert!(
            e.contains("/w/x.gguf") && e.contains("not a GGUF file"),
            "{e}"
        );
        let mut v2 = b"GGUF".to_vec();
        v2.extend(7u32.to_le_bytes());
        assert!(err(v2).contains("version 7"));
        let good = build(&[], &[("t", &[64], 3, vec![0; 40])]);
        let e = err(good[..good.len() - 30].to_vec());
        assert!(e.contains("tensor 't'") && e.contains("truncated"), "{e}");
        let e = err(good[..20].to_vec());
        assert!(e.contains("truncated"), "{e}");
        let q6k = build(&[], &[("blk.0.ffn_down.weight", &[256], 14, vec![0; 210])]);
        let e = err(q6k);
        assert!(
            e.contains("blk.0.ffn_down.weight") && e.contains("Q6_K"),
            "{e}"
        );
        let odd = build(&[], &[("t", &[33], 3, vec![0; 40])]);
        assert!(err(odd).contains("do not fit Q4_1 blocks"));
    }
}
