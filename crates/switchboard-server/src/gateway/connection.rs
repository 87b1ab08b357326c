//! The task that owns one gateway WebSocket.
//!
//! On open: a 12-hex-digit connection id, the topics `main` and `priv/<id>`, the welcome as
//! the first frame, and a `connected` presence event to `secure/inbound`. Then one `select!`
//! over client frames, the outbound queue (bounded: a socket that reads slower than its
//! topics get messages is closed with 1013), the liveness timer, a close request and the
//! shutdown. On close, a `disconnected` presence event with the close code (-1 if none).
//!
//! Rules (A.5, with ours marked there): `secure/…` subscribes need a `subscriber:read` grant
//! and another connection's `priv/…` is refused (1008); publishes need a `publisher:write`
//! grant (1008); `message` needs none. A frame that is not JSON or has a bad `data` closes
//! with 1007, an unknown `type` with 1003, one over `gateway_max_message_size` with 1009;
//! more than `gateway_max_topics` topics or `gateway_message_rate` messages a second, 1008.
//! Each close carries a reason that says which rule, and is preceded by an error frame on
//! the connection's `priv/<id>` topic naming the refused topic or message id (ours).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use switchboard_protocol::ProtocolError;
use switchboard_protocol::gateway::frames::{
    ConnectionInfo, INBOUND_TOPIC, MAIN_TOPIC, Sender, ack_frame, delivery_frame, presence_frame, private_topic,
    welcome_frame,
};
use switchboard_protocol::gateway::jwt::VerifiedToken;
use switchboard_protocol::gateway::{ClientFrame, Permissions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_websockets::{Message, WebSocketStream};

use super::{GatewayHandle, Outgoing};
use crate::adapter::TopicSubscribe;
use crate::connection_handle::CloseRequest;
use crate::pusher::app::App;
use crate::state::ServerState;
use crate::websocket::{CLOSE_LINGER, WriteFailed, close_after_read_error, close_frame, write_guarded};

/// Frames written per wake-up before flushing.
const WRITE_BATCH: usize = 64;
/// The close a full outbound queue asks for.
const SLOW_CLOSE: (u16, &str) = (1013, "Too many unsent messages: the client reads slower than messages arrive");
/// The reason the seed SDKs' tests expect for a forbidden secure topic (verbatim).
pub(crate) const FORBIDDEN_SECURE: &str = "Subscription to secure topic is forbidden!";
const FORBIDDEN_PRIVATE: &str = "Subscription to another connection's private topic is forbidden!";
const FORBIDDEN_PUBLISH: &str = "Publishing to topic is forbidden!";

/// What a refusal was about, for its error frame.
enum Refused<'a> {
    /// A subscribe to this topic.
    Topic(&'a str),
    /// A publish or message (with its id, if it had one).
    Message(Option<&'a str>),
    /// A frame that could not be read.
    Frame,
}

enum End {
    /// The socket is gone (closed by the client, or an I/O error).
    Gone(Option<u16>),
    /// We close, with this code and reason.
    Close(CloseRequest),
    /// A close was due but the socket takes no writes: drop it.
    Abort(CloseRequest),
}

struct Connection<S> {
    ws: WebSocketStream<S>,
    app: Arc<App>,
    server: Arc<ServerState>,
    handle: Arc<GatewayHandle>,
    subject: Option<String>,
    permissions: Permissions,
    last_inbound: Instant,
    ping_sent: bool,
    /// Start of the current one-second window, and messages in it.
    rate_window: (Instant, u32),
    /// The error frame of a refusal, written before its close (see `policy_close`).
    refusal: Option<String>,
    /// The client sent a close frame with this code: the echo is flushed before the end.
    client_closed: Option<Option<u16>>,
}

/// A fresh connection id: 12 hex digits, as the hosted gateway's look.
fn new_connection_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Serve one upgraded socket whose token was verified. The server and app connection slots
/// are already taken; they are given back here.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    app: Arc<App>,
    server: Arc<ServerState>,
    token: VerifiedToken,
    remote_address: String,
) {
    let (queue, mut outbound) = mpsc::channel(server.config.max_queued_messages.max(1));
    let connection_id = new_connection_id();
    let handle =
        Arc::new(GatewayHandle::with_slow_close(server.next_connection_id(), connection_id.clone(), queue, SLOW_CLOSE));
    server.metrics.connections.inc();
    server.metrics.connections_total.inc();
    server.metrics.gateway_connections.inc();
    let automatic = [MAIN_TOPIC.to_owned(), private_topic(&connection_id)];
    let mut conn = Connection {
        ws,
        app: app.clone(),
        server: server.clone(),
        handle: handle.clone(),
        subject: token.subject,
        permissions: token.permissions,
        last_inbound: Instant::now(),
        ping_sent: false,
        rate_window: (Instant::now(), 0),
        refusal: None,
        client_closed: None,
    };
    let info = ConnectionInfo { id: connection_id, app_id: app.config.id.clone(), remote_address };
    // If this node dies with the connection open, the cluster tells backends with this.
    let goodbye = conn.presence(Some(-1));
    let joined = server.adapter.gateway_join(&app, &handle, conn.subject.as_deref(), &automatic, goodbye).await;
    let (end, announced) = match joined {
        Err(e) => (End::Close(CloseRequest { code: 1011, message: format!("{e}; reconnect") }), false),
        Ok(()) => match conn.send(Message::text(welcome_frame(&info))).await {
            Err(end) => (end, false),
            Ok(()) => {
                conn.announce(None).await;
                (conn.run(&mut outbound).await, true)
            }
        },
    };
    // Off every topic before the close handshake: a socket on its way out gets no more
    // messages and is not counted by a second admin close.
    let ours_to_announce = match server.adapter.gateway_leave(&app, handle.id).await {
        Ok(ours) => ours,
        Err(e) => {
            tracing::warn!(connection = %handle.socket_id, error = %e, "a gateway leave did not reach the cluster");
            true
        }
    };
    let code = match end {
        End::Gone(code) => code,
        End::Close(request) => {
            conn.count_close(&request);
            conn.close(&request).await;
            Some(request.code)
        }
        End::Abort(request) => {
            conn.count_close(&request);
            Some(request.code)
        }
    };
    // Only a connection backends were told of is announced as gone.
    if announced && ours_to_announce {
        // No status (1005) or none at all: -1, as the hosted gateway's samples show.
        conn.announce(Some(code.filter(|c| *c != 1005).map_or(-1, i64::from))).await;
    }
    server.adapter.release_connection(&app);
    server.release_connection();
    server.metrics.gateway_connections.dec();
    server.metrics.connections.dec();
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn run(&mut self, outbound: &mut mpsc::Receiver<Outgoing>) -> End {
        let handle = self.handle.clone();
        let close_requested = handle.close_requested();
        let mut shutdown = self.server.shutdown.clone();
        let shutting_down = async move {
            let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
        };
        let timer = tokio::time::sleep_until(self.liveness_deadline());
        tokio::pin!(close_requested, shutting_down, timer);
        loop {
            let deadline = self.liveness_deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                inbound = self.ws.next() => match inbound {
                    // After the client's close, tokio-websockets wrote the echo and ends here.
                    None => return End::Gone(self.client_closed.flatten()),
                    Some(Err(e)) => {
                        tracing::debug!(connection = %self.handle.socket_id, "gateway socket error: {e}");
                        close_after_read_error(&mut self.ws, &e).await;
                        let code = matches!(e, tokio_websockets::Error::PayloadTooLong { .. }).then_some(1009);
                        if code.is_some() {
                            self.server.metrics.gateway_policy_closes.inc();
                        }
                        return End::Gone(code);
                    }
                    Some(Ok(message)) => {
                        self.last_inbound = Instant::now();
                        self.ping_sent = false;
                        if message.is_close() {
                            // Read on: the echo goes out on the next poll, then the stream ends.
                            self.client_closed = Some(message.as_close().map(|(code, _)| u16::from(code)));
                            continue;
                        }
                        if let Err(end) = self.on_message(message).await {
                            return end;
                        }
                    }
                },
                Some(first) = outbound.recv() => {
                    if let Err(end) = self.write_queued(first, outbound).await {
                        return end;
                    }
                }
                () = &mut timer => {
                    if self.ping_sent {
                        return End::Abort(CloseRequest { code: 1001, message: "no answer to pings".into() });
                    }
                    if let Err(end) = self.send(Message::ping(Bytes::new())).await {
                        return end;
                    }
                    self.ping_sent = true;
                }
                request = &mut close_requested => {
                    // What was queued before the close request goes first (bounded, and each
                    // write is guarded against a client that stopped reading).
                    while let Ok(frame) = outbound.try_recv() {
                        if let Err(end) = self.write_queued(frame, outbound).await {
                            return end;
                        }
                    }
                    return End::Close(request);
                }
                () = &mut shutting_down => {
                    return End::Close(CloseRequest { code: 1012, message: "Server is shutting down; reconnect".into() });
                }
            }
        }
    }

    /// A ping after `gateway_ping_interval` of silence; the socket is dead after twice that.
    fn liveness_deadline(&self) -> Instant {
        let interval = Duration::from_secs(self.app.config.gateway_ping_interval.max(1));
        self.last_inbound + if self.ping_sent { interval * 2 } else { interval }
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        if message.is_ping() || message.is_pong() {
            return Ok(()); // tokio-websockets answers pings; either counts as life
        }
        self.server.metrics.messages_received.inc();
        // Binary frames are accepted as UTF-8 JSON, as the spec says.
        let Ok(text) = std::str::from_utf8(message.as_payload()) else {
            return Err(self.policy_close(
                1007,
                "Invalid frame: binary frames must hold UTF-8 JSON".into(),
                Refused::Frame,
            ));
        };
        let frame = match ClientFrame::decode(text) {
            Ok(frame) => frame,
            Err(ProtocolError::UnknownFrameType(kind)) => {
                return Err(self.policy_close(1003, format!("Unknown frame type {kind:?}"), Refused::Frame));
            }
            Err(e) => return Err(self.policy_close(1007, format!("Invalid frame: {e}"), Refused::Frame)),
        };
        match frame {
            ClientFrame::Subscribe { topic } => self.subscribe(&topic).await,
            ClientFrame::Unsubscribe { topic } => {
                if let Err(e) = self.server.adapter.gateway_unsubscribe_topic(&self.app, &self.handle, &topic).await {
                    tracing::warn!(%topic, error = %e, "a gateway unsubscribe did not reach the cluster");
                }
                Ok(())
            }
            ClientFrame::Publish(publish) => {
                self.count_message(publish.id.as_deref())?;
                if !self.permissions.may_publish(&publish.topic) {
                    return Err(self.policy_close(
                        1008,
                        FORBIDDEN_PUBLISH.into(),
                        Refused::Message(publish.id.as_deref()),
                    ));
                }
                let topic = publish.topic.clone();
                self.deliver(&topic, publish.message_type(), publish.compress, publish.id.as_deref(), &publish.payload)
                    .await;
                Ok(())
            }
            ClientFrame::Message(message) => {
                self.count_message(message.id.as_deref())?;
                self.deliver(
                    INBOUND_TOPIC,
                    message.message_type(),
                    message.compress,
                    message.id.as_deref(),
                    &message.payload,
                )
                .await;
                Ok(())
            }
        }
    }

    async fn subscribe(&mut self, topic: &str) -> Result<(), End> {
        if topic.is_empty() {
            return Err(self.policy_close(
                1007,
                "Invalid frame: subscribe: the topic is empty".into(),
                Refused::Topic(topic),
            ));
        }
        if !self.permissions.may_subscribe(topic) {
            return Err(self.policy_close(1008, FORBIDDEN_SECURE.into(), Refused::Topic(topic)));
        }
        if topic.starts_with("priv/") && topic != private_topic(&self.handle.socket_id) {
            return Err(self.policy_close(1008, FORBIDDEN_PRIVATE.into(), Refused::Topic(topic)));
        }
        let limit = self.app.config.gateway_max_topics;
        let subject = self.subject.as_deref();
        match self.server.adapter.gateway_subscribe(&self.app, &self.handle, subject, topic, limit).await {
            Ok(TopicSubscribe::Added | TopicSubscribe::AlreadySubscribed) => Ok(()),
            Ok(TopicSubscribe::OverLimit) => {
                let reason = format!("Too many topics: at most {limit} per connection");
                Err(self.policy_close(1008, reason, Refused::Topic(topic)))
            }
            // The cluster cannot take the subscription: say so, and let the client reconnect.
            Err(e) => Err(self.policy_close(1011, format!("{e}; reconnect"), Refused::Topic(topic))),
        }
    }

    /// Publish or send: the delivery frame to the topic's subscribers (this socket included
    /// if subscribed), then the ack (through this socket's queue, so it follows the echo).
    async fn deliver(&mut self, topic: &str, message_type: &str, compress: bool, id: Option<&str>, payload: &RawValue) {
        // Grants are shown to backends only (secure/inbound), never on public topics.
        let permissions = (topic == INBOUND_TOPIC).then_some(&self.permissions);
        let sender =
            Sender { connection_id: Some(&self.handle.socket_id), subject: self.subject.as_deref(), permissions };
        let frame =
            Outgoing { frame: delivery_frame(topic, message_type, &sender, id, payload).into(), binary: compress };
        let ack = id
            .filter(|_| self.app.config.gateway_inbound_ack)
            .map(|id| (self.handle.id, Outgoing::text(ack_frame(id))));
        match self.server.adapter.gateway_publish(&self.app, topic, &frame, ack).await {
            Ok(delivered) => {
                self.server.metrics.gateway_messages.inc();
                self.server.metrics.gateway_deliveries.inc_by(delivered as u64);
            }
            Err(e) => {
                // Not delivered and not acked: the sender is told on its own topic (the error
                // frame of `policy_close`), and the socket stays.
                let mut data = serde_json::json!({"code": 1011, "reason": e.to_string(), "topic": topic});
                if let Some(id) = id {
                    data["id"] = serde_json::json!(id);
                }
                let frame = serde_json::json!({
                    "topic": private_topic(&self.handle.socket_id), "messageType": "error", "data": data,
                });
                self.handle.send(&Outgoing::text(frame.to_string()));
            }
        }
    }

    fn count_message(&mut self, id: Option<&str>) -> Result<(), End> {
        let now = Instant::now();
        if now.duration_since(self.rate_window.0) >= Duration::from_secs(1) {
            self.rate_window = (now, 0);
        }
        self.rate_window.1 += 1;
        let limit = self.app.config.gateway_message_rate;
        if self.rate_window.1 > limit {
            let reason = format!("Rate limit exceeded: at most {limit} messages per second");
            return Err(self.policy_close(1008, reason, Refused::Message(id)));
        }
        Ok(())
    }

    /// Close for a broken rule. Before the close frame (whose reason the SDKs compare
    /// verbatim) goes an error frame on the connection's own topic saying what was refused:
    /// `{"topic":"priv/<id>","messageType":"error","data":{"code","reason","topic"|"id"}}`
    /// (ours: the protocol has no error frame, and a close reason cannot say which of
    /// several subscribes in flight was refused). The SDKs emit it as `priv/<id>.error`.
    fn policy_close(&mut self, code: u16, reason: String, what: Refused<'_>) -> End {
        self.server.metrics.gateway_policy_closes.inc();
        let mut data = serde_json::json!({"code": code, "reason": reason});
        match what {
            Refused::Topic(topic) => data["topic"] = serde_json::json!(topic),
            Refused::Message(Some(id)) => data["id"] = serde_json::json!(id),
            Refused::Message(None) | Refused::Frame => {}
        }
        let frame =
            serde_json::json!({"topic": private_topic(&self.handle.socket_id), "messageType": "error", "data": data});
        self.refusal = Some(frame.to_string());
        End::Close(CloseRequest { code, message: reason })
    }

    fn count_close(&self, request: &CloseRequest) {
        if (request.code, request.message.as_str()) == (SLOW_CLOSE.0, SLOW_CLOSE.1) {
            self.server.metrics.slow_consumer_disconnects.inc();
        }
    }

    /// A presence event for backends: connected (`None`) or disconnected with a code.
    async fn announce(&mut self, disconnected_with: Option<i64>) {
        let frame = Outgoing::text(self.presence(disconnected_with));
        if let Err(e) = self.server.adapter.gateway_publish(&self.app, INBOUND_TOPIC, &frame, None).await {
            tracing::warn!(connection = %self.handle.socket_id, error = %e, "a gateway presence event was not published");
        }
    }

    /// The presence frame of this connection: connected (`None`) or disconnected with a code.
    fn presence(&self, disconnected_with: Option<i64>) -> String {
        let sender = Sender {
            connection_id: Some(&self.handle.socket_id),
            subject: self.subject.as_deref(),
            permissions: Some(&self.permissions),
        };
        presence_frame(&sender, disconnected_with)
    }

    async fn write_queued(&mut self, first: Outgoing, outbound: &mut mpsc::Receiver<Outgoing>) -> Result<(), End> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(out) = next.take() {
            let message = if out.binary { Message::binary(out.frame) } else { Message::text(out.frame) };
            self.guarded_write(|ws| ws.feed(message)).await?;
            written += 1;
            if written < WRITE_BATCH {
                next = outbound.try_recv().ok();
            }
        }
        self.guarded_write(|ws| ws.flush()).await?;
        self.server.metrics.messages_sent.inc_by(written as u64);
        Ok(())
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        self.guarded_write(|ws| ws.send(message)).await?;
        self.server.metrics.messages_sent.inc();
        Ok(())
    }

    /// One write under the shared rule (`websocket::write_guarded`).
    async fn guarded_write<'a, F>(&'a mut self, write: impl FnOnce(&'a mut WebSocketStream<S>) -> F) -> Result<(), End>
    where
        F: Future<Output = Result<(), tokio_websockets::Error>> + 'a,
    {
        let handle = self.handle.clone();
        write_guarded(&handle, write(&mut self.ws)).await.map_err(|failed| match failed {
            WriteFailed::Gone => End::Gone(None),
            WriteFailed::Abort(request) => End::Abort(request),
        })
    }

    async fn close(&mut self, request: &CloseRequest) {
        if let Some(refusal) = self.refusal.take() {
            let _ = tokio::time::timeout(CLOSE_LINGER, self.ws.send(Message::text(refusal))).await;
        }
        let close = close_frame(request.code, &request.message);
        if matches!(tokio::time::timeout(CLOSE_LINGER, self.ws.send(close)).await, Ok(Ok(()))) {
            let _ = tokio::time::timeout(CLOSE_LINGER, async { while self.ws.next().await.is_some() {} }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_twelve_hex_digits() {
        for _ in 0..100 {
            let id = new_connection_id();
            assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn the_forbidden_reason_is_the_sdks_verbatim() {
        // realtime-pubsub-client test/onerror.test.ts compares the close reason to this.
        assert_eq!(FORBIDDEN_SECURE, "Subscription to secure topic is forbidden!");
    }
}
