//! HTTP serving for Lepton models, as a library: [`app`] builds the router, [`serve`] runs it.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | `serve.toml`: listen address, limits, batching, logging, alerts |
//! | [`backend`] | the [`Backend`] trait the server calls (`lepton-infer`'s contract; never the trainer) |
//! | [`batcher`] | dynamic batching and the elastic worker pool, per model |
//! | `embed_batcher` | dynamic batching of `/v1/embeddings` requests, per embeddings model |
//! | [`auth`] | bearer tokens with scopes, hashed, constant-time, reloadable |
//! | [`routes`] | `/v1` predict, `/v2` Open Inference Protocol, admin, health, metrics, OpenAPI |
//! | [`llm`] | the served [`LanguageModel`]s (the trait is `lepton-infer`'s, implemented by the model crates) |
//! | [`metrics`] | Prometheus metrics ([`llm_metrics`] for language models, [`metric_labels`] their labels) |
//! | [`server`] | [`serve`]: the accept loop with connection limits, drain on SIGTERM, token reload |
//! | [`connection`] | one client connection: header-read and idle timeouts, drain |
//! | [`client`] | who a request is from (peer address, trusted proxies) |
//! | [`rate_limit`] | per-client token buckets in a bounded map |
//! | [`offload`] | CPU-heavy request work on blocking threads with bounded concurrency |
//! | [`tensor_data`] | v2 datatypes: ranges, JSON and binary decoding |
//! | [`serve_error`] | [`ServeError`]: configuration, tokens, model loading, socket errors |
//! | [`images`] | image bodies: header checks, bounded decoding |
//! | [`inputs`] | JSON bodies to features ([`numeric_json`]: the plain-numbers form without a `Value` per number) |
//! | [`alerts`] | in-process alert rules and their webhook |

pub mod alerts;
pub mod auth;
pub mod backend;
pub mod batcher;
pub mod client;
pub mod config;
pub mod connection;
pub(crate) mod embed_batcher;
pub mod error;
pub mod images;
pub mod inputs;
pub mod llm;
pub mod llm_metrics;
pub mod mask;
pub mod metric_labels;
pub mod metrics;
pub mod numeric_json;
pub mod offload;
pub mod rate_limit;
pub mod routes;
pub mod serve_error;
pub mod server;
pub mod state;
pub mod tensor_data;

pub use auth::{Scope, Tokens};
pub use backend::{Backend, ModelInfo, Output};
pub use config::ServeConfig;
pub use error::ApiError;
pub use llm::{InferError, LanguageModel, LlmInfo, LlmTask};
pub use routes::app;
pub use serve_error::ServeError;
pub use server::serve;
pub use state::{loader, AppState, Loader};
