//! The task that owns one WebSocket: handshake, inbound frames, the outbound queue,
//! liveness pings, and clean-up when the socket ends.
//!
//! One task per socket multiplexes four sources with `select!`: frames from the client,
//! frames queued by broadcasts, the ping timer, and close requests (terminate, slow
//! consumer, shutdown). Replies to the client's own requests are written directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use switchboard_protocol::frame::{encode_json_data_frame, encode_server_frame, push_json_string};
use switchboard_protocol::messages::{SigninData, SubscribeData, UnsubscribeData, UserData};
use switchboard_protocol::signature::verify_user;
use switchboard_protocol::{Data, ErrorCode, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_websockets::{Message, WebSocketStream};

use super::app::App;
use super::channel_rules::{self, ClientEventGate, Relayed, SubscribeRequest};
use crate::connection_handle::{CloseRequest, ConnectionHandle};
use crate::state::ServerState;
use crate::websocket::{CLOSE_LINGER, WriteFailed, close_after_read_error, close_frame, write_guarded};

/// Frames written per wake-up before flushing, so a burst becomes few syscalls.
const WRITE_BATCH: usize = 64;

/// Why the socket loop ended.
enum End {
    /// The client closed or the transport failed.
    Gone,
    /// We decided to close.
    Close(CloseRequest),
    /// A close was requested while the socket could not take writes (a client that stopped
    /// reading): drop the TCP connection without a goodbye.
    Abort(CloseRequest),
}

/// Per-socket state owned by the task.
struct Connection<S> {
    ws: WebSocketStream<S>,
    app: Arc<App>,
    server: Arc<ServerState>,
    handle: Arc<ConnectionHandle>,
    /// Subscribed channels and the presence user id each joined as.
    subscriptions: HashMap<String, Option<String>>,
    /// The user signed in with `pusher:signin`.
    user_id: Option<String>,
    last_inbound: Instant,
    ping_sent: Option<Instant>,
    /// The client has used WebSocket control frames, so it can answer control pings.
    speaks_control_frames: bool,
    client_events: ClientEventGate,
    /// `cleanup` ran (a close runs it before waiting for the client's close frame).
    cleaned_up: bool,
}

/// Refuse a socket before it is registered: `pusher:error` then a close with `code`
/// (4001 unknown app, 4004 over quota, 4100 over capacity, 4200 shutting down).
pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    code: ErrorCode,
    message: &str,
) {
    let _ = ws.send(Message::text(error_frame(code.0, message))).await;
    let _ = ws.send(close_frame(code.0, message)).await;
    let _ = tokio::time::timeout(CLOSE_LINGER, async { while ws.next().await.is_some() {} }).await;
}

/// Serve one accepted socket of `app` until it ends. The app connection slot must already
/// be reserved; it is released here.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    app: Arc<App>,
    server: Arc<ServerState>,
) {
    let (queue, mut outbound) = mpsc::channel(server.config.max_queued_messages.max(1));
    let handle = Arc::new(ConnectionHandle::new(server.next_connection_id(), new_socket_id(), queue));
    app.register(&handle);
    let mut shutdown = server.shutdown.clone();
    server.metrics.connections.inc();
    server.metrics.connections_total.inc();
    let mut conn = Connection {
        ws,
        app,
        server: server.clone(),
        handle: handle.clone(),
        subscriptions: HashMap::new(),
        user_id: None,
        last_inbound: Instant::now(),
        ping_sent: None,
        speaks_control_frames: false,
        client_events: ClientEventGate::new(),
        cleaned_up: false,
    };
    match conn.run(&mut outbound, &mut shutdown).await {
        End::Gone => {}
        End::Close(req) => {
            if req.code == 4100 {
                server.metrics.slow_consumer_disconnects.inc();
            }
            conn.close(&req).await;
        }
        End::Abort(req) => {
            if req.code == 4100 {
                server.metrics.slow_consumer_disconnects.inc();
            }
            tracing::debug!(socket_id = %handle.socket_id, code = req.code, "dropping a socket that does not read");
        }
    }
    conn.cleanup();
    server.metrics.connections.dec();
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn run(&mut self, outbound: &mut mpsc::Receiver<Bytes>, shutdown: &mut watch::Receiver<bool>) -> End {
        let established = format!(
            "{{\"socket_id\":\"{}\",\"activity_timeout\":{}}}",
            self.handle.socket_id, self.app.config.activity_timeout
        );
        if self
            .send(encode_server_frame("pusher:connection_established", None, Some(&established), None))
            .await
            .is_err()
        {
            return End::Gone;
        }
        // The futures that outlive one turn of the loop are created once: re-creating a timer
        // or a waiter per delivered frame is measurable at 10,000 subscribers.
        let handle = self.handle.clone();
        let close_requested = handle.close_requested();
        let shutting_down = async move {
            // Ok when told to stop, Err when the server vanished: both end the socket.
            let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
        };
        let timer = tokio::time::sleep_until(self.ping_deadline());
        tokio::pin!(close_requested, shutting_down, timer);
        loop {
            let deadline = self.ping_deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                inbound = self.ws.next() => match inbound {
                    None => return End::Gone,
                    Some(Err(e)) => {
                        tracing::debug!(socket_id = %self.handle.socket_id, "socket error: {e}");
                        close_after_read_error(&mut self.ws, &e).await;
                        return End::Gone;
                    }
                    Some(Ok(message)) => {
                        self.last_inbound = Instant::now();
                        self.ping_sent = None;
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
                    if self.ping_sent.is_some() {
                        return End::Close(CloseRequest { code: 4201, message: "Pong reply not received in time".into() });
                    }
                    let ping = if self.speaks_control_frames {
                        Message::ping(Bytes::new())
                    } else {
                        Message::text(encode_server_frame("pusher:ping", None, Some("{}"), None))
                    };
                    if let Err(end) = self.send_message(ping).await {
                        return end;
                    }
                    self.ping_sent = Some(Instant::now());
                }
                req = &mut close_requested => {
                    // What was queued before the close request goes first (the queue is
                    // bounded, and each write is guarded against a client that stopped reading).
                    while let Ok(frame) = outbound.try_recv() {
                        if let Err(end) = self.write_queued(frame, outbound).await {
                            return end;
                        }
                    }
                    return End::Close(req);
                }
                // Also taken if the server vanished without saying so.
                () = &mut shutting_down => {
                    // Deliver what is already queued (a member_removed, say) before the 4200.
                    while let Ok(frame) = outbound.try_recv() {
                        if let Err(end) = self.write_queued(frame, outbound).await {
                            return end;
                        }
                    }
                    return End::Close(CloseRequest { code: 4200, message: "Server is shutting down; reconnect".into() });
                }
            }
        }
    }

    /// When the timer next fires: a ping after `ping_interval` of client silence, then the
    /// end of the pong wait.
    fn ping_deadline(&self) -> Instant {
        match self.ping_sent {
            None => self.last_inbound + Duration::from_secs(self.app.config.ping_interval),
            Some(sent) => sent + self.app.config.pong_timeout(),
        }
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
        self.send_message(Message::text(text)).await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), End> {
        let handle = self.handle.clone();
        guarded(&handle, self.ws.send(message)).await?;
        self.server.metrics.messages_sent.inc();
        Ok(())
    }

    async fn send_error(&mut self, code: ErrorCode, message: &str) -> Result<(), End> {
        self.send(error_frame(code.0, message)).await
    }

    async fn subscription_error(&mut self, channel: &str, kind: &str, status: u16, message: &str) -> Result<(), End> {
        let mut data = String::from("{\"type\":");
        push_json_string(&mut data, kind);
        data.push_str(",\"error\":");
        push_json_string(&mut data, message);
        data.push_str(&format!(",\"status\":{status}}}"));
        self.send(encode_server_frame("pusher:subscription_error", Some(channel), Some(&data), None)).await
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        if message.is_ping() || message.is_pong() {
            // tokio-websockets answers pings itself; remember the client speaks control frames.
            self.speaks_control_frames = true;
            return Ok(());
        }
        if message.is_close() {
            return Ok(()); // the stream ends after the close handshake
        }
        self.server.metrics.messages_received.inc();
        let Some(text) = message.as_text() else {
            return self.send_error(ErrorCode::GENERIC, "Binary frames are not supported; send JSON text frames").await;
        };
        let limit = self.app.config.max_message_size;
        if text.len() > limit {
            let msg = format!("Message of {} bytes exceeds the limit of {limit} bytes", text.len());
            return self.send_error(ErrorCode::GENERIC, &msg).await;
        }
        let frame = match Frame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                return self.send_error(ErrorCode::GENERIC, &format!("Invalid message format: {e}")).await;
            }
        };
        match frame.event.as_str() {
            "pusher:ping" => self.send(encode_server_frame("pusher:pong", None, Some("{}"), None)).await,
            "pusher:pong" => Ok(()),
            "pusher:subscribe" => self.on_subscribe(&frame).await,
            "pusher:unsubscribe" => self.on_unsubscribe(&frame).await,
            "pusher:signin" => self.on_signin(&frame).await,
            event if event.starts_with("client-") => self.on_client_event(frame).await,
            event => {
                let msg = format!(
                    "Unknown event {event:?}: clients may send pusher:ping, pusher:pong, pusher:subscribe, pusher:unsubscribe, pusher:signin and client- events"
                );
                self.send_error(ErrorCode::GENERIC, &msg).await
            }
        }
    }

    async fn on_subscribe(&mut self, frame: &Frame) -> Result<(), End> {
        let data: SubscribeData = match frame.data.parse() {
            Ok(data) => data,
            Err(e) => {
                return self
                    .send_error(
                        ErrorCode::GENERIC,
                        &format!("pusher:subscribe needs data {{channel, auth?, channel_data?}}: {e}"),
                    )
                    .await;
            }
        };
        let channel = data.channel.as_str();
        let request =
            SubscribeRequest { channel, auth: data.auth.as_deref(), channel_data: data.channel_data.as_deref() };
        let subscribed = channel_rules::subscribe(
            &self.server,
            &self.app,
            &self.handle,
            self.user_id.as_deref(),
            &mut self.subscriptions,
            &request,
            true,
        )
        .await;
        match subscribed {
            Ok(subscribed) => {
                self.send(encode_server_frame(
                    "pusher_internal:subscription_succeeded",
                    Some(channel),
                    Some(&subscribed.data),
                    None,
                ))
                .await?;
                match subscribed.cached {
                    Some(Some(frame)) => self.send_bytes(frame).await?,
                    Some(None) => {
                        self.send(encode_server_frame("pusher:cache_miss", Some(channel), None, None)).await?
                    }
                    None => {}
                }
                // Confirmed: the channel's events follow (in a cluster, those ordered after the join).
                self.app.go_live(self.handle.id, channel, subscribed.since);
                Ok(())
            }
            Err(refusal) => self.subscription_error(channel, refusal.kind, refusal.status, &refusal.message).await,
        }
    }

    async fn send_bytes(&mut self, frame: Bytes) -> Result<(), End> {
        self.send_message(Message::text(frame)).await
    }

    async fn on_unsubscribe(&mut self, frame: &Frame) -> Result<(), End> {
        match frame.data.parse::<UnsubscribeData>() {
            Ok(data) => {
                if self.subscriptions.remove(&data.channel).is_some() {
                    channel_rules::leave(&self.server, &self.app, &self.handle, &data.channel).await;
                }
                Ok(())
            }
            Err(e) => {
                self.send_error(ErrorCode::GENERIC, &format!("pusher:unsubscribe needs data {{channel}}: {e}")).await
            }
        }
    }

    async fn on_signin(&mut self, frame: &Frame) -> Result<(), End> {
        let data: SigninData = match frame.data.parse() {
            Ok(data) => data,
            Err(e) => {
                return self
                    .send_error(ErrorCode::GENERIC, &format!("pusher:signin needs data {{auth, user_data}}: {e}"))
                    .await;
            }
        };
        let (key, secret) = (self.app.config.key.as_str(), self.app.config.secret.as_str());
        if !verify_user(key, secret, &data.auth, &self.handle.socket_id, &data.user_data) {
            let msg = format!(
                "Invalid signin signature: expected HMAC-SHA256 hex of \"{}::user::<user_data>\"",
                self.handle.socket_id
            );
            return self.send_error(ErrorCode::UNAUTHORIZED, &msg).await;
        }
        let user = match serde_json::from_str::<UserData>(&data.user_data) {
            Ok(user) if !user.id.is_empty() => user,
            _ => {
                return self
                    .send_error(ErrorCode::UNAUTHORIZED, "user_data must be a JSON object with a non-empty string id")
                    .await;
            }
        };
        if let Some(previous) = self.user_id.take()
            && previous != user.id
        {
            self.app.sign_out(self.handle.id, &previous);
            // The old user's channel is not this socket's any more.
            let old_channel = format!("{}{previous}", switchboard_protocol::channel::SERVER_TO_USER_PREFIX);
            if self.subscriptions.remove(&old_channel).is_some() {
                channel_rules::leave(&self.server, &self.app, &self.handle, &old_channel).await;
            }
        }
        self.app.sign_in(&self.handle, &user.id);
        self.user_id = Some(user.id);
        let mut reply = String::from("{\"user_data\":");
        push_json_string(&mut reply, &data.user_data);
        reply.push('}');
        self.send(encode_server_frame("pusher:signin_success", None, Some(&reply), None)).await
    }

    async fn on_client_event(&mut self, frame: Frame) -> Result<(), End> {
        let admitted = self.client_events.admit(&self.app, &self.subscriptions, &frame.event, frame.channel.as_deref());
        let (channel, user_id) = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => return self.send_error(refused.code, &refused.message).await,
        };
        let text = match &frame.data {
            // A string holding a JSON object or array is relayed as that JSON, as Reverb
            // 1.6.1+ decodes it (python-reverb sends its data so); any other string as is.
            Data::String(s) if is_json_container(s) => {
                encode_json_data_frame(&frame.event, Some(channel), Some(s.trim()), user_id.as_deref())
            }
            Data::String(s) => encode_server_frame(&frame.event, Some(channel), Some(s), user_id.as_deref()),
            Data::Json(raw) => encode_json_data_frame(&frame.event, Some(channel), Some(raw), user_id.as_deref()),
            Data::Absent => encode_json_data_frame(&frame.event, Some(channel), None, user_id.as_deref()),
        };
        let relayed = Relayed {
            channel,
            event: frame.event,
            frame: Bytes::from(text),
            data: frame.data.as_text().map(str::to_owned),
            user_id,
        };
        if let Err(e) =
            channel_rules::relay_client_event(&self.server, &self.app, &self.handle.socket_id, relayed).await
        {
            return self.send_error(ErrorCode::GENERIC, &format!("The client event was not sent: {e}")).await;
        }
        Ok(())
    }

    /// Say why (`pusher:error`), send the close frame, leave every channel, then wait briefly
    /// for the client's close frame.
    ///
    /// Leaving before the wait matters: the other members see `member_removed` and webhooks
    /// (`member_removed`, `channel_vacated`) are queued at once, not after a client that does
    /// not answer the close has been waited for; at shutdown that wait used to outlast the
    /// grace period, and the webhooks of the last sockets were lost.
    async fn close(&mut self, req: &CloseRequest) {
        let goodbye = async {
            self.ws.send(Message::text(error_frame(req.code, &req.message))).await?;
            self.ws.send(close_frame(req.code, &req.message)).await
        };
        let sent = matches!(tokio::time::timeout(CLOSE_LINGER, goodbye).await, Ok(Ok(())));
        self.cleanup();
        if sent {
            let _ = tokio::time::timeout(CLOSE_LINGER, async { while self.ws.next().await.is_some() {} }).await;
        }
    }

    /// Leave every channel, sign out, and give back the connection slots. Runs once.
    fn cleanup(&mut self) {
        if self.cleaned_up {
            return;
        }
        self.cleaned_up = true;
        if let Some(user_id) = self.user_id.take() {
            self.app.sign_out(self.handle.id, &user_id);
        }
        let channels = self.subscriptions.drain().map(|(channel, _)| channel).collect();
        channel_rules::leave_all(&self.server, &self.app, &self.handle, channels);
        self.server.release_connection();
    }
}

/// Run one write under the shared rule (`websocket::write_guarded`).
async fn guarded<T>(
    handle: &ConnectionHandle,
    write: impl Future<Output = Result<T, tokio_websockets::Error>>,
) -> Result<T, End> {
    write_guarded(handle, write).await.map_err(|failed| match failed {
        WriteFailed::Gone => End::Gone,
        WriteFailed::Abort(request) => End::Abort(request),
    })
}

/// True if `text` is a JSON object or array.
fn is_json_container(text: &str) -> bool {
    let trimmed = text.trim_start();
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

fn error_frame(code: u16, message: &str) -> String {
    let mut data = format!("{{\"code\":{code},\"message\":");
    push_json_string(&mut data, message);
    data.push('}');
    encode_server_frame("pusher:error", None, Some(&data), None)
}

/// A fresh socket id, `\d+\.\d+` as `pusher-http-node validateSocketId` requires.
pub(crate) fn new_socket_id() -> String {
    format!("{}.{}", rand::random_range(1..1_000_000_000u32), rand::random_range(1..1_000_000_000u32))
}
