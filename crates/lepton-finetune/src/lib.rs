//! LoRA fine-tuning of pretrained Llama-family decoders (GGUF or Hugging Face folders), with
//! adapters saved in PEFT's exact layout.
//!
//! # Map
//! - [`config`]: the `[finetune]` section of a spec / the CLI options.
//! - [`base`]: loading the frozen base (GGUF dequantized to f32 or kept quantized, or an HF
//!   folder).
//! - [`decoder`]: the trainable f32 Llama forward on candle autograd.
//! - [`lora`]: the LoRA linear (frozen base + A/B variables); [`weight`]: a frozen base weight
//!   in f32 ([`frozen`]: the f32 matmul with an input-only gradient) or in its GGUF blocks
//!   ([`qfrozen`]: the integer kernels, QLoRA-style); [`loss`]: fused masked cross-entropy,
//!   and the LM head + loss as one op over chunks of rows (the `[N, V]` logits never in full).
//! - [`fused`]: RMSNorm, RoPE and SwiGLU as single ops with their backward; `lora_op`: the
//!   adapted linear as one op; `attention`: grouped-query attention on plain rows.
//! - [`step`]: the training step by hand (forward, then the backward to the LoRA gradients
//!   only), without candle autograd; [`decoder`] keeps the autograd path (validation, tests).
//! - [`data`]: plain text packed into windows, chat JSONL with assistant-only loss masks.
//! - [`train`]: the training loop, validation loss/perplexity, `metrics.jsonl`, checkpoints.
//! - [`peft`]: adapter save/load in PEFT's layout; [`merge`]: the merged HF folder.

mod attention;
pub mod base;
pub mod config;
pub mod data;
pub mod decoder;
mod error;
pub mod frozen;
pub mod fused;
pub mod lora;
mod lora_op;
pub mod loss;
pub mod merge;
pub mod peft;
pub mod qfrozen;
pub mod step;
pub mod train;
pub mod weight;

pub use base::Base;
pub use config::FinetuneSpec;
pub use decoder::{Decoder, DecoderConfig};
pub use error::{Error, Result};
pub use lora::{LoraLinear, LoraPair};
pub use weight::{BasePrecision, FrozenWeight};
