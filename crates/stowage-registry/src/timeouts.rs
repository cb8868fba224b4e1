//! Silent clients lose their connection: a request body that sends nothing
//! for the idle timeout ends with an error (the chunk in flight is dropped,
//! the upload stays where it was), and a connection whose client reads
//! nothing of a response for that long is closed. The header-read timeout
//! is hyper's (see `server.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Set once a request's body went silent for longer than the idle timeout,
/// so the request can be answered as a timeout rather than as whatever the
/// storage made of the broken body.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyTimedOut(Arc<AtomicBool>);

impl BodyTimedOut {
    /// Whether the body timed out.
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The error a silent request body ends with.
#[derive(Debug)]
struct BodyIdle(Duration);

impl std::fmt::Display for BodyIdle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the client sent nothing of the request body for {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyIdle {}

/// A request body that fails when the client sends nothing for `idle`
/// while the server is waiting for it. Time the server spends elsewhere
/// (storage, locks) does not count: the clock runs from the moment the
/// body is asked for data and has none, and stops with each frame.
pub(crate) struct IdleTimeoutBody {
    inner: Body,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    expired: bool,
    timed_out: BodyTimedOut,
}

impl std::fmt::Debug for IdleTimeoutBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleTimeoutBody")
            .field("idle", &self.idle)
            .field("armed", &self.armed)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl IdleTimeoutBody {
    /// `body` with the idle timeout; `timed_out` is set when it fires.
    /// A zero `idle`, or a body known to be empty (most `GET`s), leaves the
    /// body as it is.
    pub(crate) fn wrap(body: Body, idle: Duration, timed_out: BodyTimedOut) -> Body {
        if idle.is_zero() || body.is_end_stream() {
            return body;
        }
        Body::new(Self {
            inner: body,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            expired: false,
            timed_out,
        })
    }
}

impl HttpBody for IdleTimeoutBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if !this.armed {
                    // A timeout too large to represent is no timeout.
                    let Some(deadline) = Instant::now().checked_add(this.idle) else {
                        return Poll::Pending;
                    };
                    this.timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.armed = false;
                        this.expired = true;
                        this.timed_out.set();
                        tracing::info!(
                            idle_seconds = this.idle.as_secs_f64(),
                            "request body idle: dropping the request"
                        );
                        Poll::Ready(Some(Err(axum::Error::new(BodyIdle(this.idle)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once the client has read nothing for
/// `limit` (the socket's send buffer stayed full): a client that stops
/// reading a blob does not hold the connection, and the storage read
/// behind it, forever. Reads pass through untouched (hyper's header-read
/// timeout and [`IdleTimeoutBody`] watch the other direction).
#[derive(Debug)]
pub(crate) struct WriteStallTimeout<I> {
    inner: I,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<I> WriteStallTimeout<I> {
    /// Wraps `inner`; a zero `limit` never times out.
    pub(crate) fn new(inner: I, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    /// Passes a ready result through (and stops the clock); on pending,
    /// starts the clock or fails once it ran out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() || self.limit.is_zero() {
            self.armed = false;
            return result;
        }
        if !self.armed {
            let Some(deadline) = Instant::now().checked_add(self.limit) else {
                return Poll::Pending;
            };
            self.timer.as_mut().reset(deadline);
            self.armed = true;
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed = false;
                tracing::info!(
                    idle_seconds = self.limit.as_secs_f64(),
                    "client stopped reading: closing the connection"
                );
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for the idle timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_silent_body_fails_and_a_steady_one_does_not() {
        // Steady: frames closer together than the timeout, longer in total.
        let steady = futures::stream::iter(0..6).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![i as u8; 10]))
        });
        let flag = BodyTimedOut::default();
        let body = IdleTimeoutBody::wrap(
            Body::from_stream(steady),
            Duration::from_millis(150),
            flag.clone(),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 60);
        assert!(!flag.is_set());

        // Silent after the first frame.
        let silent = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("abc")) })
            .chain(futures::stream::pending());
        let flag = BodyTimedOut::default();
        let mut body = IdleTimeoutBody::wrap(
            Body::from_stream(silent),
            Duration::from_millis(100),
            flag.clone(),
        );
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        let started = std::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("sent nothing"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert!(flag.is_set());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_stalled_write_fails() {
        // A duplex pipe with a tiny buffer nobody reads.
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut io = WriteStallTimeout::new(ours, Duration::from_millis(100));
        use tokio::io::AsyncWriteExt;
        let started = std::time::Instant::now();
        let err = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(90));
    }
}
