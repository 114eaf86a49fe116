//! Graphs a page loads without optimizing them again: native onnxruntime rewrites a model's
//! graph once at its basic level (constant folding, redundant nodes removed: rewrites that hold
//! for every execution provider) and saves it beside the model, `<stem>.basic.onnx`. A page
//! then creates its wasm session with onnxruntime-web's graph optimizations off.
//!
//! Measured on bert-base (chromium, wasm, two interleaved rounds): session creation 3146 / 3201
//! ms with the page optimizing (`all`) against 2043 / 1985 ms on the saved graph with the page's
//! optimizations off, first run 1762 / 1445 against 1111 / 1120 ms, warm p50 unchanged (808-845
//! ms both ways). Saving the graph natively takes about 2 s, once per model file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::{environment, library_path, OracleError, RunFailure};
use crate::models::Cache;

/// What a page is given to load for one model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageGraph {
    /// The file to serve.
    pub file: PathBuf,
    /// Why `file` is the model's own graph rather than the natively optimized one (the page
    /// then optimizes it itself); `None` when it is the optimized one.
    pub not_preoptimized: Option<String>,
}

impl PageGraph {
    /// Whether `file` is the natively optimized graph (the page need not optimize it again).
    pub fn preoptimized(&self) -> bool {
        self.not_preoptimized.is_none()
    }
}

/// The saved graph's file for `model_file`: `<stem>.basic.onnx` beside it.
fn basic_file(model_file: &Path) -> PathBuf {
    let stem = model_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    model_file.with_file_name(format!("{stem}.basic.onnx"))
}

/// Whether `saved` was written from `source` as it is now: it exists and is not older than
/// `source` (model files are named by what they hold, so a rewritten source is the one case).
fn fresh(saved: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(saved), modified(source)) {
        (Some(s), Some(m)) => s >= m,
        _ => false,
    }
}

/// Saves `model_file`'s graph at onnxruntime's basic level beside it unless a fresh one is
/// there, and returns it. One at a time per process: two pages loading one model wait for one
/// save (and on 2 cores two saves at once only slow each other). Blocking: call it off the async
/// runtime.
///
/// # Errors
/// [`OracleError`] when the native library is missing or the graph does not load or save.
pub fn ensure(cache: &Cache, model_file: &Path) -> Result<PathBuf, OracleError> {
    static SAVING: Mutex<()> = Mutex::new(());
    let saved = basic_file(model_file);
    let _one = SAVING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if fresh(&saved, model_file) {
        return Ok(saved);
    }
    let env = environment(&library_path(cache))?;
    let name = model_file
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Written aside and renamed: a page never fetches half a file, and a save cut short by a
    // kill leaves only the aside file, which the next save writes over.
    let aside = saved.with_extension(format!("onnx.part-{}", std::process::id()));
    let failed = |message: String| OracleError::Run {
        model: name.clone(),
        failure: RunFailure::Load {
            file: model_file.to_path_buf(),
            message,
        },
    };
    Session::builder(env)
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::Level1)
                .map_err(Into::into)
        })
        .and_then(|b| b.with_optimized_model_path(&aside).map_err(Into::into))
        .and_then(|mut b| b.commit_from_file(model_file))
        .map_err(|e| failed(e.to_string()))?;
    std::fs::rename(&aside, &saved).map_err(|e| {
        let _ = std::fs::remove_file(&aside);
        failed(format!(
            "saving the optimized graph as {}: {e}",
            saved.display()
        ))
    })?;
    Ok(saved)
}

/// The graph a page should load for `model_file`: the saved basic graph, else (the native
/// library missing or failing) the file itself, which the page then optimizes as before, with
/// why, so the fallback is never silent. Blocking, as [`ensure`].
pub fn page_graph(cache: &Cache, model_file: &Path) -> PageGraph {
    match ensure(cache, model_file) {
        Ok(file) => PageGraph {
            file,
            not_preoptimized: None,
        },
        Err(e) => PageGraph {
            file: model_file.to_path_buf(),
            not_preoptimized: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_graph_sits_beside_the_model_and_goes_stale_when_it_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("bert-tiny-7b0d.onnx");
        assert_eq!(
            basic_file(&model),
            dir.path().join("bert-tiny-7b0d.basic.onnx")
        );
        let saved = basic_file(&model);
        assert!(!fresh(&saved, &model), "nothing saved yet");
        std::fs::write(&model, b"model").unwrap();
        std::fs::write(&saved, b"saved").unwrap();
        assert!(fresh(&saved, &model));
        // The model written again after the save: the saved graph no longer counts.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&model)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!fresh(&saved, &model));
    }
}
