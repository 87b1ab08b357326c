//! The one interface every join, leave, broadcast and cross-socket query goes through.
//!
//! [`LocalAdapter`] serves a single process: its futures are ready at once and the state is
//! each [`App`]'s. [`crate::scaling::RedisAdapter`] implements the same trait for a cluster:
//! Redis holds the channel state and carries the messages, and every node delivers from it.
//! Nothing else in the server touches another socket's queue or decides a presence
//! transition. The methods are async because a cluster answer is a Redis round trip; an
//! error ([`AdapterError`]) is answered with 503 by the HTTP API and a 503
//! `subscription_error` by a socket, never with a local-only answer.
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
//! assert_eq!(LocalAdapter.channel_counts(&app, "news").await?.subscription_count, 0);
//! assert!(LocalAdapter.presence_users(&app, "presence-room").await?.is_empty());
//! server.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).await?
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use switchboard_protocol::ChannelName;
use switchboard_protocol::phoenix::Payload;

use crate::connection_handle::ConnectionHandle;
use crate::gateway::{GatewayHandle, Outgoing};
use crate::metrics::Metrics;
use crate::phoenix::{RoomMember, Rooms};
use crate::pusher::app::{App, ChannelCounts, Joining, SubscribeRefused, Subscribed};

/// What an adapter call returns: a boxed future, so the trait stays object safe.
pub type AdapterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// Why an adapter could not answer.
///
/// ```
/// use switchboard_server::adapter::AdapterError;
/// let err = AdapterError::Unavailable("connection refused".into());
/// assert_eq!(err.to_string(), "scaling backend unavailable: connection refused");
/// assert_eq!(err.status(), 503);
/// ```
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AdapterError {
    /// The cluster's backend (Redis) did not answer, or answered with an error.
    #[error("scaling backend unavailable: {0}")]
    Unavailable(String),
    /// This node lost its membership of the cluster (its lease lapsed, or Redis lost its
    /// data); it is closing its sockets with 4200 and rejoining under a new id.
    #[error("this node was fenced out of the cluster and is rejoining")]
    Fenced,
}

impl AdapterError {
    /// The HTTP status (and `subscription_error` status) it is answered with.
    pub fn status(&self) -> u16 {
        503
    }
}

/// A future that is ready at once (the single-process adapter's answers).
fn ready<'a, T: Send + 'a>(value: T) -> AdapterFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

/// Where joins, leaves and broadcasts go and where channel state is read from.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use bytes::Bytes;
/// use switchboard_server::adapter::{AdapterFuture, Publish};
/// use switchboard_server::connection_handle::ConnectionHandle;
/// use switchboard_server::phoenix::Rooms;
/// use switchboard_server::pusher::app::{ChannelCounts, Joining, SubscribeRefused, Subscribed};
/// use switchboard_server::{Adapter, App, LocalAdapter, Metrics, Server, ServerConfig};
///
/// /// Counts backend publishes, and otherwise behaves as the single-process adapter.
/// #[derive(Default)]
/// struct Counting(AtomicUsize);
///
/// impl Adapter for Counting {
///     fn start<'a>(
///         &'a self,
///         apps: &'a [Arc<App>],
///         rooms: &'a Arc<Rooms>,
///         metrics: &'a Arc<Metrics>,
///     ) -> AdapterFuture<'a, ()> {
///         LocalAdapter.start(apps, rooms, metrics)
///     }
///     fn stop<'a>(&'a self) -> AdapterFuture<'a, ()> {
///         LocalAdapter.stop()
///     }
///     fn publish<'a>(&'a self, app: &'a App, publish: Publish<'a>) -> AdapterFuture<'a, ()> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         LocalAdapter.publish(app, publish)
///     }
///     fn join<'a>(
///         &'a self,
///         app: &'a App,
///         conn: &'a Arc<ConnectionHandle>,
///         channel: &'a str,
///         is_cache: bool,
///         joining: Option<Joining>,
///     ) -> AdapterFuture<'a, Result<Subscribed, SubscribeRefused>> {
///         LocalAdapter.join(app, conn, channel, is_cache, joining)
///     }
///     fn leave<'a>(&'a self, app: &'a App, conn: &'a ConnectionHandle, channel: &'a str) -> AdapterFuture<'a, ()> {
///         LocalAdapter.leave(app, conn, channel)
///     }
///     fn terminate_user<'a>(&'a self, app: &'a App, user_id: &'a str) -> AdapterFuture<'a, ()> {
///         LocalAdapter.terminate_user(app, user_id)
///     }
///     fn channel_counts<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, ChannelCounts> {
///         LocalAdapter.channel_counts(app, channel)
///     }
///     fn occupied_channels<'a>(&'a self, app: &'a App, prefix: &'a str) -> AdapterFuture<'a, Vec<(String, ChannelCounts)>> {
///         LocalAdapter.occupied_channels(app, prefix)
///     }
///     fn presence_users<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, Vec<String>> {
///         LocalAdapter.presence_users(app, channel)
///     }
///     fn acquire_connection<'a>(&'a self, app: &'a App) -> AdapterFuture<'a, bool> {
///         LocalAdapter.acquire_connection(app)
///     }
///     fn release_connection(&self, app: &Arc<App>) {
///         LocalAdapter.release_connection(app)
///     }
///     // The Phoenix rooms' (`room_join`, …) and the gateway's (`gateway_join`, …) methods
///     // keep their single-process defaults.
/// }
///
/// let adapter = Arc::new(Counting::default());
/// let config = ServerConfig { port: 0, ..ServerConfig::default() };
/// let server = Server::start_with_adapter(config, adapter.clone()).await?;
/// let app = server.app("1000").ok_or("the development app")?;
/// let frame = Bytes::from_static(br#"{"event":"greet","channel":"news","data":"{}"}"#);
/// adapter.publish(&app, Publish { channel: "news", frame, except_socket_id: None, remember: true }).await?;
/// assert_eq!(adapter.0.load(Ordering::Relaxed), 1);
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
pub trait Adapter: Send + Sync + 'static {
    /// Called once the server's apps exist, before it accepts sockets: a cluster adapter
    /// joins the cluster and starts its bus and heartbeat here. `rooms` are the Phoenix
    /// endpoint's rooms.
    fn start<'a>(
        &'a self,
        apps: &'a [Arc<App>],
        rooms: &'a Arc<Rooms>,
        metrics: &'a Arc<Metrics>,
    ) -> AdapterFuture<'a, ()>;
    /// Called at shutdown once every socket has left: a cluster adapter leaves the cluster.
    fn stop<'a>(&'a self) -> AdapterFuture<'a, ()>;
    /// Deliver a Pusher-encoded channel frame to every subscriber of its channel (on every
    /// node), except the socket `except_socket_id`. Resolves once the backend accepted it.
    fn publish<'a>(&'a self, app: &'a App, publish: Publish<'a>) -> AdapterFuture<'a, ()>;
    /// Subscribe `conn` to `channel` (as presence member `joining`), announcing the member
    /// and firing webhooks for the transitions it causes, exactly once cluster-wide.
    /// Idempotent per socket and channel. The subscriber receives the channel's frames once
    /// the connection has sent the confirmation and calls [`App::go_live`].
    fn join<'a>(
        &'a self,
        app: &'a App,
        conn: &'a Arc<ConnectionHandle>,
        channel: &'a str,
        is_cache: bool,
        joining: Option<Joining>,
    ) -> AdapterFuture<'a, Result<Subscribed, SubscribeRefused>>;
    /// Unsubscribe `conn` from `channel`, announcing `member_removed` when it was its user's
    /// last connection anywhere. Unknown subscriptions are ignored.
    fn leave<'a>(&'a self, app: &'a App, conn: &'a ConnectionHandle, channel: &'a str) -> AdapterFuture<'a, ()>;
    /// Close every connection of `user_id` (signed in, or a presence member) with 4009, on
    /// every node.
    fn terminate_user<'a>(&'a self, app: &'a App, user_id: &'a str) -> AdapterFuture<'a, ()>;
    /// Subscription and presence counts of one channel.
    fn channel_counts<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, ChannelCounts>;
    /// Occupied channels starting with `prefix`, sorted by name.
    fn occupied_channels<'a>(
        &'a self,
        app: &'a App,
        prefix: &'a str,
    ) -> AdapterFuture<'a, Vec<(String, ChannelCounts)>>;
    /// Presence member ids of `channel`, in join order.
    fn presence_users<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, Vec<String>>;
    /// Reserve one of the app's `max_connections` (counted cluster-wide); false when full.
    fn acquire_connection<'a>(&'a self, app: &'a App) -> AdapterFuture<'a, bool>;
    /// Give back a slot taken by [`Adapter::acquire_connection`]. Never waits: a cluster
    /// adapter sends the release in the background.
    fn release_connection(&self, app: &Arc<App>);
    /// Gateway protocol: take one of `subject`'s connection slots, unless it has `limit`
    /// connections already (0: no limit; counted cluster-wide). Before the upgrade.
    fn gateway_reserve_subject<'a>(
        &'a self,
        app: &'a App,
        subject: Option<&'a str>,
        limit: usize,
    ) -> AdapterFuture<'a, bool> {
        ready(app.gateway.reserve_subject(subject, limit))
    }
    /// Gateway protocol: give back a slot of a socket that never joined. Never waits.
    fn gateway_release_subject(&self, app: &Arc<App>, subject: Option<&str>) {
        app.gateway.release_subject(subject);
    }
    /// Gateway protocol: register a connection on its `automatic` topics (`main`,
    /// `priv/<id>`). `goodbye` is the presence frame backends get on `secure/inbound` if this
    /// node dies with the connection open.
    fn gateway_join<'a>(
        &'a self,
        app: &'a App,
        handle: &'a Arc<GatewayHandle>,
        subject: Option<&'a str>,
        automatic: &'a [String],
        goodbye: String,
    ) -> AdapterFuture<'a, ()> {
        let _ = goodbye; // one process: its own close announces the connection's end
        app.gateway.join(handle.clone(), subject.map(str::to_owned), automatic);
        ready(())
    }
    /// Gateway protocol: take connection `id` off every topic and give back its slot.
    /// True if the connection's end is this node's to announce (in a cluster, a reaper that
    /// took a fenced node's connections first announced them already).
    fn gateway_leave<'a>(&'a self, app: &'a App, id: u64) -> AdapterFuture<'a, bool> {
        ready(app.gateway.leave(id).is_some())
    }
    /// Gateway protocol: subscribe a connection to one of its own topics (at most `limit`).
    fn gateway_subscribe<'a>(
        &'a self,
        app: &'a App,
        handle: &'a GatewayHandle,
        subject: Option<&'a str>,
        topic: &'a str,
        limit: usize,
    ) -> AdapterFuture<'a, TopicSubscribe> {
        let _ = subject;
        ready(match app.gateway.subscribe(handle.id, topic, limit) {
            Ok(true) => TopicSubscribe::Added,
            Ok(false) => TopicSubscribe::AlreadySubscribed,
            Err(()) => TopicSubscribe::OverLimit,
        })
    }
    /// Gateway protocol: unsubscribe a connection from a topic; true if it was subscribed.
    fn gateway_unsubscribe_topic<'a>(
        &'a self,
        app: &'a App,
        handle: &'a GatewayHandle,
        topic: &'a str,
    ) -> AdapterFuture<'a, bool> {
        ready(app.gateway.unsubscribe(handle.id, topic))
    }
    /// Gateway protocol: queue `frame` for every subscriber of `topic` on every node (the
    /// sender included if subscribed), then `ack` (connection id, frame) for its sender, so
    /// the ack follows the echo. Returns how many subscriptions it was for.
    fn gateway_publish<'a>(
        &'a self,
        app: &'a App,
        topic: &'a str,
        frame: &'a Outgoing,
        ack: Option<(u64, Outgoing)>,
    ) -> AdapterFuture<'a, usize> {
        let delivered = app.gateway.publish(topic, frame);
        if let Some((id, ack)) = ack {
            app.gateway.send_to(id, &ack);
        }
        ready(delivered)
    }
    /// Gateway protocol: close one connection (by its connection id) or all of the app's,
    /// on every node. Returns how many.
    fn gateway_close<'a>(
        &'a self,
        app: &'a App,
        connection_id: Option<&'a str>,
        code: u16,
        reason: &'a str,
    ) -> AdapterFuture<'a, usize> {
        ready(app.gateway.close(connection_id, code, reason))
    }
    /// Gateway protocol: unsubscribe `subject`'s connections (on every node) from topics
    /// matching `patterns`. Returns how many subscriptions end.
    fn gateway_unsubscribe<'a>(
        &'a self,
        app: &'a App,
        subject: &'a str,
        patterns: &'a [String],
    ) -> AdapterFuture<'a, usize> {
        ready(app.gateway.unsubscribe_subject(subject, patterns))
    }

    /// Phoenix rooms: track `member` in `topic` and broadcast its `presence_diff` join to
    /// every member (the joiner included, on every node). Returns the Presence state before
    /// the join, or `None` if the room has `max_members` already. The single-process default
    /// tracks it in `rooms`.
    fn room_join<'a>(
        &'a self,
        rooms: &'a Rooms,
        topic: &'a str,
        member: RoomMember,
        max_members: usize,
    ) -> AdapterFuture<'a, Option<Value>> {
        ready(rooms.join(topic, member, max_members))
    }
    /// Phoenix rooms: untrack connection `conn`'s member of `topic` and broadcast the leave.
    /// Unknown members are ignored.
    fn room_leave<'a>(&'a self, rooms: &'a Rooms, topic: &'a str, conn: u64) -> AdapterFuture<'a, ()> {
        rooms.leave(topic, conn);
        ready(())
    }
    /// Phoenix rooms: replace `conn`'s meta with `typing` set and broadcast the update.
    fn room_update_typing<'a>(
        &'a self,
        rooms: &'a Rooms,
        topic: &'a str,
        conn: u64,
        typing: bool,
    ) -> AdapterFuture<'a, ()> {
        rooms.update_typing(topic, conn, typing);
        ready(())
    }
    /// Phoenix rooms: broadcast a `shout` with `payload` to every member of `topic`.
    fn room_shout<'a>(&'a self, rooms: &'a Rooms, topic: &'a str, payload: Payload) -> AdapterFuture<'a, ()> {
        rooms.shout(topic, payload);
        ready(())
    }
}

/// What a gateway subscribe did.
///
/// ```
/// use switchboard_server::adapter::TopicSubscribe;
/// assert_ne!(TopicSubscribe::Added, TopicSubscribe::OverLimit);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicSubscribe {
    /// Subscribed now.
    Added,
    /// It was subscribed already.
    AlreadySubscribed,
    /// It has its topic limit already: refused.
    OverLimit,
}

/// One channel frame to publish.
///
/// ```
/// use bytes::Bytes;
/// use switchboard_server::adapter::Publish;
/// // A backend event (`POST /events`) is remembered by cache channels; a client event is not.
/// let event = Publish {
///     channel: "cache-prices",
///     frame: Bytes::from_static(br#"{"event":"tick","channel":"cache-prices","data":"1"}"#),
///     except_socket_id: Some("123.456"),
///     remember: true,
/// };
/// assert!(event.remember && event.except_socket_id.is_some());
/// ```
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The Pusher-encoded frame.
    pub frame: Bytes,
    /// The socket that must not receive it (the sender of a client event, or the HTTP
    /// API's `socket_id`).
    pub except_socket_id: Option<&'a str>,
    /// A backend publish, which a cache channel keeps as its last event.
    pub remember: bool,
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
/// use switchboard_server::adapter::Publish;
/// use switchboard_server::{Adapter, LocalAdapter, Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// let (mut ws, _socket_id) = connect(&server).await?;
/// subscribe(&mut ws, serde_json::json!({ "channel": "news" })).await?;
/// let app = server.app("1000").ok_or("the development app")?;
/// assert_eq!(LocalAdapter.channel_counts(&app, "news").await?.subscription_count, 1);
///
/// let frame = Bytes::from_static(br#"{"event":"greet","channel":"news","data":"{}"}"#);
/// LocalAdapter.publish(&app, Publish { channel: "news", frame, except_socket_id: None, remember: true }).await?;
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
    fn start<'a>(
        &'a self,
        _apps: &'a [Arc<App>],
        _rooms: &'a Arc<Rooms>,
        _metrics: &'a Arc<Metrics>,
    ) -> AdapterFuture<'a, ()> {
        ready(())
    }

    fn stop<'a>(&'a self) -> AdapterFuture<'a, ()> {
        ready(())
    }

    fn publish<'a>(&'a self, app: &'a App, publish: Publish<'a>) -> AdapterFuture<'a, ()> {
        let cache = publish.remember && ChannelName::parse(publish.channel).is_ok_and(|c| c.is_cache());
        app.deliver(publish.channel, &publish.frame, publish.except_socket_id, cache);
        ready(())
    }

    fn join<'a>(
        &'a self,
        app: &'a App,
        conn: &'a Arc<ConnectionHandle>,
        channel: &'a str,
        is_cache: bool,
        joining: Option<Joining>,
    ) -> AdapterFuture<'a, Result<Subscribed, SubscribeRefused>> {
        ready(app.subscribe(conn, channel, is_cache, joining))
    }

    fn leave<'a>(&'a self, app: &'a App, conn: &'a ConnectionHandle, channel: &'a str) -> AdapterFuture<'a, ()> {
        app.unsubscribe(conn.id, channel);
        ready(())
    }

    fn terminate_user<'a>(&'a self, app: &'a App, user_id: &'a str) -> AdapterFuture<'a, ()> {
        app.terminate_user(user_id);
        ready(())
    }

    fn channel_counts<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, ChannelCounts> {
        ready(app.channel_counts(channel))
    }

    fn occupied_channels<'a>(
        &'a self,
        app: &'a App,
        prefix: &'a str,
    ) -> AdapterFuture<'a, Vec<(String, ChannelCounts)>> {
        ready(app.occupied_channels(prefix))
    }

    fn presence_users<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, Vec<String>> {
        ready(app.presence_users(channel))
    }

    fn acquire_connection<'a>(&'a self, app: &'a App) -> AdapterFuture<'a, bool> {
        ready(app.try_add_connection())
    }

    fn release_connection(&self, app: &Arc<App>) {
        app.remove_connection();
    }
}
