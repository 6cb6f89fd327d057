//! What the OpenAI-compatible routes need from a language model: the [`LanguageModel`] trait.
//! The routes never see model internals; `llm_models.rs` implements the trait for lepton-llm's
//! sentence embedders and generation engine, and the tests use fakes.
//!
//! Request and event types are lepton-llm's plain data ([`SamplingParams`], [`GenerationEvent`],
//! [`ChatMessage`]), so the two crates agree on their meaning.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

pub use lepton_llm::{
    ChatMessage, EngineStats, FinishReason, GenerationEvent, SamplingParams, Usage,
};

use crate::error::ApiError;

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
}

/// Vectors for a batch of texts.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens over all inputs.
    pub prompt_tokens: usize,
}

/// A servable language model. Blocking calls (`embed`) run on a blocking thread; `generate`
/// only queues and returns a receiver of events (dropping it cancels the request).
pub trait LanguageModel: Send + Sync + 'static {
    fn info(&self) -> &LlmInfo;
    /// Embed texts; over-long inputs are errors naming the input.
    fn embed(&self, _texts: &[String]) -> Result<Embedded, lepton_llm::Error> {
        Err(unsupported("embeddings"))
    }
    /// Render a conversation with the model's chat template (generation prompt appended).
    fn chat_prompt(&self, _messages: &[ChatMessage]) -> Result<String, lepton_llm::Error> {
        Err(unsupported("chat"))
    }
    /// Tokens of a prompt.
    fn count_tokens(&self, _text: &str) -> Result<usize, lepton_llm::Error> {
        Err(unsupported("generation"))
    }
    /// Queue a generation; validation errors name the field. This may tokenize the prompt:
    /// call it from a blocking thread ([`crate::offload`]).
    fn generate(
        &self,
        _prompt: String,
        _params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, lepton_llm::Error> {
        Err(unsupported("generation"))
    }
    /// Engine state for the metrics (generation models).
    fn stats(&self) -> Option<EngineStats> {
        None
    }
}

fn unsupported(what: &str) -> lepton_llm::Error {
    lepton_llm::Error::InvalidRequest {
        field: "model",
        message: format!("this model does not do {what}"),
    }
}

/// One served language model with its in-flight bound (for blocking work such as embeddings).
pub struct ServedLlm {
    pub model: Arc<dyn LanguageModel>,
    in_flight: AtomicUsize,
    /// Most requests running or waiting at once; more get 503.
    pub capacity: usize,
    /// One blocking embedding batch at a time (it already uses every core).
    pub gate: tokio::sync::Semaphore,
}

/// Held while a request occupies a slot of a [`ServedLlm`].
pub struct Slot(Arc<ServedLlm>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ServedLlm {
    /// Take a slot, or 503 when `capacity` requests are already in flight.
    pub fn slot(self: &Arc<Self>, name: &str) -> Result<Slot, ApiError> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::Overloaded(format!(
                "model '{name}' has {} requests in flight",
                self.capacity
            )));
        }
        Ok(Slot(Arc::clone(self)))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// The served language models, by name.
#[derive(Default)]
pub struct LlmRegistry {
    models: RwLock<BTreeMap<String, Arc<ServedLlm>>>,
}

impl LlmRegistry {
    /// Serve `model` as `name` with at most `capacity` requests in flight.
    pub fn insert(&self, name: &str, model: Arc<dyn LanguageModel>, capacity: usize) {
        let served = Arc::new(ServedLlm {
            model,
            in_flight: AtomicUsize::new(0),
            capacity: capacity.max(1),
            gate: tokio::sync::Semaphore::new(1),
        });
        self.models
            .write()
            .expect("llm lock")
            .insert(name.to_string(), served);
    }

    pub fn remove(&self, name: &str) -> bool {
        self.models
            .write()
            .expect("llm lock")
            .remove(name)
            .is_some()
    }

    /// The model named `name`, or 404 listing what is served.
    pub fn get(&self, name: &str) -> Result<Arc<ServedLlm>, ApiError> {
        let models = self.models.read().expect("llm lock");
        models.get(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = models.keys().map(String::as_str).collect();
            ApiError::NotFound(format!(
                "model: no language model named '{name}' (served: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    pub fn all(&self) -> Vec<(String, Arc<ServedLlm>)> {
        self.models
            .read()
            .expect("llm lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.models.read().expect("llm lock").is_empty()
    }
}

/// The API error for a model error: request problems are 400 naming the field, a full queue
/// is 503, anything else a 500 with the detail logged.
pub fn api_error(e: lepton_llm::Error) -> ApiError {
    use lepton_llm::Error as E;
    match e {
        E::InvalidRequest { field, message } => ApiError::BadRequest(format!("{field}: {message}")),
        E::ContextOverflow { .. } => ApiError::BadRequest(format!("max_tokens: {e}")),
        E::InputTooLong { .. } => ApiError::BadRequest(e.to_string()),
        E::QueueFull { .. } => ApiError::Overloaded(e.to_string()),
        E::EngineStopped => ApiError::Overloaded(e.to_string()),
        other => ApiError::Internal(format!("{:#}", DisplayChain(&other))),
    }
}

struct DisplayChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(s) = cur {
            write!(f, ": {s}")?;
            cur = s.source();
        }
        Ok(())
    }
}
