//! Semantic checks of the `generation:` block: a language model, prompts and a token budget,
//! in the matrix placement only (where the engine runs generation cells); anywhere else it is
//! refused by name.

use super::types::{PlacementMode, Scenario};
use super::validate::{push, Issue};
use crate::models;

/// Most tokens a generation cell writes per prompt.
const MAX_GENERATION_TOKENS: u32 = 256;

/// The generation cells: a language model, prompts, a token budget, in the matrix only.
pub(super) fn generation(s: &Scenario, out: &mut Vec<Issue>) {
    let Some(g) = &s.generation else {
        return;
    };
    if !models::is_language_model(&g.model) {
        push(
            out,
            "generation.model",
            format!(
                "'{}' is not a language model; one of: {}",
                g.model,
                models::LANGUAGE_MODELS.join(", ")
            ),
        );
    }
    let not_yet = if s.sharding.is_some() {
        Some("a sharded run (use `webgpu-pool generate --shards N` to shard a generation)")
    } else if s.pool.placement != PlacementMode::Matrix {
        Some("a routed pool (generation cells run in the matrix placement; `generate` runs one through the pool)")
    } else if !s.faults.is_empty() {
        Some("a run with faults (use `webgpu-pool generate --kill-shard N --kill-at-token K`)")
    } else {
        None
    };
    if let Some(what) = not_yet {
        push(
            out,
            "generation",
            format!("generation cells in {what} are not built yet"),
        );
    }
    if g.prompts.is_empty() {
        push(out, "generation.prompts", "the prompt list is empty");
    }
    for (i, p) in g.prompts.iter().enumerate() {
        if p.trim().is_empty() {
            push(
                out,
                format!("generation.prompts[{i}]"),
                "the prompt is empty",
            );
        }
    }
    if !(1..=MAX_GENERATION_TOKENS).contains(&g.max_new_tokens) {
        push(
            out,
            "generation.max_new_tokens",
            format!(
                "'{}' is out of range; give 1 to {MAX_GENERATION_TOKENS}",
                g.max_new_tokens
            ),
        );
    }
}
