//! `webgpu-pool validate FILE...`: check scenario files without running them.

use std::path::PathBuf;

use anyhow::Result;

use webgpu_pool::scenario;

use super::common::print;
use super::Outcome;

/// Prints `ok: FILE` for each valid file and every error of the others on stderr.
///
/// # Errors
/// Printing fails. An invalid file is [`Outcome::Invalid`] (exit 2) with its errors printed.
pub fn execute(files: &[PathBuf]) -> Result<Outcome> {
    let mut bad = 0;
    for f in files {
        match scenario::load_file(f) {
            Ok(_) => print(&format!("ok: {}\n", f.display()))?,
            Err(errors) => {
                bad += 1;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    Ok(if bad == 0 {
        Outcome::Pass
    } else {
        Outcome::Invalid
    })
}
