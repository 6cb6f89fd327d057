//! Pretrained transformers: loading Hugging Face model folders (BERT-family encoders, Llama-family
//! decoders) and GGUF files, tokenization, chat templates, sampling, and a generation engine.

pub mod bert;
pub mod embed;
mod error;
pub mod hf;
pub mod tokenizer;

pub use embed::{cosine, Embedder, Embeddings, Pooling};
pub use error::{Error, Result};
pub use hf::{Architecture, HfFolder, ModelPath};
pub use tokenizer::Tokenizer;
