//! `snapshot.json`: the whole [`State`] as of a sequence number, with its SHA-256.
//!
//! ```json
//! {"format": 1, "seq": 1042, "sha256": "9f86d0…", "state": {"run_id": "…", …}}
//! ```
//! `sha256` is the hex SHA-256 of the state's canonical JSON ([`State::to_canonical_json`]).
//! Written to `snapshot.json.tmp`, fsynced, renamed over `snapshot.json`, then the directory is
//! fsynced, so a crash leaves either the old snapshot or the new one, never a mix.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{State, StateError, SNAPSHOT_FILE};

/// The snapshot format version.
const FORMAT: u32 = 1;

/// A snapshot as read from or written to `snapshot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The snapshot format version, `1`.
    pub format: u32,
    /// Every transaction committed at or before this sequence number is in `state`.
    pub seq: u64,
    /// Hex SHA-256 of the canonical JSON of `state`.
    pub sha256: String,
    /// The state.
    pub state: State,
}

/// Hex SHA-256 of the state's canonical JSON.
pub(crate) fn digest(state: &State) -> Result<String, StateError> {
    let json = state.to_canonical_json().map_err(|e| StateError::Encode {
        what: "the state",
        reason: e.to_string(),
    })?;
    let sum = Sha256::digest(&json);
    Ok(sum.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads `dir/snapshot.json`, or `None` when there is none.
///
/// # Errors
/// [`StateError::BadSnapshot`] when it does not parse or its checksum does not match;
/// [`StateError::Io`] when it cannot be read.
pub(crate) fn read(dir: &Path) -> Result<Option<Snapshot>, StateError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::io("read", path, e)),
    };
    let bad = |reason: String| StateError::BadSnapshot {
        path: path.clone(),
        reason,
    };
    let snap: Snapshot =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a snapshot: {e}")))?;
    if snap.format != FORMAT {
        return Err(bad(format!("unknown snapshot format {}", snap.format)));
    }
    let actual = digest(&snap.state)?;
    if actual != snap.sha256 {
        return Err(bad(format!(
            "SHA-256 mismatch: recorded {}, state hashes to {actual}",
            snap.sha256
        )));
    }
    Ok(Some(snap))
}

/// Writes `dir/snapshot.json` atomically (temp file, fsync, rename, fsync of the directory).
///
/// # Errors
/// [`StateError::Io`] naming the file that could not be written, synced or renamed.
pub(crate) fn write(dir: &Path, seq: u64, state: &State) -> Result<Snapshot, StateError> {
    let snap = Snapshot {
        format: FORMAT,
        seq,
        sha256: digest(state)?,
        state: state.clone(),
    };
    let mut text = serde_json::to_vec_pretty(&snap).map_err(|e| StateError::Encode {
        what: "the snapshot",
        reason: e.to_string(),
    })?;
    text.push(b'\n');
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let path = dir.join(SNAPSHOT_FILE);
    let mut f = File::create(&tmp).map_err(|e| StateError::io("create", &tmp, e))?;
    f.write_all(&text)
        .map_err(|e| StateError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| StateError::io("fsync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| StateError::io("rename into place", &path, e))?;
    sync_dir(dir)?;
    Ok(snap)
}

/// Fsyncs a directory, so a rename or a new file in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StateError::io("fsync directory", dir, e))
}
