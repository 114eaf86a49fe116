//! Browser command-line flags and preferences, in one place for both drivers.
//!
//! Inputs: a [`LaunchSpec`] and the profile directory. Outputs: Chromium arguments (used by the
//! CDP driver and by chromedriver alike) and Firefox preferences (geckodriver). The reasons for
//! each flag are in ARCHITECTURE.md, "Browsers on this machine". Must not import `report`, `cli`
//! or terminal crates.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::{BrowserKind, LaunchSpec};

/// Chromium arguments, except `--user-data-dir` (the CDP launcher passes that itself).
pub(crate) fn chromium_args(spec: &LaunchSpec) -> Vec<String> {
    let mut args: Vec<String> = [
        // Spelled out: plain `--headless` meant the old mode before Chromium 132. The headless
        // shell (chromium-shell) has only that mode, and prints nothing with `=new`.
        if spec.kind == BrowserKind::ChromiumShell {
            "--headless"
        } else {
            "--headless=new"
        },
        // We run as root, where the sandbox cannot start.
        "--no-sandbox",
        // WebGPU on SwiftShader/unlisted adapters.
        "--enable-unsafe-webgpu",
        // Quiet network: no update, sync, QUIC or first-run traffic during measurements.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        // Timers and rendering in a headless, never-focused tab must not be throttled.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        // No minidumps: a crashed renderer otherwise lingers ~5 s while its dump is written,
        // and that is time a crash goes unnoticed.
        "--disable-breakpad",
        "--disable-crash-reporter",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // `--tls`: the asset server's certificate is self-signed, made for the run.
    if spec.page_url.starts_with("https://") {
        args.push("--ignore-certificate-errors".to_owned());
    }
    // The shell is in the pool for its WebNN: always on there.
    if spec.enable_webnn || spec.kind == BrowserKind::ChromiumShell {
        args.push("--enable-features=WebMachineLearningNeuralNetwork".to_owned());
    }
    args
}

/// Chromium arguments for chromedriver, which also need the profile directory.
pub(crate) fn chromium_args_with_profile(spec: &LaunchSpec, profile: &Path) -> Vec<String> {
    let mut args = chromium_args(spec);
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// Firefox preferences: WebGPU on (lavapipe is blocklisted by default), and no background
/// network traffic (updates, telemetry, safe browsing, captive portal probes).
pub(crate) fn firefox_prefs() -> Map<String, Value> {
    let prefs = json!({
        "dom.webgpu.enabled": true,
        "gfx.webgpu.ignore-blocklist": true,
        "app.update.enabled": false,
        "app.update.auto": false,
        "app.normandy.enabled": false,
        "browser.shell.checkDefaultBrowser": false,
        "browser.startup.homepage_override.mstone": "ignore",
        "browser.aboutwelcome.enabled": false,
        "datareporting.policy.dataSubmissionEnabled": false,
        "datareporting.healthreport.uploadEnabled": false,
        "toolkit.telemetry.enabled": false,
        "toolkit.telemetry.unified": false,
        "toolkit.telemetry.server": "",
        "network.captive-portal-service.enabled": false,
        "network.connectivity-service.enabled": false,
        "network.dns.disablePrefetch": true,
        "network.prefetch-next": false,
        "browser.safebrowsing.malware.enabled": false,
        "browser.safebrowsing.phishing.enabled": false,
        "browser.safebrowsing.downloads.enabled": false,
        "browser.safebrowsing.blockedURIs.enabled": false,
        "browser.safebrowsing.provider.mozilla.updateURL": "",
        "extensions.update.enabled": false,
        "extensions.getAddons.cache.enabled": false,
        "extensions.blocklist.enabled": false,
        "browser.newtabpage.enabled": false,
        "browser.region.network.url": "",
        "services.settings.server": "data:,#remote-settings-dummy/v1",
        "browser.search.update": false,
        "media.gmp-manager.url": "",
    });
    match prefs {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
