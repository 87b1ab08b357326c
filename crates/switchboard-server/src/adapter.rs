//! The one interface every broadcast and every cross-socket query goes through.
//!
//! [`LocalAdapter`] serves a single process. A multi-node adapter (Redis pub/sub, as Reverb
//! scales) implements the same trait: `publish` fans out to every node, the queries
//! aggregate across nodes. Nothing else in the server touches another socket's queue.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::time::timeout(std::time::Duration::from_secs(5), async {
//! use std::sync::Arc;
//! use switchboard_server::{Adapter, LocalAdapter, Server, ServerConfig};
//!
//! let config = ServerConfig { port: 0, ..ServerConfig::default() };
//! let server = Server::start_with_adapter(config, Arc::new(LocalAdapter)).await?;
//! let app = server.app("1000").ok_or("the development app")?;
//! assert_eq!(LocalAdapter.channel_counts(&app, "news").subscription_count, 0);
//! assert!(LocalAdapter.presence_users(&app, "presence-room").is_empty());
//! server.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).await?
//! # }
//! ```

use bytes::Bytes;
use switchboard_protocol::ChannelName;

use crate::gateway::Outgoing;
use crate::pusher::app::{App, ChannelCounts};

/// Where broadcasts go and where channel state is read from.
///
/// ```
/// # // Call the HTTP API of the development app, signed as the official SDKs sign.
/// # async fn signed(
/// #     server: &switchboard_server::RunningServer,
/// #     method: &str,
/// #     path: &str,
/// #     body: Option<&str>,
/// # ) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error>> {
/// #     use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
/// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
/// #     let body_bytes = body.map(str::as_bytes);
/// #     use switchboard_protocol::http_auth::sign_request;
/// #     let params = sign_request(DEV_APP_KEY, DEV_APP_SECRET, method, path, &[], body_bytes, now);
/// #     let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
/// #     let url = format!("http://{}{path}?{}", server.local_addr(), query.join("&"));
/// #     let client = reqwest::Client::new();
/// #     let request = match body {
/// #         Some(body) => client.post(url).header("content-type", "application/json").body(body.to_owned()),
/// #         None => client.get(url),
/// #     };
/// #     let response = request.send().await?;
/// #     Ok((response.status().as_u16(), response.json().await?))
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use bytes::Bytes;
/// use switchboard_server::gateway::Outgoing;
/// use switchboard_server::pusher::app::ChannelCounts;
/// use switchboard_server::{Adapter, App, LocalAdapter, Server, ServerConfig};
///
/// /// Counts backend publishes, and otherwise behaves as the single-process adapter.
/// #[derive(Default)]
/// struct Counting(AtomicUsize);
///
/// impl Adapter for Counting {
///     fn publish(&self, app: &App, channel: &str, frame: Bytes, except: Option<&str>, remember: bool) -> usize {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         LocalAdapter.publish(app, channel, frame, except, remember)
///     }
///     fn terminate_user(&self, app: &App, user_id: &str) -> usize {
///         LocalAdapter.terminate_user(app, user_id)
///     }
///     fn channel_counts(&self, app: &App, channel: &str) -> ChannelCounts {
///         LocalAdapter.channel_counts(app, channel)
///     }
///     fn occupied_channels(&self, app: &App, prefix: &str) -> Vec<(String, ChannelCounts)> {
///         LocalAdapter.occupied_channels(app, prefix)
///     }
///     fn presence_users(&self, app: &App, channel: &str) -> Vec<String> {
///         LocalAdapter.presence_users(app, channel)
///     }
///     fn gateway_publish(&self, app: &App, topic: &str, frame: &Outgoing) -> usize {
///         LocalAdapter.gateway_publish(app, topic, frame)
///     }
///     fn gateway_close(&self, app: &App, connection_id: Option<&str>, code: u16, reason: &str) -> usize {
///         LocalAdapter.gateway_close(app, connection_id, code, reason)
///     }
///     fn gateway_unsubscribe(&self, app: &App, subject: &str, patterns: &[String]) -> usize {
///         LocalAdapter.gateway_unsubscribe(app, subject, patterns)
///     }
/// }
///
/// let adapter = Arc::new(Counting::default());
/// let config = ServerConfig { port: 0, ..ServerConfig::default() };
/// let server = Server::start_with_adapter(config, adapter.clone()).await?;
/// // A signed `POST /apps/1000/events` to two channels publishes once per channel.
/// let event = r#"{"name":"greet","data":"{}","channels":["news","sports"]}"#;
/// let (status, _) = signed(&server, "POST", "/apps/1000/events", Some(event)).await?;
/// assert_eq!(status, 200);
/// assert_eq!(adapter.0.load(Ordering::Relaxed), 2);
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
pub trait Adapter: Send + Sync + 'static {
    /// Deliver an encoded frame to the subscribers of `channel`, except `except_socket_id`.
    /// `remember` marks a backend publish, which a cache channel keeps as its last event
    /// (client events are never cached). Returns how many local sockets it was queued for.
    fn publish(&self, app: &App, channel: &str, frame: Bytes, except_socket_id: Option<&str>, remember: bool) -> usize;
    /// Close every connection of `user_id` with 4009. Returns how many.
    fn terminate_user(&self, app: &App, user_id: &str) -> usize;
    /// Subscription and presence counts of one channel.
    fn channel_counts(&self, app: &App, channel: &str) -> ChannelCounts;
    /// Occupied channels starting with `prefix`.
    fn occupied_channels(&self, app: &App, prefix: &str) -> Vec<(String, ChannelCounts)>;
    /// Presence member ids of `channel`.
    fn presence_users(&self, app: &App, channel: &str) -> Vec<String>;
    /// Gateway protocol: queue `frame` for every subscriber of `topic` (the sender included
    /// if subscribed). Returns how many local sockets it was queued for.
    fn gateway_publish(&self, app: &App, topic: &str, frame: &Outgoing) -> usize;
    /// Gateway protocol: close one connection (by its connection id) or all of the app's.
    /// Returns how many.
    fn gateway_close(&self, app: &App, connection_id: Option<&str>, code: u16, reason: &str) -> usize;
    /// Gateway protocol: unsubscribe `subject`'s connections from topics matching `patterns`.
    /// Returns how many subscriptions ended.
    fn gateway_unsubscribe(&self, app: &App, subject: &str, patterns: &[String]) -> usize;
}

/// The single-process adapter: state lives in each [`App`].
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
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use bytes::Bytes;
/// use switchboard_server::{Adapter, LocalAdapter, Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// let (mut ws, _socket_id) = connect(&server).await?;
/// subscribe(&mut ws, serde_json::json!({ "channel": "news" })).await?;
/// let app = server.app("1000").ok_or("the development app")?;
/// assert_eq!(LocalAdapter.channel_counts(&app, "news").subscription_count, 1);
///
/// let frame = Bytes::from_static(br#"{"event":"greet","channel":"news","data":"{}"}"#);
/// assert_eq!(LocalAdapter.publish(&app, "news", frame, None, true), 1, "queued for one socket");
/// assert_eq!(next_text(&mut ws).await, r#"{"event":"greet","channel":"news","data":"{}"}"#);
/// drop(ws);
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn publish(&self, app: &App, channel: &str, frame: Bytes, except_socket_id: Option<&str>, remember: bool) -> usize {
        let cache = remember && ChannelName::parse(channel).is_ok_and(|c| c.is_cache());
        app.deliver(channel, &frame, except_socket_id, cache)
    }

    fn terminate_user(&self, app: &App, user_id: &str) -> usize {
        app.terminate_user(user_id)
    }

    fn channel_counts(&self, app: &App, channel: &str) -> ChannelCounts {
        app.channel_counts(channel)
    }

    fn occupied_channels(&self, app: &App, prefix: &str) -> Vec<(String, ChannelCounts)> {
        app.occupied_channels(prefix)
    }

    fn presence_users(&self, app: &App, channel: &str) -> Vec<String> {
        app.presence_users(channel)
    }

    fn gateway_publish(&self, app: &App, topic: &str, frame: &Outgoing) -> usize {
        app.gateway.publish(topic, frame)
    }

    fn gateway_close(&self, app: &App, connection_id: Option<&str>, code: u16, reason: &str) -> usize {
        app.gateway.close(connection_id, code, reason)
    }

    fn gateway_unsubscribe(&self, app: &App, subject: &str, patterns: &[String]) -> usize {
        app.gateway.unsubscribe_subject(subject, patterns)
    }
}
