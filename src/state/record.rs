//! The binary framing of one log record ([`TxRecord`]) and the scan of a whole log.
//!
//! Layout of a record (all integers little-endian; 32 bytes plus the payload):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `D7 57 54 58` (`0xD7` then `WTX`) |
//! | 4 | 1 | format version, `1` |
//! | 5 | 1 | kind: `1` Begin, `2` Op, `3` Commit, `4` Abort |
//! | 6 | 2 | reserved, `0` |
//! | 8 | 4 | payload length `N` (at most [`MAX_PAYLOAD`]) |
//! | 12 | 8 | sequence number (strictly increasing through the file) |
//! | 20 | 8 | transaction id (the sequence number of the transaction's Begin) |
//! | 28 | N | payload: the JSON of an `Op`; empty for Begin and Commit; the UTF-8 reason for Abort |
//! | 28+N | 4 | CRC32C (Castagnoli) of bytes `0 .. 28+N` |
//!
//! `0xD7 0x57` is not valid UTF-8, so the magic can never occur inside a JSON payload; the
//! damage scan relies on that to look for intact records after a bad one.
//!
//! Pure: works on byte slices; the caller reads files and attaches paths to errors.

/// First bytes of every record.
pub const MAGIC: [u8; 4] = [0xD7, b'W', b'T', b'X'];
/// The record format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 28;
/// Bytes after the payload (the CRC).
pub const TRAILER_LEN: usize = 4;
/// Largest payload a record may carry (16 MiB); a larger length is bad framing.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// What a record says about its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Opens a transaction; its sequence number becomes the transaction id.
    Begin = 1,
    /// One [`super::Op`] of the transaction.
    Op = 2,
    /// The transaction's ops take effect.
    Commit = 3,
    /// The transaction's ops are discarded; the payload says why.
    Abort = 4,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Begin),
            2 => Some(Self::Op),
            3 => Some(Self::Commit),
            4 => Some(Self::Abort),
            _ => None,
        }
    }

    /// Lower-case name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Begin => "begin",
            Self::Op => "op",
            Self::Commit => "commit",
            Self::Abort => "abort",
        }
    }
}

/// One intact record read from a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRecord<'a> {
    /// Byte offset of the record's first byte in the file.
    pub offset: u64,
    /// Sequence number.
    pub seq: u64,
    /// Transaction id.
    pub txid: u64,
    /// Begin, Op, Commit or Abort.
    pub kind: RecordKind,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl TxRecord<'_> {
    /// Total bytes of the record on disk.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.payload.len() + TRAILER_LEN
    }

    /// Never true: a record has at least a header and a CRC.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Frames a record in place. `buf` must hold [`HEADER_LEN`] placeholder bytes followed by the
/// payload; the header is filled in and the CRC appended. Building the payload straight into
/// the record buffer saves a copy per record on the append path.
///
/// # Errors
/// The payload length, when it is over [`MAX_PAYLOAD`].
pub fn frame_in_place(
    buf: &mut Vec<u8>,
    seq: u64,
    txid: u64,
    kind: RecordKind,
) -> Result<(), usize> {
    let payload_len = buf.len().saturating_sub(HEADER_LEN);
    if payload_len > MAX_PAYLOAD || buf.len() < HEADER_LEN {
        return Err(payload_len);
    }
    buf[0..4].copy_from_slice(&MAGIC);
    buf[4] = VERSION;
    buf[5] = kind as u8;
    buf[6..8].copy_from_slice(&[0, 0]);
    // Fits: checked against MAX_PAYLOAD (16 MiB) above.
    buf[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buf[12..20].copy_from_slice(&seq.to_le_bytes());
    buf[20..28].copy_from_slice(&txid.to_le_bytes());
    let crc = crc32c::crc32c(buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Why the bytes at an offset are not an intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the bad record.
    pub offset: u64,
    /// Its sequence number, when the header was readable.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads the record at `offset`.
///
/// # Errors
/// [`Damage`] when the bytes there are short, misframed or fail their CRC.
pub fn read_at(bytes: &[u8], offset: usize) -> Result<TxRecord<'_>, Damage> {
    let rest = &bytes[offset.min(bytes.len())..];
    let damage = |seq, reason: String| Damage {
        offset: offset as u64,
        seq,
        reason,
    };
    if rest.len() < HEADER_LEN {
        return Err(damage(
            None,
            format!(
                "header cut short: {} of {HEADER_LEN} bytes before end of file",
                rest.len()
            ),
        ));
    }
    if rest[0..4] != MAGIC {
        return Err(damage(
            None,
            format!(
                "bad magic {:02x} {:02x} {:02x} {:02x} (expected d7 57 54 58)",
                rest[0], rest[1], rest[2], rest[3]
            ),
        ));
    }
    let seq = u64_at(rest, 12);
    if rest[4] != VERSION {
        return Err(damage(
            Some(seq),
            format!("unknown record format version {}", rest[4]),
        ));
    }
    let Some(kind) = RecordKind::from_byte(rest[5]) else {
        return Err(damage(
            Some(seq),
            format!("unknown record kind {}", rest[5]),
        ));
    };
    let len = u32_at(rest, 8) as usize;
    if len > MAX_PAYLOAD {
        return Err(damage(
            Some(seq),
            format!("payload length {len} is over the {MAX_PAYLOAD}-byte limit"),
        ));
    }
    let total = HEADER_LEN + len + TRAILER_LEN;
    if rest.len() < total {
        return Err(damage(
            Some(seq),
            format!(
                "record cut short: {} of {total} bytes before end of file",
                rest.len()
            ),
        ));
    }
    let stored = u32_at(rest, HEADER_LEN + len);
    let computed = crc32c::crc32c(&rest[..HEADER_LEN + len]);
    if stored != computed {
        return Err(damage(
            Some(seq),
            format!("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    Ok(TxRecord {
        offset: offset as u64,
        seq,
        txid: u64_at(rest, 20),
        kind,
        payload: &rest[HEADER_LEN..HEADER_LEN + len],
    })
}

/// The intact records of a log, and what was dropped from its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<'a> {
    /// Every intact record, in file order.
    pub records: Vec<TxRecord<'a>>,
    /// Bytes of intact records: where a writer continues after truncating the tail.
    pub valid_len: u64,
    /// A damaged last record, dropped.
    pub torn: Option<Damage>,
}

/// Reads every record. A damaged record is a torn tail (dropped, reported in
/// [`Scan::torn`]) when no intact record starts anywhere after it; otherwise it is an error.
///
/// Why search instead of trusting the damaged record's length: a flipped bit in a length field
/// can point past the end of the file, and treating that as a torn tail would silently drop
/// every good record after it.
///
/// # Errors
/// The first damaged record, when intact records follow it.
pub fn scan(bytes: &[u8]) -> Result<Scan<'_>, Damage> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        match read_at(bytes, at) {
            Ok(r) => {
                at += r.len();
                records.push(r);
            }
            Err(mut d) => {
                if let Some(next) = next_intact(bytes, at + 1) {
                    d.reason = format!(
                        "{}; an intact record follows at byte offset {next}, so this is not a torn tail",
                        d.reason
                    );
                    return Err(d);
                }
                return Ok(Scan {
                    records,
                    valid_len: at as u64,
                    torn: Some(d),
                });
            }
        }
    }
    Ok(Scan {
        records,
        valid_len: at as u64,
        torn: None,
    })
}

/// Offset of the first intact record starting at or after `from`.
fn next_intact(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + HEADER_LEN <= bytes.len() {
        let pos = bytes[at..].windows(MAGIC.len()).position(|w| w == MAGIC)?;
        let candidate = at + pos;
        if read_at(bytes, candidate).is_ok() {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, txid: u64, kind: RecordKind, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(payload);
        frame_in_place(&mut buf, seq, txid, kind).unwrap();
        buf
    }

    #[test]
    fn frames_round_trip() {
        let bytes = record(7, 5, RecordKind::Op, br#"{"op":"run_finished"}"#);
        assert_eq!(bytes.len(), 32 + 21);
        let r = read_at(&bytes, 0).unwrap();
        assert_eq!((r.seq, r.txid, r.kind), (7, 5, RecordKind::Op));
        assert_eq!(r.payload, br#"{"op":"run_finished"}"#);
    }

    #[test]
    fn crc_covers_header_and_payload() {
        for i in [5, 9, 13, 21, 30] {
            let mut bytes = record(1, 1, RecordKind::Op, b"{\"x\":1}");
            bytes[i] ^= 0x01;
            assert!(read_at(&bytes, 0).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn damage_in_the_middle_is_an_error_at_the_tail_is_torn() {
        let mut log = record(1, 1, RecordKind::Begin, b"");
        let second = log.len();
        log.extend(record(2, 1, RecordKind::Commit, b""));
        log.extend(record(3, 3, RecordKind::Begin, b""));
        let mut bad = log.clone();
        bad[second + 9] ^= 0xff; // the length field of record 2
        let err = scan(&bad).unwrap_err();
        assert_eq!(err.offset, second as u64);
        let torn = &log[..log.len() - 3];
        let s = scan(torn).unwrap();
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.valid_len, (second + 32) as u64);
        assert!(s.torn.unwrap().reason.contains("cut short"));
    }
}
