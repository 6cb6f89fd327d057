//! The OpenAI-compatible API: `POST /v1/embeddings`, `/v1/completions`, `/v1/chat/completions`
//! (server-sent events with `stream: true`), on the server's auth, rate limits, body limits,
//! metrics and access logs. Language models are listed by `GET /v1/models` with the others.
//!
//! Bodies are checked in order: UTF-8, JSON nesting depth, JSON syntax, then the typed request
//! (unknown fields refused, errors name the field path), then [`params`] validates the values
//! into a [`params::ValidGeneration`]; every failure is a 4xx naming the request part.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod params;
pub mod stream;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::inputs::parse_json;
use crate::offload;
use crate::routes::log_payload;
use crate::state::AppState;

/// Parse a request body as `T` on a blocking thread ([`offload`]); the route's guard has
/// already authorized and rate-limited the request and checked its size and content type.
pub async fn parse_request<T: DeserializeOwned + Send + 'static>(
    state: &AppState,
    body: Bytes,
    route: &'static str,
) -> Result<T, ApiError> {
    let st = state.clone();
    offload::run(state, "request body", move || parse_body(&st, &body, route)).await?
}

fn parse_body<T: DeserializeOwned>(
    state: &AppState,
    body: &Bytes,
    route: &str,
) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ApiError::BadRequest(format!(
            "request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )));
    }
    let value = parse_json(body, &state.inner.config.limits)?;
    log_payload(state, route, &value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::BadRequest(format!("request body: {inner}"))
        } else {
            ApiError::field(path, inner)
        }
    })
}

/// Validate a generation request: its prompt size in bytes first (against
/// `limits.max-prompt-bytes` and the model's own bound), then, on a blocking thread, every
/// field, the chat template and (for chat without `max_tokens`) the prompt's token count.
pub async fn validate(
    state: &AppState,
    req: params::GenerationBody,
    endpoint: params::Endpoint,
    served: &std::sync::Arc<crate::llm::ServedLlm>,
) -> Result<params::ValidGeneration, ApiError> {
    let limit = state
        .inner
        .config
        .limits
        .max_prompt_bytes
        .min(served.model.info().max_prompt_bytes);
    req.check_prompt_bytes(endpoint, limit)?;
    let served = std::sync::Arc::clone(served);
    offload::run(state, "request validation", move || {
        req.validate(endpoint, &served)
    })
    .await?
}

/// Response extension naming the served model a request used, for the access log and the
/// per-model request metrics.
#[derive(Debug, Clone)]
pub struct ModelLabel(pub String);

/// Tag a response (success or error) with the model it was for.
pub fn labelled(model: &str, r: Result<Response, ApiError>) -> Response {
    let mut resp = r.into_response();
    resp.extensions_mut().insert(ModelLabel(model.to_string()));
    resp
}

static IDS: AtomicU64 = AtomicU64::new(0);

/// A response id such as `chatcmpl-5f2a-17`.
pub fn response_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}-{}",
        std::process::id(),
        IDS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Standard base64 (RFC 4648, padded), for `encoding_format: "base64"` embeddings.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
