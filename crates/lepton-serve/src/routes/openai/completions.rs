//! `POST /v1/completions`.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;

use crate::error::ApiError;
use crate::routes::openai::params::{Endpoint, GenerationBody};
use crate::routes::openai::{labelled, parse_request, stream, validate};
use crate::state::AppState;

/// Continue a prompt with a served text-generation model (JSON, or SSE with `stream: true`).
#[utoipa::path(post, path = "/v1/completions", tag = "openai",
    request_body = GenerationBody,
    responses((status = 200, description = "OpenAI text_completion (or text/event-stream chunks ending with data: [DONE])"),
        (status = 400), (status = 404, description = "unknown model"), (status = 429), (status = 503)),
    security(("bearer" = [])))]
pub async fn completions(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: GenerationBody = parse_request(&state, body, "/v1/completions").await?;
    let target = state.inner.llms.resolve(&req.model)?;
    let r = validate(&state, req, Endpoint::Completions, &target.served).await;
    let r = match r {
        Ok(mut valid) => {
            valid.adapter = target.adapter.clone();
            stream::respond(state, target.served, valid, Endpoint::Completions).await
        }
        Err(e) => Err(e),
    };
    Ok(labelled(&target.label, r))
}
