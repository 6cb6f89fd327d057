//! Pretrained transformers: loading Hugging Face model folders (BERT-family encoders, Llama-family
//! decoders) and GGUF files, tokenization, chat templates, sampling, and a generation engine.

mod error;

pub use error::{Error, Result};
