//! Pretrained transformers: loading Hugging Face model folders (BERT-family encoders, Llama-family
//! decoders) and GGUF files, tokenization, chat templates, sampling, and a generation engine.

pub mod bert;
pub mod chat_template;
pub mod embed;
pub mod engine;
mod error;
pub mod gguf;
pub mod hf;
pub mod hf_llama;
pub mod llama;
pub mod quant;
pub mod sampling;
mod text_model;
pub mod tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use embed::{cosine, Embedder, Embeddings, Pooling};
pub use engine::{
    Engine, EngineConfig, EngineStats, FinishReason, GenerationEvent, GenerationRequest, Timings,
    Usage,
};
pub use error::{Error, Result};
pub use hf::{Architecture, HfFolder, ModelPath};
pub use sampling::SamplingParams;
pub use text_model::TextModel;
pub use tokenizer::Tokenizer;
