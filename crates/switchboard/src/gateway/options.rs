//! Options of a [`GatewayClient`](super::GatewayClient): where to connect (a URL provider run
//! on every connect, so each attempt can carry a fresh token), and every timing and bound.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{Backoff, BoxFuture, IoRuntime, Result, SlowConsumer};

/// Where to connect: run before every connection attempt.
pub type UrlProvider = Arc<dyn Fn() -> BoxFuture<'static, Result<String>> + Send + Sync>;

/// Options of a gateway client.
///
/// ```
/// use std::time::Duration;
/// use switchboard::gateway::GatewayOptions;
/// let options = GatewayOptions::new("ws://127.0.0.1:8080/apps/1000?access_token=…")
///     .ack_timeout(Duration::from_secs(2))
///     .max_offline(100);
/// assert_eq!(options.ack_timeout_value(), Duration::from_secs(2));
/// ```
#[derive(Clone)]
pub struct GatewayOptions {
    pub(crate) url_provider: UrlProvider,
    pub(crate) ack_timeout: Duration,
    pub(crate) reply_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) healthy_after: Duration,
    pub(crate) max_offline: usize,
    pub(crate) event_queue: usize,
    pub(crate) slow_consumer: SlowConsumer,
    pub(crate) max_message_size: usize,
    pub(crate) io_runtime: IoRuntime,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions").field("ack_timeout", &self.ack_timeout).finish_non_exhaustive()
    }
}

impl GatewayOptions {
    /// Always connect to `url` (`ws[s]://host/apps/{app_id}?access_token=…`).
    ///
    /// ```
    /// let options = switchboard::gateway::GatewayOptions::new("ws://127.0.0.1:8080/apps/1000?access_token=t");
    /// # let _ = options;
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        Self::with_url_provider(move || {
            let url = url.clone();
            async move { Ok(url) }
        })
    }

    /// Ask `provider` for the URL before every connection attempt (mint a fresh token there,
    /// as the SDKs' `url_provider` does). An error from it counts as a failed attempt.
    ///
    /// ```
    /// use switchboard::gateway::GatewayOptions;
    /// let options = GatewayOptions::with_url_provider(|| async {
    ///     let token = "…"; // e.g. fetched from your backend
    ///     Ok(format!("ws://127.0.0.1:8080/apps/1000?access_token={token}"))
    /// });
    /// # let _ = options;
    /// ```
    pub fn with_url_provider<F, Fut>(provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String>> + Send + 'static,
    {
        Self {
            url_provider: Arc::new(move || Box::pin(provider())),
            ack_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            // The Go SDK pings every 13.5 s and waits 15 s for the pong.
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(15),
            // ReconnectingWebSocket: 1–5 s first, growing 1.3× to 10 s; ours doubles to 30 s,
            // with full jitter so a restarted server is not hit by every client at once.
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            healthy_after: crate::backoff::HEALTHY_AFTER,
            max_offline: 100,
            event_queue: 1_024,
            slow_consumer: SlowConsumer::default(),
            max_message_size: crate::transport::DEFAULT_MAX_MESSAGE_SIZE,
            io_runtime: IoRuntime::default(),
        }
    }

    /// As [`GatewayOptions::with_url_provider`], with a plain function.
    ///
    /// ```
    /// let options = switchboard::gateway::GatewayOptions::with_sync_url_provider(|| Ok("ws://127.0.0.1:8080/apps/1000?access_token=t".into()));
    /// # let _ = options;
    /// ```
    pub fn with_sync_url_provider(provider: impl Fn() -> Result<String> + Send + Sync + 'static) -> Self {
        let provider = Arc::new(provider);
        Self::with_url_provider(move || {
            let provider = provider.clone();
            async move { provider() }
        })
    }

    /// How long [`Pending::ack`](super::Pending::ack) waits (5 s, as the JS and Python SDKs).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// The ack timeout.
    pub fn ack_timeout_value(&self) -> Duration {
        self.ack_timeout
    }

    /// How long [`Pending::reply`](super::Pending::reply) waits (5 s).
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// How long one connection attempt may take, welcome included (10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A WebSocket ping after this much silence (15 s)…
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// …and a reconnect if nothing arrives this long after it (15 s): a dead socket.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// The reconnect backoff (1 s to 30 s, doubling, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Publishes and sends kept while offline, sent after the next welcome (100, well under
    /// the server's per-second rate limit, so the flush is not refused); more are refused at
    /// once with an error. One whose `Pending` waits for its ack and is still unsent after
    /// the ack timeout fails with `Timeout` and is not sent.
    pub fn max_offline(mut self, max: usize) -> Self {
        self.max_offline = max;
        self
    }

    /// Capacity of each event stream's queue (1,024); a full one slows the socket.
    pub fn event_queue(mut self, capacity: usize) -> Self {
        self.event_queue = capacity.max(1);
        self
    }

    /// What happens to a listener that takes nothing for the stall limit.
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// The largest message accepted from the server (16 MiB; the Go SDK's 6 KiB is a bug).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Where the connection task runs (the library's I/O thread by default).
    pub fn io_runtime(mut self, runtime: IoRuntime) -> Self {
        self.io_runtime = runtime;
        self
    }
}
