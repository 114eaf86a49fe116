//! `webgpu-pool browsers`: find installed browsers and drivers, launch each, and show what it
//! offers (WebGPU adapter, WebNN, WASM SIMD and threads).

use anyhow::Result;

use webgpu_pool::app;
use webgpu_pool::report;

use super::common::{print, print_json};
use super::{Context, Outcome};
use crate::cli::BrowsersArgs;
use crate::observe;

/// Probes the browsers and prints a table, or JSON with `--json`.
///
/// # Errors
/// A probe cannot run, or printing fails.
pub async fn execute(args: BrowsersArgs, ctx: &Context) -> Result<Outcome> {
    let observer = observe::Stderr { quiet: ctx.quiet };
    let probe = app::probe_browsers(&args.only, &|m| observer.line(m)).await?;
    if args.json {
        print_json(&probe)?;
    } else {
        print(&report::terminal::render_browsers(
            &probe.browsers,
            &probe.drivers,
        ))?;
        for e in &probe.errors {
            print(&format!("not available: {e}\n"))?;
        }
    }
    Ok(Outcome::Pass)
}
