//! The inference contract ([`lepton_infer::LanguageModel`]) for this crate's models: sentence
//! embedders (Hugging Face BERT folders) and the generation engine over a decoder (GGUF file or
//! Hugging Face folder). [`load_language_model`] picks by what the path is. Errors cross the
//! contract as [`InferError`] (see `From<Error> for InferError` in `error.rs`).

use std::path::Path;
use std::sync::Arc;

use lepton_infer::{
    AdapterInfo, ChatMessage, Embedded, EngineStats, GenerationEvent, InferError, LanguageModel,
    LlmInfo, LlmTask, SamplingParams,
};

use crate::{Embedder, Engine, EngineConfig, GenerationRequest, ModelPath, TextModel};

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
    pub fn new(mut embedder: Embedder, precision: String) -> Self {
        embedder.truncate = false;
        let info = LlmInfo {
            task: LlmTask::Embeddings,
            context_length: embedder.max_tokens,
            dimensions: embedder.dim(),
            created: now(),
            // WordPiece maps any over-long word to one [UNK]: no byte bound per token.
            max_prompt_bytes: usize::MAX,
            precision,
        };
        EmbedderModel { embedder, info }
    }
}

impl LanguageModel for EmbedderModel {
    fn info(&self) -> &LlmInfo {
        &self.info
    }
    fn embed(&self, texts: &[String]) -> Result<Embedded, InferError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = self.embedder.embed(&refs)?;
        Ok(Embedded {
            tokens: out.tokens,
            vectors: out.vectors,
        })
    }
}

/// A generation engine behind the trait.
pub struct EngineModel {
    engine: Engine,
    info: LlmInfo,
}

/// Special tokens written in a prompt (`<|im_start|>`) are one token each but are skipped by
/// detokenization: no token is counted as shorter than this many bytes.
const MIN_TOKEN_BYTES_BOUND: usize = 64;

/// The longest token of `model` in bytes (at least [`MIN_TOKEN_BYTES_BOUND`]), measured by
/// detokenizing every id once at load (about 50 ms for a 49k vocabulary).
fn longest_token_bytes(model: &TextModel) -> usize {
    let vocab = model.llama().config().vocab_size as u32;
    (0..vocab)
        .filter_map(|id| model.detokenize(&[id]).ok())
        .map(|t| t.len())
        .max()
        .unwrap_or(0)
        .max(MIN_TOKEN_BYTES_BOUND)
}

impl EngineModel {
    pub fn new(engine: Engine, precision: String) -> Self {
        let context_length = engine.model().context_length();
        let info = LlmInfo {
            task: LlmTask::Generation,
            context_length,
            dimensions: 0,
            created: now(),
            max_prompt_bytes: context_length.saturating_mul(longest_token_bytes(engine.model())),
            precision,
        };
        EngineModel { engine, info }
    }
}

impl LanguageModel for EngineModel {
    fn info(&self) -> &LlmInfo {
        &self.info
    }
    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, InferError> {
        Ok(self.engine.model().apply_chat_template(messages)?)
    }
    fn count_tokens(&self, text: &str) -> Result<usize, InferError> {
        Ok(self.engine.model().tokenize(text)?.len())
    }
    fn generate(
        &self,
        prompt: String,
        params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, InferError> {
        Ok(self.engine.submit(GenerationRequest::new(prompt, params))?)
    }
    fn generate_with_adapter(
        &self,
        adapter: Option<&str>,
        prompt: String,
        params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, InferError> {
        let mut request = GenerationRequest::new(prompt, params);
        request.adapter = adapter.map(str::to_owned);
        Ok(self.engine.submit(request)?)
    }
    fn adapters(&self) -> Vec<AdapterInfo> {
        self.engine
            .adapters()
            .iter()
            .map(|a| AdapterInfo {
                name: a.name.clone(),
                rank: a.rank,
                parameters: a.parameters,
            })
            .collect()
    }
    fn load_adapter(&self, name: &str, dir: &Path) -> Result<bool, InferError> {
        self.engine.load_adapter(name, dir).map_err(adapter_error)
    }
    fn unload_adapter(&self, name: &str) -> bool {
        self.engine.unload_adapter(name)
    }
    fn stats(&self) -> Option<EngineStats> {
        Some(self.engine.stats())
    }
}

/// The contract's error for a failed adapter load: a bad name is a bad request on its field; a
/// folder that cannot be read or does not fit the model is a bad request on `path`, with the
/// whole cause chain (file, field, tensor) in the message.
fn adapter_error(e: crate::Error) -> InferError {
    use crate::Error as E;
    match e {
        E::InvalidRequest { field, message } => InferError::BadRequest { field, message },
        e @ (E::Io { .. }
        | E::Json { .. }
        | E::Config { .. }
        | E::MissingFile { .. }
        | E::MissingTensor { .. }
        | E::TensorShape { .. }) => {
            let mut message = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                message.push_str(": ");
                message.push_str(&c.to_string());
                cur = c.source();
            }
            InferError::bad_request("path", message)
        }
        other => other.into(),
    }
}

/// Load a Hugging Face encoder folder (embeddings), or a Hugging Face Llama folder or a GGUF file
/// (generation, with `engine`).
pub fn load_language_model(
    path: &Path,
    engine: EngineConfig,
) -> crate::Result<Arc<dyn LanguageModel>> {
    // The header's number formats, as `lepton inspect` names them (reads metadata only).
    let summary = crate::inspect::ModelSummary::read(path)?;
    let precision = summary
        .quantization
        .or_else(|| summary.types.first().map(|t| t.dtype.clone()))
        .unwrap_or_else(|| "unknown".into());
    match ModelPath::classify(path)? {
        ModelPath::Folder(f) if f.architecture == crate::Architecture::Bert => Ok(Arc::new(
            EmbedderModel::new(Embedder::load(path)?, precision),
        )),
        ModelPath::Folder(f) => {
            let model = TextModel::load_folder(&f.dir)?;
            Ok(Arc::new(EngineModel::new(
                Engine::new(model, engine)?,
                precision,
            )))
        }
        ModelPath::Gguf(p) => {
            let model = TextModel::load(&p)?;
            Ok(Arc::new(EngineModel::new(
                Engine::new(model, engine)?,
                precision,
            )))
        }
    }
}
