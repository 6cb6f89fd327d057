//! One client connection: HTTP/1.1 over hyper with the server's connection-level limits, which
//! `axum::serve` does not offer.
//!
//! - **Idle timeout** (`connections.idle-timeout-ms`): no request in progress and no byte of a
//!   new one received (before the first request, and between keep-alive requests): closed.
//! - **Header-read timeout** (`connections.header-read-timeout-ms`): from the first byte of a
//!   request to the end of its headers; a slowloris client is closed.
//! - **Pressure**: at the connection cap the server asks every connection without a request in
//!   progress (idle or still sending headers) to close, to make room.
//! - **Drain**: on shutdown, connections without a request in progress close at once; the others
//!   finish their response and close (the server aborts whatever is left at its deadline).
//!
//! A request is "in progress" from hyper handing it to the router until its response body has
//! been sent (or dropped), so long responses such as SSE streams are never cut by these limits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::config::ConnectionLimits;
use crate::metrics::Metrics;

/// What a connection is doing, shared by its socket wrapper, its requests and its watchdog.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` at which the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds since `epoch` + 1 of the first byte received while idle (0: none yet).
    head_started: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn bytes_received(&self) {
        if !self.busy() && self.head_started.load(Ordering::Relaxed) == 0 {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// When the connection should be closed if nothing changes; `None` while a request runs.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        let ms = match self.head_started.load(Ordering::Relaxed) {
            0 => self.idle_since.load(Ordering::Relaxed) + limits.idle_timeout_ms,
            started => started - 1 + limits.header_read_timeout_ms,
        };
        Some(self.epoch + Duration::from_millis(ms))
    }
}

/// Held while a request is in progress (moved into its response body).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        a.head_started.store(0, Ordering::Relaxed);
        InFlight(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now_ms(), Ordering::Relaxed);
        a.head_started.store(0, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that ends the request's [`InFlight`] when it is dropped (sent or abandoned).
struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when bytes of a new request arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_received();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Signals from the server to its connections.
#[derive(Clone)]
pub struct Signals {
    /// Becomes `true` when the server starts draining.
    pub drain: watch::Receiver<bool>,
    /// Notified at the connection cap: connections without a request in progress close.
    pub pressure: Arc<Notify>,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// By the client, or after a response with `Connection: close`.
    Normally,
    /// By the idle or header-read timeout.
    Timeout,
    /// To make room at the connection cap.
    Pressure,
    /// Without a request in progress when the server began draining.
    Drain,
}

/// Serve HTTP/1.1 on one accepted connection until it closes or a limit closes it.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut signals: Signals,
    metrics: Arc<Metrics>,
) -> Closed {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: Arc::clone(&activity),
    });
    let act = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&act);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let resp = app
                .oneshot(req)
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            Ok::<_, Infallible>(resp.map(|inner| Tracked {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    // The watchdog below implements the header-read and idle timeouts (hyper's own header
    // timer also runs while idle, which would merge the two).
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let deadline = activity
            .deadline(&limits)
            .map_or_else(far, tokio::time::Instant::from_std);
        let pressure = signals.pressure.notified();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return Closed::Normally;
            }
            _ = tokio::time::sleep_until(deadline) => {
                // Re-check: a request may have started since the deadline was computed.
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    metrics.connection_cut();
                    return Closed::Timeout;
                }
            }
            _ = pressure, if !draining => {
                if !activity.busy() {
                    metrics.connection_cut();
                    return Closed::Pressure;
                }
            }
            r = signals.drain.changed(), if !draining => {
                if r.is_err() || *signals.drain.borrow() {
                    draining = true;
                    if !activity.busy() {
                        return Closed::Drain;
                    }
                    // Finish the response in progress, then close.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
