//! How activations travel between shards: raw float32 bytes, never JSON number text, either as
//! base64 in the page-API calls ([`Route::Harness`]) or through the asset server's relay
//! ([`Route::Server`]): one page PUTs them, the next page fetches them, and the last shard's
//! output is taken by the harness from the server's memory. Pure encoding and naming; the
//! pipeline that uses it is the pool's. Must not import `cli` or `report`.

use base64::Engine as _;

/// How activations travel between shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// In the page-API calls: base64 in one page's reply, then in the next page's arguments.
    Harness,
    /// Through the asset server's relay: raw bytes PUT by one page, fetched by the next (the
    /// last shard's output is taken by the harness from the server's memory).
    Server,
}

impl Route {
    /// The short name (`harness`, `server`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Harness => "harness",
            Self::Server => "server",
        }
    }

    /// How the report says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Harness => {
                "harness: base64 float32 in the page-API reply, then in the next call's arguments"
            }
            Self::Server => "asset server relay: raw float32 PUT by one page, fetched by the next",
        }
    }
}

/// Why an activation's bytes could not be read as float32 values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The text is not base64.
    #[error("output is not base64: {0}")]
    NotBase64(String),
    /// The byte count is not a whole number of float32 values.
    #[error("output has {0} bytes, not whole float32 values")]
    Ragged(usize),
}

/// Floats from base64 of little-endian float32 bytes.
///
/// # Errors
/// [`DecodeError`] when the text is not base64 or not whole float32 values.
pub fn decode_f32(b64: &str) -> Result<Vec<f32>, DecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| DecodeError::NotBase64(e.to_string()))?;
    f32_values(&bytes)
}

/// Floats from little-endian float32 bytes.
///
/// # Errors
/// [`DecodeError::Ragged`] when the bytes are not whole float32 values.
pub fn f32_values(bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
    if bytes.len() % 4 != 0 {
        return Err(DecodeError::Ragged(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_bytes_round_trip_and_ragged_bytes_are_refused() {
        let v = [1.5f32, -2.0, 0.25];
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(f32_values(&bytes).unwrap(), v);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode_f32(&b64).unwrap(), v);
        assert_eq!(f32_values(&bytes[..5]), Err(DecodeError::Ragged(5)));
        assert!(matches!(decode_f32("*"), Err(DecodeError::NotBase64(_))));
    }
}
