//! [`LanguageModel`]: what the OpenAI-compatible routes need from a language model. The routes
//! never see model internals; `lepton-llm` implements it for its sentence embedders and
//! generation engine, `lepton-photon` for language-model photons, and the tests use fakes.

use std::path::Path;

use crate::generation::{ChatMessage, EngineStats, GenerationEvent, SamplingParams};
use crate::InferError;

/// What a language model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmTask {
    /// Sentence embeddings (`/v1/embeddings`).
    Embeddings,
    /// Text generation (`/v1/completions`, `/v1/chat/completions`).
    Generation,
}

impl LlmTask {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmTask::Embeddings => "embeddings",
            LlmTask::Generation => "text-generation",
        }
    }
}

/// Static facts about a served language model.
#[derive(Debug, Clone)]
pub struct LlmInfo {
    pub task: LlmTask,
    /// Most tokens one input (embeddings) or prompt + completion (generation) may have.
    pub context_length: usize,
    /// Vector length (embeddings); 0 for generation.
    pub dimensions: usize,
    /// Unix time the model was loaded (OpenAI's `created`).
    pub created: u64,
    /// Longest prompt in bytes that can fit the context: the context length times the longest
    /// token in bytes. Longer prompts are refused before tokenization. `usize::MAX` when
    /// unknown.
    pub max_prompt_bytes: usize,
    /// The weights' number format as `/v1/models` reports it: a GGUF file's llama.cpp type
    /// (`Q4_K_M`, `Q8_0`, ...), a Hugging Face folder's tensor types (`F32`, `BF16+F32`, `I8+F32`
    /// for a dynamic-int8 encoder), `f32` for a photon.
    pub precision: String,
}

/// Vectors for a batch of texts.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of each input (so a server that batches several requests' texts into one call can
    /// give each its own usage).
    pub tokens: Vec<usize>,
}

impl Embedded {
    /// Tokens over all inputs.
    pub fn prompt_tokens(&self) -> usize {
        self.tokens.iter().sum()
    }
}

/// A LoRA adapter loaded on a generation model (see [`LanguageModel::load_adapter`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterInfo {
    /// The name requests use (`"model": "base:name"` or `"name"`).
    pub name: String,
    pub rank: usize,
    /// Values the adapter holds.
    pub parameters: usize,
}

/// A servable language model. Blocking calls (`embed`) run on a blocking thread; `generate`
/// only queues and returns a receiver of events (dropping it cancels the request).
pub trait LanguageModel: Send + Sync + 'static {
    fn info(&self) -> &LlmInfo;
    /// Embed texts; over-long inputs are errors naming the input.
    fn embed(&self, _texts: &[String]) -> Result<Embedded, InferError> {
        Err(unsupported("embeddings"))
    }
    /// Render a conversation with the model's chat template (generation prompt appended).
    fn chat_prompt(&self, _messages: &[ChatMessage]) -> Result<String, InferError> {
        Err(unsupported("chat"))
    }
    /// Tokens of a prompt.
    fn count_tokens(&self, _text: &str) -> Result<usize, InferError> {
        Err(unsupported("generation"))
    }
    /// Queue a generation; validation errors name the field. This may tokenize the prompt:
    /// call it from a blocking thread.
    fn generate(
        &self,
        _prompt: String,
        _params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, InferError> {
        Err(unsupported("generation"))
    }
    /// [`LanguageModel::generate`] under the LoRA adapter loaded as `adapter` (`None`: the base
    /// model). An unknown adapter is [`InferError::NotFound`]. Models without adapters know none.
    fn generate_with_adapter(
        &self,
        adapter: Option<&str>,
        prompt: String,
        params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, InferError> {
        match adapter {
            None => self.generate(prompt, params),
            Some(name) => Err(InferError::NotFound(format!(
                "no adapter named '{name}' (this model has none)"
            ))),
        }
    }
    /// The loaded LoRA adapters, by name.
    fn adapters(&self) -> Vec<AdapterInfo> {
        Vec::new()
    }
    /// Load the PEFT adapter folder `dir` as `name` (replacing one of that name; returns whether
    /// one was replaced). Bad files are [`InferError::BadRequest`] on `path` naming the file and
    /// tensor or field. Reads files: call it from a blocking thread.
    fn load_adapter(&self, _name: &str, _dir: &Path) -> Result<bool, InferError> {
        Err(unsupported("LoRA adapters"))
    }
    /// Unload adapter `name`; whether it was loaded. Running requests finish with it.
    fn unload_adapter(&self, _name: &str) -> bool {
        false
    }
    /// Engine state for the metrics (generation models).
    fn stats(&self) -> Option<EngineStats> {
        None
    }
}

fn unsupported(what: &str) -> InferError {
    InferError::bad_request("model", format!("this model does not do {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Minimal(LlmInfo);

    impl LanguageModel for Minimal {
        fn info(&self) -> &LlmInfo {
            &self.0
        }
    }

    #[test]
    fn what_a_model_does_not_do_is_a_bad_request_on_model() {
        let m = Minimal(LlmInfo {
            task: LlmTask::Embeddings,
            context_length: 8,
            dimensions: 4,
            created: 0,
            max_prompt_bytes: usize::MAX,
            precision: "f32".into(),
        });
        let e = m
            .generate("hi".into(), SamplingParams::greedy(1))
            .unwrap_err();
        assert!(
            matches!(e, InferError::BadRequest { field: "model", .. }),
            "{e}"
        );
        assert!(m.embed(&["x".into()]).is_err());
        let e = m
            .generate_with_adapter(Some("a"), "hi".into(), SamplingParams::greedy(1))
            .unwrap_err();
        assert!(matches!(e, InferError::NotFound(_)), "{e}");
        assert!(m.adapters().is_empty() && !m.unload_adapter("a"));
        assert!(m.load_adapter("a", Path::new("x")).is_err());
        assert!(m.stats().is_none());
    }
}
