//! The accept loop: every TCP connection is served by hyper's HTTP/1 with a header-read
//! timer, and connections that have not become WebSockets are capped.
//!
//! Why not `axum::serve`: it sets no hyper timer, so hyper's header-read timeout is inert
//! and kept-alive connections are never reaped. 1,300 idle or half-sent requests stayed open
//! for ever, and under a 256-descriptor limit `/up` and new sockets timed out (slowloris).
//! Here a connection that has not sent its request headers within `http_header_timeout`, or
//! stays idle that long between requests, is closed; and at most `max_pending_connections`
//! connections may be in that state at once (past it a new one is closed on accept, and
//! counted). An upgraded WebSocket leaves the cap: its own quotas and timers govern it.
//!
//! The header timer does not run while a request body is read or a response written, so a
//! client could still hold its slot by trickling a body or never reading the answer: every
//! request must complete within `http_request_timeout` (else 408, see [`request_deadline`]),
//! and a write that makes no progress for `WRITE_TIMEOUT` fails ([`StallGuard`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::state::ServerState;
use crate::websocket::WRITE_TIMEOUT;

/// Middleware: a request (its body read and its handler) that takes longer than
/// `http_request_timeout` gets 408, so a trickled body cannot hold a connection slot.
pub(crate) async fn request_deadline(State(server): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    let limit = Duration::from_secs(server.config.http_request_timeout.max(1));
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let body = serde_json::json!({ "error": format!("the request took longer than {limit:?}"), "code": 408 });
            (axum::http::StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response()
        }
    }
}

/// A stream whose writes fail when they make no progress for `stall`: a client that
/// never reads its responses (or, once upgraded, its WebSocket frames) is let go.
pub(crate) struct StallGuard<T> {
    inner: T,
    stall: Duration,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(inner: T, stall: Duration) -> Self {
        Self { inner, stall, stalled_since: None }
    }

    /// `poll` made no progress: fail once it has made none for `stall`.
    fn check<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled_since = None;
            return poll;
        }
        let stall = self.stall;
        let timer = self.stalled_since.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, poll)
    }
}

/// Settings of the accept loop.
pub(crate) struct HttpLimits {
    pub(crate) header_timeout: Duration,
    /// `None`: unlimited.
    pub(crate) max_pending: Option<usize>,
}

impl HttpLimits {
    /// From the configuration, with the pending cap lowered to a quarter of the process's
    /// descriptor limit: a cap above it would not stop descriptor exhaustion.
    pub(crate) fn of(config: &crate::ServerConfig) -> Self {
        let configured = (config.max_pending_connections > 0).then_some(config.max_pending_connections);
        let max_pending = match (configured, descriptor_limit()) {
            (Some(cap), Some(limit)) if cap > limit / 4 => {
                let lowered = (limit / 4).max(1);
                tracing::warn!(
                    "max_pending_connections {cap} lowered to {lowered}: the descriptor limit is {limit} (raise `ulimit -n`)"
                );
                Some(lowered)
            }
            (cap, _) => cap,
        };
        Self { header_timeout: Duration::from_secs(config.http_header_timeout.max(1)), max_pending }
    }
}

/// The soft `RLIMIT_NOFILE`, if it can be read.
fn descriptor_limit() -> Option<usize> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

/// Accept and serve connections until `stop` turns true; then stop accepting, let the
/// connections in flight finish their current request, and return when they have.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let pending = limits.max_pending.map(|n| Arc::new(Semaphore::new(n)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let builder = Arc::new(builder);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: wait instead of spinning on the error.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|stop| *stop).await.is_ok(); } => break,
        };
        let permit = match &pending {
            None => None,
            Some(pending) => match pending.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    metrics.pending_connections_refused.inc();
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Handlers that need the client's address (the gateway's welcome) read it from the
        // request's extensions, as axum's `ConnectInfo` extractor does.
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower_service::Service::call(&mut router.clone(), request)
        });
        let builder = builder.clone();
        let metrics = metrics.clone();
        let mut stop = stop.clone();
        connections.spawn(async move {
            metrics.pending_connections.inc();
            let io = TokioIo::new(StallGuard::new(stream, WRITE_TIMEOUT));
            let connection = builder.serve_connection(io, service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            // The connection future ends when the client goes, a timer fires, or the socket is
            // handed to a WebSocket task (an upgrade): each frees its pending slot.
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = async { let _ = stop.wait_for(|stop| *stop).await.is_ok(); } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("HTTP connection ended: {e}");
            }
            metrics.pending_connections.dec();
            drop(permit);
        });
    }
    // The caller bounds this wait (the shutdown grace).
    connections.close();
    connections.wait().await;
}
