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
    tokio::spawn(async move { alerts(s).await });

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

/// The alert rules of `deploy/prometheus-rules.yml`, evaluated in process over each interval.
async fn alerts(state: AppState) {
    let cfg = state.inner.config.alerts.clone();
    loop {
        tokio::time::sleep(Duration::from_secs(cfg.interval_s.max(1))).await;
        let (p99, errors, n) = state.inner.metrics.drain_window();
        let mut firing = Vec::new();
        if n > 0 && p99 * 1e3 > cfg.latency_p99_ms {
            firing.push(format!(
                "LatencySLO: p99 {:.1} ms > {} ms",
                p99 * 1e3,
                cfg.latency_p99_ms
            ));
        }
        if n > 0 && errors > cfg.error_rate {
            firing.push(format!(
                "ErrorRate: {:.2}% 5xx > {:.2}%",
                errors * 100.0,
                cfg.error_rate * 100.0
            ));
        }
        for (name, m) in state.inner.models.read().expect("lock").iter() {
            let fill = m.batcher.queued() as f64 / m.batcher.capacity().max(1) as f64;
            if fill > cfg.queue_saturation {
                firing.push(format!(
                    "QueueSaturation: model {name} queue {:.0}% full",
                    fill * 100.0
                ));
            }
        }
        for alert in firing {
            tracing::warn!(target: "alert", %alert, webhook = cfg.webhook.as_deref().unwrap_or(""), "alert firing");
        }
    }
}
