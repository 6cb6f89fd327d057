//! Running the server: bind, refuse an unauthenticated public address, reload tokens, evaluate
//! the alert rules, accept connections under the connection limits of `[connections]`, and on
//! SIGTERM / Ctrl-C drain: stop accepting, close connections without a request in progress,
//! let the others finish for at most `drain-timeout-ms`, then close everything.
//!
//! Accept errors never end the loop: running out of file descriptors (EMFILE, ENFILE) or
//! memory backs off (10 ms doubling to 1 s) and asks idle connections to close; other errors
//! (a connection reset before it was accepted) are skipped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::connection::{serve_connection, Signals};
use crate::routes::app;
use crate::serve_error::{Result, ServeError};
use crate::state::AppState;

/// Serve until SIGTERM or Ctrl-C, then drain (see the module docs).
pub async fn serve(state: AppState) -> Result<()> {
    let cfg = &state.inner.config;
    if !cfg.listen.ip().is_loopback() && state.inner.tokens.is_empty() && !cfg.insecure {
        return Err(ServeError::Unauthenticated(cfg.listen));
    }
    let listener =
        listen(cfg.listen, cfg.connections.max_connections).map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    tracing::info!(addr = %cfg.listen, models = ?state.inner.models.read().expect("lock").keys().collect::<Vec<_>>(), "serving");
    if let Some(files) = open_files_limit() {
        let need = cfg.connections.max_connections as u64 + 64;
        if files < need {
            tracing::warn!(open_files_limit = files, max_connections = cfg.connections.max_connections,
                "the open-files limit (ulimit -n) is below connections.max-connections + 64: accepts will fail (and back off) before the cap is reached");
        }
    }

    let s = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            s.inner.tokens.refresh();
        }
    });
    tokio::spawn(crate::alerts::run(state.clone()));
    serve_on(listener, state, shutdown_signal()).await;
    Ok(())
}

/// Bind `addr` with a listen backlog of `max_connections` (the kernel caps it at
/// `net.core.somaxconn`): a burst of connections then waits in the backlog instead of having its
/// SYNs dropped (a client retries a dropped SYN only after a second).
fn listen(addr: std::net::SocketAddr, max_connections: usize) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(max_connections.clamp(1024, 65535) as u32)
}

/// The soft limit on open files of this process, from `/proc/self/limits` (Linux; `None`
/// elsewhere or when unlimited).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Is this accept error a shortage of descriptors or memory (back off) rather than a problem of
/// one connection (skip it)?
fn is_resource_error(e: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// Wait for a connection slot; at the cap, ask connections without a request in progress to
/// close first.
async fn slot(slots: &Arc<Semaphore>, pressure: &Notify) -> OwnedSemaphorePermit {
    match Arc::clone(slots).try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            pressure.notify_waiters();
            Arc::clone(slots)
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed")
        }
    }
}

/// Serve `state`'s router on `listener` until `shutdown` completes, then drain (see the module
/// docs). Returns when every connection is closed, at most `drain-timeout-ms` after `shutdown`.
pub async fn serve_on(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()>) {
    let limits = state.inner.config.connections.clone();
    let metrics = Arc::clone(&state.inner.metrics);
    let router = app(state.clone());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);
    let signals = Signals {
        drain: drain_rx,
        pressure: Arc::new(Notify::new()),
    };
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = conns.join_next() => continue,
            p = slot(&slots, &signals.pressure) => p,
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = conns.join_next() => continue,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) if is_resource_error(&e) => {
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, open = conns.len(), "accept failed: out of file descriptors or memory; backing off");
                    signals.pressure.notify_waiters();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(10);
        let _ = stream.set_nodelay(true);
        let (router, limits, signals, metrics) = (
            router.clone(),
            limits.clone(),
            signals.clone(),
            Arc::clone(&metrics),
        );
        conns.spawn(async move {
            let _permit = permit;
            metrics.connections(1);
            let how =
                serve_connection(stream, peer, router, limits, signals, Arc::clone(&metrics)).await;
            metrics.connections(-1);
            how
        });
    }
    drop(listener);
    state
        .inner
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        open = conns.len(),
        drain_ms = limits.drain_timeout_ms,
        "shutting down: draining connections"
    );
    let _ = drain_tx.send(true);
    let deadline = tokio::time::sleep(Duration::from_millis(limits.drain_timeout_ms));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = conns.join_next() => if r.is_none() { break },
            _ = &mut deadline => {
                tracing::warn!(open = conns.len(), "drain deadline reached: closing the remaining connections");
                for _ in 0..conns.len() {
                    metrics.connection_cut();
                }
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                break;
            }
        }
    }
    tracing::info!("server stopped");
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
