//! One app's live state: its channels, their subscribers and presence rosters, the cache of
//! cache channels, and which connections belong to which signed-in user.
//!
//! One mutex guards the whole app. Every operation under it is short and never awaits:
//! delivery is a non-blocking `try_send` of an already-encoded frame into each socket's
//! bounded queue, so a 10,000-subscriber fan-out holds the lock for one pass over the map.
//!
//! ```
//! # use futures_util::{SinkExt as _, StreamExt as _};
//! # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
//! # // The next text frame from the server ("" once the socket has ended).
//! # async fn next_text(ws: &mut Ws) -> String {
//! #     while let Some(Ok(message)) = ws.next().await {
//! #         if let Some(text) = message.as_text() {
//! #             return text.to_owned();
//! #         }
//! #     }
//! #     String::new()
//! # }
//! # // Connect a Pusher client to the development app; returns it with its socket id.
//! # async fn connect(
//! #     server: &switchboard_server::RunningServer,
//! # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
//! #     let key = switchboard_server::config::DEV_APP_KEY;
//! #     let url = format!("ws://{}/app/{key}?protocol=7", server.local_addr());
//! #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
//! #     let frame = switchboard_protocol::Frame::decode(&next_text(&mut ws).await)?;
//! #     let data: switchboard_protocol::messages::ConnectionEstablished = frame.data.parse()?;
//! #     Ok((ws, data.socket_id))
//! # }
//! # // Send `pusher:subscribe` with `data`; returns the server's answer.
//! # async fn subscribe(ws: &mut Ws, data: serde_json::Value) -> Result<String, Box<dyn std::error::Error>> {
//! #     let frame = serde_json::json!({ "event": "pusher:subscribe", "data": data });
//! #     ws.send(tokio_websockets::Message::text(frame.to_string())).await?;
//! #     Ok(next_text(ws).await)
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::time::timeout(std::time::Duration::from_secs(5), async {
//! use switchboard_server::{Server, ServerConfig};
//!
//! let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
//! let (mut ws, _) = connect(&server).await?;
//! subscribe(&mut ws, serde_json::json!({ "channel": "news" })).await?;
//! let app = server.app("1000").ok_or("the development app")?;
//! assert_eq!(app.occupied_channels("").len(), 1);
//! drop(ws);
//! server.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).await?
//! # }
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_protocol::PresenceChange;
use switchboard_protocol::PresenceRoster;
use switchboard_protocol::frame::encode_server_frame;
use switchboard_protocol::presence::{member_added_data, member_removed_data};

use crate::bus_gate::{BusGate, Offer};
use crate::config::AppConfig;
use crate::connection_handle::ConnectionHandle;
use crate::fanout::ChannelFrame;
use crate::metrics::Metrics;
use crate::pusher::webhooks::{WebhookEvent, WebhookSender};

/// How long a cache channel remembers its last event (Soketi's TTL).
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Cache channels remembered per app; past this, expired entries are swept and then the
/// oldest dropped.
const MAX_CACHED_CHANNELS: usize = 10_000;

/// A subscriber of one channel.
struct Subscriber {
    conn: Arc<ConnectionHandle>,
    /// The presence user id this subscription joined as.
    user_id: Option<String>,
    /// Which cluster bus frames it gets (always live on one node). A cluster subscriber is
    /// pending until the connection has sent `subscription_succeeded`; held frames keep
    /// their excepted socket.
    delivery: BusGate<(Bytes, Option<Box<str>>)>,
}

#[derive(Default)]
struct Channel {
    subscribers: HashMap<u64, Subscriber>,
    roster: Option<PresenceRoster>,
}

#[derive(Default)]
struct AppState {
    channels: HashMap<String, Channel>,
    cache: HashMap<String, (Instant, Bytes)>,
    /// Signed-in users (`pusher:signin`) and their connections.
    users: HashMap<String, Vec<Arc<ConnectionHandle>>>,
    /// Every open connection (Pusher and RealtimeX) of the app on this node.
    sockets: HashMap<u64, Arc<ConnectionHandle>>,
}

/// A presence member joining with a subscription.
///
/// ```
/// use switchboard_protocol::messages::ChannelData;
/// use switchboard_server::pusher::app::Joining;
/// // A presence subscription's channel_data becomes the joining member.
/// let data: ChannelData = serde_json::from_str(r#"{"user_id":42,"user_info":{"name":"Ada"}}"#)?;
/// let joining = Joining {
///     user_id: data.user_id().ok_or("channel_data needs a user_id")?,
///     user_info: data.user_info.as_deref().map_or("null", |info| info.get()).to_owned(),
/// };
/// assert_eq!(joining.user_id, "42"); // numeric ids become strings
/// assert_eq!(joining.user_info, r#"{"name":"Ada"}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Joining {
    /// The member's user id.
    pub user_id: String,
    /// `user_info` as raw JSON text (`null` when absent).
    pub user_info: String,
}

/// What a successful subscribe hands back to the connection.
///
/// ```
/// use bytes::Bytes;
/// use switchboard_server::pusher::app::Subscribed;
/// // What the connection sends after `pusher_internal:subscription_succeeded`.
/// let follow_up = |s: &Subscribed| match &s.cached {
///     Some(Some(frame)) => Some(String::from_utf8_lossy(frame).into_owned()),
///     Some(None) => Some("pusher:cache_miss".to_owned()),
///     None => None, // not a cache channel
/// };
/// let public = Subscribed { data: "{}".into(), cached: None, since: None };
/// let cold_cache = Subscribed { data: "{}".into(), cached: Some(None), since: None };
/// let warm_cache =
///     Subscribed { data: "{}".into(), cached: Some(Some(Bytes::from_static(b"{\"event\":\"last\"}"))), since: None };
/// assert_eq!(follow_up(&public), None);
/// assert_eq!(follow_up(&cold_cache).as_deref(), Some("pusher:cache_miss"));
/// assert_eq!(follow_up(&warm_cache).as_deref(), Some("{\"event\":\"last\"}"));
/// ```
#[derive(Debug)]
pub struct Subscribed {
    /// `pusher_internal:subscription_succeeded` data (`{}` or the presence snapshot).
    pub data: String,
    /// For cache channels: the cached frame, or `None` for a cache miss.
    pub cached: Option<Option<Bytes>>,
    /// In a cluster: the bus sequence the join was ordered at; the subscriber gets the
    /// channel's frames numbered above it once [`App::go_live`] is called.
    pub since: Option<u64>,
}

/// Why a subscribe was refused after the signature was checked.
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
/// # // Join `channel` as presence member `user_id`, signing as the development app's auth endpoint would.
/// # async fn join_presence(
/// #     ws: &mut Ws,
/// #     socket_id: &str,
/// #     channel: &str,
/// #     user_id: &str,
/// # ) -> Result<String, Box<dyn std::error::Error>> {
/// #     use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
/// #     let channel_data = serde_json::json!({ "user_id": user_id }).to_string();
/// #     let auth = switchboard_protocol::signature::sign_channel(
/// #         DEV_APP_KEY,
/// #         DEV_APP_SECRET,
/// #         socket_id,
/// #         channel,
/// #         Some(&channel_data),
/// #     );
/// #     subscribe(ws, serde_json::json!({ "channel": channel, "auth": auth, "channel_data": channel_data })).await
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_server::{AppConfig, Server, ServerConfig};
///
/// // A presence channel limited to one member refuses a second user with 4100.
/// let app = AppConfig { max_presence_members: 1, ..AppConfig::default() };
/// let server = Server::start(ServerConfig { port: 0, apps: vec![app], ..ServerConfig::default() }).await?;
/// let (mut ada, ada_id) = connect(&server).await?;
/// assert!(join_presence(&mut ada, &ada_id, "presence-room", "1").await?.contains("subscription_succeeded"));
/// let (mut bob, bob_id) = connect(&server).await?;
/// let refused = join_presence(&mut bob, &bob_id, "presence-room", "2").await?;
/// assert!(refused.contains("pusher:subscription_error") && refused.contains("4100"), "{refused}");
/// drop((ada, bob));
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeRefused {
    /// The presence channel already has the maximum number of members.
    PresenceFull(usize),
}

/// Counts for one channel, as the HTTP API reports them.
///
/// ```
/// use switchboard_server::pusher::app::ChannelCounts;
/// // A channel nobody is subscribed to; `user_count` is only `Some` for presence channels.
/// let empty = ChannelCounts::default();
/// assert_eq!((empty.subscription_count, empty.user_count), (0, None));
/// let presence = ChannelCounts { subscription_count: 3, user_count: Some(2) }; // one member has two tabs
/// assert!(presence.user_count <= Some(presence.subscription_count));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// Sockets subscribed.
    pub subscription_count: usize,
    /// Presence members (presence channels only).
    pub user_count: Option<usize>,
}

/// A configured app and its live state.
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
/// use switchboard_server::{Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// let app = server.app("1000").ok_or("the development app")?;
/// assert_eq!(app.config.key, "switchboard-key");
/// let (mut ws, _) = connect(&server).await?;
/// subscribe(&mut ws, serde_json::json!({ "channel": "news" })).await?;
/// assert_eq!(app.connection_count(), 1);
/// assert_eq!(app.channel_counts("news").subscription_count, 1);
/// drop(ws);
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
pub struct App {
    /// The configuration.
    pub config: AppConfig,
    state: Mutex<AppState>,
    connections: AtomicUsize,
    webhooks: Option<WebhookSender>,
    metrics: Arc<Metrics>,
    /// The app's gateway topics and connections (`/apps/{id}`), apart from its channels.
    pub gateway: crate::gateway::Registry,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("id", &self.config.id).finish_non_exhaustive()
    }
}

impl App {
    pub(crate) fn new(config: AppConfig, webhooks: Option<WebhookSender>, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            state: Mutex::default(),
            connections: AtomicUsize::new(0),
            webhooks,
            metrics,
            gateway: crate::gateway::Registry::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, AppState> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping the whole app would, so keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn webhook(&self, event: WebhookEvent) {
        if let Some(sender) = &self.webhooks {
            sender.send(event);
        }
    }

    /// Reserve a connection slot; false when the app is at `max_connections`.
    pub(crate) fn try_add_connection(&self) -> bool {
        let max = self.config.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (max == 0 || n < max).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Open connections of this app.
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
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// assert_eq!(app.connection_count(), 0);
    /// let (ws, _) = connect(&server).await?;
    /// assert_eq!(app.connection_count(), 1);
    /// drop(ws);
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Add `conn` to `channel`. Idempotent: a second subscribe of the same socket changes
    /// nothing and returns the current state again.
    pub(crate) fn subscribe(
        &self,
        conn: &Arc<ConnectionHandle>,
        channel: &str,
        is_cache: bool,
        joining: Option<Joining>,
    ) -> Result<Subscribed, SubscribeRefused> {
        let result = {
            let mut state = self.state();
            // An anonymous presence subscriber (no user_id) gets the roster too.
            let is_presence = joining.is_some() || channel.starts_with("presence-");
            if let (Some(join), Some(existing)) = (&joining, state.channels.get(channel)) {
                let roster_full = existing
                    .roster
                    .as_ref()
                    .is_some_and(|r| r.count() >= self.config.max_presence_members && !r.contains(&join.user_id));
                if roster_full && !existing.subscribers.contains_key(&conn.id) {
                    return Err(SubscribeRefused::PresenceFull(self.config.max_presence_members));
                }
            }
            let occupied_now = !state.channels.contains_key(channel);
            let entry = state.channels.entry(channel.to_owned()).or_default();
            if occupied_now {
                self.webhook(WebhookEvent::channel(channel, "channel_occupied"));
            }
            let newly_subscribed = match entry.subscribers.entry(conn.id) {
                Entry::Vacant(slot) => {
                    let user_id = joining.as_ref().map(|j| j.user_id.clone());
                    slot.insert(Subscriber { conn: conn.clone(), user_id, delivery: BusGate::live() });
                    true
                }
                Entry::Occupied(_) => false,
            };
            if newly_subscribed {
                self.metrics.subscriptions.inc();
                if let Some(join) = &joining {
                    let roster = entry.roster.get_or_insert_with(PresenceRoster::default);
                    if roster.add(&join.user_id, &join.user_info) == PresenceChange::Added {
                        let data = member_added_data(&join.user_id, &join.user_info);
                        let frame = Bytes::from(encode_server_frame(
                            "pusher_internal:member_added",
                            Some(channel),
                            Some(&data),
                            None,
                        ));
                        let frame = ChannelFrame::new(&frame, self.config.realtimex_mirrors);
                        for sub in entry.subscribers.values().filter(|s| s.conn.id != conn.id) {
                            frame.send_to(&sub.conn);
                        }
                        self.webhook(WebhookEvent::member(channel, "member_added", &join.user_id));
                    }
                }
            }
            let data = match (&entry.roster, is_presence) {
                (Some(roster), true) => roster.subscription_data(),
                (None, true) => PresenceRoster::default().subscription_data(),
                _ => "{}".to_owned(),
            };
            let cached = is_cache.then(|| {
                state.cache.get(channel).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, frame)| frame.clone())
            });
            if matches!(cached, Some(None)) {
                self.webhook(WebhookEvent::channel(channel, "cache_miss"));
            }
            Subscribed { data, cached, since: None }
        };
        Ok(result)
    }

    /// Remove `conn_id` from `channel`, announcing `member_removed` when its user's last
    /// connection leaves. Unknown channels and sockets are ignored.
    pub(crate) fn unsubscribe(&self, conn_id: u64, channel: &str) {
        {
            let mut state = self.state();
            let Some(entry) = state.channels.get_mut(channel) else {
                return;
            };
            let Some(sub) = entry.subscribers.remove(&conn_id) else {
                return;
            };
            self.metrics.subscriptions.dec();
            if let (Some(user_id), Some(roster)) = (&sub.user_id, entry.roster.as_mut())
                && roster.remove(user_id) == PresenceChange::Removed
            {
                let data = member_removed_data(user_id);
                let frame = Bytes::from(encode_server_frame(
                    "pusher_internal:member_removed",
                    Some(channel),
                    Some(&data),
                    None,
                ));
                let frame = ChannelFrame::new(&frame, self.config.realtimex_mirrors);
                for other in entry.subscribers.values() {
                    frame.send_to(&other.conn);
                }
                self.webhook(WebhookEvent::member(channel, "member_removed", user_id));
            }
            if entry.subscribers.is_empty() {
                state.channels.remove(channel);
                self.webhook(WebhookEvent::channel(channel, "channel_vacated"));
            }
        }
    }

    /// Deliver an encoded frame to every subscriber of `channel` except the socket
    /// `except_socket_id`; remembers it for cache channels. Returns the number of sockets
    /// it was queued for.
    pub(crate) fn deliver(
        &self,
        channel: &str,
        frame: &Bytes,
        except_socket_id: Option<&str>,
        is_cache: bool,
    ) -> usize {
        let mut state = self.state();
        if is_cache {
            remember(&mut state.cache, channel, frame);
        }
        let Some(entry) = state.channels.get(channel) else {
            return 0;
        };
        let frame = ChannelFrame::new(frame, self.config.realtimex_mirrors);
        let mut delivered = 0;
        for sub in entry.subscribers.values() {
            if except_socket_id.is_some_and(|except| *sub.conn.socket_id == *except) {
                continue;
            }
            if frame.send_to(&sub.conn) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Record a signed-in user's connection.
    pub(crate) fn sign_in(&self, conn: &Arc<ConnectionHandle>, user_id: &str) {
        let mut state = self.state();
        let conns = state.users.entry(user_id.to_owned()).or_default();
        if !conns.iter().any(|c| c.id == conn.id) {
            conns.push(conn.clone());
        }
    }

    /// Forget a signed-in user's connection.
    pub(crate) fn sign_out(&self, conn_id: u64, user_id: &str) {
        let mut state = self.state();
        if let Some(conns) = state.users.get_mut(user_id) {
            conns.retain(|c| c.id != conn_id);
            if conns.is_empty() {
                state.users.remove(user_id);
            }
        }
    }

    /// Close every connection of `user_id`: those signed in as the user and those that
    /// joined a presence channel as the user. Returns how many were closed.
    pub(crate) fn terminate_user(&self, user_id: &str) -> usize {
        let state = self.state();
        let mut targets: HashMap<u64, Arc<ConnectionHandle>> = HashMap::new();
        for conn in state.users.get(user_id).into_iter().flatten() {
            targets.insert(conn.id, conn.clone());
        }
        for channel in state.channels.values() {
            for sub in channel.subscribers.values() {
                if sub.user_id.as_deref() == Some(user_id) {
                    targets.insert(sub.conn.id, sub.conn.clone());
                }
            }
        }
        drop(state);
        for conn in targets.values() {
            conn.terminate(4009, "You got disconnected by the app.");
        }
        targets.len()
    }

    /// Counts for one channel (zero when nobody is subscribed).
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
    /// # // Join `channel` as presence member `user_id`, signing as the development app's auth endpoint would.
    /// # async fn join_presence(
    /// #     ws: &mut Ws,
    /// #     socket_id: &str,
    /// #     channel: &str,
    /// #     user_id: &str,
    /// # ) -> Result<String, Box<dyn std::error::Error>> {
    /// #     use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
    /// #     let channel_data = serde_json::json!({ "user_id": user_id }).to_string();
    /// #     let auth = switchboard_protocol::signature::sign_channel(
    /// #         DEV_APP_KEY,
    /// #         DEV_APP_SECRET,
    /// #         socket_id,
    /// #         channel,
    /// #         Some(&channel_data),
    /// #     );
    /// #     subscribe(ws, serde_json::json!({ "channel": channel, "auth": auth, "channel_data": channel_data })).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::pusher::app::ChannelCounts;
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// // Two sockets of the same user: two subscriptions, one member.
    /// let (mut first, first_id) = connect(&server).await?;
    /// let (mut second, second_id) = connect(&server).await?;
    /// join_presence(&mut first, &first_id, "presence-room", "42").await?;
    /// join_presence(&mut second, &second_id, "presence-room", "42").await?;
    /// assert_eq!(app.channel_counts("presence-room"), ChannelCounts { subscription_count: 2, user_count: Some(1) });
    /// assert_eq!(app.channel_counts("presence-empty"), ChannelCounts::default());
    /// drop((first, second));
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn channel_counts(&self, channel: &str) -> ChannelCounts {
        let state = self.state();
        state.channels.get(channel).map_or_else(ChannelCounts::default, counts_of)
    }

    /// Occupied channels whose names start with `prefix`, with their counts, sorted by name.
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
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let (mut ws, _) = connect(&server).await?;
    /// for channel in ["news-b", "sports", "news-a"] {
    ///     subscribe(&mut ws, serde_json::json!({ "channel": channel })).await?;
    /// }
    /// let app = server.app("1000").ok_or("the development app")?;
    /// let news: Vec<String> = app.occupied_channels("news-").into_iter().map(|(name, _)| name).collect();
    /// assert_eq!(news, ["news-a", "news-b"]);
    /// assert_eq!(app.occupied_channels("").len(), 3);
    /// drop(ws);
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn occupied_channels(&self, prefix: &str) -> Vec<(String, ChannelCounts)> {
        let mut list: Vec<(String, ChannelCounts)> = {
            let state = self.state();
            state
                .channels
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(name, ch)| (name.clone(), counts_of(ch)))
                .collect()
        };
        list.sort_by(|a, b| a.0.cmp(&b.0)); // outside the lock
        list
    }

    /// Member ids of a presence channel, in join order.
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
    /// # // Join `channel` as presence member `user_id`, signing as the development app's auth endpoint would.
    /// # async fn join_presence(
    /// #     ws: &mut Ws,
    /// #     socket_id: &str,
    /// #     channel: &str,
    /// #     user_id: &str,
    /// # ) -> Result<String, Box<dyn std::error::Error>> {
    /// #     use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
    /// #     let channel_data = serde_json::json!({ "user_id": user_id }).to_string();
    /// #     let auth = switchboard_protocol::signature::sign_channel(
    /// #         DEV_APP_KEY,
    /// #         DEV_APP_SECRET,
    /// #         socket_id,
    /// #         channel,
    /// #         Some(&channel_data),
    /// #     );
    /// #     subscribe(ws, serde_json::json!({ "channel": channel, "auth": auth, "channel_data": channel_data })).await
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let (mut ada, ada_id) = connect(&server).await?;
    /// let (mut bob, bob_id) = connect(&server).await?;
    /// join_presence(&mut bob, &bob_id, "presence-room", "bob").await?;
    /// join_presence(&mut ada, &ada_id, "presence-room", "ada").await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// assert_eq!(app.presence_users("presence-room"), ["bob", "ada"]);
    /// assert!(app.presence_users("news").is_empty());
    /// drop((ada, bob));
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn presence_users(&self, channel: &str) -> Vec<String> {
        let state = self.state();
        state
            .channels
            .get(channel)
            .and_then(|ch| ch.roster.as_ref())
            .map(|r| r.ids().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Cluster: add `conn` to this node's subscribers of `channel`, buffering bus frames
    /// until [`App::go_live`]. False if it was already subscribed.
    pub(crate) fn add_pending(&self, conn: &Arc<ConnectionHandle>, channel: &str, user_id: Option<String>) -> bool {
        let mut state = self.state();
        let entry = state.channels.entry(channel.to_owned()).or_default();
        match entry.subscribers.entry(conn.id) {
            Entry::Vacant(slot) => {
                slot.insert(Subscriber { conn: conn.clone(), user_id, delivery: BusGate::pending() });
                self.metrics.subscriptions.inc();
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// Cluster: remove `conn_id` from this node's subscribers of `channel`. Returns the
    /// presence user id it joined as (`Some(None)` for a non-member), `None` if it was not
    /// subscribed.
    pub(crate) fn remove_local(&self, conn_id: u64, channel: &str) -> Option<Option<String>> {
        let mut state = self.state();
        let entry = state.channels.get_mut(channel)?;
        let sub = entry.subscribers.remove(&conn_id)?;
        self.metrics.subscriptions.dec();
        if entry.subscribers.is_empty() {
            state.channels.remove(channel);
        }
        Some(sub.user_id)
    }

    /// The connection has sent the subscription's confirmation: from now on it gets the
    /// channel's frames numbered above `since` (cluster), starting with those buffered
    /// meanwhile. A no-op on one node, where subscribers are live at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use switchboard_server::{Server, ServerConfig};
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// app.go_live(7, "news", None); // nobody with that id: nothing happens
    /// server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn go_live(&self, conn_id: u64, channel: &str, since: Option<u64>) {
        let Some(since) = since else { return };
        let mut state = self.state();
        let Some(sub) = state.channels.get_mut(channel).and_then(|c| c.subscribers.get_mut(&conn_id)) else {
            return;
        };
        for (frame, except) in sub.delivery.go_live(since) {
            if except.as_deref().is_none_or(|except| *sub.conn.socket_id != *except) {
                ChannelFrame::new(&frame, self.config.realtimex_mirrors).send_to(&sub.conn);
            }
        }
    }

    /// Cluster: deliver bus frame number `seq` to this node's subscribers of `channel`.
    pub(crate) fn deliver_bus(&self, channel: &str, frame: &Bytes, except_socket_id: Option<&str>, seq: u64) {
        let mut state = self.state();
        let Some(entry) = state.channels.get_mut(channel) else {
            return;
        };
        let encoded = ChannelFrame::new(frame, self.config.realtimex_mirrors);
        for sub in entry.subscribers.values_mut() {
            match sub.delivery.offer(seq, || (frame.clone(), except_socket_id.map(Box::from))) {
                Offer::Now if except_socket_id.is_none_or(|except| *sub.conn.socket_id != *except) => {
                    encoded.send_to(&sub.conn);
                }
                Offer::Now | Offer::Later => {}
                Offer::Full => sub.conn.terminate(4200, "Too many events while subscribing: reconnect"),
            }
        }
    }

    /// Every connection of this app on this node, so a fenced node can close them all.
    pub(crate) fn register(&self, conn: &Arc<ConnectionHandle>) {
        self.state().sockets.insert(conn.id, conn.clone());
    }

    /// Forget a connection [`App::register`] recorded.
    pub(crate) fn unregister(&self, conn_id: u64) {
        self.state().sockets.remove(&conn_id);
    }

    /// Close every connection of this app on this node (a fenced cluster node) and forget
    /// their subscriptions, which the cluster has already forgotten.
    pub(crate) fn close_all(&self, code: u16, reason: &str) -> usize {
        let sockets: Vec<Arc<ConnectionHandle>> = {
            let mut state = self.state();
            let subscriptions: usize = state.channels.values().map(|c| c.subscribers.len()).sum();
            self.metrics.subscriptions.dec_by(subscriptions as i64);
            state.channels.clear();
            state.sockets.values().cloned().collect()
        };
        for conn in &sockets {
            conn.terminate(code, reason);
        }
        sockets.len()
    }

    /// Send a webhook event for a client event.
    pub(crate) fn client_event_webhook(&self, event: WebhookEvent) {
        self.webhook(event);
    }
}

/// Store the last event of a cache channel, keeping the map bounded.
fn remember(cache: &mut HashMap<String, (Instant, Bytes)>, channel: &str, frame: &Bytes) {
    if cache.len() >= MAX_CACHED_CHANNELS && !cache.contains_key(channel) {
        cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        if cache.len() >= MAX_CACHED_CHANNELS
            && let Some(oldest) = cache.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
    }
    cache.insert(channel.to_owned(), (Instant::now(), frame.clone()));
}

fn counts_of(ch: &Channel) -> ChannelCounts {
    ChannelCounts {
        subscription_count: ch.subscribers.len(),
        user_count: ch.roster.as_ref().map(PresenceRoster::count),
    }
}
