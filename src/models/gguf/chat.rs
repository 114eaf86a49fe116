//! The chat template of a GGUF language model: a conversation rendered to the prompt text the
//! model was trained on, by the Jinja template the file carries (`tokenizer.chat_template`).
//!
//! Input: a [`Gguf`] and a list of [`ChatMessage`]. Output: the prompt as a string, to be
//! encoded with control tokens parsed. The template is rendered with minijinja, as
//! `transformers` renders it with jinja2 (`trim_blocks` and `lstrip_blocks` on), rather than
//! copied by hand, so a file with another template renders its own. Must not import `cli` or
//! `report`.

use std::path::Path;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;

use super::Gguf;
use crate::models::ModelError;

/// The metadata key holding the Jinja template.
const TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
}

/// A Jinja chat template and the special-token strings it may name.
#[derive(Debug, Clone, Copy)]
pub struct ChatTemplate<'a> {
    /// The Jinja source.
    pub source: &'a str,
    /// The text of the beginning-of-sequence token, the template's `bos_token`.
    pub bos_token: &'a str,
    /// The text of the end-of-sequence token, the template's `eos_token`.
    pub eos_token: &'a str,
}

impl ChatTemplate<'_> {
    /// Renders `messages` (the template's `messages`), ending with the assistant's opening when
    /// `add_generation_prompt` is true. The template may call `raise_exception(message)`, as
    /// `transformers` templates do to refuse a conversation.
    ///
    /// # Errors
    /// minijinja's error when the template does not parse or fails while rendering; it gives
    /// the line in `tokenizer.chat_template`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        let mut env = Environment::new();
        // As transformers' `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        let ctx = minijinja::context! {
            messages => Value::from(Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        };
        env.render_named_str(TEMPLATE_KEY, self.source, ctx)
    }
}

/// Renders `messages` with the chat template of the file `g`, with `bos_token` and `eos_token`
/// set to the texts of its bos and eos tokens.
///
/// # Errors
/// [`ModelError::BadWeights`] when the file has no template or no bos, eos or tokens;
/// [`ModelError::Tokenizer`] naming the file and giving minijinja's message when the template
/// does not parse or render.
pub fn render_chat(
    g: &Gguf,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<String, ModelError> {
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let text = |key: &str| -> Result<&str, ModelError> {
        let id = g.u64(key)?;
        usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get(i).copied())
            .ok_or_else(|| {
                ModelError::bad_weights(
                    g.path(),
                    format!(
                        "metadata '{key}' = {id} is past the vocabulary of {} tokens",
                        tokens.len()
                    ),
                )
            })
    };
    let template = ChatTemplate {
        source: g.str(TEMPLATE_KEY)?,
        bos_token: text("tokenizer.ggml.bos_token_id")?,
        eos_token: text("tokenizer.ggml.eos_token_id")?,
    };
    render_in(g.path(), &template, messages, add_generation_prompt)
}

/// Renders `template`, naming `path` in the error.
fn render_in(
    path: &Path,
    template: &ChatTemplate<'_>,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<String, ModelError> {
    template
        .render(messages, add_generation_prompt)
        .map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: format!("chat template: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gguf::tokenizer::tests::{smollm, tok};

    /// The file's template rendered by jinja2 3.1.6 through llama-cpp-python 0.3.36's
    /// `Jinja2ChatFormatter` (an `ImmutableSandboxedEnvironment` with `trim_blocks` and
    /// `lstrip_blocks`, as transformers uses), the template read from the same GGUF file.
    const ONE_USER_TURN: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    /// The same, with a system turn of its own and an assistant turn, no generation prompt.
    const THREE_TURNS: &str = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n";

    #[test]
    fn gguf_chat_renders_the_files_template() {
        let one = render_chat(smollm(), &[ChatMessage::user("What is 2+2?")], true).unwrap();
        assert_eq!(one, ONE_USER_TURN);
        let turns = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::user("Hi"),
            ChatMessage::new("assistant", "Hello!"),
        ];
        assert_eq!(render_chat(smollm(), &turns, false).unwrap(), THREE_TURNS);
    }

    /// The prompt's ids, from llama.cpp through llama-cpp-python 0.3.36:
    /// `tokenize(ONE_USER_TURN.encode(), add_bos=False, special=True)`.
    #[test]
    fn gguf_chat_prompt_ids_match_llama_cpp() {
        #[rustfmt::skip]
        const IDS: &[u32] = &[1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308,
            34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 216, 34, 27,
            34, 47, 2, 198, 1, 520, 9531, 198];
        assert_eq!(tok().encode(ONE_USER_TURN, true).unwrap(), IDS);
    }

    #[test]
    fn gguf_chat_template_variables_and_whitespace() {
        let t = ChatTemplate {
            source: "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}{{ eos_token if add_generation_prompt }}",
            bos_token: "<B>",
            eos_token: "<E>",
        };
        let msgs = [ChatMessage::user("a"), ChatMessage::new("system", "s")];
        // trim_blocks and lstrip_blocks drop the block lines, as jinja2 in transformers does.
        assert_eq!(t.render(&msgs, true).unwrap(), "<B>[a]\n<E>");
        assert_eq!(t.render(&msgs, false).unwrap(), "<B>[a]\n");
    }

    #[test]
    fn gguf_chat_broken_templates_name_the_file() {
        let path = Path::new("/x/model.gguf");
        let err = |source: &str| {
            let t = ChatTemplate {
                source,
                bos_token: "",
                eos_token: "",
            };
            render_in(path, &t, &[ChatMessage::user("hi")], true)
                .unwrap_err()
                .to_string()
        };
        let e = err("{% for m in messages %}{{ m.content }}");
        assert!(
            e.contains("/x/model.gguf") && e.contains("(in tokenizer.chat_template:1)"),
            "{e}"
        );
        assert!(e.contains("syntax error"), "{e}");
        let e = err("{{ raise_exception('only user turns') }}");
        assert!(e.contains("only user turns"), "{e}");
        let e = err("{{ messages[0].content + 1 }}");
        assert!(e.contains("invalid operation"), "{e}");
    }
}
