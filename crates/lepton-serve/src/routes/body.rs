//! Knowing whether a request's body has fully arrived, so that a request timing out while the
//! client is still sending its body answers 408 (the client's fault) rather than 504.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http_body::Body as _;

/// A body that sets `done` once it has yielded its end (or is empty).
struct Watched {
    inner: Body,
    done: Arc<AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.done.store(true, Ordering::Release);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wrap `req`'s body; the flag is `true` once the whole body has been received (at once for an
/// empty body).
pub fn watch(req: Request) -> (Request, Arc<AtomicBool>) {
    let (parts, inner) = req.into_parts();
    let done = Arc::new(AtomicBool::new(inner.is_end_stream()));
    let body = Body::new(Watched {
        inner,
        done: Arc::clone(&done),
    });
    (Request::from_parts(parts, body), done)
}
