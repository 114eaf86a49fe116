//! The native oracle: the same ONNX file and the same input, run outside any browser by
//! onnxruntime 1.30 (`libonnxruntime.so.1` from the `onnxruntime-node@1.30.0` npm tarball, which
//! `scripts/setup.sh` unpacks into the cache; loaded at run time through the `ort` crate). It
//! gives every model a reference output that no browser computed, and the native baseline each
//! browser cell is compared with: the warm p50 at one thread and at every core.
//!
//! Blocking CPU work: callers run it before any browser starts (on 2 cores, a browser computing
//! at the same time would measure against it). Must not import `pool`, `report` or `cli`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use crate::metrics::Percentiles;

mod preoptimized;
use crate::models::{Cache, DType, PreparedModel};
pub use preoptimized::{ensure as preoptimize, page_graph, PageGraph};

/// The onnxruntime release the oracle loads: `ort`'s `api-30` feature needs API 30, which 1.30
/// serves (it does not serve 31, `ort`'s default).
pub const ORT_VERSION: &str = "1.30.0";

/// Names another `libonnxruntime.so.1` to load instead of the cache's.
pub const LIB_ENV: &str = "WEBGPU_POOL_ORT_LIB";

/// Absolute tolerance of a browser output against the oracle's.
pub const ATOL: f64 = 1e-3;
/// Relative tolerance (of the oracle's magnitude).
pub const RTOL: f64 = 1e-3;

/// Why the oracle could not run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The library is not where it should be.
    #[error(
        "native onnxruntime {ORT_VERSION} is missing: no {}; run scripts/setup.sh (it unpacks \
         libonnxruntime.so.1 from the onnxruntime-node@{ORT_VERSION} npm package into the cache) \
         or point {LIB_ENV} at one",
        path.display()
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The library is there but could not be loaded or started.
    #[error("could not load native onnxruntime from {}: {message}", path.display())]
    Load {
        /// The library.
        path: PathBuf,
        /// onnxruntime's or the loader's message.
        message: String,
    },
    /// The model did not run natively.
    #[error("native run of '{model}': {failure}")]
    Run {
        /// Catalog model name.
        model: String,
        /// What failed. Part of this message rather than its `source()`, so the text is the
        /// same however the error is printed.
        failure: RunFailure,
    },
}

/// The step of a native run that failed, naming the file or tensor involved; onnxruntime's own
/// words are kept as text (its error type is neither `Clone` nor stable across `ort` releases).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RunFailure {
    /// A session builder option (thread counts) was refused.
    #[error("{message}")]
    Options {
        /// onnxruntime's message.
        message: String,
    },
    /// The ONNX file did not load into a session.
    #[error("{}: {message}", file.display())]
    Load {
        /// The model file.
        file: PathBuf,
        /// onnxruntime's message.
        message: String,
    },
    /// A prepared input file could not be read.
    #[error("{}: {error}", file.display())]
    ReadInput {
        /// The input file.
        file: PathBuf,
        /// The I/O error (shared, so the error stays `Clone`).
        error: Arc<std::io::Error>,
    },
    /// An input did not become a tensor.
    #[error("input '{name}': {message}")]
    Input {
        /// The graph input's name.
        name: String,
        /// onnxruntime's message.
        message: String,
    },
    /// `session.run` failed.
    #[error("{message}")]
    Run {
        /// onnxruntime's message.
        message: String,
    },
    /// The run has no output of the model's output name.
    #[error("no output named '{name}'")]
    NoOutput {
        /// The name looked for.
        name: String,
    },
    /// The output is not a float32 tensor.
    #[error("{message}")]
    Output {
        /// onnxruntime's message.
        message: String,
    },
    /// No run happened (zero timed runs and no warm-up: not reachable with two warm-ups).
    #[error("no run")]
    NoRun,
}

/// Where the library is looked for: `$WEBGPU_POOL_ORT_LIB`, else the cache's copy.
pub fn library_path(cache: &Cache) -> PathBuf {
    std::env::var_os(LIB_ENV).map_or_else(
        || {
            cache
                .root()
                .join("onnxruntime")
                .join(ORT_VERSION)
                .join("libonnxruntime.so.1")
        },
        PathBuf::from,
    )
}

/// The process's one onnxruntime environment (the library can be loaded once per process).
fn environment(lib: &Path) -> Result<&'static Environment, OracleError> {
    static ENV: OnceLock<Result<Environment, OracleError>> = OnceLock::new();
    if ENV.get().is_none() && !lib.is_file() {
        return Err(OracleError::Missing {
            path: lib.to_path_buf(),
        });
    }
    ENV.get_or_init(|| start(lib))
        .as_ref()
        .map_err(Clone::clone)
}

/// Loads the library and creates the environment. The onnxruntime-node build starts a telemetry
/// client that writes `.ses` and `mat-debug-<pid>.log` into `$TMPDIR` as the environment is
/// created (before telemetry can be turned off), so `TMPDIR` points at a folder beside the
/// library meanwhile: the user's temporary folder is left as it was.
fn start(lib: &Path) -> Result<Environment, OracleError> {
    let load = |message: String| OracleError::Load {
        path: lib.to_path_buf(),
        message,
    };
    let scratch = lib.with_file_name("tmp");
    let _ = std::fs::create_dir_all(&scratch);
    let saved = std::env::var_os("TMPDIR");
    // Safe in practice: `preload` calls this before any other thread exists.
    std::env::set_var("TMPDIR", &scratch);
    let env = ort::init_from(lib)
        .map_err(|e| load(e.to_string()))
        .and_then(|b| {
            b.with_name("webgpu-pool-oracle")
                .with_telemetry(false)
                .build()
                .map_err(|e| load(e.to_string()))
        });
    match saved {
        Some(v) => std::env::set_var("TMPDIR", v),
        None => std::env::remove_var("TMPDIR"),
    }
    // One empty log per process would pile up; the `.ses` file is rewritten in place.
    let _ = std::fs::remove_file(scratch.join(format!("mat-debug-{}.log", std::process::id())));
    env
}

/// Loads the library now, while the process has one thread (the environment is created with
/// `TMPDIR` changed for a moment, see [`start`]). A missing library is not an error here: the
/// run that needs it says so.
pub fn preload(cache: &Cache) {
    let _ = environment(&library_path(cache));
}

/// What the oracle computed and measured for one model.
#[derive(Debug, Clone)]
pub struct NativeResult {
    /// The output's shape.
    pub dims: Vec<i64>,
    /// Every value of the model's output.
    pub output: Vec<f32>,
    /// Warm `session.run` (with output read-back) at one intra-op thread, ms.
    pub one_thread_ms: Percentiles,
    /// The same at `all_threads` threads.
    pub all_threads_ms: Percentiles,
    /// Threads of the second measurement (the machine's cores).
    pub all_threads: usize,
}

/// Runs `model` natively: its output, then `runs` timed warm runs (after two warm-ups) at one
/// thread and at every core.
///
/// # Errors
/// [`OracleError`] when the library is missing or does not load, or the model does not run.
pub fn run_model(
    cache: &Cache,
    model: &PreparedModel,
    runs: usize,
) -> Result<NativeResult, OracleError> {
    let env = environment(&library_path(cache))?;
    let fail = |failure: RunFailure| OracleError::Run {
        model: model.name.clone(),
        failure,
    };
    let all_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let inputs = read_inputs(model).map_err(fail)?;
    let mut result = None;
    let mut timings = Vec::new();
    for threads in [1, all_threads] {
        let mut session = session(env, model, threads).map_err(fail)?;
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + 2 {
            // Tensors are moved into the run: built again from the bytes read once.
            let feeds = feeds(model, &inputs).map_err(fail)?;
            let t0 = Instant::now();
            let outputs = session.run(feeds).map_err(|e| fail(ran(e)))?;
            let (shape, output) = output_of(&outputs, model).map_err(fail)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if i >= 2 {
                times.push(ms);
            }
            if result.is_none() {
                result = Some((shape, output));
            }
        }
        timings.push(Percentiles::from_ms(&times).unwrap_or_default());
    }
    let (dims, output) = result.ok_or_else(|| fail(RunFailure::NoRun))?;
    let all_threads_ms = timings.pop().unwrap_or_default();
    let one_thread_ms = timings.pop().unwrap_or_default();
    Ok(NativeResult {
        dims,
        output,
        one_thread_ms,
        all_threads_ms,
        all_threads,
    })
}

/// Runs `model` once at one thread on its input files plus `given` per-run float32 inputs
/// (name, shape, values; a shard's incoming activation); returns the output's shape and values.
///
/// # Errors
/// [`OracleError`] when the library is missing or the model does not run.
pub fn run_once(
    cache: &Cache,
    model: &PreparedModel,
    given: &[(&str, Vec<i64>, Vec<f32>)],
) -> Result<(Vec<i64>, Vec<f32>), OracleError> {
    let env = environment(&library_path(cache))?;
    let fail = |failure: RunFailure| OracleError::Run {
        model: model.name.clone(),
        failure,
    };
    let inputs = read_inputs(model).map_err(fail)?;
    let mut session = session(env, model, 1).map_err(fail)?;
    let mut feeds = feeds(model, &inputs).map_err(fail)?;
    for (name, dims, values) in given {
        let t = Tensor::from_array((dims.clone(), values.clone())).map_err(|e| {
            fail(RunFailure::Input {
                name: (*name).to_string(),
                message: e.to_string(),
            })
        })?;
        feeds.push(((*name).to_string(), t.into_dyn()));
    }
    let outputs = session.run(feeds).map_err(|e| fail(ran(e)))?;
    output_of(&outputs, model).map_err(fail)
}

/// A native session on the ONNX file `file` at `threads` intra-op threads, for callers that
/// drive the runs themselves (a generation's steps, with its key/value cache fed back).
///
/// # Errors
/// [`OracleError`] when the library is missing or does not load, or the file does not.
pub fn open_session(
    cache: &Cache,
    name: &str,
    file: &Path,
    threads: usize,
) -> Result<Session, OracleError> {
    let env = environment(&library_path(cache))?;
    session_on(env, file, threads).map_err(|failure| OracleError::Run {
        model: name.to_owned(),
        failure,
    })
}

/// `session.run`'s error as a [`RunFailure`].
fn ran(e: ort::Error) -> RunFailure {
    RunFailure::Run {
        message: e.to_string(),
    }
}

/// A session on `model`'s file at `threads` intra-op threads (one inter-op thread).
fn session(
    env: &Environment,
    model: &PreparedModel,
    threads: usize,
) -> Result<Session, RunFailure> {
    session_on(env, &model.onnx_file, threads)
}

/// A session on `file` at `threads` intra-op threads (one inter-op thread).
fn session_on(env: &Environment, file: &Path, threads: usize) -> Result<Session, RunFailure> {
    Session::builder(env)
        .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        .map_err(|e| RunFailure::Options {
            message: e.to_string(),
        })?
        .commit_from_file(file)
        .map_err(|e| RunFailure::Load {
            file: file.to_path_buf(),
            message: e.to_string(),
        })
}

/// The model's output (shape and values) from a run's outputs.
fn output_of(
    outputs: &ort::session::SessionOutputs<'_>,
    model: &PreparedModel,
) -> Result<(Vec<i64>, Vec<f32>), RunFailure> {
    let value = outputs
        .get(model.output_name.as_str())
        .ok_or_else(|| RunFailure::NoOutput {
            name: model.output_name.clone(),
        })?;
    let (shape, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| RunFailure::Output {
            message: e.to_string(),
        })?;
    Ok((shape.to_vec(), data.to_vec()))
}

/// The model's prepared input files, in graph order.
fn read_inputs(model: &PreparedModel) -> Result<Vec<Vec<u8>>, RunFailure> {
    model
        .inputs
        .iter()
        .map(|i| {
            std::fs::read(&i.file).map_err(|e| RunFailure::ReadInput {
                file: i.file.clone(),
                error: Arc::new(e),
            })
        })
        .collect()
}

/// The model's inputs (`bytes` in graph order) as tensors, by graph input name.
fn feeds(model: &PreparedModel, bytes: &[Vec<u8>]) -> Result<Vec<(String, DynValue)>, RunFailure> {
    model
        .inputs
        .iter()
        .zip(bytes)
        .map(|(input, bytes)| {
            let dims = input.dims.clone();
            let value: DynValue = match input.dtype {
                DType::Int64 => Tensor::from_array((dims, le_values(bytes, i64::from_le_bytes)))
                    .map(Tensor::into_dyn),
                DType::Float32 => Tensor::from_array((dims, le_values(bytes, f32::from_le_bytes)))
                    .map(Tensor::into_dyn),
            }
            .map_err(|e| RunFailure::Input {
                name: input.name.clone(),
                message: e.to_string(),
            })?;
            Ok((input.name.clone(), value))
        })
        .collect()
}

/// Little-endian values of `N` bytes each.
fn le_values<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunks_exact gives N bytes")))
        .collect()
}

/// Largest absolute difference of `got` from `want`, and whether
/// `|got - want| <= ATOL + RTOL * |want|` holds at every position (shapes must match).
pub fn allclose(got: &[f32], want: &[f32]) -> (f64, bool) {
    if got.len() != want.len() {
        return (f64::INFINITY, false);
    }
    got.iter()
        .zip(want)
        .fold((0.0f64, true), |(max, ok), (&x, &y)| {
            let d = (f64::from(x) - f64::from(y)).abs();
            (
                if d.is_nan() {
                    f64::INFINITY
                } else {
                    max.max(d)
                },
                ok && d <= ATOL + RTOL * f64::from(y).abs(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allclose_fails_on_one_value_out_of_tolerance_nan_or_length() {
        let want = vec![1.0f32; 1000];
        let mut got = want.clone();
        assert_eq!(allclose(&got, &want), (0.0, true));
        got[999] = 1.01;
        let (d, ok) = allclose(&got, &want);
        assert!(!ok && (d - 0.01).abs() < 1e-6, "{d}");
        got[999] = f32::NAN;
        assert_eq!(allclose(&got, &want), (f64::INFINITY, false));
        assert!(!allclose(&want[..999], &want).1);
    }

    #[test]
    fn a_missing_library_names_the_setup_step() {
        let dir = tempfile::tempdir().unwrap();
        let e = environment(&dir.path().join("libonnxruntime.so.1")).unwrap_err();
        assert!(e.to_string().contains("scripts/setup.sh"), "{e}");
    }
}
