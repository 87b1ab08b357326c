//! The task that owns one RealtimeX socket: Engine.IO's open packet and heartbeat, the `/`
//! namespace CONNECT, RealtimeX's events, the outbound queue, and the end.
//!
//! One Pusher-format socket id is this socket's Engine.IO sid, its namespace sid and its
//! Pusher socket id (ours, B.5): signatures are made over it whichever id a client reads,
//! and `socket_id` exclusion in the HTTP API works across protocols.
//!
//! Order of a session: `0{open}` at once; the client's `40` (optionally `40{"api_key":…}`)
//! within `realtimex_connect_timeout_ms`, answered `40{"sid"}` or `44{…}` (the client then
//! closes, or tries again); events; pings every `realtimex_ping_interval_ms`, each answered
//! within `realtimex_ping_timeout_ms`. A packet the protocol does not allow (unreadable, an
//! event before CONNECT, a binary frame nobody announced, a Socket.IO message while
//! attachments are due; Engine.IO's ping, pong and noop may come between them)
//! closes the socket with 1002, as socket.io does; everything else that is refused gets a
//! `realtimex:error` (and a failed ack) and the socket lives on.
//!
//! Closing: a terminate (`POST /apps/{id}/users/{user}/terminate_connections`) sends `41`
//! first, so Socket.IO clients stop reconnecting; shutdown, a slow reader and a dead peer
//! get a plain WebSocket close, so they reconnect.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::engineio::{self, OpenInfo};
use switchboard_protocol::frame::{encode_json_data_frame, encode_server_frame};
use switchboard_protocol::realtimex::{
    self as rtx, ClientEvent, ClientEventData, PresenceSummary, Subscribe, error_event, server_event,
    subscription_error, subscription_succeeded,
};
use switchboard_protocol::socketio::{Assembler, Packet, PacketType};
use switchboard_protocol::{ErrorCode, ProtocolError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_websockets::{Message, WebSocketStream};

use super::upgrade::MAX_PAYLOAD;
use super::wire::{CACHE_MISS, from_pusher_frame, message_frame};
use crate::connection_handle::{CloseRequest, ConnectionHandle};
use crate::pusher::app::App;
use crate::pusher::channel_rules::{self, ClientEventGate, Refusal, Relayed, SubscribeRequest, Subscriptions};
use crate::pusher::connection::new_socket_id;
use crate::state::ServerState;
use crate::websocket::{CLOSE_LINGER, WriteFailed, close_after_read_error, close_frame, write_guarded};

/// Frames written per wake-up before flushing.
const WRITE_BATCH: usize = 64;

/// Why the socket loop ended.
enum End {
    /// The client closed (Engine.IO `1` or a close frame) or the transport failed.
    Gone,
    /// We close: `41` first when `disconnect` (clients then stay away), then a WebSocket
    /// close with `code` and `reason`.
    Close { disconnect: bool, code: u16, reason: String },
    /// A close was due but the socket takes no writes: drop it.
    Abort,
}

impl End {
    fn close(code: u16, reason: impl Into<String>) -> End {
        End::Close { disconnect: false, code, reason: reason.into() }
    }

    /// A packet the protocol does not allow.
    fn protocol(reason: impl Into<String>) -> End {
        End::close(1002, reason)
    }

    /// The close a request on the handle asks for: the app's terminate (4009) is a server
    /// disconnect (`41`); a slow reader (4100) gets a plain close, so it reconnects.
    fn from_request(request: CloseRequest) -> End {
        match request.code {
            4009 => End::Close { disconnect: true, code: 1000, reason: request.message },
            4100 => End::close(1013, request.message),
            _ => End::close(1011, request.message),
        }
    }
}

struct Connection<S> {
    ws: WebSocketStream<S>,
    server: Arc<ServerState>,
    handle: Arc<ConnectionHandle>,
    /// The `api_key` of the upgrade's query, if it had one.
    query_key: Option<String>,
    /// The app, once the namespace is connected.
    app: Option<Arc<App>>,
    subscriptions: Subscriptions,
    client_events: ClientEventGate,
    /// A binary packet whose attachments are still coming, and whether it was already
    /// answered (refused as too big: its attachments are then read and dropped).
    assembling: Option<(Assembler, bool)>,
    /// The namespace must be connected by then.
    connect_deadline: Instant,
    /// When the last ping was sent and not yet answered.
    ping_sent: Option<Instant>,
    /// When the next ping is due (the interval counts from the last pong).
    next_ping: Instant,
    ping_interval: Duration,
    ping_timeout: Duration,
}

/// Serve one upgraded socket. The server connection slot is already taken; it is given
/// back here.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    server: Arc<ServerState>,
    query_key: Option<String>,
) {
    let (queue, mut outbound) = mpsc::channel(server.config.max_queued_messages.max(1));
    let handle = Arc::new(ConnectionHandle::realtimex(server.next_connection_id(), new_socket_id(), queue));
    server.metrics.connections.inc();
    server.metrics.connections_total.inc();
    server.metrics.realtimex_connections.inc();
    let now = Instant::now();
    let config = &server.config;
    let ping_interval = Duration::from_millis(config.realtimex_ping_interval_ms.max(1));
    let mut conn = Connection {
        ws,
        server: server.clone(),
        handle,
        query_key,
        app: None,
        subscriptions: Subscriptions::new(),
        client_events: ClientEventGate::new(),
        assembling: None,
        connect_deadline: now + Duration::from_millis(config.realtimex_connect_timeout_ms.max(1)),
        ping_sent: None,
        next_ping: now + ping_interval,
        ping_interval,
        ping_timeout: Duration::from_millis(config.realtimex_ping_timeout_ms.max(1)),
    };
    let end = conn.run(&mut outbound).await;
    match end {
        End::Gone | End::Abort => {}
        End::Close { disconnect, code, reason } => {
            if code == 1013 {
                server.metrics.slow_consumer_disconnects.inc();
            }
            if code == 1002 {
                server.metrics.realtimex_protocol_closes.inc();
            }
            conn.close(disconnect, code, &reason).await;
        }
    }
    conn.leave_namespace();
    server.release_connection();
    server.metrics.realtimex_connections.dec();
    server.metrics.connections.dec();
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn run(&mut self, outbound: &mut mpsc::Receiver<Bytes>) -> End {
        let open = OpenInfo::new(
            self.handle.socket_id.to_string(),
            self.ping_interval.as_millis() as u64,
            self.ping_timeout.as_millis() as u64,
            MAX_PAYLOAD as u64,
        );
        if let Err(end) = self.send(open.encode()).await {
            return end;
        }
        let handle = self.handle.clone();
        let close_requested = handle.close_requested();
        let mut shutdown = self.server.shutdown.clone();
        let shutting_down = async move {
            let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
        };
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(close_requested, shutting_down, timer);
        loop {
            let deadline = self.deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                inbound = self.ws.next() => match inbound {
                    None => return End::Gone,
                    Some(Err(e)) => {
                        tracing::debug!(socket_id = %self.handle.socket_id, "RealtimeX socket error: {e}");
                        close_after_read_error(&mut self.ws, &e).await;
                        return End::Gone;
                    }
                    Some(Ok(message)) => {
                        if let Err(end) = self.on_message(message).await {
                            return end;
                        }
                    }
                },
                Some(frame) = outbound.recv() => {
                    if let Err(end) = self.write_queued(frame, outbound).await {
                        return end;
                    }
                }
                () = &mut timer => {
                    if let Err(end) = self.on_timer().await {
                        return end;
                    }
                }
                request = &mut close_requested => return End::from_request(request),
                () = &mut shutting_down => {
                    // Deliver what is already queued (a member_removed, say) first.
                    while let Ok(frame) = outbound.try_recv() {
                        if let Err(end) = self.write_queued(frame, outbound).await {
                            return end;
                        }
                    }
                    return End::close(1001, "Server is shutting down; reconnect");
                }
            }
        }
    }

    /// The next moment the timer must act: the connect deadline (until connected), the end
    /// of a pong wait, or the next ping.
    fn deadline(&self) -> Instant {
        let heartbeat = match self.ping_sent {
            Some(sent) => sent + self.ping_timeout,
            None => self.next_ping,
        };
        if self.app.is_none() { heartbeat.min(self.connect_deadline) } else { heartbeat }
    }

    async fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if self.app.is_none() && now >= self.connect_deadline {
            return Err(End::close(1008, "No namespace CONNECT within the connect timeout"));
        }
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.ping_timeout {
                return Err(End::close(1001, "Ping timeout: no pong within pingTimeout"));
            }
        } else if now >= self.next_ping {
            self.send(engineio::Packet::Ping(None).encode()).await?;
            self.ping_sent = Some(now);
        }
        Ok(())
    }

    async fn write_queued(&mut self, first: Bytes, outbound: &mut mpsc::Receiver<Bytes>) -> Result<(), End> {
        let handle = self.handle.clone();
        guarded(&handle, self.ws.feed(Message::text(first))).await?;
        let mut written = 1;
        while written < WRITE_BATCH {
            let Ok(frame) = outbound.try_recv() else {
                break;
            };
            guarded(&handle, self.ws.feed(Message::text(frame))).await?;
            written += 1;
        }
        guarded(&handle, self.ws.flush()).await?;
        self.server.metrics.messages_sent.inc_by(written as u64);
        Ok(())
    }

    async fn send(&mut self, text: String) -> Result<(), End> {
        let handle = self.handle.clone();
        guarded(&handle, self.ws.send(Message::text(text))).await?;
        self.server.metrics.messages_sent.inc();
        Ok(())
    }

    /// Send one Socket.IO packet.
    async fn emit(&mut self, packet: &Packet) -> Result<(), End> {
        self.send(message_frame(packet)).await
    }

    /// Answer `ack_id` (if the client asked) with one result object.
    async fn ack(&mut self, ack_id: Option<u64>, result: Value) -> Result<(), End> {
        match ack_id {
            Some(id) => self.emit(&Packet::ack("/", id, vec![result])).await,
            None => Ok(()),
        }
    }

    /// `realtimex:error` `{code, message[, channel]}`, and a failed ack if one was asked for.
    async fn refuse(
        &mut self,
        ack_id: Option<u64>,
        code: u16,
        message: &str,
        channel: Option<&str>,
    ) -> Result<(), End> {
        self.emit(&error_event(code, message, channel)).await?;
        let mut result = json!({ "ok": false, "code": code, "message": message });
        if let Some(channel) = channel {
            result["channel"] = json!(channel);
        }
        self.ack(ack_id, result).await
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        if message.is_ping() || message.is_pong() || message.is_close() {
            // tokio-websockets answers control pings; after a close the stream ends.
            return Ok(());
        }
        self.server.metrics.messages_received.inc();
        if message.is_binary() {
            let Some((assembler, answered)) = self.assembling.as_mut() else {
                return Err(End::protocol("A binary frame that no binary packet announced"));
            };
            let payload = message.into_payload();
            if let Some((packet, _attachments)) = assembler.push(payload.to_vec()) {
                let answered = *answered;
                self.assembling = None;
                return if answered { Ok(()) } else { self.on_binary_packet(packet).await };
            }
            return Ok(());
        }
        let Some(text) = message.as_text() else {
            return Err(End::protocol("A frame that is neither text nor binary"));
        };
        let packet = match engineio::Packet::decode_text(text) {
            Ok(packet) => packet,
            Err(e) => return Err(End::protocol(format!("Invalid Engine.IO packet: {e}"))),
        };
        match packet {
            engineio::Packet::Ping(payload) => self.send(engineio::Packet::Pong(payload).encode()).await,
            // Any pong shows the client alive, asked for or not (as engine.io takes it): a
            // client that cannot read, because its consumer is slow, sends them unasked.
            engineio::Packet::Pong(_) => {
                self.ping_sent = None;
                self.next_ping = Instant::now() + self.ping_interval;
                Ok(())
            }
            engineio::Packet::Close => Err(End::Gone),
            engineio::Packet::Noop | engineio::Packet::Upgrade => Ok(()),
            engineio::Packet::Open(_) => Err(End::protocol("Clients do not send open packets")),
            engineio::Packet::Message(text) => {
                // Engine.IO's own packets may come between a binary packet and its
                // attachments; a Socket.IO packet may not.
                if self.assembling.is_some() {
                    return Err(End::protocol("A text message while a binary packet's attachments were due"));
                }
                let limit = self.app.as_ref().map_or(MAX_PAYLOAD, |app| app.config.max_message_size);
                if text.len() > limit {
                    // Read as a packet first, so its ack (if any) can say so, and so the
                    // attachments of a binary one are read and dropped: the stream stays in step.
                    let packet = Packet::decode(text).ok();
                    let ack_id = packet.as_ref().and_then(|p| p.ack_id);
                    if let Some(packet) = packet.filter(|p| p.attachments > 0) {
                        self.assembling = Some((Assembler::new(packet), true));
                    }
                    let message = format!("Message of {} bytes exceeds the limit of {limit} bytes", text.len());
                    return self.refuse(ack_id, ErrorCode::GENERIC.0, &message, None).await;
                }
                match Packet::decode(text) {
                    Ok(packet) => self.on_packet(packet).await,
                    Err(e) => Err(End::protocol(format!("Invalid Socket.IO packet: {e}"))),
                }
            }
        }
    }

    async fn on_packet(&mut self, packet: Packet) -> Result<(), End> {
        if packet.kind == PacketType::Connect {
            return self.on_connect(packet).await;
        }
        // As socket.io's Client: any other packet for a namespace this socket has not joined
        // is a client in the wrong state.
        if packet.namespace != "/" || self.app.is_none() {
            return Err(End::protocol(format!(
                "A packet for namespace {:?} before its CONNECT",
                packet.namespace.chars().take(64).collect::<String>()
            )));
        }
        match packet.kind {
            PacketType::Event => self.on_event(packet).await,
            PacketType::BinaryEvent | PacketType::BinaryAck => {
                self.assembling = Some((Assembler::new(packet), false));
                Ok(())
            }
            PacketType::Disconnect => {
                self.leave_namespace();
                // It may CONNECT again on the same session, within a new connect timeout.
                self.connect_deadline =
                    Instant::now() + Duration::from_millis(self.server.config.realtimex_connect_timeout_ms.max(1));
                Ok(())
            }
            // The server never asks for acks, so any answer is for nothing (socket.io ignores
            // unknown ack ids too).
            PacketType::Ack => Ok(()),
            PacketType::Connect | PacketType::ConnectError => Err(End::protocol("CONNECT_ERROR is the server's")),
        }
    }

    async fn on_connect(&mut self, packet: Packet) -> Result<(), End> {
        if packet.namespace != "/" {
            self.server.metrics.realtimex_connect_errors.inc();
            let refused = Packet::new(
                PacketType::ConnectError,
                &packet.namespace,
                Some(json!({ "message": "Invalid namespace" })),
            );
            return self.emit(&refused).await;
        }
        if self.app.is_some() {
            return Err(End::protocol("A second CONNECT to the namespace"));
        }
        // The CONNECT payload's key first: a retry after a refusal may name the right one.
        let payload_key = packet.data.as_ref().and_then(|d| d.get("api_key")?.as_str().map(str::to_owned));
        let key = payload_key.or_else(|| self.query_key.clone());
        let app = key.as_ref().and_then(|key| self.server.apps_by_key.get(key)).cloned();
        let Some(app) = app else {
            self.server.metrics.realtimex_connect_errors.inc();
            return self.connect_error("Invalid API key", ErrorCode::APP_NOT_FOUND.0).await;
        };
        match self.server.adapter.acquire_connection(&app).await {
            Ok(true) => {}
            Ok(false) => {
                self.server.metrics.realtimex_connect_errors.inc();
                return self.connect_error("Application is over its connection quota", ErrorCode::OVER_QUOTA.0).await;
            }
            Err(e) => {
                self.server.metrics.realtimex_connect_errors.inc();
                return self.connect_error(&format!("Server unavailable ({e})"), ErrorCode::RECONNECT.0).await;
            }
        }
        app.register(&self.handle);
        self.app = Some(app);
        let sid = self.handle.socket_id.to_string();
        self.emit(&Packet::new(PacketType::Connect, "/", Some(json!({ "sid": sid })))).await
    }

    /// `44{"message","data":{"code"}}`. The socket stays: the client closes it (closing
    /// first could race socket.io-client into a reconnect), or the connect timeout does.
    async fn connect_error(&mut self, message: &str, code: u16) -> Result<(), End> {
        let data = json!({ "message": message, "data": { "code": code } });
        self.emit(&Packet::new(PacketType::ConnectError, "/", Some(data))).await
    }

    async fn on_binary_packet(&mut self, packet: Packet) -> Result<(), End> {
        if packet.kind == PacketType::BinaryAck {
            return Ok(()); // an answer to nothing, as a plain ACK
        }
        let name = packet.event_name().unwrap_or_default().chars().take(64).collect::<String>();
        let message = format!("Binary events are not part of RealtimeX (event {name:?}); send JSON");
        self.refuse(packet.ack_id, ErrorCode::GENERIC.0, &message, None).await
    }

    async fn on_event(&mut self, packet: Packet) -> Result<(), End> {
        let ack_id = packet.ack_id;
        match ClientEvent::from_packet(&packet) {
            Ok(ClientEvent::Subscribe(subscribe)) => self.on_subscribe(ack_id, subscribe).await,
            Ok(ClientEvent::Unsubscribe { channel }) => {
                if self.subscriptions.remove(&channel).is_some()
                    && let Some(app) = self.app.clone()
                {
                    channel_rules::leave(&self.server, &app, &self.handle, &channel).await;
                }
                self.ack(ack_id, json!({ "ok": true, "channel": channel })).await
            }
            Ok(ClientEvent::ClientEvent(event)) => self.on_client_event(ack_id, event).await,
            Ok(ClientEvent::Ping) => {
                self.emit(&Packet::event("/", rtx::PONG, vec![json!({})], None)).await?;
                self.ack(ack_id, json!({ "ok": true })).await
            }
            Err(ProtocolError::UnknownFrameType(name)) => {
                let message = format!(
                    "Unknown event {name:?}: clients may send {}, {}, {} and {}",
                    rtx::SUBSCRIBE,
                    rtx::UNSUBSCRIBE,
                    rtx::CLIENT_EVENT,
                    rtx::PING
                );
                self.refuse(ack_id, ErrorCode::GENERIC.0, &message, None).await
            }
            Err(e) => self.refuse(ack_id, ErrorCode::GENERIC.0, &e.to_string(), None).await,
        }
    }

    async fn on_subscribe(&mut self, ack_id: Option<u64>, subscribe: Subscribe) -> Result<(), End> {
        let Some(app) = self.app.clone() else {
            return Ok(()); // on_packet lets no event through before CONNECT
        };
        let channel = subscribe.channel.as_str();
        let request = SubscribeRequest {
            channel,
            auth: subscribe.auth.as_deref(),
            channel_data: subscribe.channel_data.as_deref(),
        };
        // No `pusher:signin` here, so no #server-to-user- channel; encrypted channels' payloads
        // are only decrypted by Pusher clients.
        let subscribed =
            channel_rules::subscribe(&self.server, &app, &self.handle, None, &mut self.subscriptions, &request, false)
                .await;
        let subscribed = match subscribed {
            Ok(subscribed) => subscribed,
            Err(Refusal { kind, status, message }) => {
                self.emit(&subscription_error(channel, kind, &message, status)).await?;
                let result =
                    json!({ "ok": false, "channel": channel, "type": kind, "error": message, "status": status });
                return self.ack(ack_id, result).await;
            }
        };
        let presence = channel
            .starts_with("presence-")
            .then(|| serde_json::from_str::<Value>(&subscribed.data).ok())
            .flatten()
            .and_then(|data| serde_json::from_value::<PresenceSummary>(data.get("presence")?.clone()).ok());
        let socket_id = self.handle.socket_id.to_string();
        self.emit(&subscription_succeeded(channel, &socket_id, presence.as_ref())).await?;
        if app.config.realtimex_mirrors {
            let confirmation = json!({ "channel": channel, "socket_id": socket_id });
            self.emit(&server_event(channel, rtx::SUBSCRIPTION_SUCCEEDED, confirmation, None)).await?;
            if let Some(presence) = &presence {
                let data = json!({ "presence": presence });
                self.emit(&server_event(channel, "presence:subscription_succeeded", data, None)).await?;
            }
        }
        match subscribed.cached {
            Some(Some(frame)) => {
                for frame in from_pusher_frame(&frame, app.config.realtimex_mirrors) {
                    self.send_bytes(frame).await?;
                }
            }
            Some(None) => self.emit(&server_event(channel, CACHE_MISS, json!({}), None)).await?,
            None => {}
        }
        app.go_live(self.handle.id, channel, subscribed.since);
        let mut result = json!({ "ok": true, "channel": channel, "socket_id": socket_id });
        if let Some(presence) = presence {
            result["presence"] = json!(presence);
        }
        self.ack(ack_id, result).await
    }

    async fn send_bytes(&mut self, frame: Bytes) -> Result<(), End> {
        let handle = self.handle.clone();
        guarded(&handle, self.ws.send(Message::text(frame))).await?;
        self.server.metrics.messages_sent.inc();
        Ok(())
    }

    async fn on_client_event(&mut self, ack_id: Option<u64>, event: ClientEventData) -> Result<(), End> {
        let Some(app) = self.app.clone() else {
            return Ok(()); // on_packet lets no event through before CONNECT
        };
        let channel = event.channel.as_str();
        if !event.event.starts_with("client-") {
            let message = format!("Client event names start with \"client-\" (got {:?})", event.event);
            return self.refuse(ack_id, ErrorCode::CLIENT_EVENT_REJECTED.0, &message, Some(channel)).await;
        }
        let admitted = self.client_events.admit(&app, &self.subscriptions, &event.event, Some(channel));
        let user_id = match admitted {
            Ok((_, user_id)) => user_id,
            Err(refused) => return self.refuse(ack_id, refused.code.0, &refused.message, Some(channel)).await,
        };
        // The same frame a Pusher client's event becomes: a string as a string, any other
        // JSON as itself; RealtimeX subscribers get it transcoded.
        let (frame, data) = match &event.data {
            Value::String(text) => {
                (encode_server_frame(&event.event, Some(channel), Some(text), user_id.as_deref()), Some(text.clone()))
            }
            Value::Null => (encode_json_data_frame(&event.event, Some(channel), None, user_id.as_deref()), None),
            other => {
                let raw = other.to_string();
                (encode_json_data_frame(&event.event, Some(channel), Some(&raw), user_id.as_deref()), Some(raw))
            }
        };
        let relayed = Relayed { channel, event: event.event.clone(), frame: Bytes::from(frame), data, user_id };
        if let Err(e) = channel_rules::relay_client_event(&self.server, &app, &self.handle.socket_id, relayed).await {
            let message = format!("The client event was not sent: {e}");
            return self.refuse(ack_id, ErrorCode::GENERIC.0, &message, Some(channel)).await;
        }
        self.ack(ack_id, json!({ "ok": true })).await
    }

    /// Leave every channel and the namespace (a `41` from the client, or the end), giving
    /// back the app's connection slot.
    fn leave_namespace(&mut self) {
        let Some(app) = self.app.take() else {
            return;
        };
        let channels = self.subscriptions.drain().map(|(channel, _)| channel).collect();
        channel_rules::leave_all(&self.server, &app, &self.handle, channels);
    }

    /// `41` if `disconnect`, the close frame, leave every channel, then wait briefly for the
    /// client's close frame (leaving first: see the Pusher task's `close`).
    async fn close(&mut self, disconnect: bool, code: u16, reason: &str) {
        let goodbye = async {
            if disconnect {
                let packet = message_frame(&Packet::new(PacketType::Disconnect, "/", None));
                self.ws.send(Message::text(packet)).await?;
            }
            self.ws.send(close_frame(code, reason)).await
        };
        let sent = matches!(tokio::time::timeout(CLOSE_LINGER, goodbye).await, Ok(Ok(())));
        self.leave_namespace();
        if sent {
            let _ = tokio::time::timeout(CLOSE_LINGER, async { while self.ws.next().await.is_some() {} }).await;
        }
    }
}

/// Run one write under the shared rule (`websocket::write_guarded`).
async fn guarded<T>(
    handle: &ConnectionHandle,
    write: impl Future<Output = Result<T, tokio_websockets::Error>>,
) -> Result<T, End> {
    write_guarded(handle, write).await.map_err(|failed| match failed {
        WriteFailed::Gone => End::Gone,
        WriteFailed::Abort(_) => End::Abort,
    })
}
