//! File formats models are loaded from: GGUF files ([`gguf`]) and Hugging Face folders ([`hf`],
//! with the safetensors weights of a Llama-family decoder in [`hf_llama`]), and LoRA adapters in
//! PEFT's folder format ([`peft`]); dynamic-int8 encoder folders ([`int8_encoder`]); [`inspect`]
//! summarises any of them from its headers.

pub mod gguf;
pub mod hf;
pub mod hf_llama;
pub mod inspect;
pub mod int8_encoder;
pub mod peft;
