//! `lepton ui`: the dashboard, a small axum server over a runs directory.
//!
//! ```text
//! GET /                                  the page (HTML, script, styles and uPlot compiled in)
//! GET /assets/{name}                     app.js, style.css, uPlot.iife.min.js, uPlot.min.css
//! GET /api/runs                          {root, runs: [RunInfo], warnings}
//! GET /api/runs/{id}                     RunDetail (spec, report, artifacts)
//! GET /api/runs/{id}/metrics?since=B&line=N   metrics.jsonl from byte B (live tailing; at most
//!                                        8 MiB a response, `more` says a next read follows)
//! GET /api/runs/{id}/files/{*name}       a .png/.json/.jsonl/.md/.toml file inside the run
//! ```
//! Run ids are paths relative to the runs directory (`/` sent as `%2F`); they are validated and
//! resolved to real paths inside it, and files to real paths inside their run, so nothing outside
//! RUNS_DIR is ever read. File reads run on the blocking pool, not the async runtime, at most
//! [`MAX_BLOCKING`] at a time (a 429 beyond). Requests naming a host other than an IP address or
//! `localhost` get a 403, so a web page cannot reach the dashboard through DNS rebinding.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{self, Metrics};
use crate::run::RunInfo;
use crate::runs_dir::RunsDir;
use crate::show::RunDetail;

/// The embedded page and its assets: (name, content type, bytes).
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/uplot/uPlot.min.css"),
    ),
];
const INDEX: &str = include_str!("../assets/index.html");
/// Everything comes from this server: no CDN, no inline script.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

/// File-reading requests served at once; more get 429.
pub const MAX_BLOCKING: usize = 8;

struct Ui {
    runs: RunsDir,
    permits: Arc<tokio::sync::Semaphore>,
}

/// The dashboard router over `runs`.
pub fn app(runs: RunsDir) -> Router {
    router(runs, MAX_BLOCKING)
}

fn router(runs: RunsDir, max_blocking: usize) -> Router {
    let ui = Ui {
        runs,
        permits: Arc::new(tokio::sync::Semaphore::new(max_blocking)),
    };
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(run_detail))
        .route("/api/runs/{id}/metrics", get(run_metrics))
        .route("/api/runs/{id}/files/{*name}", get(run_file))
        .fallback(|| async { not_found() })
        .layer(axum::middleware::from_fn(check_host))
        .with_state(Arc::new(ui))
}

/// Serve the dashboard on `addr` until `shutdown` resolves.
pub async fn serve(
    runs: RunsDir,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = bind(addr).await?;
    serve_on(runs, listener, shutdown).await
}

/// Bind the listener (separately, so a caller can print the real port of `:0`).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serve on an already bound listener until `shutdown` resolves.
pub async fn serve_on(
    runs: RunsDir,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, app(runs))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

type Shared = State<Arc<Ui>>;

/// Refuse a `Host` that is a DNS name other than `localhost` (DNS rebinding); a missing `Host`
/// (HTTP/1.0, tests) passes.
async fn check_host(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(host) = req.headers().get(header::HOST) {
        let Ok(host) = host.to_str() else {
            return body(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                "Host is not text".into(),
            );
        };
        if !allowed_host(host) {
            let msg = format!(
                "Host {host:?} is not served: open the dashboard by IP address or localhost"
            );
            return body(StatusCode::FORBIDDEN, "forbidden_host", msg);
        }
    }
    next.run(req).await
}

fn allowed_host(host: &str) -> bool {
    // Strip the port: `[::1]:6006`, `127.0.0.1:6006`, `localhost:6006`.
    let name = if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost")
}

async fn index() -> Response {
    let mut r = axum::response::Html(INDEX).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, bytes)) => ([(header::CONTENT_TYPE, *mime)], *bytes).into_response(),
        None => not_found(),
    }
}

#[derive(Serialize)]
struct RunList {
    root: String,
    runs: Vec<RunInfo>,
    warnings: Vec<String>,
}

async fn list_runs(State(ui): Shared) -> Result<Response, ApiError> {
    let list = blocking(&ui, move |runs| {
        let (list, warnings) = runs.list();
        Ok(RunList {
            root: runs.root().display().to_string(),
            runs: list,
            warnings,
        })
    })
    .await?;
    Ok(no_store(Json(list)))
}

async fn run_detail(State(ui): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let detail = blocking(&ui, move |runs| Ok(RunDetail::new(runs.read(&id)?))).await?;
    Ok(no_store(Json(detail)))
}

/// `?since=BYTE&line=N`: where the client's last read ended.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    #[serde(default)]
    since: u64,
    #[serde(default = "one")]
    line: u64,
}

fn one() -> u64 {
    1
}

async fn run_metrics(
    State(ui): Shared,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> Result<Response, ApiError> {
    let m: Metrics = blocking(&ui, move |runs| {
        let dir = runs.resolve(&id)?;
        metrics::read_from(
            &dir.join("metrics.jsonl"),
            q.since,
            q.line,
            metrics::CHUNK_BUDGET,
        )
    })
    .await?;
    Ok(no_store(Json(m)))
}

async fn run_file(
    State(ui): Shared,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (bytes, mime) = blocking(&ui, move |runs| {
        let dir = runs.resolve(&id)?;
        let (path, mime) = crate::artifacts::resolve_file(&dir, &id, &name)?;
        let bytes = crate::error::read_with_budget(&path, crate::artifacts::SERVE_BUDGET)?;
        Ok((bytes, mime))
    })
    .await?;
    Ok(no_store(([(header::CONTENT_TYPE, mime)], bytes)))
}

fn no_store(r: impl IntoResponse) -> Response {
    let mut r = r.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Run `f` over the runs directory on the blocking pool, holding one of the permits.
async fn blocking<T: Send + 'static>(
    ui: &Arc<Ui>,
    f: impl FnOnce(&RunsDir) -> Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = ui
        .permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy)?;
    let ui = Arc::clone(ui);
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&ui.runs)
    });
    match job.await {
        Ok(r) => r.map_err(ApiError::Track),
        Err(join) => Err(ApiError::Track(Error::Serve(std::io::Error::other(
            join.to_string(),
        )))),
    }
}

/// An API failure: `{error, type}` with a 4xx naming the bad request part, or a generic 500 with
/// the detail in the log.
#[derive(Debug)]
pub enum ApiError {
    Track(Error),
    /// Every permit is taken: 429.
    Busy,
}

fn not_found() -> Response {
    body(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route or asset".into(),
    )
}

fn body(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message, "type": kind})),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = match self {
            ApiError::Busy => {
                let msg = format!("{MAX_BLOCKING} requests are being served; retry shortly");
                return body(StatusCode::TOO_MANY_REQUESTS, "busy", msg);
            }
            ApiError::Track(err) => err,
        };
        let message = crate::error_chain(&err);
        match &err {
            Error::InvalidRunId { .. } => body(StatusCode::BAD_REQUEST, "invalid_run_id", message),
            Error::FileNotServed { .. } => body(StatusCode::NOT_FOUND, "file_not_served", message),
            Error::RunNotFound { .. } | Error::NotARun { .. } => {
                body(StatusCode::NOT_FOUND, "run_not_found", message)
            }
            Error::TooLarge { .. } => body(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message),
            _ => {
                tracing::error!(error = %message, "dashboard request failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the server log)".into(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn busy_server_answers_429_not_a_queue() {
        let dir = tempfile::tempdir().unwrap();
        let runs = RunsDir::open(dir.path()).unwrap();
        let call = |max| {
            let runs = runs.clone();
            async move {
                let req = axum::http::Request::get("/api/runs")
                    .body(axum::body::Body::empty())
                    .unwrap();
                router(runs, max).oneshot(req).await.unwrap().status()
            }
        };
        assert_eq!(call(0).await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(call(1).await, StatusCode::OK);
    }

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1:6006",
            "localhost:6006",
            "LOCALHOST",
            "[::1]:6006",
            "10.0.0.5",
            "a.localhost:1",
        ] {
            assert!(allowed_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:6006",
            "evil.example",
            "127.0.0.1.evil.example",
            "[evil]:1",
        ] {
            assert!(!allowed_host(bad), "{bad}");
        }
    }
}
