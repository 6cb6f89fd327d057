//! One error type for the API: each variant maps to a status code and a JSON body
//! `{"error": message, "type": kind}`. 5xx bodies are generic; the detail goes to the log.
//! A bad request field ([`ApiError::Field`]) also tags the response with its [`ErrorParam`],
//! which the OpenAI routes report as the error's `param` (`routes/openai/error.rs`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Response extension: the request field an error response is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorParam(pub String);

impl ApiError {
    /// A bad value of the request field `param`.
    pub fn field(param: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ApiError::Field {
            param: param.into(),
            message: message.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A bad value of the request field `param` (a JSON path such as `messages[1].role`).
    #[error("{param}: {message}")]
    Field { param: String, message: String },
    #[error("missing or invalid API token")]
    Unauthorized,
    #[error("this token lacks the '{0}' scope")]
    Forbidden(&'static str),
    /// A request refused for what it is, not who sent it (cross-origin, foreign Host).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("request body too large: {0}")]
    PayloadTooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMedia(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
    #[error("the server is overloaded: {0}")]
    Overloaded(String),
    #[error("request timed out after {0} ms")]
    Timeout(u64),
    /// The client did not send its whole body within the request timeout (its fault: 408, not
    /// a 5xx that would feed the error-rate alert).
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Field { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Field { .. } => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) | ApiError::Refused(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMedia(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "invalid_input",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Timeout(_) => "timeout",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string(), "type": self.kind() }));
        let mut resp = (status, body).into_response();
        match &self {
            ApiError::Field { param, .. } => {
                resp.extensions_mut().insert(ErrorParam(param.clone()));
            }
            ApiError::Unauthorized => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"lepton\""),
                );
            }
            ApiError::Forbidden(_) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"lepton\", error=\"insufficient_scope\"",
                    ),
                );
            }
            ApiError::RateLimited(secs) => {
                if let Ok(v) = HeaderValue::from_str(&(*secs).max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::Overloaded(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
