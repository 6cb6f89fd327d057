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
    let models = state.inner.models.read().expect("lock").len();
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

#[derive(OpenApi)]
#[openapi(
    info(title = "Lepton", description = "Model serving: predictions, Open Inference Protocol v2, admin, health and metrics."),
    paths(
        crate::routes::v1::predict, crate::routes::v1::list_models,
        crate::routes::v2::live, crate::routes::v2::ready, crate::routes::v2::server_metadata, crate::routes::v2::model_metadata,
        crate::routes::v2::model_ready, crate::routes::v2::infer,
        crate::routes::admin::load, crate::routes::admin::unload,
        healthz, readyz, metrics
    ),
    components(schemas(crate::routes::v1::PredictRequest, crate::routes::v1::PredictResponse, crate::routes::v1::Prediction, crate::routes::v1::Scored, crate::routes::admin::LoadRequest)),
    modifiers(&Security)
)]
pub struct ApiDoc;

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
