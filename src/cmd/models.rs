//! `webgpu-pool models list|prepare`: the model catalog, and writing models' ONNX files and
//! inputs into the cache.

use anyhow::Result;

use webgpu_pool::app;
use webgpu_pool::report;

use super::common::{print, print_json};
use super::{Context, Outcome};
use crate::cli::ModelsCommand;
use crate::observe;

/// Lists the catalog (a table, or JSON with `--json`), or prepares models and prints
/// `name<TAB>weights<TAB>onnx file` for each.
///
/// # Errors
/// A model is unknown or cannot be written, or printing fails.
pub async fn execute(cmd: ModelsCommand, ctx: &Context) -> Result<Outcome> {
    match cmd {
        ModelsCommand::List { json } => {
            let list = app::model_list();
            if json {
                print_json(&list)?;
            } else {
                print(&report::terminal::render_models(&list))?;
            }
        }
        ModelsCommand::Prepare { models, seed } => {
            let observer = observe::Stderr { quiet: ctx.quiet };
            let prepared = app::prepare_named(&models, seed, &observer).await?;
            for p in prepared {
                print(&format!(
                    "{}\t{}\t{}\n",
                    p.name,
                    p.weights.as_str(),
                    p.onnx_file.display()
                ))?;
            }
        }
    }
    Ok(Outcome::Pass)
}
