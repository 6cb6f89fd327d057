//! Browser attacks on a server that trusts its network position: a web page the user visits may
//! send requests to `http://127.0.0.1:8080` (cross-site request forgery: "simple" requests such
//! as a `text/plain` POST need no CORS preflight) or, after DNS rebinding, read from it under its
//! own name. Two checks on every request, before routing:
//!
//! - **Origin**: a state-changing request (any method but GET, HEAD, OPTIONS) that carries an
//!   `Origin` other than the server's own (`http://` + the listen address; for a loopback
//!   address also `localhost`, `127.0.0.1` and `[::1]` on its port) or `security.allowed-origins`,
//!   or `Sec-Fetch-Site: cross-site`, gets 403. Clients that are not browsers send no `Origin`.
//! - **Host**: while serving a loopback address without tokens, a `Host` that is not a loopback
//!   name (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`) or in `security.allowed-hosts` gets
//!   403: a DNS-rebinding page reaches the server under the attacker's name.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// The host name of a `Host` value (port and IPv6 brackets removed, lower case, no final dot).
fn host_name(host: &str) -> String {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':').map_or(h, |(n, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                n
            } else {
                h
            }
        })
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The origins allowed to send state-changing requests.
fn own_origins(cfg: &ServeConfig) -> Vec<String> {
    let port = cfg.listen.port();
    let mut v = vec![format!("http://{}", cfg.listen)];
    if cfg.listen.ip().is_loopback() {
        for h in ["localhost", "127.0.0.1", "[::1]"] {
            v.push(format!("http://{h}:{port}"));
        }
    }
    v.extend(
        cfg.security
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase()),
    );
    v
}

/// Check the `Origin` and `Host` of a request.
pub fn check(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let cfg = &state.inner.config;
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return Err(ApiError::Refused(format!(
                "cross-site {method} requests are refused (Sec-Fetch-Site: cross-site)"
            )));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let o = origin.to_str().unwrap_or("?").to_ascii_lowercase();
            if !own_origins(cfg).contains(&o) {
                return Err(ApiError::Refused(format!(
                    "Origin '{o}' may not send {method} requests to this server (add it to security.allowed-origins)"
                )));
            }
        }
    }
    if cfg.listen.ip().is_loopback() && state.inner.tokens.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| uri.authority().map(|a| a.to_string()));
        // HTTP/1.0 clients may send no Host; a browser always does.
        if let Some(host) = host {
            let name = host_name(&host);
            let allowed = is_loopback_name(&name)
                || cfg
                    .security
                    .allowed_hosts
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&name));
            if !allowed {
                return Err(ApiError::Refused(format!(
                    "Host '{host}': this server listens on a loopback address without tokens and answers only loopback names (add it to security.allowed-hosts)"
                )));
            }
        }
    }
    Ok(())
}

/// The middleware form of [`check`], in front of every route.
pub async fn browser_checks(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state, req.method(), req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("evil.example."), "evil.example");
        assert!(is_loopback_name("127.0.0.2"));
        assert!(is_loopback_name("app.localhost"));
        assert!(!is_loopback_name("localhost.evil.example"));
        assert!(!is_loopback_name("10.0.0.1"));
    }
}
