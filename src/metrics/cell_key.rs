//! [`CellKey`]: what identifies a measured cell wherever cells are pooled or compared (the
//! history's series, trends and recommendations, and `compare`): model, browser, backend,
//! adapter, wasm threads, browser build and load context. Cells whose keys differ in any of
//! these are never pooled or compared; [`CellKey::comparable`] is the one test.
//!
//! Inputs: a [`RunSummary`] and one of its rows. Output: the key, and what differs between two
//! keys of the same model x browser x backend. Pure: imports only std, serde and
//! `crate::metrics`.
//!
//! The browser build is the version the browser itself reports, normalised by
//! [`browser_build`] so that one build has one name wherever it runs: a local Firefox ESR says
//! `153.8.0esr` (`firefox --version`), the same build on a Selenium Grid node `153.8.0` (the
//! session's `browserVersion` capability, which geckodriver reads from the browser). The page
//! cannot say more: Firefox's user agent is frozen at `Firefox/153.0`, so the Grid's version is
//! taken from the session's capabilities, not from the page.

use serde::{Deserialize, Serialize};

use super::{BrowserEnv, LoadContext, ResultRow, RunSummary};

/// One measured configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellKey {
    /// Catalog model name.
    pub model: String,
    /// Browser kind.
    pub browser: String,
    /// Backend that ran.
    pub backend: String,
    /// WebGPU adapter (`vendor/architecture`, e.g. `google/swiftshader`), WebNN device
    /// (`webnn-cpu`) or `cpu` for wasm; `unknown` when the page did not say.
    pub adapter: String,
    /// wasm threads (1 for the other backends).
    pub threads: u32,
    /// The browser build, normalised ([`browser_build`]); `unknown` when not reported.
    pub build: String,
    /// How the run loaded its cells.
    pub load: LoadContext,
}

impl CellKey {
    /// The key of `row`, a row of `summary`.
    pub fn of(summary: &RunSummary, row: &ResultRow) -> Self {
        let env = summary
            .environment
            .browsers
            .iter()
            .find(|b| b.kind == row.browser);
        Self {
            model: row.model.clone(),
            browser: row.browser.clone(),
            backend: row.backend.clone(),
            adapter: adapter_of(row, env),
            threads: row.wasm_threads.unwrap_or(1),
            build: browser_build(env.map_or("", |b| b.version.as_str())),
            load: summary.load,
        }
    }

    /// The key of the samples of `model` x `browser` x `backend` in `summary`: from its row, or,
    /// in a run with no row for them (hand-made or partial), with the adapter and build
    /// `unknown` and 1 thread.
    pub fn of_cell(summary: &RunSummary, model: &str, browser: &str, backend: &str) -> Self {
        match summary
            .results
            .iter()
            .find(|r| r.model == model && r.browser == browser && r.backend == backend)
        {
            Some(row) => Self::of(summary, row),
            None => Self {
                model: model.to_string(),
                browser: browser.to_string(),
                backend: backend.to_string(),
                adapter: "unknown".into(),
                threads: 1,
                build: browser_build(
                    summary
                        .environment
                        .browsers
                        .iter()
                        .find(|b| b.kind == browser)
                        .map_or("", |b| b.version.as_str()),
                ),
                load: summary.load,
            },
        }
    }

    /// Whether cells under the two keys may be pooled or compared: equal keys with a known
    /// load context.
    pub fn comparable(&self, other: &Self) -> bool {
        self == other && self.load.comparable(&other.load)
    }

    /// Whether the two are the same model x browser x backend (whatever else differs).
    pub fn same_cell(&self, other: &Self) -> bool {
        (&self.model, &self.browser, &self.backend)
            == (&other.model, &other.browser, &other.backend)
    }

    /// Why cells under the two keys are not comparable, one phrase per part, `self` first:
    /// `load isolated vs routed x4`, `build 156.0.8078.108 vs 156.0.8078.114`, `load unknown
    /// (not recorded)`. Empty when they are comparable.
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.same_cell(other) {
            out.push(format!("cell {self} vs {other}"));
        }
        if self.adapter != other.adapter {
            out.push(format!("adapter {} vs {}", self.adapter, other.adapter));
        }
        if self.threads != other.threads {
            out.push(format!(
                "wasm threads {} vs {}",
                self.threads, other.threads
            ));
        }
        if self.build != other.build {
            out.push(format!("build {} vs {}", self.build, other.build));
        }
        if self.load != other.load {
            out.push(format!("load {} vs {}", self.load, other.load));
        } else if !self.load.is_known() {
            out.push("load unknown on both sides (not recorded before this version)".into());
        }
        out
    }

    /// What the cell was measured on, after its model/browser/backend: `cpu x1, build
    /// 156.0.8078.114, isolated`.
    pub fn conditions(&self) -> String {
        format!(
            "{} x{}, build {}, {}",
            self.adapter, self.threads, self.build, self.load
        )
    }
}

/// `bert-tiny/chromium/wasm`: the model, browser and backend; [`CellKey::conditions`] has the
/// rest.
impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.model, self.browser, self.backend)
    }
}

/// One name per browser build: the version as reported, trimmed, with Firefox ESR's channel
/// suffix dropped (`153.8.0esr` -> `153.8.0`, what the same build reports as its WebDriver
/// `browserVersion`); `unknown` when empty. Other suffixes (`154.0b3`, `155.0a1`) name other
/// builds than the release of the same number and are kept. Truncating to major.minor was
/// rejected: 153.7.0esr and 153.8.0esr are different builds.
pub fn browser_build(version: &str) -> String {
    let v = version.trim();
    let v = v
        .strip_suffix("esr")
        .or_else(|| v.strip_suffix("ESR"))
        .unwrap_or(v);
    if v.is_empty() {
        "unknown".into()
    } else {
        v.to_string()
    }
}

/// What computed a cell: the WebGPU adapter (vendor/architecture), the WebNN device, or the CPU
/// for wasm.
fn adapter_of(row: &ResultRow, env: Option<&BrowserEnv>) -> String {
    match row.backend.as_str() {
        "webgpu" => env
            .and_then(|b| b.webgpu.get("adapter"))
            .map(|a| {
                let field = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let (vendor, arch) = (field("vendor"), field("architecture"));
                let fallback = a.get("fallback").and_then(|v| v.as_bool()) == Some(true);
                match (vendor.is_empty(), arch.is_empty()) {
                    // Firefox names neither; a software fallback adapter still says so.
                    (true, true) if fallback => "fallback".to_string(),
                    (true, true) => "unknown".to_string(),
                    (false, true) => vendor,
                    (true, false) => arch,
                    (false, false) => format!("{vendor}/{arch}"),
                }
            })
            .unwrap_or_else(|| "unknown".into()),
        "webnn" => row
            .webnn
            .as_ref()
            .map_or("webnn".into(), |w| format!("webnn-{}", w.device_type)),
        _ => "cpu".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LoadKind;

    fn summary(version: &str, load: LoadContext) -> RunSummary {
        let mut s: RunSummary = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "run_id": "r", "command": "c", "started_at": "",
            "finished_at": "", "complete": true,
            "environment": {"harness_version": "", "os": "", "cpus": 2, "browsers": [
                {"kind": "firefox", "version": version, "driver": "webdriver", "executable": "",
                 "ort_version": "", "webgpu": {"available": true, "adapter": {"fallback": true}},
                 "webnn": {}, "wasm": {}, "cross_origin_isolated": true, "launch_ms": 0.0}]},
            "requests": {"issued": 0, "succeeded": 0, "failed": 0, "lost": 0},
            "results": [], "faults": [], "recovery_events": [], "thresholds": []
        }))
        .unwrap();
        s.load = load;
        s
    }

    fn row(backend: &str, threads: Option<u32>) -> ResultRow {
        ResultRow {
            model: "bert-base-uncased".into(),
            browser: "firefox".into(),
            backend: backend.into(),
            wasm_threads: threads,
            ..ResultRow::default()
        }
    }

    const ISOLATED: LoadContext = LoadContext {
        context: LoadKind::Isolated,
        clients: 1,
        rate_per_s: None,
    };

    #[test]
    fn one_firefox_build_local_and_on_a_grid_node_is_one_key() {
        // Local: `firefox-esr --version`; Grid: the session's browserVersion capability.
        let local = CellKey::of(&summary("153.8.0esr", ISOLATED), &row("wasm", Some(1)));
        let grid = CellKey::of(&summary("153.8.0", ISOLATED), &row("wasm", Some(1)));
        assert_eq!(local.build, "153.8.0");
        assert!(local.comparable(&grid), "{:?}", local.differences(&grid));
        // Another ESR build, and the user agent's frozen `153.0`, are not that build.
        let older = CellKey::of(&summary("153.7.0esr", ISOLATED), &row("wasm", Some(1)));
        let ua = CellKey::of(&summary("153.0", ISOLATED), &row("wasm", Some(1)));
        assert!(!local.comparable(&older) && !local.comparable(&ua));
        assert_eq!(local.differences(&older), ["build 153.8.0 vs 153.7.0"]);
        assert_eq!(browser_build(" "), "unknown");
        assert_eq!(browser_build("154.0b3"), "154.0b3");
    }

    #[test]
    fn threads_adapter_and_load_each_make_another_key() {
        let s = summary("153.8.0esr", ISOLATED);
        let one = CellKey::of(&s, &row("wasm", Some(1)));
        let two = CellKey::of(&s, &row("wasm", Some(2)));
        assert!(!one.comparable(&two));
        assert_eq!(one.differences(&two), ["wasm threads 1 vs 2"]);
        let routed = CellKey::of(
            &summary("153.8.0esr", LoadContext::closed(LoadKind::Routed, 4)),
            &row("wasm", Some(1)),
        );
        assert_eq!(one.differences(&routed), ["load isolated vs routed x4"]);
        let gpu = CellKey::of(&s, &row("webgpu", None));
        assert_eq!(gpu.adapter, "fallback");
        let mut other_adapter = gpu.clone();
        other_adapter.adapter = "google/swiftshader".into();
        assert!(!gpu.comparable(&other_adapter));
        assert_eq!(gpu.conditions(), "fallback x1, build 153.8.0, isolated");
    }

    #[test]
    fn equal_keys_of_unknown_load_are_not_comparable() {
        let s = summary("153.8.0esr", LoadContext::UNKNOWN);
        let k = CellKey::of(&s, &row("wasm", Some(1)));
        assert_eq!(k, k.clone());
        assert!(!k.comparable(&k.clone()));
        assert_eq!(
            k.differences(&k),
            ["load unknown on both sides (not recorded before this version)"]
        );
    }
}
