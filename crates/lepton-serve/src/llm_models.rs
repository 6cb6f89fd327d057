//! [`LanguageModel`] for lepton-llm's models: sentence embedders (Hugging Face BERT folders) and
//! the generation engine over a Llama decoder (GGUF file or Hugging Face folder).
//! [`load_language_model`] picks by what the path is.

use std::path::Path;
use std::sync::Arc;

use lepton_llm::{Embedder, Engine, EngineConfig, GenerationRequest, ModelPath, TextModel};

use crate::llm::{
    ChatMessage, Embedded, EngineStats, GenerationEvent, LanguageModel, LlmInfo, LlmTask,
    SamplingParams,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A sentence embedder behind the trait.
pub struct EmbedderModel {
    embedder: Embedder,
    info: LlmInfo,
}

impl EmbedderModel {
    /// Wrap an embedder; over-long inputs are refused (400), not silently truncated.
    pub fn new(mut embedder: Embedder) -> Self {
        embedder.truncate = false;
        let info = LlmInfo {
            task: LlmTask::Embeddings,
            context_length: embedder.max_tokens,
            dimensions: embedder.dim(),
            created: now(),
        };
        EmbedderModel { embedder, info }
    }
}

impl LanguageModel for EmbedderModel {
    fn info(&self) -> &LlmInfo {
        &self.info
    }
    fn embed(&self, texts: &[String]) -> Result<Embedded, lepton_llm::Error> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = self.embedder.embed(&refs)?;
        Ok(Embedded {
            prompt_tokens: out.tokens.iter().sum(),
            vectors: out.vectors,
        })
    }
}

/// A generation engine behind the trait.
pub struct EngineModel {
    engine: Engine,
    info: LlmInfo,
}

impl EngineModel {
    pub fn new(engine: Engine) -> Self {
        let info = LlmInfo {
            task: LlmTask::Generation,
            context_length: engine.model().context_length(),
            dimensions: 0,
            created: now(),
        };
        EngineModel { engine, info }
    }
}

impl LanguageModel for EngineModel {
    fn info(&self) -> &LlmInfo {
        &self.info
    }
    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, lepton_llm::Error> {
        self.engine.model().apply_chat_template(messages)
    }
    fn count_tokens(&self, text: &str) -> Result<usize, lepton_llm::Error> {
        Ok(self.engine.model().tokenize(text)?.len())
    }
    fn generate(
        &self,
        prompt: String,
        params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, lepton_llm::Error> {
        self.engine.submit(GenerationRequest::new(prompt, params))
    }
    fn stats(&self) -> Option<EngineStats> {
        Some(self.engine.stats())
    }
}

/// Load a Hugging Face encoder folder (embeddings), or a Hugging Face Llama folder or a GGUF file
/// (generation, with `engine`).
pub fn load_language_model(
    path: &Path,
    engine: EngineConfig,
) -> Result<Arc<dyn LanguageModel>, lepton_llm::Error> {
    match ModelPath::classify(path)? {
        ModelPath::Folder(f) if f.architecture == lepton_llm::Architecture::Bert => {
            Ok(Arc::new(EmbedderModel::new(Embedder::load(path)?)))
        }
        ModelPath::Folder(f) => {
            let model = TextModel::load_folder(&f.dir)?;
            Ok(Arc::new(EngineModel::new(Engine::new(model, engine)?)))
        }
        ModelPath::Gguf(p) => {
            let model = TextModel::load(&p)?;
            Ok(Arc::new(EngineModel::new(Engine::new(model, engine)?)))
        }
    }
}
