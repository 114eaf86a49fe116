//! Semantic checks of the `generation:` block: a language model, prompts and a token budget.
//! The matrix runs it as a cell per browser, a routed pool as requests among the other
//! models' (faults included); a sharded scenario refuses it by name.

use super::types::Scenario;
use super::validate::{push, Issue};
use crate::models;

/// Most tokens a generation cell writes per prompt.
const MAX_GENERATION_TOKENS: u32 = 256;

/// The generation block: a language model, prompts, a token budget, not in a sharded run.
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
    if s.sharding.is_some() {
        push(
            out,
            "generation",
            "generations in a sharded run are not built yet (use `webgpu-pool generate --shards N` to shard a generation)",
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
