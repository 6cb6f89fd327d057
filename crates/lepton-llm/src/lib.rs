//! Pretrained transformers: loading Hugging Face model folders (BERT-family encoders, Llama-family
//! decoders) and GGUF files (Llama/Mistral, Qwen2/2.5, Qwen3, Phi-3, Gemma 2, Gemma 3; Q4_1, Q8_0,
//! Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights kept quantized), tokenization, chat templates, sampling,
//! and a generation engine.
//!
//! # Map
//! - [`formats`]: where weights come from — [`gguf`] files, Hugging Face folders ([`hf`],
//!   [`hf_llama`]), LoRA adapters in PEFT folders ([`peft`]), dynamic-int8 encoder folders
//!   ([`int8_encoder`], written by `lepton compress`), and a header-only summary of any of them
//!   ([`inspect`], `lepton inspect`).
//! - [`models`]: the networks — [`bert`] encoders and [`embed`]dings, the one [`decoder`] with its
//!   per-architecture parts, [`TextModel`] (decoder + tokenizer + template).
//! - [`quant`]: quantized weight matrices and their CPU kernels.
//! - [`runtime`]: the generation [`engine`], KV caches, [`sampling`], the thread pool.
//! - [`tokenizer`]: GGUF/Hugging Face tokenizers and [`chat_template`]s.
//! - [`serving`]: these models behind the inference contract (`lepton_infer::LanguageModel`),
//!   [`load_language_model`] for a path.
//!
//! The short paths of earlier releases (`lepton_llm::gguf`, `lepton_llm::llama`, ...) are kept as
//! re-exports of the modules in this tree.

mod error;
pub mod formats;
pub mod models;
pub mod quant;
pub mod runtime;
pub mod serving;
#[doc(hidden)]
pub mod testing;
pub mod tokenizer;

pub use formats::{gguf, hf, hf_llama, inspect, int8_encoder, peft};
pub use models::decoder as llama;
pub use models::{bert, decoder, embed};
pub use runtime::{engine, sampling};
pub use tokenizer::chat_template;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use embed::{cosine, Embedder, Embeddings, Pooling};
pub use engine::{
    Engine, EngineConfig, EngineStats, FinishReason, GenerationEvent, GenerationRequest, Timings,
    Usage,
};
pub use error::{Error, Result};
pub use hf::{Architecture, HfFolder, ModelPath};
pub use models::text_model::TextModel;
pub use sampling::SamplingParams;
pub use serving::{load_language_model, EmbedderModel, EngineModel};
pub use tokenizer::Tokenizer;
