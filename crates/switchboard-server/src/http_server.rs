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

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::metrics::Metrics;

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

/// Accept and serve connections until `stop` turns true; then stop accepting and let the
/// connections in flight finish their current request.
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
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: wait instead of spinning on the error.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|stop| *stop).await.is_ok(); } => return,
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
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let metrics = metrics.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            metrics.pending_connections.inc();
            let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
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
}
