//! The router: one module per endpoint family, plus the layers shared by all of them, outermost
//! first: access log / metrics / timeout (`access`), the browser checks
//! ([`browser::browser_checks`]: Origin, Host), then per route its admission [`guard::Policy`]
//! (token, rate limit, Content-Length, Content-Type) before the handler reads any body byte.

pub mod adapters;
pub mod admin;
pub mod body;
pub mod browser;
pub mod explain;
pub mod generate;
pub mod guard;
pub mod openai;
pub mod ops;
pub mod v1;
pub mod v2;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::mask::mask_json;
use crate::state::AppState;

/// Check the bearer token of a request for `scope`.
pub fn authorize(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.inner.tokens.authorize(h, scope)
}

/// Log a request payload when enabled, masked.
pub fn log_payload(state: &AppState, model: &str, body: &serde_json::Value) {
    let cfg = &state.inner.config.logging;
    if cfg.log_payloads {
        tracing::info!(model, payload = %mask_json(body, &cfg.mask_keys), "request payload");
    }
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

fn request_id(headers: &HeaderMap) -> String {
    match headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()) =>
        {
            id.to_string()
        }
        _ => format!(
            "{:x}-{}",
            std::process::id(),
            REQUESTS.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Give the plain-text rejections of axum's extractors and router (bad path or query, 405,
/// body limit) the same JSON error body as [`ApiError`], keeping their status and headers.
async fn json_error(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let kind = match parts.status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_input",
        _ => "error",
    };
    let error = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string()
    } else {
        text
    };
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = serde_json::json!({ "error": error, "type": kind }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Request id, timeout, metrics and a JSON access log line per request.
async fn access(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').collect();
    let model = match segments.as_slice() {
        ["", "v1" | "v2", "models", name, ..]
            if state.inner.models.read().expect("lock").contains_key(*name) =>
        {
            name.to_string()
        }
        _ => String::new(),
    };
    let timeout = std::time::Duration::from_millis(state.inner.config.limits.request_timeout_ms);
    let (req, body_done) = body::watch(req);
    let mut resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) if !body_done.load(Ordering::Acquire) => {
            ApiError::BodyTimeout(timeout.as_millis() as u64).into_response()
        }
        Err(_) => ApiError::Timeout(timeout.as_millis() as u64).into_response(),
    };
    if resp.status().as_u16() >= 400 && !is_json(&resp) {
        resp = json_error(resp).await;
    }
    if resp.status().as_u16() >= 400 && openai::error::is_openai(&path) {
        resp = openai::error::nest(resp).await;
    }
    // The OpenAI routes name their (served) model in the body; the handler reports it back.
    let model = match resp.extensions().get::<openai::ModelLabel>() {
        Some(openai::ModelLabel(m)) if model.is_empty() => m.clone(),
        _ => model,
    };
    let secs = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    state.inner.metrics.request(&model, &route, status, secs);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    tracing::info!(target: "access", request_id = %id, %method, path = %path, status, latency_ms = secs * 1e3, model = %model);
    resp
}

/// The whole HTTP API. Each route names its [`guard::Policy`]; handlers never authorize themselves.
pub fn app(state: AppState) -> Router {
    use guard::{BodyKind, Policy};
    let body_limit = state.inner.config.limits.max_body_bytes;
    let g = |p: Policy| middleware::from_fn_with_state((state.clone(), p), guard::guard);
    Router::new()
        .route(
            "/v1/models",
            get(v1::list_models).route_layer(g(Policy::READ)),
        )
        .route(
            "/v1/models/{name}/predict",
            post(v1::predict).route_layer(g(Policy::work(BodyKind::Predict))),
        )
        .route(
            "/v1/models/{name}/explain",
            post(explain::explain).route_layer(g(Policy::work(BodyKind::Json))),
        )
        .route(
            "/v1/models/{name}/generate",
            post(generate::generate).route_layer(g(Policy::work(BodyKind::Json))),
        )
        .route(
            "/v1/embeddings",
            post(openai::embeddings::embeddings).route_layer(g(Policy::work(BodyKind::Json))),
        )
        .route(
            "/v1/completions",
            post(openai::completions::completions).route_layer(g(Policy::work(BodyKind::Json))),
        )
        .route(
            "/v1/chat/completions",
            post(openai::chat::chat_completions).route_layer(g(Policy::work(BodyKind::Json))),
        )
        .route(
            "/v1/admin/models",
            post(admin::load).route_layer(g(Policy::admin(BodyKind::Admin))),
        )
        .route(
            "/v1/admin/models/{name}",
            delete(admin::unload).route_layer(g(Policy::admin(BodyKind::None))),
        )
        .route(
            "/v1/admin/models/{model}/adapters",
            post(adapters::load).route_layer(g(Policy::admin(BodyKind::Admin))),
        )
        .route(
            "/v1/admin/models/{model}/adapters/{name}",
            delete(adapters::unload).route_layer(g(Policy::admin(BodyKind::None))),
        )
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route(
            "/v2/models/{name}",
            get(v2::model_metadata).route_layer(g(Policy::READ)),
        )
        .route(
            "/v2/models/{name}/ready",
            get(v2::model_ready).route_layer(g(Policy::READ)),
        )
        .route(
            "/v2/models/{name}/infer",
            post(v2::infer).route_layer(g(Policy::work(BodyKind::Infer))),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/docs", get(ops::docs))
        .fallback(|| async { ApiError::NotFound("no such route (see /docs)".into()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            browser::browser_checks,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), access))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
