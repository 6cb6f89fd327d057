//! `POST /v1/models/{name}/generate`: continue a prompt with a served language-model photon,
//! as JSON or, with `stream: true`, as server-sent events. The body is checked into the same
//! [`GenerationBody`] as `/v1/completions` (whose `model` may also name the photon), so both
//! share validation, slots, streaming, timeouts and metrics, and answer in OpenAI's
//! `text_completion` shape.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::openai::params::{Endpoint, GenerationBody, Stop};
use crate::routes::openai::{parse_request, stream, validate};
use crate::state::AppState;

/// Most tokens generated when the request does not say (capped by `llm.max-tokens`).
pub const DEFAULT_MAX_TOKENS: u64 = 256;

/// A generation request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// The text to continue (every character in the model's vocabulary).
    pub prompt: String,
    /// Most tokens to generate: 1 to `llm.max-tokens` (default 2048). Default 256 (or the limit).
    pub max_tokens: Option<u64>,
    /// Softmax temperature in [0, 2]; 0 = greedy. Default 1.
    pub temperature: Option<f32>,
    /// Sample among the k most likely tokens; 0 = all. Default 0.
    pub top_k: Option<u64>,
    /// Sampling seed: the same seed, prompt and model give the same text (as `lepton generate
    /// --seed`). Default: random.
    pub seed: Option<u64>,
    /// Stop before any of these strings (at most 4). Default none.
    pub stop: Option<Stop>,
    /// Server-sent events instead of one JSON answer. Default false.
    pub stream: Option<bool>,
}

impl GenerateRequest {
    fn into_body(self, model: &str, limit: usize) -> Result<GenerationBody, ApiError> {
        if let Some(n) = self.max_tokens.filter(|&n| n > limit as u64) {
            return Err(ApiError::field("max_tokens", format!("{n} is above this server's limit of {limit} tokens per generation (llm.max-tokens)"
            )));
        }
        let stop = match self.stop {
            None => Value::Null,
            Some(Stop::One(s)) => json!(s),
            Some(Stop::Many(v)) => json!(v),
        };
        let body = json!({
            "model": model,
            "prompt": self.prompt,
            "max_tokens": self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS.min(limit as u64)),
            "temperature": self.temperature,
            "top_k": self.top_k,
            // The bits of the u64 seed travel in OpenAI's i64 field and come back unchanged.
            "seed": self.seed.map(|s| s as i64),
            "stop": stop,
            "stream": self.stream,
        });
        serde_json::from_value(body).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
    }
}

/// Generate text with a language-model photon.
#[utoipa::path(post, path = "/v1/models/{name}/generate", tag = "generate",
    params(("name" = String, Path, description = "model name")),
    request_body = GenerateRequest,
    responses((status = 200, description = "OpenAI text_completion (or text/event-stream chunks ending with data: [DONE])"),
        (status = 400, description = "a field is invalid (named in the error)"), (status = 404, description = "unknown model"),
        (status = 429), (status = 503)),
    security(("bearer" = [])))]
pub async fn generate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let served = state.model(&name)?;
    if !served.generates {
        return Err(ApiError::field(
            "model",
            format!(
                "'{name}' is a {} model and does not generate text; use /v1/models/{name}/predict",
                served.backend.info().task
            ),
        ));
    }
    let req: GenerateRequest = parse_request(&state, body, "/v1/models/{name}/generate").await?;
    let llm = state.inner.llms.get(&name)?;
    let body = req.into_body(&name, llm.model.info().context_length)?;
    let valid = validate(&state, body, Endpoint::Completions, &llm).await?;
    stream::respond(state, llm, valid, Endpoint::Completions).await
}
