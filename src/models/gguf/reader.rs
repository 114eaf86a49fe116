//! The byte-level half of the GGUF reader: a cursor whose errors say where reading stopped, and
//! the block dequantizers. Must not import `cli` or `report`.

use super::{TensorType, Value};
use crate::models::weights::f16_to_f32;

/// Dequantizes `raw`, whole blocks of `kind`, to f32.
pub fn dequantize(kind: TensorType, raw: &[u8]) -> Vec<f32> {
    let h = |b: &[u8]| f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    match kind {
        TensorType::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        TensorType::F16 => raw.chunks_exact(2).map(h).collect(),
        TensorType::Q8_0 => {
            let mut out = Vec::with_capacity(raw.len() / 34 * 32);
            for b in raw.chunks_exact(34) {
                let d = h(&b[0..2]);
                out.extend(b[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
            out
        }
        TensorType::Q4_1 => {
            let mut out = Vec::with_capacity(raw.len() / 20 * 32);
            for b in raw.chunks_exact(20) {
                let (d, m) = (h(&b[0..2]), h(&b[2..4]));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
            out
        }
    }
}

/// A cursor over the file's bytes; its errors say where reading stopped.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Arrays nested deeper than this are refused (a corrupt type byte could otherwise recurse).
const MAX_NESTING: usize = 4;

/// Why the bytes at some offset are not what GGUF puts there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ReadError {
    /// A read runs past the end of the file.
    #[error("needs {need} bytes at offset {at}, past the end of the file ({len} bytes): the file is truncated")]
    Truncated { need: u64, at: usize, len: usize },
    /// A string's bytes are not UTF-8.
    #[error("string at offset {at} is not UTF-8")]
    NotUtf8 { at: usize },
    /// A bool byte other than 0 or 1.
    #[error("bool at offset {at} is {value}, not 0 or 1")]
    BadBool { at: usize, value: u8 },
    /// Arrays of arrays past [`MAX_NESTING`].
    #[error("arrays nested over {MAX_NESTING} deep at offset {at}")]
    TooDeep { at: usize },
    /// An array count larger than the bytes left could hold.
    #[error("array at offset {at} claims {count} elements, more than the file holds: the file is truncated or corrupt")]
    ArrayTooLong { at: usize, count: u64 },
    /// A value type id GGUF does not define.
    #[error("value type {kind} at offset {at} is not a GGUF type")]
    UnknownType { at: usize, kind: u32 },
    /// A tensor with no dimensions or more than 4.
    #[error("tensor '{name}' has {dims} dimensions (1 to 4 are valid)")]
    BadRank { name: String, dims: u32 },
}

/// One tensor directory entry as stored, before its type and extent are checked.
pub(super) struct RawInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub offset: u64,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Where the next read starts.
    pub(super) fn offset(&self) -> usize {
        self.at
    }

    pub(super) fn take(&mut self, n: u64) -> Result<&[u8], ReadError> {
        let end = (self.at as u64).checked_add(n);
        match end {
            Some(end) if end <= self.bytes.len() as u64 => {
                let s = &self.bytes[self.at..end as usize];
                self.at = end as usize;
                Ok(s)
            }
            _ => Err(ReadError::Truncated {
                need: n,
                at: self.at,
                len: self.bytes.len(),
            }),
        }
    }

    pub(super) fn u32(&mut self) -> Result<u32, ReadError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, ReadError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub(super) fn string(&mut self) -> Result<String, ReadError> {
        let n = self.u64()?;
        let at = self.at;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| ReadError::NotUtf8 { at })
    }

    pub(super) fn value(&mut self, kind: u32, depth: usize) -> Result<Value, ReadError> {
        let at = self.at;
        Ok(match kind {
            0 => Value::U64(u64::from(self.take(1)?[0])),
            1 => Value::I64(i64::from(self.take(1)?[0] as i8)),
            2 => {
                let b = self.take(2)?;
                Value::U64(u64::from(u16::from_le_bytes([b[0], b[1]])))
            }
            3 => {
                let b = self.take(2)?;
                Value::I64(i64::from(i16::from_le_bytes([b[0], b[1]])))
            }
            4 => Value::U64(u64::from(self.u32()?)),
            5 => Value::I64(i64::from(self.u32()? as i32)),
            6 => Value::F64(f64::from(f32::from_bits(self.u32()?))),
            7 => match self.take(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                value => return Err(ReadError::BadBool { at, value }),
            },
            8 => Value::Str(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(ReadError::TooDeep { at });
                }
                let item = self.u32()?;
                let n = self.u64()?;
                // Every element takes at least one byte: a count past the file is corrupt.
                if n > (self.bytes.len() - self.at) as u64 {
                    return Err(ReadError::ArrayTooLong { at, count: n });
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(item, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            kind => return Err(ReadError::UnknownType { at, kind }),
        })
    }

    pub(super) fn tensor_info(&mut self) -> Result<RawInfo, ReadError> {
        let name = self.string()?;
        let n = self.u32()?;
        if n == 0 || n > 4 {
            return Err(ReadError::BadRank { name, dims: n });
        }
        let mut dims = Vec::with_capacity(n as usize);
        for _ in 0..n {
            dims.push(self.u64()?);
        }
        let type_id = self.u32()?;
        let offset = self.u64()?;
        Ok(RawInfo {
            name,
            dims,
            type_id,
            offset,
        })
    }
}
