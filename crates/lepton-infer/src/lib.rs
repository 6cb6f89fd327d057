//! The inference contract: what the server sees of a model. `lepton-photon` and `lepton-llm`
//! implement these traits next to their models; `lepton-serve` depends only on this crate.
//!
//! | module | what |
//! |---|---|
//! | [`backend`] | [`Backend`]: features and a batched forward pass of a predictive model |
//! | [`language_model`] | [`LanguageModel`]: embeddings, chat prompts, streamed generation |
//! | [`generation`] | generation requests and events: [`SamplingParams`], [`GenerationEvent`], ... |
//! | [`error`] | [`InferError`]: the one error kind set the server maps to status codes |

pub mod backend;
pub mod error;
pub mod generation;
pub mod language_model;

pub use backend::{Backend, ExplainLimits, ModelInfo, Output};
pub use error::{InferError, Result};
pub use generation::{
    ChatMessage, EngineStats, FinishReason, GenerationEvent, SamplingParams, Timings, Usage,
    MAX_NEW_TOKENS,
};
pub use language_model::{AdapterInfo, Embedded, LanguageModel, LlmInfo, LlmTask};
