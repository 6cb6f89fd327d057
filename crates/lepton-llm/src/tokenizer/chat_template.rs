//! Rendering a model's Jinja chat template (Hugging Face `apply_chat_template`) with minijinja.
//!
//! The template gets `messages` (a list of `{role, content}`), `add_generation_prompt`, `bos_token`
//! and `eos_token`, plus `raise_exception(msg)`; Python string methods (`.strip()`, `.startswith()`,
//! ...) come from minijinja-contrib's pycompat layer, as many published templates use them.

pub use lepton_infer::ChatMessage;

use crate::{Error, Result};

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compile `source` and render a probe conversation (one user message, with the generation
    /// prompt): syntax errors and templates that fail on every conversation (an unknown filter, a
    /// misspelled variable, a `raise_exception` on the basic case) are reported here, not as an
    /// error on every chat request. The probe's text must appear in the output.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source.to_owned())
            .map_err(|source| Error::Template {
                op: "compiling the chat template".into(),
                source,
            })?;
        let template = Self {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        };
        template.probe()?;
        Ok(template)
    }

    fn probe(&self) -> Result<()> {
        const PROBE: &str = "Lepton chat template probe";
        let text = self
            .render(&[ChatMessage::new("user", PROBE)], true)
            .map_err(|e| match e {
                Error::Template { source, .. } => Error::Template {
                    op: "rendering the chat template on a probe conversation (one user message)"
                        .into(),
                    source,
                },
                other => other,
            })?;
        if !text.contains(PROBE) {
            return Err(Error::Template {
                op: "checking the chat template".into(),
                source: minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!(
                        "a probe conversation (one user message) rendered as {text:?}, without the message's text"
                    ),
                ),
            });
        }
        Ok(())
    }

    /// Render the conversation; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::InvalidRequest {
                field: "messages",
                message: "at least one message is needed".into(),
            });
        }
        let tmpl = self.env.get_template("chat").expect("added in new");
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|source| Error::Template {
            op: "rendering the chat template".into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as embedded in its GGUF file.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_default_system_prompt() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let text = t.render(&[ChatMessage::new("user", "Hi!")], true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
        let text = t
            .render(
                &[
                    ChatMessage::new("system", "Be brief."),
                    ChatMessage::new("user", "Hi"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0].content.strip() }}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new("user", "  x ")], true).unwrap(),
            "x"
        );
        let e = t
            .render(&[ChatMessage::new("system", "x")], true)
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("rendering the chat template"),
            "{e}"
        );
    }

    /// Regression (issue 12, finding 10): these compiled, then failed every request (a 500).
    #[test]
    fn templates_that_cannot_render_are_refused_at_load() {
        for (source, why) in [
            (
                "{{ messages[0].content | no_such_filter }}",
                "unknown filter",
            ),
            ("{{ msg.content.strip() }}", "undefined variable"),
            (
                "{{ raise_exception('unsupported') }}",
                "raises on the basic case",
            ),
            (
                "{% for m in messages %}{{ m.role }}{% endfor %}",
                "drops the content",
            ),
        ] {
            let e = ChatTemplate::new(source, "", "").expect_err(why);
            let msg = format!("{e}");
            assert!(msg.contains("chat template"), "{why}: {msg}");
        }
    }

    #[test]
    fn syntax_error_and_empty_conversation_are_errors() {
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
        let t = ChatTemplate::new(SMOLLM2, "", "").unwrap();
        assert!(t.render(&[], true).is_err());
    }
}
