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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use switchboard_protocol::phoenix::{Message, Payload, Vsn};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_websockets::{Message as WsMessage, WebSocketStream};

use crate::state::ServerState;

/// Rooms one connection may join (Phoenix's `max_channels_per_transport`).
const MAX_CHANNELS: usize = 100;

/// A frame on its way to a socket, encoded once for each serializer that can carry it.
#[derive(Clone)]
enum Outgoing {
    /// JSON: V1 and V2 text.
    Text { v1: Bytes, v2: Bytes },
    /// A V2 binary frame (V1 sockets cannot receive it).
    Binary(Bytes),
}

impl Outgoing {
    fn of(message: &Message) -> Self {
        match message.payload {
            Payload::Json(_) => Outgoing::Text {
                v1: Bytes::from(message.encode_text(Vsn::V1)),
                v2: Bytes::from(message.encode_text(Vsn::V2)),
            },
            _ => Outgoing::Binary(Bytes::from(message.encode_binary_server().unwrap_or_default())),
        }
    }
}

struct Member {
    conn: u64,
    username: String,
    meta: Value,
    queue: mpsc::Sender<Outgoing>,
}

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

    /// A fresh `phx_ref`: unique per server run.
    fn phx_ref(&self) -> String {
        let n = self.next_ref.fetch_add(1, Ordering::Relaxed);
        format!("F{n:x}{:04x}", rand::random::<u16>())
    }

    /// `{username: {metas: [...]}}` of a room.
    fn state_of(members: &HashMap<u64, Member>) -> Value {
        let mut state = Map::new();
        let mut ordered: Vec<&Member> = members.values().collect();
        ordered.sort_by_key(|m| m.conn);
        for member in ordered {
            let entry = state.entry(member.username.clone()).or_insert_with(|| json!({ "metas": [] }));
            if let Some(metas) = entry["metas"].as_array_mut() {
                metas.push(member.meta.clone());
            }
        }
        Value::Object(state)
    }

    fn broadcast(members: &HashMap<u64, Member>, message: &Message) {
        let out = Outgoing::of(message);
        for member in members.values() {
            // A full queue means a client that does not read; it is not waited for.
            let _ = member.queue.try_send(out.clone());
        }
    }

    fn diff(topic: &str, joins: Value, leaves: Value) -> Message {
        Message {
            join_ref: None,
            reference: None,
            topic: topic.to_owned(),
            event: "presence_diff".into(),
            payload: Payload::Json(json!({ "joins": joins, "leaves": leaves })),
        }
    }

    /// Track a member; returns the presence state before it joined.
    fn join(&self, topic: &str, member: Member) -> Value {
        let mut rooms = self.lock();
        let room = rooms.entry(topic.to_owned()).or_default();
        let before = Self::state_of(room);
        let joins = json!({ member.username.clone(): { "metas": [member.meta.clone()] } });
        room.insert(member.conn, member);
        Self::broadcast(room, &Self::diff(topic, joins, json!({})));
        before
    }

    /// Untrack a connection's member and announce the leave.
    fn leave(&self, topic: &str, conn: u64) {
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
    fn update_typing(&self, topic: &str, conn: u64, typing: bool) {
        let phx_ref = self.phx_ref();
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(topic) else { return };
        let Some(member) = room.get_mut(&conn) else { return };
        let old = member.meta.clone();
        let new = json!({
            "typing": typing,
            "username": member.username,
            "phx_ref": phx_ref,
            "phx_ref_prev": old["phx_ref"],
        });
        member.meta = new.clone();
        let key = member.username.clone();
        let message = Self::diff(topic, json!({ key.clone(): { "metas": [new] } }), json!({ key: { "metas": [old] } }));
        Self::broadcast(room, &message);
    }

    fn shout(&self, topic: &str, payload: Payload) {
        let rooms = self.lock();
        if let Some(room) = rooms.get(topic) {
            let message =
                Message { join_ref: None, reference: None, topic: topic.to_owned(), event: "shout".into(), payload };
            Self::broadcast(room, &message);
        }
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

/// Serve one upgraded Phoenix socket.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    vsn: Vsn,
    server: Arc<ServerState>,
) {
    let conn = server.next_connection_id();
    let (queue, mut outbound) = mpsc::channel::<Outgoing>(server.config.max_queued_messages.max(1));
    let rooms = server.phoenix.clone();
    // topic → join_ref of this connection's current join
    let mut joined: HashMap<String, String> = HashMap::new();
    let mut shutdown = server.shutdown.clone();
    let mut last_inbound = Instant::now();
    server.metrics.phoenix_connections.inc();
    // Phoenix closes a socket that sent nothing (not even a heartbeat) for this long.
    let idle_timeout = Duration::from_secs(server.config.phoenix_idle_timeout.max(1));
    loop {
        tokio::select! {
            inbound = ws.next() => {
                let message = match inbound {
                    Some(Ok(message)) => message,
                    _ => break,
                };
                last_inbound = Instant::now();
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
                let replies = handle(&rooms, conn, &queue, &mut joined, message);
                let mut failed = false;
                for reply in replies {
                    let frame = match reply.payload {
                        Payload::Json(_) => WsMessage::text(reply.encode_text(vsn)),
                        _ => WsMessage::binary(reply.encode_binary_server().unwrap_or_default()),
                    };
                    if ws.send(frame).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break;
                }
            }
            Some(out) = outbound.recv() => {
                let frame = match (out, vsn) {
                    (Outgoing::Text { v2, .. }, Vsn::V2) => WsMessage::text(v2),
                    (Outgoing::Text { v1, .. }, Vsn::V1) => WsMessage::text(v1),
                    (Outgoing::Binary(bytes), Vsn::V2) => WsMessage::binary(bytes),
                    (Outgoing::Binary(_), Vsn::V1) => continue, // V1 cannot carry binary
                };
                if ws.send(frame).await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(last_inbound + idle_timeout) => {
                let _ = ws.send(WsMessage::close(Some(tokio_websockets::CloseCode::NORMAL_CLOSURE), "idle timeout")).await;
                break;
            }
            () = async { let _ = shutdown.wait_for(|stop| *stop).await.is_ok(); } => {
                // 1012 Service Restart, as Phoenix's drain does: phoenix.js reconnects.
                let _ = ws.send(WsMessage::close(Some(tokio_websockets::CloseCode::SERVICE_RESTART), "server restarting")).await;
                break;
            }
        }
    }
    for topic in joined.keys() {
        rooms.leave(topic, conn);
    }
    server.metrics.phoenix_connections.dec();
}

/// Handle one inbound message; returns the frames to send back to this socket, in order.
fn handle(
    rooms: &Rooms,
    conn: u64,
    queue: &mpsc::Sender<Outgoing>,
    joined: &mut HashMap<String, String>,
    message: Message,
) -> Vec<Message> {
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
            rooms.leave(&topic, conn);
            out.push(Message {
                join_ref: Some(old.clone()),
                reference: Some(old),
                topic: topic.clone(),
                event: "phx_close".into(),
                payload: Payload::Json(json!({})),
            });
        }
        let Some(username) = json.get("username").and_then(Value::as_str).filter(|u| !u.is_empty()) else {
            out.push(Message::reply(
                Some(join_ref),
                reference,
                &topic,
                "error",
                json!({ "reason": "username is required" }),
            ));
            return out;
        };
        if joined.len() >= MAX_CHANNELS {
            out.push(Message::reply(
                Some(join_ref),
                reference,
                &topic,
                "error",
                json!({ "reason": "too many channels joined" }),
            ));
            return out;
        }
        joined.insert(topic.clone(), join_ref.clone());
        out.push(Message::reply(Some(join_ref.clone()), reference, &topic, "ok", json!({})));
        let meta = json!({ "typing": false, "username": username, "phx_ref": rooms.phx_ref() });
        let member = Member { conn, username: username.to_owned(), meta, queue: queue.clone() };
        // Hub pushes the state before tracking, so the joiner's own join arrives as a diff.
        let before = rooms.join(&topic, member);
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
    match event.as_str() {
        "phx_leave" => {
            joined.remove(&topic);
            rooms.leave(&topic, conn);
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
        "shout" => {
            rooms.shout(&topic, payload);
            Vec::new()
        }
        "user:typing" => {
            let typing = json.get("typing").and_then(Value::as_bool).unwrap_or(false);
            rooms.update_typing(&topic, conn, typing);
            vec![Message::reply(jr, reference, &topic, "ok", json!({}))]
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
            rooms.leave(&topic, conn);
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
