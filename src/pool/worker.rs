//! A worker: one live browser with the worker page, and typed wrappers over the page API
//! (`docs/page-api.md`).
//!
//! The worker owns its `Box<dyn Browser>`; the driver behind it serialises calls, so one worker
//! is used by one task at a time. Replies are parsed into typed structs here so the engine never
//! touches raw JSON.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::browser::{self, Browser, BrowserKind, LaunchSpec, WorkerError};
use crate::models::PreparedModel;
use crate::server::AssetServer;

use super::Backend;

/// One browser with the worker page open.
#[derive(Debug)]
pub struct Worker {
    /// Stable name in reports, e.g. `chromium#1`.
    pub id: String,
    /// The launch it came from.
    pub spec: LaunchSpec,
    /// Launch to page ready.
    pub launch_time: Duration,
    browser: std::sync::Arc<dyn Browser>,
}

/// How much of each output a run returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Nothing (timed runs).
    None,
    /// At most 256 values at an even stride.
    Sample,
    /// Every value, base64 float32.
    Full,
}

impl OutputMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Sample => "sample",
            Self::Full => "full",
        }
    }
}

/// The page's answer to `load`.
#[derive(Debug, Clone, Deserialize)]
pub struct LoadReply {
    /// Backend in use.
    pub backend: Backend,
    /// Whether an existing session was reused.
    #[serde(default)]
    pub reused: bool,
    /// Backends skipped and why.
    #[serde(default)]
    pub fallback_reasons: Vec<FallbackReason>,
    /// `InferenceSession.create`, ms.
    #[serde(default)]
    pub session_create_ms: f64,
    /// Model and input fetch, ms.
    #[serde(default)]
    pub fetch_ms: f64,
    /// Sessions created in this page so far.
    #[serde(default)]
    pub load_count: u64,
}

/// A backend the page skipped.
#[derive(Debug, Clone, Deserialize)]
pub struct FallbackReason {
    /// The backend skipped.
    pub backend: String,
    /// Why.
    pub reason: String,
}

/// The page's answer to `run`.
#[derive(Debug, Clone, Deserialize)]
pub struct RunReply {
    /// Index of this run in its session (0 = first).
    pub run_index: u64,
    /// `session.run` plus read-back, measured in the page, ms.
    pub run_ms: f64,
    /// Outputs by name, per the requested [`OutputMode`].
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputTensor>,
}

/// One output tensor as the page returned it.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputTensor {
    /// Shape.
    pub dims: Vec<i64>,
    /// Strided sample of at most 256 values.
    #[serde(default)]
    pub sample: Vec<f32>,
    /// Base64 of every value (float32 little-endian), with [`OutputMode::Full`].
    #[serde(default)]
    pub data_b64: Option<String>,
}

impl OutputTensor {
    /// Decodes `data_b64` into floats.
    ///
    /// # Errors
    /// When the field is missing or is not base64 of whole float32 values.
    pub fn full(&self) -> Result<Vec<f32>, String> {
        use base64::Engine as _;
        let b64 = self
            .data_b64
            .as_deref()
            .ok_or("the page returned no full output")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("output is not base64: {e}"))?;
        if bytes.len() % 4 != 0 {
            return Err(format!(
                "output has {} bytes, not whole float32 values",
                bytes.len()
            ));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

impl Worker {
    /// Launches the browser and opens the page.
    ///
    /// # Errors
    /// [`WorkerError::Launch`] when the browser, its driver or the page does not come up.
    pub async fn start(id: String, spec: LaunchSpec) -> Result<Self, WorkerError> {
        let started = Instant::now();
        let browser = browser::launch(&spec).await?;
        Ok(Self {
            id,
            spec,
            launch_time: started.elapsed(),
            browser: browser.into(),
        })
    }

    /// Wraps a browser that is already up (launched elsewhere, e.g. shared with a benchmark
    /// that needs the pool path and a bare call on the same page).
    pub fn from_browser(
        id: String,
        spec: LaunchSpec,
        browser: Box<dyn Browser>,
        launch_time: Duration,
    ) -> Self {
        Self {
            id,
            spec,
            launch_time,
            browser: browser.into(),
        }
    }

    /// The browser kind.
    pub fn kind(&self) -> BrowserKind {
        self.browser.kind()
    }

    /// The live browser.
    pub fn browser(&self) -> &dyn Browser {
        self.browser.as_ref()
    }

    /// A shared handle on the browser, for fault injection from outside the slot task (its
    /// pids, `crash_tab`, `disconnect`), which must not wait behind queued page calls.
    pub fn shared_browser(&self) -> std::sync::Arc<dyn Browser> {
        self.browser.clone()
    }

    /// Asks the page what it offers (WebGPU adapter, WebNN, WASM).
    ///
    /// # Errors
    /// Any [`WorkerError`] from the call.
    pub async fn capabilities(
        &self,
        webnn: bool,
        timeout: Duration,
    ) -> Result<serde_json::Value, WorkerError> {
        self.browser
            .call("capabilities", json!({ "webnn": webnn }), timeout)
            .await
    }

    /// Loads `model` with the first backend of `backends` that works.
    ///
    /// # Errors
    /// [`WorkerError::Page`] when no backend could create a session.
    pub async fn load(
        &self,
        model: &PreparedModel,
        server: &AssetServer,
        backends: &[Backend],
        allow_fallback_adapter: bool,
        timeout: Duration,
    ) -> Result<LoadReply, WorkerError> {
        let inputs: Vec<_> = model
            .inputs
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "dtype": i.dtype.as_str(),
                    "dims": i.dims,
                    "url": server.model_path(&file_name(&i.file)),
                })
            })
            .collect();
        let args = json!({
            "model_id": model.name,
            "url": server.model_path(&file_name(&model.onnx_file)),
            "backends": backends,
            "allow_fallback_adapter": allow_fallback_adapter,
            "inputs": inputs,
        });
        let value = self.browser.call("load", args, timeout).await?;
        parse("load", value)
    }

    /// Runs `model_id` once on its stored inputs.
    ///
    /// # Errors
    /// Any [`WorkerError`] from the call.
    pub async fn run(
        &self,
        model_id: &str,
        outputs: OutputMode,
        timeout: Duration,
    ) -> Result<RunReply, WorkerError> {
        let args = json!({ "model_id": model_id, "outputs": outputs.as_str() });
        let value = self.browser.call("run", args, timeout).await?;
        parse("run", value)
    }

    /// Releases `model_id`'s session.
    ///
    /// # Errors
    /// Any [`WorkerError`] from the call.
    pub async fn unload(&self, model_id: &str, timeout: Duration) -> Result<(), WorkerError> {
        self.browser
            .call("unload", json!({ "model_id": model_id }), timeout)
            .await
            .map(drop)
    }

    /// Closes the browser, its driver and its profile.
    ///
    /// # Errors
    /// When the driver reports a failure while closing; the processes are killed regardless.
    pub async fn close(&self) -> Result<(), WorkerError> {
        self.browser.close().await
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(
    method: &str,
    value: serde_json::Value,
) -> Result<T, WorkerError> {
    serde_json::from_value(value).map_err(|e| WorkerError::Driver {
        method: method.to_string(),
        message: format!("the page's reply does not match page API v1: {e}"),
    })
}

/// The environment record of `worker`, from its page's `capabilities` answer.
pub fn browser_env(worker: &Worker, caps: &serde_json::Value) -> crate::metrics::BrowserEnv {
    let b = worker.browser();
    crate::metrics::BrowserEnv {
        kind: b.kind().to_string(),
        version: b.version().to_string(),
        driver: b.driver().as_str().to_string(),
        executable: worker.spec.executable.display().to_string(),
        ort_version: caps["ort_version"].as_str().unwrap_or_default().to_string(),
        webgpu: caps["webgpu"].clone(),
        webnn: caps["webnn"].clone(),
        wasm: caps["wasm"].clone(),
        cross_origin_isolated: caps["cross_origin_isolated"].as_bool().unwrap_or(false),
        launch_ms: worker.launch_time.as_secs_f64() * 1e3,
    }
}

/// The backends a page can run, from its `capabilities`: wasm always; WebGPU when an adapter
/// exists and is either hardware or allowed as a software fallback; WebNN when a context opened.
pub fn offered_backends(caps: &serde_json::Value, allow_fallback_adapter: bool) -> Vec<Backend> {
    let mut out = Vec::new();
    let gpu = &caps["webgpu"];
    if gpu["available"].as_bool() == Some(true)
        && (allow_fallback_adapter || gpu["adapter"]["fallback"].as_bool() != Some(true))
    {
        out.push(Backend::Webgpu);
    }
    if caps["webnn"]["available"].as_bool() == Some(true) {
        out.push(Backend::Webnn);
    }
    out.push(Backend::Wasm);
    out
}

/// The correctness input of a first run: the strided sample, and the golden check where the
/// model has one.
pub fn cell_output(
    browser: &str,
    model: &PreparedModel,
    backend: Backend,
    first: &RunReply,
) -> Option<super::correctness::CellOutput> {
    let tensor = first
        .outputs
        .get(&model.output_name)
        .or_else(|| first.outputs.values().next())?;
    let golden = model.golden.as_ref().map(|g| match tensor.full() {
        Ok(full) => g.check(&tensor.dims, &full),
        Err(_) => g.check(&tensor.dims, &[]),
    });
    Some(super::correctness::CellOutput {
        label: format!("{browser}/{backend}"),
        backend: backend.to_string(),
        sample: tensor.sample.clone(),
        golden,
    })
}

/// A short, stable error class for samples and counts.
pub fn error_class(e: &WorkerError) -> &'static str {
    if e.is_browser_crash() {
        "crash"
    } else if e.is_tab_crash() {
        "tab_crash"
    } else if e.is_disconnect() {
        "disconnect"
    } else if e.is_device_lost() {
        "device_lost"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_page_error() {
        "page"
    } else if e.is_session_lost() {
        "session_lost"
    } else {
        "driver"
    }
}
