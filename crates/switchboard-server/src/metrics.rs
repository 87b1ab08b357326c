//! Prometheus metrics served at `/metrics`: connections, messages in and out,
//! subscriptions, HTTP requests, webhooks and slow-consumer disconnects.
//!
//! ```
//! use switchboard_server::Metrics;
//! let metrics = Metrics::default();
//! metrics.messages_received.inc();
//! assert!(metrics.render().contains("switchboard_ws_messages_received_total 1"));
//! ```

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the HTTP request counter.
///
/// ```
/// use switchboard_server::Metrics;
/// use switchboard_server::metrics::HttpLabels;
/// let metrics = Metrics::default();
/// metrics.http_requests.get_or_create(&HttpLabels { endpoint: "events", status: 200 }).inc();
/// assert!(metrics.render().contains(r#"switchboard_http_requests_total{endpoint="events",status="200"} 1"#));
/// ```
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route, e.g. `events` or `channels`.
    pub endpoint: &'static str,
    /// The response status code.
    pub status: u16,
}

/// Every metric the server keeps. Cheap to clone pieces of; counters are atomics.
///
/// ```
/// use switchboard_server::Metrics;
/// let metrics = Metrics::default();
/// metrics.connections.inc();
/// metrics.connections_total.inc();
/// metrics.connections.dec();
/// assert_eq!((metrics.connections.get(), metrics.connections_total.get()), (0, 1));
/// ```
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
    /// Text frames received from clients.
    pub messages_received: Counter,
    /// Frames written to clients.
    pub messages_sent: Counter,
    /// Current channel subscriptions (one per socket and channel).
    pub subscriptions: Gauge,
    /// HTTP API requests by endpoint and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Sockets closed because they read slower than events arrived.
    pub slow_consumer_disconnects: Counter,
    /// Webhook batches delivered.
    pub webhooks_sent: Counter,
    /// Webhook batches given up after all retries.
    pub webhooks_failed: Counter,
    /// Webhook events dropped because an endpoint's queue was full.
    pub webhooks_dropped: Counter,
    /// Open Phoenix sockets (`/socket/websocket`).
    pub phoenix_connections: Gauge,
    /// TCP connections that have not become WebSockets (reading a request, or kept alive).
    pub pending_connections: Gauge,
    /// TCP connections closed at once because `max_pending_connections` were open.
    pub pending_connections_refused: Counter,
    /// Open gateway sockets (`/apps/{id}`).
    pub gateway_connections: Gauge,
    /// Gateway publishes and messages accepted.
    pub gateway_messages: Counter,
    /// Gateway frames queued for subscribers (one per subscriber and message).
    pub gateway_deliveries: Counter,
    /// Gateway upgrades refused before the 101 (bad or expired token, unknown app).
    pub gateway_refused_tokens: Counter,
    /// Gateway sockets closed for breaking a rule (forbidden topic, bad frame, a limit).
    pub gateway_policy_closes: Counter,
    /// Open RealtimeX (Socket.IO) sockets.
    pub realtimex_connections: Gauge,
    /// RealtimeX sockets closed for a packet the protocol does not allow (bad Engine.IO or
    /// Socket.IO packet, an event before CONNECT, attachments out of step).
    pub realtimex_protocol_closes: Counter,
    /// RealtimeX CONNECTs refused (unknown API key or namespace, app over quota).
    pub realtimex_connect_errors: Counter,
    /// Scaling: messages read off the cluster bus.
    pub scaling_bus_messages: Counter,
    /// Scaling: bus messages found missing (their app's sockets were closed with 4200).
    pub scaling_bus_gaps: Counter,
    /// Scaling: times this node was fenced and rejoined under a new id.
    pub scaling_fenced: Counter,
    /// Scaling: dead nodes this node reaped.
    pub scaling_reaped_nodes: Counter,
    /// Scaling: subscriptions of dead nodes this node reaped.
    pub scaling_reaped_subscriptions: Counter,
    /// Scaling: 1 while Redis answers the heartbeat, 0 while it does not.
    pub scaling_redis_up: Gauge,
}

impl Metrics {
    /// Render every metric in the Prometheus text format.
    ///
    /// ```
    /// use switchboard_server::Metrics;
    /// let metrics = Metrics::default();
    /// metrics.subscriptions.set(3);
    /// let text = metrics.render();
    /// assert!(text.contains("# TYPE switchboard_subscriptions gauge"));
    /// assert!(text.contains("switchboard_subscriptions 3"));
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("switchboard");
        registry.register("connections", "Open WebSocket connections", self.connections.clone());
        registry.register("connections_accepted", "WebSocket connections accepted", self.connections_total.clone());
        registry.register("ws_messages_received", "Text frames received from clients", self.messages_received.clone());
        registry.register("ws_messages_sent", "Frames written to clients", self.messages_sent.clone());
        registry.register("subscriptions", "Current channel subscriptions", self.subscriptions.clone());
        registry.register("http_requests", "HTTP API requests", self.http_requests.clone());
        registry.register(
            "slow_consumer_disconnects",
            "Sockets closed for reading too slowly",
            self.slow_consumer_disconnects.clone(),
        );
        registry.register("webhooks_sent", "Webhook batches delivered", self.webhooks_sent.clone());
        registry.register("webhooks_failed", "Webhook batches given up after retries", self.webhooks_failed.clone());
        registry.register("webhooks_dropped", "Webhook events dropped on a full queue", self.webhooks_dropped.clone());
        registry.register("phoenix_connections", "Open Phoenix sockets", self.phoenix_connections.clone());
        registry.register(
            "pending_connections",
            "TCP connections not (yet) upgraded to WebSockets",
            self.pending_connections.clone(),
        );
        registry.register(
            "pending_connections_refused",
            "TCP connections closed at once at max_pending_connections",
            self.pending_connections_refused.clone(),
        );
        registry.register("gateway_connections", "Open gateway sockets", self.gateway_connections.clone());
        registry.register("gateway_messages", "Gateway publishes and messages accepted", self.gateway_messages.clone());
        registry.register(
            "gateway_deliveries",
            "Gateway frames queued for subscribers",
            self.gateway_deliveries.clone(),
        );
        registry.register(
            "gateway_refused_tokens",
            "Gateway upgrades refused for a bad token",
            self.gateway_refused_tokens.clone(),
        );
        registry.register(
            "gateway_policy_closes",
            "Gateway sockets closed for breaking a rule",
            self.gateway_policy_closes.clone(),
        );
        registry.register("realtimex_connections", "Open RealtimeX sockets", self.realtimex_connections.clone());
        registry.register(
            "realtimex_protocol_closes",
            "RealtimeX sockets closed for a packet the protocol does not allow",
            self.realtimex_protocol_closes.clone(),
        );
        registry.register(
            "realtimex_connect_errors",
            "RealtimeX namespace connects refused",
            self.realtimex_connect_errors.clone(),
        );
        registry.register(
            "scaling_bus_messages",
            "Messages read off the cluster bus",
            self.scaling_bus_messages.clone(),
        );
        registry.register(
            "scaling_bus_gaps",
            "Cluster bus messages found missing (the app's sockets were closed with 4200)",
            self.scaling_bus_gaps.clone(),
        );
        registry.register("scaling_fenced", "Times this node was fenced and rejoined", self.scaling_fenced.clone());
        registry.register("scaling_reaped_nodes", "Dead nodes this node reaped", self.scaling_reaped_nodes.clone());
        registry.register(
            "scaling_reaped_subscriptions",
            "Subscriptions of dead nodes this node reaped",
            self.scaling_reaped_subscriptions.clone(),
        );
        registry.register("scaling_redis_up", "1 while Redis answers the heartbeat", self.scaling_redis_up.clone());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
