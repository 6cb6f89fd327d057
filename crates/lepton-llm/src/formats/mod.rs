//! File formats models are loaded from: GGUF files ([`gguf`]) and Hugging Face folders ([`hf`],
//! with the safetensors weights of a Llama-family decoder in [`hf_llama`]).

pub mod gguf;
pub mod hf;
pub mod hf_llama;
