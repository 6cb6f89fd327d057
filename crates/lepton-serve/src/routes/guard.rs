//! Per-route admission, run before the handler and before any body byte is read: the token
//! (401/403), the client's rate limit (429), the declared `Content-Length` against the route's
//! limit (413 at once, whatever the body does next) and the `Content-Type` (415). The body is
//! then wrapped in a length limit so a chunked body cannot exceed the route's limit either.
//! Every route declares its [`Policy`] in [`crate::routes::app`]; handlers never authorize.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{Caller, Scope};
use crate::client::client_ip;
use crate::config::Limits;
use crate::error::ApiError;
use crate::state::AppState;

/// What a route's body may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body is read.
    None,
    /// JSON only (`application/json`, `*/*+json`), up to `limits.max-body-bytes`.
    Json,
    /// `/v1` predict: JSON (also without a content type), a PNG/JPEG image
    /// (`image/*`, `application/octet-stream`) or `multipart/form-data`.
    Predict,
    /// `/v2` infer: JSON, or a JSON header plus binary tensors (`application/octet-stream` or
    /// no content type, as `tritonclient` sends).
    Infer,
    /// Admin load: JSON up to `limits.max-admin-body-bytes`.
    Admin,
}

impl BodyKind {
    fn limit(self, l: &Limits) -> usize {
        match self {
            BodyKind::None => 0,
            BodyKind::Admin => l.max_admin_body_bytes,
            _ => l.max_body_bytes,
        }
    }

    fn accepts(self, ctype: &str) -> bool {
        let essence = ctype.split(';').next().unwrap_or("").trim();
        let json = essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"));
        match self {
            BodyKind::None => true,
            BodyKind::Json | BodyKind::Admin => json,
            BodyKind::Predict => {
                json || essence.is_empty()
                    || essence.starts_with("image/")
                    || essence == "application/octet-stream"
                    || essence == "multipart/form-data"
            }
            BodyKind::Infer => json || essence.is_empty() || essence == "application/octet-stream",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            BodyKind::None => "no body",
            BodyKind::Json | BodyKind::Admin => "application/json",
            BodyKind::Predict => "application/json, image/png, image/jpeg or multipart/form-data",
            BodyKind::Infer => "application/json or application/octet-stream",
        }
    }
}

/// A route's admission rule.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The token scope needed; `None`: no token (public routes have no guard at all).
    pub scope: Option<Scope>,
    pub body: BodyKind,
    /// Count requests against the client's rate limit.
    pub rate_limited: bool,
}

impl Policy {
    /// A route that reads (`predict` scope, no body).
    pub const READ: Policy = Policy {
        scope: Some(Scope::Predict),
        body: BodyKind::None,
        rate_limited: false,
    };

    /// A `predict`-scope route that runs a model on `body`.
    pub const fn work(body: BodyKind) -> Policy {
        Policy {
            scope: Some(Scope::Predict),
            body,
            rate_limited: true,
        }
    }

    /// An `admin`-scope route.
    pub const fn admin(body: BodyKind) -> Policy {
        Policy {
            scope: Some(Scope::Admin),
            body,
            rate_limited: false,
        }
    }
}

/// The rate-limit key: the token for authenticated requests, else the client address.
pub fn client_key(state: &AppState, caller: &Caller, req: &Request) -> String {
    if !caller.is_anonymous() {
        return format!("token:{}", caller.token_id);
    }
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => format!(
            "addr:{}",
            client_ip(peer.ip(), req.headers(), &state.inner.trusted_proxies)
        ),
        None => "addr:unknown".into(),
    }
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest("Content-Length: not a number".into())),
    }
}

/// Check `req` against `policy`; on success the body is limited to the route's size.
pub fn admit(state: &AppState, policy: Policy, req: Request) -> Result<Request, ApiError> {
    let caller = match policy.scope {
        Some(scope) => crate::routes::authorize(state, req.headers(), scope)?,
        None => Caller {
            token_id: "public".into(),
        },
    };
    if policy.rate_limited {
        state.rate_limit(&client_key(state, &caller, &req))?;
    }
    if policy.body == BodyKind::None {
        return Ok(req);
    }
    let limit = policy.body.limit(&state.inner.config.limits);
    if let Some(n) = declared_length(req.headers())? {
        if n > limit as u64 {
            return Err(ApiError::PayloadTooLarge(format!(
                "Content-Length is {n} bytes, the limit of this route is {limit}"
            )));
        }
    }
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_ascii_lowercase())
        .unwrap_or_default();
    if !policy.body.accepts(&ctype) {
        return Err(ApiError::UnsupportedMedia(format!(
            "Content-Type '{ctype}' (this route takes {})",
            policy.body.expected()
        )));
    }
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(caller);
    Ok(Request::from_parts(
        parts,
        Body::new(http_body_util::Limited::new(body, limit)),
    ))
}

/// The middleware form of [`admit`], layered on each route with its policy.
pub async fn guard(
    State((state, policy)): State<(AppState, Policy)>,
    req: Request,
    next: Next,
) -> Response {
    match admit(&state, policy, req) {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_per_body_kind() {
        assert!(BodyKind::Json.accepts("application/json; charset=utf-8"));
        assert!(BodyKind::Json.accepts("application/merge-patch+json"));
        assert!(!BodyKind::Json.accepts("text/plain;charset=UTF-8"));
        assert!(!BodyKind::Json.accepts(""));
        assert!(!BodyKind::Admin.accepts("application/x-www-form-urlencoded"));
        assert!(BodyKind::Predict.accepts("image/png"));
        assert!(BodyKind::Predict.accepts("multipart/form-data; boundary=x"));
        assert!(BodyKind::Predict.accepts(""));
        assert!(!BodyKind::Predict.accepts("text/plain"));
        assert!(BodyKind::Infer.accepts(""));
        assert!(!BodyKind::Infer.accepts("image/png"));
    }
}
