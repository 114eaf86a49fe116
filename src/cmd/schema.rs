//! `webgpu-pool schema`: print the JSON Schema of the scenario format.

use anyhow::Result;

use webgpu_pool::scenario;

use super::common::print_json;
use super::Outcome;

/// Prints the schema.
///
/// # Errors
/// Printing fails.
pub fn execute() -> Result<Outcome> {
    print_json(&scenario::json_schema())?;
    Ok(Outcome::Pass)
}
