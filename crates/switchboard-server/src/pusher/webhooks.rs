//! Webhooks: channel_occupied / channel_vacated, member_added / member_removed,
//! client_event and cache_miss, batched per app and POSTed signed with `X-Pusher-Key` and
//! `X-Pusher-Signature` (HMAC-SHA256 of the body), retried with exponential backoff.
//!
//! ```
//! use switchboard_server::pusher::webhooks::WebhookEvent;
//! // Pusher's batch format: {"time_ms": ..., "events": [...]}
//! let events =
//!     [WebhookEvent::channel("news", "channel_occupied"), WebhookEvent::member("presence-a", "member_added", "7")];
//! let batch = serde_json::json!({ "time_ms": 1_700_000_000_000u64, "events": events });
//! assert_eq!(batch["events"][1]["user_id"], "7");
//! assert!(batch["events"][0].get("user_id").is_none());
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchboard_protocol::signature::sign_webhook;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::config::WebhookConfig;
use crate::metrics::Metrics;

/// Events buffered per app before new ones are dropped (and logged).
const QUEUE_CAPACITY: usize = 10_000;
/// How long the sender gathers events into one batch.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events in one POST.
const MAX_BATCH: usize = 100;
/// Delivery attempts per batch and endpoint.
const ATTEMPTS: u32 = 5;

/// One webhook event, as Pusher sends it inside `{"time_ms", "events": [...]}`.
///
/// ```
/// use switchboard_server::pusher::webhooks::WebhookEvent;
/// let event = WebhookEvent {
///     event: Some("client-typing".into()),
///     data: Some("{}".into()),
///     socket_id: Some("1.2".into()),
///     ..WebhookEvent::channel("private-room", "client_event")
/// };
/// assert_eq!(
///     serde_json::to_value(&event)?,
///     serde_json::json!({
///         "name": "client_event",
///         "channel": "private-room",
///         "event": "client-typing",
///         "data": "{}",
///         "socket_id": "1.2",
///     })
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `channel_occupied`, `member_added`, `client_event`, …
    pub name: &'static str,
    /// The channel.
    pub channel: String,
    /// Member events and presence client events: the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Client events: the event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Client events: the data as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Client events: the sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
}

impl WebhookEvent {
    /// A channel-level event (`channel_occupied`, `channel_vacated`, `cache_miss`).
    ///
    /// ```
    /// use switchboard_server::pusher::webhooks::WebhookEvent;
    /// let event = WebhookEvent::channel("news", "channel_occupied");
    /// assert_eq!(serde_json::to_string(&event)?, r#"{"name":"channel_occupied","channel":"news"}"#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn channel(channel: &str, name: &'static str) -> Self {
        Self { name, channel: channel.to_owned(), user_id: None, event: None, data: None, socket_id: None }
    }

    /// A member event.
    ///
    /// ```
    /// use switchboard_server::pusher::webhooks::WebhookEvent;
    /// let event = WebhookEvent::member("presence-room", "member_added", "42");
    /// assert_eq!(
    ///     serde_json::to_string(&event)?,
    ///     r#"{"name":"member_added","channel":"presence-room","user_id":"42"}"#
    /// );
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn member(channel: &str, name: &'static str, user_id: &str) -> Self {
        Self { user_id: Some(user_id.to_owned()), ..Self::channel(channel, name) }
    }
}

#[derive(Serialize)]
struct Batch<'a> {
    time_ms: u128,
    events: Vec<&'a WebhookEvent>,
}

/// Queues events for an app's webhook endpoints. Each endpoint has its own queue and task,
/// so a slow or dead endpoint delays only itself.
///
/// ```
/// # use futures_util::{SinkExt as _, StreamExt as _};
/// # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
/// # // The next text frame from the server ("" once the socket has ended).
/// # async fn next_text(ws: &mut Ws) -> String {
/// #     while let Some(Ok(message)) = ws.next().await {
/// #         if let Some(text) = message.as_text() {
/// #             return text.to_owned();
/// #         }
/// #     }
/// #     String::new()
/// # }
/// # // Connect a Pusher client to the development app; returns it with its socket id.
/// # async fn connect(
/// #     server: &switchboard_server::RunningServer,
/// # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
/// #     let key = switchboard_server::config::DEV_APP_KEY;
/// #     let url = format!("ws://{}/app/{key}?protocol=7", server.local_addr());
/// #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
/// #     let frame = switchboard_protocol::Frame::decode(&next_text(&mut ws).await)?;
/// #     let data: switchboard_protocol::messages::ConnectionEstablished = frame.data.parse()?;
/// #     Ok((ws, data.socket_id))
/// # }
/// # // Send `pusher:subscribe` with `data`; returns the server's answer.
/// # async fn subscribe(ws: &mut Ws, data: serde_json::Value) -> Result<String, Box<dyn std::error::Error>> {
/// #     let frame = serde_json::json!({ "event": "pusher:subscribe", "data": data });
/// #     ws.send(tokio_websockets::Message::text(frame.to_string())).await?;
/// #     Ok(next_text(ws).await)
/// # }
/// # // A webhook endpoint on 127.0.0.1 that hands every POST (headers, body) to the returned receiver.
/// # type Received = tokio::sync::mpsc::UnboundedReceiver<(http::HeaderMap, String)>;
/// # async fn webhook_receiver() -> Result<(String, Received), Box<dyn std::error::Error>> {
/// #     let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
/// #     let handler = move |headers: http::HeaderMap, body: String| {
/// #         let tx = tx.clone();
/// #         async move {
/// #             let _ = tx.send((headers, body));
/// #         }
/// #     };
/// #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// #     let url = format!("http://{}/hooks", listener.local_addr()?);
/// #     let router = axum::Router::new().route("/hooks", axum::routing::post(handler));
/// #     tokio::spawn(async move { axum::serve(listener, router).await });
/// #     Ok((url, rx))
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_protocol::signature::verify_webhook;
/// use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
/// use switchboard_server::{AppConfig, Server, ServerConfig, WebhookConfig};
///
/// let (url, mut received) = webhook_receiver().await?;
/// let app = AppConfig { webhooks: vec![WebhookConfig { url, events: vec![] }], ..AppConfig::default() };
/// let server = Server::start(ServerConfig { port: 0, apps: vec![app], ..ServerConfig::default() }).await?;
/// let (mut ws, _) = connect(&server).await?;
/// subscribe(&mut ws, serde_json::json!({ "channel": "news" })).await?;
/// // The first subscriber occupies the channel; the app's sender POSTs a signed batch.
/// let (headers, body) = received.recv().await.ok_or("no webhook")?;
/// let batch: serde_json::Value = serde_json::from_str(&body)?;
/// assert_eq!(batch["events"], serde_json::json!([{ "name": "channel_occupied", "channel": "news" }]));
/// let (key, signature) = (headers["x-pusher-key"].to_str()?, headers["x-pusher-signature"].to_str()?);
/// assert!(verify_webhook(DEV_APP_KEY, DEV_APP_SECRET, key, signature, body.as_bytes()));
/// drop(ws);
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WebhookSender {
    endpoints: Vec<Endpoint>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    events: Vec<String>,
    queue: mpsc::Sender<WebhookEvent>,
}

impl WebhookSender {
    /// Start one delivery task per endpoint on `tasks`. The tasks deliver what is queued
    /// when `stop` turns true, then end. Returns `None` when there are no endpoints.
    pub(crate) fn start(
        key: String,
        secret: String,
        hooks: Vec<WebhookConfig>,
        metrics: Arc<Metrics>,
        tasks: &TaskTracker,
        stop: watch::Receiver<bool>,
    ) -> Option<Self> {
        if hooks.is_empty() {
            return None;
        }
        let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
            Ok(client) => client,
            Err(e) => {
                tracing::error!("webhooks disabled: cannot build HTTP client: {e}");
                return None;
            }
        };
        let endpoints = hooks
            .into_iter()
            .map(|hook| {
                let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
                let target = Target {
                    client: client.clone(),
                    url: hook.url.clone(),
                    key: key.clone(),
                    secret: secret.clone(),
                    metrics: metrics.clone(),
                };
                tasks.spawn(deliver_loop(rx, target, stop.clone()));
                Endpoint { url: hook.url, events: hook.events, queue }
            })
            .collect();
        Some(Self { endpoints, metrics })
    }

    /// Queue an event for every endpoint that wants it; never blocks. A full queue drops
    /// the event, counted in `switchboard_webhooks_dropped`.
    ///
    /// ```
    /// # use futures_util::{SinkExt as _, StreamExt as _};
    /// # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
    /// # // The next text frame from the server ("" once the socket has ended).
    /// # async fn next_text(ws: &mut Ws) -> String {
    /// #     while let Some(Ok(message)) = ws.next().await {
    /// #         if let Some(text) = message.as_text() {
    /// #             return text.to_owned();
    /// #         }
    /// #     }
    /// #     String::new()
    /// # }
    /// # // Connect a Pusher client to the development app; returns it with its socket id.
    /// # async fn connect(
    /// #     server: &switchboard_server::RunningServer,
    /// # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
    /// #     let key = switchboard_server::config::DEV_APP_KEY;
    /// #     let url = format!("ws://{}/app/{key}?protocol=7", server.local_addr());
    /// #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
    /// #     let frame = switchboard_protocol::Frame::decode(&next_text(&mut ws).await)?;
    /// #     let data: switchboard_protocol::messages::ConnectionEstablished = frame.data.parse()?;
    /// #     Ok((ws, data.socket_id))
    /// # }
    /// # // Send `pusher:subscribe` with `data`; returns the server's answer.
    /// # async fn subscribe(ws: &mut Ws, data: serde_json::Value) -> Result<String, Box<dyn std::error::Error>> {
    /// #     let frame = serde_json::json!({ "event": "pusher:subscribe", "data": data });
    /// #     ws.send(tokio_websockets::Message::text(frame.to_string())).await?;
    /// #     Ok(next_text(ws).await)
    /// # }
    /// # // A webhook endpoint on 127.0.0.1 that hands every POST (headers, body) to the returned receiver.
    /// # type Received = tokio::sync::mpsc::UnboundedReceiver<(http::HeaderMap, String)>;
    /// # async fn webhook_receiver() -> Result<(String, Received), Box<dyn std::error::Error>> {
    /// #     let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    /// #     let handler = move |headers: http::HeaderMap, body: String| {
    /// #         let tx = tx.clone();
    /// #         async move {
    /// #             let _ = tx.send((headers, body));
    /// #         }
    /// #     };
    /// #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// #     let url = format!("http://{}/hooks", listener.local_addr()?);
    /// #     let router = axum::Router::new().route("/hooks", axum::routing::post(handler));
    /// #     tokio::spawn(async move { axum::serve(listener, router).await });
    /// #     Ok((url, rx))
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{AppConfig, Server, ServerConfig, WebhookConfig};
    ///
    /// // This endpoint only wants channel_vacated, so channel_occupied is never sent to it.
    /// let (url, mut received) = webhook_receiver().await?;
    /// let hook = WebhookConfig { url, events: vec!["channel_vacated".into()] };
    /// let app = AppConfig { webhooks: vec![hook], ..AppConfig::default() };
    /// let server = Server::start(ServerConfig { port: 0, apps: vec![app], ..ServerConfig::default() }).await?;
    /// let (mut ws, _) = connect(&server).await?;
    /// subscribe(&mut ws, serde_json::json!({ "channel": "news" })).await?;
    /// let unsubscribe = r#"{"event":"pusher:unsubscribe","data":{"channel":"news"}}"#;
    /// ws.send(tokio_websockets::Message::text(unsubscribe.to_string())).await?;
    /// let (_, body) = received.recv().await.ok_or("no webhook")?;
    /// let batch: serde_json::Value = serde_json::from_str(&body)?;
    /// assert_eq!(batch["events"], serde_json::json!([{ "name": "channel_vacated", "channel": "news" }]));
    /// drop(ws);
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn send(&self, event: WebhookEvent) {
        for endpoint in &self.endpoints {
            if !endpoint.events.is_empty() && !endpoint.events.iter().any(|n| n == event.name) {
                continue;
            }
            if endpoint.queue.try_send(event.clone()).is_err() {
                self.metrics.webhooks_dropped.inc();
                tracing::warn!(url = %endpoint.url, event = event.name, "webhook queue full: dropping an event");
            }
        }
    }
}

/// Where one endpoint's batches go.
struct Target {
    client: reqwest::Client,
    url: String,
    key: String,
    secret: String,
    metrics: Arc<Metrics>,
}

async fn deliver_loop(mut rx: mpsc::Receiver<WebhookEvent>, target: Target, mut stop: watch::Receiver<bool>) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            match rx.try_recv() {
                Ok(event) => event,
                Err(_) => return, // drained
            }
        } else {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => {
                    stopping = true;
                    continue;
                }
            }
        };
        let mut events = vec![first];
        let deadline = tokio::time::Instant::now() + if stopping { Duration::ZERO } else { BATCH_WINDOW };
        while events.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => events.push(event),
                _ => break,
            }
        }
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let body = match serde_json::to_vec(&Batch { time_ms, events: events.iter().collect() }) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("cannot encode webhook batch: {e}");
                continue;
            }
        };
        let signature = sign_webhook(&target.secret, &body);
        if post_with_retries(&target.client, &target.url, &target.key, &signature, body).await {
            target.metrics.webhooks_sent.inc();
        } else {
            target.metrics.webhooks_failed.inc();
        }
    }
}

async fn post_with_retries(client: &reqwest::Client, url: &str, key: &str, signature: &str, body: Vec<u8>) -> bool {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        let result = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-pusher-key", key)
            .header("x-pusher-signature", signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => return true,
            Ok(resp) => tracing::warn!(url, attempt, status = resp.status().as_u16(), "webhook refused"),
            Err(e) => tracing::warn!(url, attempt, "webhook failed: {e}"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    false
}
