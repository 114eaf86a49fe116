//! The page API, typed: one live browser with the worker page open ([`Page`]) and its calls
//! (`capabilities`, `load`, `run`, `unload`; `docs/page-api.md`), with every reply parsed into a
//! struct here so the rest of the pool never touches raw JSON.
//!
//! A [`Page`] is owned by one worker task (`actor.rs`), which serialises its calls. Must not
//! import `report`, `cli` or terminal crates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::backend::Backend;
use crate::browser::{self, Browser, BrowserKind, LaunchSpec, WorkerError};
use crate::models::PreparedModel;
use crate::server::AssetServer;

use super::super::config::PageSettings;
use super::runs::RunFor;

/// One browser with the worker page open.
#[derive(Debug)]
pub struct Page {
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
    /// Every value, base64 float32, with the page's whole-output stats (a session's first run).
    Full,
}

impl OutputMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Full => "full",
        }
    }
}

/// What the page offers, from its `capabilities` answer.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// onnxruntime-web's version.
    pub ort_version: String,
    /// Whether the page is cross-origin isolated (wasm threads need it).
    pub cross_origin_isolated: bool,
    /// Whether a WebGPU adapter was found.
    pub webgpu: bool,
    /// Whether that adapter is a software fallback (SwiftShader, lavapipe).
    pub webgpu_fallback: bool,
    /// Whether a WebNN context opened.
    pub webnn: bool,
    /// The answer as given: its WebGPU, WebNN and WASM details go into the report as they are.
    pub raw: serde_json::Value,
}

impl Capabilities {
    /// Reads the typed facts out of the page's answer.
    pub fn from_reply(raw: serde_json::Value) -> Self {
        Self {
            ort_version: raw["ort_version"].as_str().unwrap_or_default().to_string(),
            cross_origin_isolated: raw["cross_origin_isolated"].as_bool() == Some(true),
            webgpu: raw["webgpu"]["available"].as_bool() == Some(true),
            webgpu_fallback: raw["webgpu"]["adapter"]["fallback"].as_bool() == Some(true),
            webnn: raw["webnn"]["available"].as_bool() == Some(true),
            raw,
        }
    }

    /// The backends this page can run: wasm always; WebGPU when an adapter exists and is
    /// either hardware or allowed as a software fallback; WebNN when a context opened.
    pub fn offered_backends(&self, allow_fallback_adapter: bool) -> Vec<Backend> {
        let mut out = Vec::new();
        if self.webgpu && (allow_fallback_adapter || !self.webgpu_fallback) {
            out.push(Backend::Webgpu);
        }
        if self.webnn {
            out.push(Backend::Webnn);
        }
        out.push(Backend::Wasm);
        out
    }
}

/// [`crate::oracle::page_graph`] off the async runtime (a first save is native CPU work).
async fn page_graph(model_file: &std::path::Path) -> crate::oracle::PageGraph {
    let file = model_file.to_path_buf();
    tokio::task::spawn_blocking(move || {
        crate::oracle::page_graph(&crate::models::Cache::from_env(), &file)
    })
    .await
    .unwrap_or_else(|e| crate::oracle::PageGraph {
        file: model_file.to_path_buf(),
        not_preoptimized: Some(format!("saving the optimized graph panicked: {e}")),
    })
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
    /// Whether this page runs wasm inference in onnxruntime-web's proxy worker.
    #[serde(default)]
    pub proxy: bool,
    /// Threads of onnxruntime-web's wasm backend in this page (what it picked, or what
    /// `wasm_threads` asked for).
    #[serde(default)]
    pub wasm_threads: Option<u32>,
    /// The WebNN context's device (`cpu`, `gpu`, `npu`) when the backend is webnn.
    #[serde(default)]
    pub webnn_device_type: Option<String>,
    /// How the WebNN EP partitioned the graph, from onnxruntime's log.
    #[serde(default)]
    pub webnn_graph: Option<crate::metrics::WebnnGraph>,
    /// onnxruntime-web's `graphOptimizationLevel` for the session (`disabled` on a graph
    /// native onnxruntime optimized, `all` otherwise).
    #[serde(default)]
    pub graph_optimization: Option<String>,
    /// Why the page was given the model's own graph instead of the natively optimized one
    /// (set by the harness, not the page).
    #[serde(skip)]
    pub preoptimize_failed: Option<String>,
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
    /// Waiting in the page for onnxruntime (another run in progress), ms.
    #[serde(default)]
    pub queue_ms: f64,
    /// When the worker task took the call off its queue (set by the worker, not the page).
    #[serde(skip)]
    pub dispatched: Option<Instant>,
    /// Decoding the per-run inputs in the page, ms.
    #[serde(default)]
    pub feed_decode_ms: f64,
    /// Encoding the outputs in the page (stats and base64), ms.
    #[serde(default)]
    pub output_encode_ms: f64,
    /// Wall-clock instant the run started (`performance.timeOrigin + now()`), ms since the epoch.
    #[serde(default)]
    pub run_start_epoch_ms: Option<f64>,
    /// Wall-clock instant the run ended, ms since the epoch.
    #[serde(default)]
    pub run_end_epoch_ms: Option<f64>,
    /// FNV-1a digest of every output, by name (whatever the output mode): what the pool
    /// compares with the first verified answer of the same model, browser and backend.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    /// On a webnn session: the WebNN graphs this run dispatched, counted by the page's WebNN
    /// witness (`None` on other backends, or where the page cannot watch WebNN).
    #[serde(default)]
    pub webnn_dispatches: Option<u64>,
    /// The page's run counts by purpose as they stood when this answer left it: what the page
    /// vouches for even if it is lost before it can be asked again.
    #[serde(default)]
    pub runs_for: Option<BTreeMap<String, u64>>,
    /// The dims of each output the run kept in the page (`carry`), by output name.
    #[serde(default)]
    pub carried: BTreeMap<String, Vec<i64>>,
}

/// A per-run input: raw little-endian values in base64 (never JSON number text), or the URL of
/// an asset-server relay slot holding them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Feed {
    /// `float32` or `int64`.
    pub dtype: &'static str,
    /// Shape.
    pub dims: Vec<i64>,
    /// Base64 of the raw bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
    /// Or where the page fetches them (an asset-server relay path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Where a fed run's outputs go, by output name; outputs not named come back in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FedOutputs {
    /// PUT to the relay path given (a shard's activation on the server route).
    Relay(BTreeMap<String, String>),
    /// Kept in the page as the named input of the model's next run (a generation's key/value
    /// cache); the reply gives their dims in `carried`.
    Carry(BTreeMap<String, String>),
}

/// One output tensor as the page returned it.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputTensor {
    /// Shape.
    pub dims: Vec<i64>,
    /// Base64 of every value (float32 little-endian), with [`OutputMode::Full`].
    #[serde(default)]
    pub data_b64: Option<String>,
    /// Checks the page computed over every value (with `sample` or `full`).
    #[serde(default)]
    pub stats: Option<OutputStats>,
    /// The values went to a relay slot instead of `data_b64`.
    #[serde(default)]
    pub relayed: bool,
}

/// What the page computed over every value of an output.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct OutputStats {
    /// Values in the tensor.
    pub count: u64,
    /// NaN values.
    pub nan: u64,
    /// Infinite values.
    pub inf: u64,
    /// Smallest finite value (`None` when none is finite).
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Sum of the finite values.
    pub sum: f64,
    /// L2 norm of the finite values.
    pub l2: f64,
    /// FNV-1a 32-bit digest of the raw little-endian bytes, 8 hex digits.
    pub digest: String,
}

impl OutputStats {
    /// The digest the page computes, over `values`' little-endian bytes.
    pub fn digest_of(values: &[f32]) -> String {
        let mut h: u32 = 0x811c_9dc5;
        for b in values.iter().flat_map(|v| v.to_le_bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("{h:08x}")
    }
}

/// Why a full output could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The run was not asked for full outputs.
    #[error("the page returned no full output")]
    Missing,
    /// `data_b64` is not base64.
    #[error("output is not base64: {0}")]
    NotBase64(String),
    /// The bytes are not whole float32 values.
    #[error("output has {0} bytes, not whole float32 values")]
    Ragged(usize),
}

impl OutputTensor {
    /// Decodes `data_b64` into floats.
    ///
    /// # Errors
    /// [`OutputError`] when the field is missing or is not base64 of whole float32 values.
    pub fn full(&self) -> Result<Vec<f32>, OutputError> {
        use base64::Engine as _;
        let b64 = self.data_b64.as_deref().ok_or(OutputError::Missing)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| OutputError::NotBase64(e.to_string()))?;
        if bytes.len() % 4 != 0 {
            return Err(OutputError::Ragged(bytes.len()));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

impl Page {
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

    /// A shared handle on the browser, for fault injection from outside the worker task (its
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
    ) -> Result<Capabilities, WorkerError> {
        self.browser
            .call("capabilities", json!({ "webnn": webnn }), timeout)
            .await
            .map(Capabilities::from_reply)
    }

    /// Loads `model` with the first backend of `settings.backends` that works.
    ///
    /// # Errors
    /// [`WorkerError::Page`] when no backend could create a session.
    pub async fn load(
        &self,
        model: &PreparedModel,
        server: &AssetServer,
        settings: &PageSettings,
        backends: &[Backend],
        timeout: Duration,
    ) -> Result<LoadReply, WorkerError> {
        let mut inputs: Vec<_> = model
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
        inputs.extend(model.runtime_inputs.iter().map(|i| {
            json!({
                "name": i.name,
                "dtype": i.dtype.as_str(),
                "dims": i.dims,
                "per_run": true,
                "dynamic": i.dynamic,
            })
        }));
        let graph = page_graph(&model.onnx_file).await;
        let args = json!({
            "model_id": model.name,
            "url": server.model_path(&file_name(&graph.file)),
            "preoptimized": graph.preoptimized(),
            "backends": backends,
            "allow_fallback_adapter": settings.allow_fallback_adapter,
            "wasm_threads": settings.wasm_threads,
            "proxy": settings.heartbeat,
            "inputs": inputs,
        });
        let value = self.browser.call("load", args, timeout).await?;
        let mut reply: LoadReply = parse("load", value)?;
        reply.preoptimize_failed = graph.not_preoptimized;
        Ok(reply)
    }

    /// Runs `model_id` once on its stored inputs; the page counts the run under `purpose`.
    ///
    /// # Errors
    /// Any [`WorkerError`] from the call.
    pub async fn run(
        &self,
        model_id: &str,
        outputs: OutputMode,
        purpose: RunFor,
        timeout: Duration,
    ) -> Result<RunReply, WorkerError> {
        let args = json!({
            "model_id": model_id,
            "outputs": outputs.as_str(),
            "for": purpose.as_str(),
        });
        let value = self.browser.call("run", args, timeout).await?;
        parse("run", value)
    }

    /// Runs `model_id` once with its per-run inputs given (`feeds`: name -> [`Feed`]), the
    /// outputs `outputs` names sent where it says, every other returned in full.
    ///
    /// # Errors
    /// Any [`WorkerError`] from the call.
    pub async fn run_fed(
        &self,
        model_id: &str,
        feeds: &BTreeMap<String, Feed>,
        outputs: &FedOutputs,
        purpose: RunFor,
        timeout: Duration,
    ) -> Result<RunReply, WorkerError> {
        let mut args = json!({
            "model_id": model_id,
            "outputs": "full",
            "for": purpose.as_str(),
            "feeds": feeds,
        });
        let (key, map) = match outputs {
            FedOutputs::Relay(m) => ("output_to", m),
            FedOutputs::Carry(m) => ("carry", m),
        };
        args[key] = json!(map);
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

    /// The environment record of this browser, from its page's capabilities.
    pub fn env(&self, caps: &Capabilities) -> crate::metrics::BrowserEnv {
        let b = self.browser();
        crate::metrics::BrowserEnv {
            kind: b.kind().to_string(),
            version: b.version().to_string(),
            driver: b.driver().as_str().to_string(),
            executable: self.spec.executable.display().to_string(),
            ort_version: caps.ort_version.clone(),
            webgpu: caps.raw["webgpu"].clone(),
            webnn: caps.raw["webnn"].clone(),
            wasm: caps.raw["wasm"].clone(),
            cross_origin_isolated: caps.cross_origin_isolated,
            launch_ms: self.launch_time.as_secs_f64() * 1e3,
            node: b.node().map(str::to_owned),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_offer_webgpu_only_on_hardware_unless_fallback_is_allowed() {
        let caps = Capabilities::from_reply(json!({
            "ort_version": "1.30.0",
            "cross_origin_isolated": true,
            "webgpu": {"available": true, "adapter": {"fallback": true}},
            "webnn": {"available": false},
        }));
        assert_eq!(caps.offered_backends(false), vec![Backend::Wasm]);
        assert_eq!(
            caps.offered_backends(true),
            vec![Backend::Webgpu, Backend::Wasm]
        );
        assert!(caps.cross_origin_isolated);
        assert_eq!(caps.ort_version, "1.30.0");
    }

    #[test]
    fn the_digest_is_the_pages_fnv1a_over_little_endian_bytes() {
        // FNV-1a 32 of no bytes is the offset basis; of 1.0f32 (00 00 80 3f), by Python.
        assert_eq!(OutputStats::digest_of(&[]), "811c9dc5");
        assert_eq!(OutputStats::digest_of(&[1.0]), "1b587698");
        assert_ne!(
            OutputStats::digest_of(&[1.0, 2.0]),
            OutputStats::digest_of(&[2.0, 1.0])
        );
    }

    #[test]
    fn a_ragged_full_output_is_an_error() {
        let t = OutputTensor {
            dims: vec![1],
            data_b64: Some("AAAA".into()),
            stats: None,
            relayed: false,
        };
        assert_eq!(t.full(), Err(OutputError::Ragged(3)));
        let none = OutputTensor {
            data_b64: None,
            ..t
        };
        assert_eq!(none.full(), Err(OutputError::Missing));
    }
}
