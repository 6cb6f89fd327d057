//! Running the server: bind, refuse an unauthenticated public address, reload tokens, evaluate
//! the alert rules, and drain in-flight requests on SIGTERM / Ctrl-C.

use std::time::Duration;

use crate::routes::app;
use crate::state::AppState;

/// Serve until SIGTERM or Ctrl-C, then finish in-flight requests.
pub async fn serve(state: AppState) -> Result<(), String> {
    let cfg = &state.inner.config;
    if !cfg.listen.ip().is_loopback() && state.inner.tokens.is_empty() && !cfg.insecure {
        return Err(format!("refusing to serve on {} without API tokens: set LEPTON_TOKENS or auth.tokens-file, or pass --insecure", cfg.listen));
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    tracing::info!(addr = %cfg.listen, models = ?state.inner.models.read().expect("lock").keys().collect::<Vec<_>>(), "serving");

    let s = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            s.inner.tokens.refresh();
        }
    });
    let s = state.clone();
    tokio::spawn(crate::alerts::run(s));

    let shutdown_state = state.clone();
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        shutdown_state
            .inner
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::info!("shutting down: draining in-flight requests");
    })
    .await
    .map_err(|e| format!("server error: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
