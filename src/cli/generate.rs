//! `generate`'s flags.

use std::time::Duration;

use clap::Args;

use webgpu_pool::browser::BrowserKind;

use super::parse_duration;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The language model. Only `smollm2` (SmolLM2-135M-Instruct, from the GGUF file
    /// `scripts/setup.sh` fetches) for now.
    #[arg(long, default_value = "smollm2", value_parser = ["smollm2"])]
    pub model: String,
    /// What to ask (with --chat, the default) or the text to continue (with --raw).
    #[arg(long)]
    pub prompt: String,
    /// Give the prompt raw, without the chat template.
    #[arg(long, conflicts_with = "chat")]
    pub raw: bool,
    /// Wrap the prompt in the model's own chat template (the default).
    #[arg(long)]
    pub chat: bool,
    /// Tokens to generate at most; fewer when the model ends its turn.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub max_new_tokens: u32,
    /// The browser whose page generates (on wasm).
    #[arg(long, default_value = "chromium", value_name = "KIND")]
    pub browser: BrowserKind,
    /// Bound on one page call: the load, or one step.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub call_timeout: Duration,
}
