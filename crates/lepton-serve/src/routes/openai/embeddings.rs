//! `POST /v1/embeddings`.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::llm::LlmTask;
use crate::routes::openai::{base64, labelled, parse_request};
use crate::state::AppState;

/// Text or texts to embed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    /// Token ids (refused: send text).
    #[schema(value_type = Vec<Object>)]
    Tokens(Vec<Value>),
}

/// An OpenAI embeddings request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRequest {
    /// A served embeddings model (see `GET /v1/models`).
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32).
    pub encoding_format: Option<String>,
    /// Must equal the model's vector length when given.
    pub dimensions: Option<usize>,
    /// Ignored.
    pub user: Option<String>,
}

/// Embed texts with a served sentence-embedding model.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingRequest,
    responses((status = 200, description = "OpenAI embeddings list: data[i].embedding, usage.prompt_tokens"),
        (status = 400), (status = 404, description = "unknown model"), (status = 429), (status = 503)),
    security(("bearer" = [])))]
pub async fn embeddings(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: EmbeddingRequest = parse_request(&state, body, "/v1/embeddings").await?;
    let served = state.inner.llms.get(&req.model)?;
    let model = req.model.clone();
    Ok(labelled(
        &model,
        embed(&state, served, req).await.map(|j| j.into_response()),
    ))
}

async fn embed(
    state: &AppState,
    served: std::sync::Arc<crate::llm::ServedLlm>,
    req: EmbeddingRequest,
) -> Result<Json<Value>, ApiError> {
    let info = served.model.info().clone();
    if info.task != LlmTask::Embeddings {
        return Err(ApiError::field(
            "model",
            format!(
                "'{}' is a {} model; use /v1/completions or /v1/chat/completions",
                req.model,
                info.task.as_str()
            ),
        ));
    }
    let texts = match req.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
        EmbeddingInput::Tokens(_) => {
            return Err(ApiError::field(
                "input",
                "token-id arrays are not supported; send a string or an array of strings",
            ))
        }
    };
    if texts.is_empty() {
        return Err(ApiError::field("input", "the array is empty"));
    }
    let max = state.inner.config.limits.max_batch_inputs;
    if texts.len() > max {
        return Err(ApiError::field(
            "input",
            format!("{} texts, the limit is {max}", texts.len()),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        return Err(ApiError::field(format!("input[{i}]"), "empty string"));
    }
    // Bytes before tokens: the cheap bound first.
    let limit = state
        .inner
        .config
        .limits
        .max_prompt_bytes
        .min(info.max_prompt_bytes);
    if let Some(i) = texts.iter().position(|t| t.len() > limit) {
        return Err(ApiError::field(
            format!("input[{i}]"),
            format!("{} bytes of text, the limit is {limit}", texts[i].len()),
        ));
    }
    let base64_out = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::field(
                "encoding_format",
                format!("'{other}' (use float or base64)"),
            ))
        }
    };
    if let Some(d) = req.dimensions {
        if d != info.dimensions {
            return Err(ApiError::field(
                "dimensions",
                format!(
                    "this model's vectors have {} dimensions, not {d}",
                    info.dimensions
                ),
            ));
        }
    }
    let _slot = served.slot(&req.model)?;
    let n = texts.len();
    let metrics = Arc::clone(&state.inner.metrics);
    let label = req.model.clone();
    let out = served
        .embed_batched(
            texts,
            state.inner.config.llm.embedding_batch_texts,
            move |texts| metrics.llm.embedding_batch(&label, texts),
        )
        .await?;
    state
        .inner
        .metrics
        .llm
        .embedded(&req.model, n, out.prompt_tokens());
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64_out {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": out.prompt_tokens(), "total_tokens": out.prompt_tokens()},
    })))
}
