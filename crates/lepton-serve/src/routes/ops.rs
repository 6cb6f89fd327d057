//! Health probes, metrics, the OpenAPI document and a small docs page.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::Json;
use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::state::AppState;

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "the process is alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "models loaded, accepting traffic"), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let models = state.inner.models.read().expect("lock").len() + state.inner.llms.all().len();
    let ready = state.inner.ready.load(std::sync::atomic::Ordering::Relaxed) && models > 0;
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({"ready": ready, "models": models})),
    )
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus metrics (OpenMetrics text)")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    for (name, s) in state.inner.models.read().expect("lock").iter() {
        state
            .inner
            .metrics
            .set_queue(name, s.batcher.queued() as i64);
    }
    for (name, s) in state.inner.llms.all() {
        if let Some(mut stats) = s.model.stats() {
            // Requests this server handed to the model and not yet finished, minus the running
            // ones, are waiting whatever the engine counts (it may hold some back, e.g. for
            // KV-cache room): the queue gauge is never below that.
            let waiting = s.in_flight().saturating_sub(stats.active_sequences);
            stats.queue_depth = stats.queue_depth.max(waiting);
            state.inner.metrics.llm.engine(&name, &stats);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.inner.metrics.render(),
    )
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The JSON body of every error response.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What went wrong, naming the request part.
    error: String,
    /// A stable kind: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `payload_too_large`, `unsupported_media_type`, `invalid_input`, `rate_limited`,
    /// `overloaded`, `timeout`, `request_timeout`, `internal`.
    #[schema(rename = "type")]
    kind: String,
}

/// Completes every operation's responses from what the shared layers add: 401/403 on secured
/// routes, 408/413/415 on routes with a body, 504 (the per-request timeout) on routes that run a model,
/// and the [`ErrorBody`] JSON schema on every error response.
struct Errors;

impl utoipa::Modify for Errors {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let describe = |code: &str| match code {
            "400" => "malformed request (the message names the part)",
            "401" => "missing or unknown bearer token",
            "403" => "the token lacks the needed scope, or a cross-origin / foreign-Host request",
            "408" => "the request body did not arrive within the per-request timeout",
            "404" => "no such model or file",
            "413" => "body, image or batch larger than the limits",
            "415" => "unsupported content type",
            "422" => "well-formed request that does not fit the model",
            "429" => "rate limit exceeded (see Retry-After)",
            "503" => "queue full or shutting down (see Retry-After)",
            "504" => "the request took longer than the per-request timeout",
            _ => "error",
        };
        for (path, item) in api.paths.paths.iter_mut() {
            let runs_model = path.ends_with("/predict") || path.ends_with("/infer");
            for op in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let mut extra = Vec::new();
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    extra.extend(["401", "403"]);
                }
                if op.request_body.is_some() {
                    extra.extend(["400", "408", "413", "415"]);
                }
                if runs_model {
                    extra.push("504");
                }
                let responses = &mut op.responses.responses;
                for code in extra {
                    responses.entry(code.to_string()).or_insert_with(|| {
                        ResponseBuilder::new().description(describe(code)).into()
                    });
                }
                for (code, resp) in responses.iter_mut() {
                    if let RefOr::T(r) = resp {
                        if code.starts_with(['4', '5']) {
                            if r.description.is_empty() {
                                r.description = describe(code).to_string();
                            }
                            if r.content.is_empty() {
                                r.content.insert(
                                    "application/json".into(),
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Lepton", description = "Model serving: predictions, Open Inference Protocol v2, admin, health and metrics."),
    paths(
        crate::routes::v1::predict, crate::routes::explain::explain, crate::routes::v1::list_models, crate::routes::generate::generate,
        crate::routes::v2::live, crate::routes::v2::ready, crate::routes::v2::server_metadata, crate::routes::v2::model_metadata,
        crate::routes::v2::model_ready, crate::routes::v2::infer,
        crate::routes::admin::load, crate::routes::admin::unload,
        crate::routes::adapters::load, crate::routes::adapters::unload,
        crate::routes::openai::embeddings::embeddings, crate::routes::openai::completions::completions,
        crate::routes::openai::chat::chat_completions,
        healthz, readyz, metrics, openapi, docs
    ),
    components(schemas(ErrorBody, crate::routes::v1::PredictRequest, crate::routes::v1::PredictResponse, crate::routes::v1::Prediction, crate::routes::v1::Scored, crate::routes::admin::LoadRequest, crate::routes::adapters::AdapterRequest,
        crate::routes::openai::embeddings::EmbeddingRequest, crate::routes::openai::embeddings::EmbeddingInput,
        crate::routes::openai::params::GenerationBody, crate::routes::openai::params::Message, crate::routes::openai::params::Content,
        crate::routes::openai::params::ContentPart, crate::routes::openai::params::Stop, crate::routes::openai::params::StreamOptions, crate::routes::generate::GenerateRequest)),
    modifiers(&Security, &Errors)
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "this OpenAPI document", content_type = "application/json")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/docs", tag = "ops", responses((status = 200, description = "a page that renders this document", content_type = "text/html")))]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
