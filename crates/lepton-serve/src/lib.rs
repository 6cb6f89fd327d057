//! HTTP serving for Lepton models, as a library: [`app`] builds the router, [`serve`] runs it.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | `serve.toml`: listen address, limits, batching, logging, alerts |
//! | [`backend`] | the [`Backend`] trait the server calls (never the trainer) |
//! | [`photon`] | [`Backend`] for `.photon` packages |
//! | [`batcher`] | dynamic batching and the elastic worker pool, per model |
//! | [`auth`] | bearer tokens with scopes, hashed, constant-time, reloadable |
//! | [`routes`] | `/v1` predict, `/v2` Open Inference Protocol, admin, health, metrics, OpenAPI |
//! | [`llm`] | the [`LanguageModel`] trait the OpenAI routes call; [`llm_models`] implements it for lepton-llm |
//! | [`metrics`] | Prometheus metrics ([`llm_metrics`] for language models) |
//! | [`server`] | [`serve`]: socket, graceful shutdown, token reload |
//! | [`alerts`] | in-process alert rules and their webhook |

pub mod alerts;
pub mod auth;
pub mod backend;
pub mod batcher;
pub mod config;
pub mod error;
pub mod inputs;
pub mod llm;
pub mod llm_metrics;
pub mod llm_models;
pub mod mask;
pub mod metrics;
pub mod photon;
pub mod routes;
pub mod server;
pub mod state;

pub use auth::{Scope, Tokens};
pub use backend::{Backend, ModelInfo, Output};
pub use config::ServeConfig;
pub use error::ApiError;
pub use llm::{LanguageModel, LlmInfo, LlmTask};
pub use routes::app;
pub use server::serve;
pub use state::{AppState, Loader};
