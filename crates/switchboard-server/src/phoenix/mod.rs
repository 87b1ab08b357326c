//! The Phoenix Channels endpoint `/socket/websocket`, with a built-in `room:*` channel that
//! behaves as the Hub seed's `RoomChannel` with `Phoenix.Presence`.
//!
//! - Serializers V2 (`vsn=2.0.0`) and V1 (no `vsn`, as Hub's Python client connects).
//! - `heartbeat` on topic `phoenix` is answered; `phoenix_idle_timeout` (60 s) without any
//!   inbound frame closes the socket.
//! - `phx_join` on `room:*` needs `{"username"}`; the reply comes first, then
//!   `presence_state` (the members before this join, as Hub pushes it before tracking), then a
//!   `presence_diff` join broadcast to everyone in the room.
//! - `user:typing` `{username, typing}` replaces the member's meta (new `phx_ref`,
//!   `phx_ref_prev` = the old one; the diff carries the key in both leaves and joins) and
//!   replies ok. `shout` is broadcast verbatim to everyone, the sender included, with no reply.
//!   `ping` replies with its payload.
//! - Stale `join_ref`s are ignored; events for topics not joined get "unmatched topic"; a
//!   second join of a joined topic closes the first (`phx_close`); leaving or disconnecting
//!   untracks and broadcasts the leave.
//!
//! Every join, leave, typing update and shout goes through the server's
//! [`crate::Adapter`]: on one node the rooms below are the whole truth; with scaling on
//! (`crate::scaling`) Redis holds the members and every node delivers the rooms' broadcasts
//! from the cluster bus, so a room spans nodes.
//!
//! An unknown event crashes the room channel as it does Hub's (`phx_error`
//! `{"reason":"channel_crash"}`, the member untracked; clients rejoin). Documented difference
//! from Hub: a join without a username gets an error reply `{"reason":"username is required"}`
//! instead of a crashed join.
//!
//! ```
//! # use futures_util::{SinkExt as _, StreamExt as _};
//! # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
//! # // Connect to /socket/websocket (serializer V2) and join `topic` as `username`;
//! # // returns the socket and the reply.
//! # async fn phx_join(
//! #     server: &switchboard_server::RunningServer,
//! #     topic: &str,
//! #     username: &str,
//! # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
//! #     let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.local_addr());
//! #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
//! #     let join = serde_json::json!(["1", "1", topic, "phx_join", { "username": username }]);
//! #     ws.send(tokio_websockets::Message::text(join.to_string())).await?;
//! #     while let Some(message) = ws.next().await {
//! #         if let Some(text) = message?.as_text() {
//! #             return Ok((ws, text.to_owned()));
//! #         }
//! #     }
//! #     Err("socket closed".into())
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::time::timeout(std::time::Duration::from_secs(5), async {
//! use switchboard_server::{Server, ServerConfig};
//!
//! let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
//! let (mut ws, reply) = phx_join(&server, "room:lobby", "ada").await?;
//! assert!(reply.starts_with(r#"["1","1","room:lobby","phx_reply""#), "{reply}");
//! // Then the members before this join, as Hub pushes them.
//! let state = loop {
//!     if let Some(text) = ws.next().await.ok_or("socket closed")??.as_text() {
//!         break text.to_owned();
//!     }
//! };
//! assert!(state.contains("presence_state"), "{state}");
//! drop(ws);
//! server.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).await?
//! # }
//! ```

pub(crate) mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use switchboard_protocol::phoenix::{Message, Payload, Vsn};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_websockets::{CloseCode, Message as WsMessage, WebSocketStream};

use crate::bus_gate::{BusGate, Offer};
use crate::state::ServerState;
use crate::websocket::{CLOSE_LINGER, WriteStalled, close_after_read_error, write_within};

/// Where a room sends one socket's frames: its queue, its serializer, and the flag that
/// closes it when it reads too slowly (the Pusher side's policy: a full queue closes the
/// socket, which then reconnects, instead of losing frames silently or buffering without
/// bound).
///
/// The outlet also carries a close request from outside the socket's task (a fenced
/// cluster node closes its sockets with 4200), woken through a notify of its own so it is
/// never taken for a slow reader.
pub(crate) struct Outlet {
    vsn: Vsn,
    queue: mpsc::Sender<WsMessage>,
    too_slow: AtomicBool,
    too_slow_notify: Notify,
    close_request: Mutex<Option<(u16, String)>>,
    close_notify: Notify,
}

impl Outlet {
    fn new(vsn: Vsn, queue: mpsc::Sender<WsMessage>) -> Self {
        Self {
            vsn,
            queue,
            too_slow: AtomicBool::new(false),
            too_slow_notify: Notify::new(),
            close_notify: Notify::new(),
            close_request: Mutex::new(None),
        }
    }

    fn push(&self, frame: WsMessage) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(frame) {
            self.mark_too_slow();
        }
    }

    fn mark_too_slow(&self) {
        if !self.too_slow.swap(true, Ordering::AcqRel) {
            self.too_slow_notify.notify_one();
        }
    }

    /// Ask the socket's task to close with `code` (the first request wins).
    fn request_close(&self, code: u16, reason: &str) {
        let mut request = self.close_request.lock().unwrap_or_else(|p| p.into_inner());
        if request.is_none() {
            *request = Some((code, reason.to_owned()));
            drop(request);
            self.close_notify.notify_one();
        }
    }

    fn close_requested(&self) -> Option<(u16, String)> {
        self.close_request.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `message` as one serializer carries it (`None`: V1 cannot carry binary).
fn encode(message: &Message, vsn: Vsn) -> Option<WsMessage> {
    #[cfg(test)]
    tests::ENCODED.with(|n| n.set(n.get() + 1));
    match (&message.payload, vsn) {
        (Payload::Json(_), vsn) => Some(WsMessage::text(Bytes::from(message.encode_text(vsn)))),
        (_, Vsn::V2) => Some(WsMessage::binary(Bytes::from(message.encode_binary_server().unwrap_or_default()))),
        (_, Vsn::V1) => None,
    }
}

/// One socket's membership of one room: its Presence meta and where its frames go.
///
/// Built by the Phoenix socket task and handed to [`crate::Adapter::room_join`]; an
/// adapter passes it on without looking inside.
///
/// ```
/// // Crate-built: a custom adapter receives one in `room_join` and passes it on, e.g.
/// // `LocalAdapter.room_join(rooms, topic, member, max_members)`.
/// fn passes_on(member: switchboard_server::phoenix::RoomMember) -> switchboard_server::phoenix::RoomMember {
///     member
/// }
/// # let _ = passes_on;
/// ```
pub struct RoomMember {
    conn: u64,
    username: String,
    meta: Value,
    outlet: Arc<Outlet>,
    /// How it takes a clustered room's bus messages (always live on one node).
    delivery: BusGate<Arc<Message>>,
}

impl std::fmt::Debug for RoomMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomMember").field("conn", &self.conn).field("username", &self.username).finish_non_exhaustive()
    }
}

impl RoomMember {
    /// The socket's connection id (unique in this server process).
    pub(crate) fn conn(&self) -> u64 {
        self.conn
    }
    pub(crate) fn username(&self) -> &str {
        &self.username
    }
    pub(crate) fn meta(&self) -> &Value {
        &self.meta
    }
}

type Member = RoomMember;

/// Every room's members, keyed by connection.
///
/// ```
/// use switchboard_server::phoenix::Rooms;
/// // A running server's rooms come from `RunningServer::phoenix_rooms`; a fresh set is empty.
/// let rooms = Rooms::default();
/// assert!(rooms.usernames("room:lobby").is_empty());
/// ```
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, HashMap<u64, Member>>>,
    next_ref: AtomicU64,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Member>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh `phx_ref`: unique per server run (and, with its random part, in a cluster).
    pub(crate) fn phx_ref(&self) -> String {
        let n = self.next_ref.fetch_add(1, Ordering::Relaxed);
        // The random part keeps refs of two nodes apart (phoenix.js matches metas by ref).
        format!("F{n:x}{:016x}", rand::random::<u64>())
    }

    /// `{username: {metas: [...]}}` of a room.
    fn state_of(members: &HashMap<u64, Member>) -> Value {
        let mut ordered: Vec<&Member> = members.values().collect();
        ordered.sort_by_key(|m| m.conn);
        Self::state_from(ordered.into_iter().map(|m| (m.username.clone(), m.meta.clone())))
    }

    /// `{username: {metas: [...]}}` from members in join order (a cluster's roster).
    pub(crate) fn state_from(members: impl IntoIterator<Item = (String, Value)>) -> Value {
        let mut state = Map::new();
        for (username, meta) in members {
            let entry = state.entry(username).or_insert_with(|| json!({ "metas": [] }));
            if let Some(metas) = entry["metas"].as_array_mut() {
                metas.push(meta);
            }
        }
        Value::Object(state)
    }

    /// Queue `message` for every member, encoded once per serializer that a member uses.
    fn broadcast(members: &HashMap<u64, Member>, message: &Message) {
        let mut encoded: [Option<Option<WsMessage>>; 2] = [None, None];
        for member in members.values() {
            let slot = &mut encoded[usize::from(member.outlet.vsn == Vsn::V2)];
            if let Some(frame) = slot.get_or_insert_with(|| encode(message, member.outlet.vsn)) {
                member.outlet.push(frame.clone());
            }
        }
    }

    pub(crate) fn diff(topic: &str, joins: Value, leaves: Value) -> Message {
        Message {
            join_ref: None,
            reference: None,
            topic: topic.to_owned(),
            event: "presence_diff".into(),
            payload: Payload::Json(json!({ "joins": joins, "leaves": leaves })),
        }
    }

    /// Track a member; returns the presence state before it joined, or `None` if the room
    /// has `max_members` already (checked and tracked under one lock).
    pub(crate) fn join(&self, topic: &str, member: Member, max_members: usize) -> Option<Value> {
        let mut rooms = self.lock();
        if rooms.get(topic).is_some_and(|room| room.len() >= max_members && !room.contains_key(&member.conn)) {
            return None;
        }
        let room = rooms.entry(topic.to_owned()).or_default();
        let before = Self::state_of(room);
        let joins = json!({ member.username.clone(): { "metas": [member.meta.clone()] } });
        room.insert(member.conn, member);
        Self::broadcast(room, &Self::diff(topic, joins, json!({})));
        Some(before)
    }

    /// Untrack a connection's member and announce the leave.
    pub(crate) fn leave(&self, topic: &str, conn: u64) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(topic) else { return };
        let Some(member) = room.remove(&conn) else { return };
        let leaves = json!({ member.username: { "metas": [member.meta] } });
        Self::broadcast(room, &Self::diff(topic, json!({}), leaves));
        if room.is_empty() {
            rooms.remove(topic);
        }
    }

    /// Replace a member's meta with `typing` set; the diff names the key in both leaves and
    /// joins, as `Presence.update` reports it.
    pub(crate) fn update_typing(&self, topic: &str, conn: u64, typing: bool) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(topic) else { return };
        let Some((username, old, new)) = self.retype(room, conn, typing) else { return };
        Self::broadcast(room, &Self::typing_diff(topic, &username, old, new));
    }

    /// Give a member a new meta with `typing` set; returns (username, old meta, new meta).
    fn retype(&self, room: &mut HashMap<u64, Member>, conn: u64, typing: bool) -> Option<(String, Value, Value)> {
        let member = room.get_mut(&conn)?;
        let old = member.meta.clone();
        let new = json!({
            "typing": typing,
            "username": member.username,
            "phx_ref": self.phx_ref(),
            "phx_ref_prev": old["phx_ref"],
        });
        member.meta = new.clone();
        Some((member.username.clone(), old, new))
    }

    /// The diff of a meta update: the key in both leaves (old meta) and joins (new meta).
    pub(crate) fn typing_diff(topic: &str, username: &str, old: Value, new: Value) -> Message {
        Self::diff(topic, json!({ username: { "metas": [new] } }), json!({ username: { "metas": [old] } }))
    }

    /// A `shout` broadcast of `payload`.
    pub(crate) fn shout_message(topic: &str, payload: Payload) -> Message {
        Message { join_ref: None, reference: None, topic: topic.to_owned(), event: "shout".into(), payload }
    }

    pub(crate) fn shout(&self, topic: &str, payload: Payload) {
        let rooms = self.lock();
        if let Some(room) = rooms.get(topic) {
            Self::broadcast(room, &Self::shout_message(topic, payload));
        }
    }

    // A clustered room (`crate::scaling`): Redis holds the members; each node keeps its own
    // sockets' members here and delivers the bus's messages to them.

    /// Hold a member whose join is in flight: the room's bus messages are buffered for it
    /// until [`Rooms::go_live`].
    pub(crate) fn add_pending(&self, topic: &str, mut member: Member) {
        member.delivery = BusGate::pending();
        self.lock().entry(topic.to_owned()).or_default().insert(member.conn, member);
    }

    /// The member's join was numbered after bus message `since`: queue what was buffered
    /// after it, and deliver live from now on.
    pub(crate) fn go_live(&self, topic: &str, conn: u64, since: u64) {
        let mut rooms = self.lock();
        let Some(member) = rooms.get_mut(topic).and_then(|room| room.get_mut(&conn)) else { return };
        for message in member.delivery.go_live(since) {
            if let Some(frame) = encode(&message, member.outlet.vsn) {
                member.outlet.push(frame);
            }
        }
    }

    /// Drop a member from this node's view, announcing nothing; returns it if it was here.
    pub(crate) fn remove_local(&self, topic: &str, conn: u64) -> Option<Member> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(topic)?;
        let member = room.remove(&conn);
        if room.is_empty() {
            rooms.remove(topic);
        }
        member
    }

    /// Give this node's member a new meta with `typing` set, announcing nothing; returns
    /// (username, old meta, new meta).
    pub(crate) fn retype_local(&self, topic: &str, conn: u64, typing: bool) -> Option<(String, Value, Value)> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(topic)?;
        self.retype(room, conn, typing)
    }

    /// A room message from the cluster's bus, numbered `seq`: queued for this node's
    /// members, encoded once per serializer.
    pub(crate) fn deliver_bus(&self, topic: &str, message: Message, seq: u64) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(topic) else { return };
        let message = Arc::new(message);
        let mut encoded: [Option<Option<WsMessage>>; 2] = [None, None];
        for member in room.values_mut() {
            match member.delivery.offer(seq, || message.clone()) {
                Offer::Now => {
                    let slot = &mut encoded[usize::from(member.outlet.vsn == Vsn::V2)];
                    if let Some(frame) = slot.get_or_insert_with(|| encode(&message, member.outlet.vsn)) {
                        member.outlet.push(frame.clone());
                    }
                }
                Offer::Later => {}
                Offer::Full => member.outlet.mark_too_slow(),
            }
        }
    }

    /// Close every socket that is a member of a room here with `code` (a fenced cluster
    /// node). Returns how many sockets.
    pub(crate) fn close_all(&self, code: u16, reason: &str) -> usize {
        let rooms = self.lock();
        let mut closed = std::collections::HashSet::new();
        for member in rooms.values().flat_map(HashMap::values) {
            if closed.insert(member.conn) {
                member.outlet.request_close(code, reason);
            }
        }
        closed.len()
    }

    /// Members of a room, for tests and the CLI.
    ///
    /// ```
    /// # use futures_util::{SinkExt as _, StreamExt as _};
    /// # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
    /// # // Connect to /socket/websocket (serializer V2) and join `topic` as `username`;
    /// # // returns the socket and the reply.
    /// # async fn phx_join(
    /// #     server: &switchboard_server::RunningServer,
    /// #     topic: &str,
    /// #     username: &str,
    /// # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
    /// #     let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.local_addr());
    /// #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
    /// #     let join = serde_json::json!(["1", "1", topic, "phx_join", { "username": username }]);
    /// #     ws.send(tokio_websockets::Message::text(join.to_string())).await?;
    /// #     while let Some(message) = ws.next().await {
    /// #         if let Some(text) = message?.as_text() {
    /// #             return Ok((ws, text.to_owned()));
    /// #         }
    /// #     }
    /// #     Err("socket closed".into())
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let (bob, _) = phx_join(&server, "room:lobby", "bob").await?;
    /// let (ada, _) = phx_join(&server, "room:lobby", "ada").await?;
    /// let (ada_again, _) = phx_join(&server, "room:lobby", "ada").await?; // a second tab
    /// let rooms = server.phoenix_rooms();
    /// assert_eq!(rooms.usernames("room:lobby"), ["ada", "bob"]); // sorted, each name once
    /// assert!(rooms.usernames("room:other").is_empty());
    /// drop((bob, ada, ada_again));
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn usernames(&self, topic: &str) -> Vec<String> {
        let rooms = self.lock();
        let mut names: Vec<String> =
            rooms.get(topic).map(|r| r.values().map(|m| m.username.clone()).collect()).unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }
}

/// The endpoint's limits, from the server configuration (`phoenix_*`).
#[derive(Clone, Copy)]
struct Limits {
    /// Longest topic and username, bytes.
    max_name_length: usize,
    /// Most members of one room.
    max_room_members: usize,
    /// Largest `shout` / `user:typing` payload, bytes (as encoded).
    max_payload: usize,
    /// `shout` and `user:typing` messages one socket may send per second.
    rate: u32,
    /// Rooms one socket may join.
    max_channels: usize,
}

impl Limits {
    fn of(config: &crate::ServerConfig) -> Self {
        Self {
            max_name_length: config.phoenix_max_name_length,
            max_room_members: config.phoenix_max_room_members,
            max_payload: config.phoenix_max_payload,
            rate: config.phoenix_message_rate,
            max_channels: config.phoenix_max_channels,
        }
    }
}

/// What one socket sent recently, for the rate limit.
struct RateWindow {
    started: Instant,
    count: u32,
}

impl RateWindow {
    /// Count one message; false if it is over `rate` in the current one-second window.
    fn admit(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        if now.duration_since(self.started) >= Duration::from_secs(1) {
            self.started = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= rate
    }
}

/// Why the socket loop stopped writing.
enum WriteFailed {
    /// The transport failed or the client went away.
    Gone,
    /// A write did not complete in time: the client stopped reading.
    Stalled,
}

/// Write one frame under the server's write rule ([`write_within`]): it gives up early once
/// the socket was found too slow (its queue overflowed while this write was blocked) or the
/// server is shutting down, so a client that stopped reading cannot hold up either.
async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: WsMessage,
    outlet: &Outlet,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), WriteFailed> {
    let give_up = async {
        tokio::select! {
            () = outlet.too_slow_notify.notified() => {
                // Seen again at the top of the loop, which closes the socket.
                outlet.too_slow.store(true, Ordering::Release);
            }
            () = async { let _ = shutdown.wait_for(|stop| *stop).await.is_ok(); } => {}
        }
    };
    match write_within(ws.send(frame), give_up).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFailed::Gone),
        Err(WriteStalled) => Err(WriteFailed::Stalled),
    }
}

/// Serve one upgraded Phoenix socket (its server-wide connection slot is reserved, and
/// released here).
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    vsn: Vsn,
    server: Arc<ServerState>,
) {
    let conn = server.next_connection_id();
    let (queue, mut outbound) = mpsc::channel::<WsMessage>(server.config.max_queued_messages.max(1));
    let outlet = Arc::new(Outlet::new(vsn, queue));
    let rooms = server.phoenix.clone();
    let limits = Limits::of(&server.config);
    let mut socket = Socket {
        conn,
        outlet: outlet.clone(),
        joined: HashMap::new(),
        limits,
        window: RateWindow { started: Instant::now(), count: 0 },
    };
    let mut shutdown = server.shutdown.clone();
    let mut last_inbound = Instant::now();
    server.metrics.phoenix_connections.inc();
    // Phoenix closes a socket that sent nothing (not even a heartbeat) for this long.
    let idle_timeout = Duration::from_secs(server.config.phoenix_idle_timeout.max(1));
    // The close to send when the loop ends (None: the client is gone or does not read).
    let goodbye: Option<(CloseCode, String)> = loop {
        if let Some((code, reason)) = outlet.close_requested() {
            break Some((CloseCode::try_from(code).unwrap_or(CloseCode::SERVICE_RESTART), reason));
        }
        if outlet.too_slow.load(Ordering::Acquire) {
            break Some((
                CloseCode::SERVICE_OVERLOAD,
                "too many unsent messages: the client reads slower than they arrive".into(),
            ));
        }
        tokio::select! {
            inbound = ws.next() => {
                let message = match inbound {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::debug!("Phoenix socket error: {e}");
                        close_after_read_error(&mut ws, &e).await;
                        break None;
                    }
                    None => break None,
                };
                last_inbound = Instant::now();
                let size = message.as_payload().len();
                let decoded = if let Some(text) = message.as_text() {
                    Message::decode_text(text, vsn)
                } else if message.is_binary() && vsn == Vsn::V2 {
                    Message::decode_binary(message.as_payload(), false)
                } else {
                    continue; // control frames; binary on V1 is not part of the protocol
                };
                let Ok(message) = decoded else {
                    tracing::debug!("ignoring an undecodable Phoenix frame");
                    continue;
                };
                let replies = socket.handle(&server, message, size).await;
                let mut failed = false;
                for reply in replies {
                    let Some(frame) = encode(&reply, vsn) else { continue };
                    if write(&mut ws, frame, &outlet, &mut shutdown).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break None;
                }
            }
            Some(frame) = outbound.recv() => {
                if write(&mut ws, frame, &outlet, &mut shutdown).await.is_err() {
                    break None;
                }
            }
            () = outlet.too_slow_notify.notified() => {} // the top of the loop closes the socket
            () = outlet.close_notify.notified() => {} // likewise
            () = tokio::time::sleep_until(last_inbound + idle_timeout) => {
                break Some((CloseCode::NORMAL_CLOSURE, "idle timeout".into()));
            }
            () = async { let _ = shutdown.wait_for(|stop| *stop).await.is_ok(); } => {
                // 1012 Service Restart, as Phoenix's drain does: phoenix.js reconnects.
                break Some((CloseCode::SERVICE_RESTART, "server restarting".into()));
            }
        }
    };
    // Counted whether the overflow was seen here or while a write to it was blocked.
    if outlet.too_slow.load(Ordering::Acquire) {
        server.metrics.slow_consumer_disconnects.inc();
    }
    // The members leave before the goodbye, which may wait on a client that does not read.
    for topic in socket.joined.keys() {
        if let Err(e) = server.adapter.room_leave(&rooms, topic, conn).await {
            tracing::warn!(%topic, error = %e, "a Phoenix leave did not reach the cluster (the node rejoins)");
        }
    }
    if let Some((code, reason)) = goodbye {
        let _ = tokio::time::timeout(CLOSE_LINGER, ws.send(WsMessage::close(Some(code), &reason))).await;
    }
    server.metrics.phoenix_connections.dec();
    server.release_connection();
}

/// The error reply to a refused `phx_join`.
fn join_refused(join_ref: String, reference: Option<String>, topic: &str, reason: String) -> Message {
    Message::reply(Some(join_ref), reference, topic, "error", json!({ "reason": reason }))
}

/// One socket's state: the rooms it joined and its limits.
struct Socket {
    conn: u64,
    outlet: Arc<Outlet>,
    /// topic → join_ref of this connection's current join
    joined: HashMap<String, String>,
    limits: Limits,
    window: RateWindow,
}

impl Socket {
    /// Handle one inbound message (`size` bytes as it arrived); returns the frames to send
    /// back to this socket, in order.
    async fn handle(&mut self, server: &ServerState, message: Message, size: usize) -> Vec<Message> {
        let (rooms, adapter) = (&*server.phoenix, &*server.adapter);
        let (conn, limits, joined) = (self.conn, self.limits, &mut self.joined);
        let Message { join_ref, reference, topic, event, payload } = message;
        let json = match &payload {
            Payload::Json(v) => v.clone(),
            _ => Value::Null,
        };
        if topic == "phoenix" && event == "heartbeat" {
            return vec![Message::reply(None, reference, "phoenix", "ok", json!({}))];
        }
        if event == "phx_join" {
            if !topic.starts_with("room:") {
                return vec![Message::reply(None, reference, &topic, "error", json!({ "reason": "unmatched topic" }))];
            }
            // A V1 client sends no join_ref: the join's own ref stands in.
            let join_ref = join_ref.or_else(|| reference.clone()).unwrap_or_default();
            let mut out = Vec::new();
            if let Some(old) = joined.remove(&topic) {
                if let Err(e) = adapter.room_leave(rooms, &topic, conn).await {
                    tracing::warn!(%topic, error = %e, "a Phoenix leave did not reach the cluster (the node rejoins)");
                }
                out.push(Message {
                    join_ref: Some(old.clone()),
                    reference: Some(old),
                    topic: topic.clone(),
                    event: "phx_close".into(),
                    payload: Payload::Json(json!({})),
                });
            }
            let username = json.get("username").and_then(Value::as_str).filter(|u| !u.is_empty());
            let refusal = match username {
                None => Some("username is required".to_owned()),
                Some(u) if u.len() > limits.max_name_length || topic.len() > limits.max_name_length => {
                    Some(format!("topic and username are limited to {} bytes", limits.max_name_length))
                }
                Some(_) if joined.len() >= limits.max_channels => Some("too many channels joined".to_owned()),
                Some(_) => None,
            };
            let (Some(username), None) = (username, refusal.as_ref()) else {
                out.push(join_refused(join_ref, reference, &topic, refusal.unwrap_or_default()));
                return out;
            };
            let meta = json!({ "typing": false, "username": username, "phx_ref": rooms.phx_ref() });
            let member = Member {
                conn,
                username: username.to_owned(),
                meta,
                outlet: self.outlet.clone(),
                delivery: BusGate::live(),
            };
            // Hub pushes the state before tracking, so the joiner's own join arrives as a diff.
            let before = match adapter.room_join(rooms, &topic, member, limits.max_room_members).await {
                Ok(before) => before,
                Err(e) => {
                    out.push(join_refused(join_ref, reference, &topic, e.to_string()));
                    return out;
                }
            };
            let Some(before) = before else {
                let reason = format!("room is full: at most {} members", limits.max_room_members);
                out.push(join_refused(join_ref, reference, &topic, reason));
                return out;
            };
            joined.insert(topic.clone(), join_ref.clone());
            // The reply goes before the state, though the member is tracked already: both are
            // written in order by this socket's task, before anything the room queued for it.
            out.push(Message::reply(Some(join_ref.clone()), reference, &topic, "ok", json!({})));
            out.push(Message {
                join_ref: Some(join_ref),
                reference: None,
                topic,
                event: "presence_state".into(),
                payload: Payload::Json(before),
            });
            return out;
        }
        let Some(current) = joined.get(&topic).cloned() else {
            if event == "phx_leave" {
                return vec![Message::reply(join_ref, reference, &topic, "ok", json!({}))];
            }
            return vec![Message::reply(None, reference, &topic, "error", json!({ "reason": "unmatched topic" }))];
        };
        if join_ref.as_ref().is_some_and(|jr| *jr != current) {
            tracing::debug!(%topic, "ignoring a message for a previous join");
            return Vec::new();
        }
        let jr = Some(current.clone());
        if matches!(event.as_str(), "shout" | "user:typing") {
            if size > limits.max_payload {
                let reason = format!("message too large: at most {} bytes", limits.max_payload);
                return vec![Message::reply(jr, reference, &topic, "error", json!({ "reason": reason }))];
            }
            if !self.window.admit(limits.rate) {
                let reason = format!("too many messages: at most {} per second", limits.rate);
                return vec![Message::reply(jr, reference, &topic, "error", json!({ "reason": reason }))];
            }
        }
        match event.as_str() {
            "phx_leave" => {
                joined.remove(&topic);
                if let Err(e) = adapter.room_leave(rooms, &topic, conn).await {
                    tracing::warn!(%topic, error = %e, "a Phoenix leave did not reach the cluster (the node rejoins)");
                }
                vec![
                    Message::reply(jr.clone(), reference, &topic, "ok", json!({})),
                    Message {
                        join_ref: jr.clone(),
                        reference: jr,
                        topic,
                        event: "phx_close".into(),
                        payload: Payload::Json(json!({})),
                    },
                ]
            }
            // Hub's shout has no reply; one that the cluster could not carry gets an error
            // reply rather than vanish.
            "shout" => match adapter.room_shout(rooms, &topic, payload).await {
                Ok(()) => Vec::new(),
                Err(e) => vec![Message::reply(jr, reference, &topic, "error", json!({ "reason": e.to_string() }))],
            },
            "user:typing" => {
                let typing = json.get("typing").and_then(Value::as_bool).unwrap_or(false);
                match adapter.room_update_typing(rooms, &topic, conn, typing).await {
                    Ok(()) => vec![Message::reply(jr, reference, &topic, "ok", json!({}))],
                    Err(e) => vec![Message::reply(jr, reference, &topic, "error", json!({ "reason": e.to_string() }))],
                }
            }
            "ping" => match payload {
                // A binary ping gets a binary reply, as Phoenix's `{:reply, {:ok, {:binary, data}}}`.
                Payload::Binary(bytes) => vec![Message {
                    join_ref: jr,
                    reference,
                    topic,
                    event: "phx_reply".into(),
                    payload: Payload::BinaryReply { status: "ok".into(), response: bytes },
                }],
                _ => vec![Message::reply(jr, reference, &topic, "ok", json)],
            },
            // Hub's RoomChannel has no clause for other events, so its process crashes: the
            // member is untracked and the client gets phx_error (and rejoins), as with Phoenix.
            other => {
                tracing::debug!(%topic, event = other, "unhandled event: the room channel crashes, as Hub's does");
                joined.remove(&topic);
                if let Err(e) = adapter.room_leave(rooms, &topic, conn).await {
                    tracing::warn!(%topic, error = %e, "a Phoenix leave did not reach the cluster (the node rejoins)");
                }
                vec![Message {
                    join_ref: jr.clone(),
                    reference: jr,
                    topic,
                    event: "phx_error".into(),
                    payload: Payload::Json(json!({ "reason": "channel_crash" })),
                }]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Frames encoded on this thread.
        pub(super) static ENCODED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn member(conn: u64, vsn: Vsn) -> (Member, mpsc::Receiver<WsMessage>) {
        let (queue, rx) = mpsc::channel(4);
        let outlet = Arc::new(Outlet::new(vsn, queue));
        (Member { conn, username: format!("u{conn}"), meta: json!({}), outlet, delivery: BusGate::live() }, rx)
    }

    #[test]
    fn a_broadcast_is_encoded_once_per_serializer_present() {
        let shout = |payload| Message {
            join_ref: None,
            reference: None,
            topic: "room:a".into(),
            event: "shout".into(),
            payload,
        };
        let mut room = HashMap::new();
        let mut receivers = Vec::new();
        for conn in 0..3 {
            let (m, rx) = member(conn, Vsn::V2);
            room.insert(conn, m);
            receivers.push(rx);
        }
        ENCODED.with(|n| n.set(0));
        Rooms::broadcast(&room, &shout(Payload::Json(json!({"body": "hi"}))));
        assert_eq!(ENCODED.with(|n| n.get()), 1, "three V2 members, one encoding");
        let (m, rx) = member(9, Vsn::V1);
        room.insert(9, m);
        receivers.push(rx);
        ENCODED.with(|n| n.set(0));
        Rooms::broadcast(&room, &shout(Payload::Json(json!({"body": "hi"}))));
        assert_eq!(ENCODED.with(|n| n.get()), 2, "a V1 member adds one");
        for (i, rx) in receivers.iter_mut().enumerate() {
            let frames = if i < 3 { 2 } else { 1 }; // the V1 member joined for the second
            for _ in 0..frames {
                assert_eq!(rx.try_recv().map(|f| f.is_text()).ok(), Some(true), "member {i}");
            }
        }
        // A binary push reaches the V2 members only.
        Rooms::broadcast(&room, &shout(Payload::Binary(vec![1])));
        for (i, rx) in receivers.iter_mut().enumerate() {
            assert_eq!(rx.try_recv().is_ok(), i < 3, "member {i}");
        }
    }

    #[test]
    fn a_full_queue_marks_the_member_too_slow_once() {
        let (m, _rx) = member(1, Vsn::V2);
        for _ in 0..4 {
            m.outlet.push(WsMessage::text("x"));
        }
        assert!(!m.outlet.too_slow.load(Ordering::Acquire), "room for four");
        m.outlet.push(WsMessage::text("x"));
        m.outlet.push(WsMessage::text("x"));
        assert!(m.outlet.too_slow.load(Ordering::Acquire));
    }
}
