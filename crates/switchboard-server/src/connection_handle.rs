//! The shared half of a socket: what other tasks use to queue frames for it or close it.
//!
//! The socket's own task owns the WebSocket; everyone else holds an
//! `Arc<ConnectionHandle>` and only ever does non-blocking things with it.
//!
//! ```
//! use switchboard_server::connection_handle::CloseRequest;
//! // The first close requested for a socket is the one it performs, e.g. a slow consumer's:
//! let request = CloseRequest { code: 4100, message: "Too many unsent messages".into() };
//! assert!((4100..4200).contains(&request.code), "4100-4199: reconnect after a backoff");
//! ```

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

/// A close the socket task should perform: `pusher:error` with `code`, then a close frame.
///
/// ```
/// use switchboard_protocol::{CloseAction, ErrorCode};
/// use switchboard_server::connection_handle::CloseRequest;
/// let slow = CloseRequest { code: 4100, message: "Too many unsent messages".into() };
/// let kicked = CloseRequest { code: 4009, message: "You got disconnected by the app.".into() };
/// // The code tells the client what to do next.
/// assert_eq!(ErrorCode(slow.code).close_action(), CloseAction::Backoff);
/// assert_eq!(ErrorCode(kicked.code).close_action(), CloseAction::Stop);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The Pusher code (sent in `pusher:error` and as the WebSocket close code).
    pub code: u16,
    /// Why.
    pub message: String,
}

/// Handle to one connected socket.
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
/// use futures_util::FutureExt as _;
/// use switchboard_server::adapter::Publish;
/// use switchboard_server::{Adapter, LocalAdapter, Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// let (mut sender, sender_id) = connect(&server).await?;
/// let (mut other, _) = connect(&server).await?;
/// subscribe(&mut sender, serde_json::json!({ "channel": "news" })).await?;
/// subscribe(&mut other, serde_json::json!({ "channel": "news" })).await?;
/// // Handles are matched by `socket_id` to leave the sender out of its own broadcast.
/// let app = server.app("1000").ok_or("the development app")?;
/// let frame = Bytes::from_static(br#"{"event":"greet","channel":"news","data":"{}"}"#);
/// let publish = Publish { channel: "news", frame, except_socket_id: Some(&sender_id), remember: false };
/// LocalAdapter.publish(&app, publish).await?;
/// assert!(next_text(&mut other).await.contains("greet"));
/// drop((sender, other));
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug)]
pub struct ConnectionHandle<F = Bytes> {
    /// Process-unique id.
    pub id: u64,
    /// The Pusher socket id, `\d+\.\d+`.
    pub socket_id: Box<str>,
    queue: mpsc::Sender<F>,
    close: Mutex<Option<CloseRequest>>,
    close_notify: Notify,
    /// The close a full queue asks for (Pusher: 4100; the gateway: 1013).
    slow_close: (u16, &'static str),
    /// How channel frames are spoken to this socket.
    pub(crate) wire: Wire,
}

/// The protocol a channel subscriber speaks: channel frames are encoded the Pusher way and
/// transcoded, at most once per publish, for subscribers of another wire (`fanout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Pusher Channels protocol v7.
    Pusher,
    /// RealtimeX: Pusher channels as Socket.IO events.
    RealtimeX,
}

/// What a full Pusher queue closes with.
const PUSHER_SLOW_CLOSE: (u16, &str) = (4100, "Too many unsent messages: the client reads slower than events arrive");

impl ConnectionHandle {
    pub(crate) fn new(id: u64, socket_id: String, queue: mpsc::Sender<Bytes>) -> Self {
        Self::with_slow_close(id, socket_id, queue, PUSHER_SLOW_CLOSE)
    }

    /// A RealtimeX socket's handle: Pusher channels, Socket.IO frames.
    pub(crate) fn realtimex(id: u64, socket_id: String, queue: mpsc::Sender<Bytes>) -> Self {
        Self { wire: Wire::RealtimeX, ..Self::new(id, socket_id, queue) }
    }
}

impl<F: Clone> ConnectionHandle<F> {
    /// A handle whose full queue asks for the close `slow_close` (code, reason).
    pub(crate) fn with_slow_close(
        id: u64,
        socket_id: String,
        queue: mpsc::Sender<F>,
        slow_close: (u16, &'static str),
    ) -> Self {
        Self {
            id,
            socket_id: socket_id.into_boxed_str(),
            queue,
            close: Mutex::new(None),
            close_notify: Notify::new(),
            slow_close,
            wire: Wire::Pusher,
        }
    }

    /// Queue an encoded frame. A full queue means the client reads slower than events
    /// arrive: the socket is closed with 4100 (reconnect after a backoff) instead of
    /// buffering without bound or stalling everyone else. Returns false if not queued.
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
    /// use futures_util::FutureExt as _;
    /// use switchboard_server::adapter::Publish;
    /// use switchboard_server::{Adapter, LocalAdapter, Server, ServerConfig};
    ///
    /// // Room for one queued frame per socket.
    /// let server = Server::start(ServerConfig { port: 0, max_queued_messages: 1, ..ServerConfig::default() }).await?;
    /// let (mut ws, _) = connect(&server).await?;
    /// subscribe(&mut ws, serde_json::json!({ "channel": "news" })).await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// let frame = Bytes::from_static(br#"{"event":"tick","channel":"news","data":"1"}"#);
    /// let publish = Publish { channel: "news", frame, except_socket_id: None, remember: false };
    /// // The single-process adapter's futures are ready at once, so the socket's task cannot
    /// // drain the queue in between:
    /// LocalAdapter.publish(&app, publish.clone()).now_or_never().ok_or("ready")??;
    /// // Queue full: the second frame is not queued and the socket is closed with 4100.
    /// LocalAdapter.publish(&app, publish).now_or_never().ok_or("ready")??;
    /// let mut texts = Vec::new();
    /// loop {
    ///     let text = next_text(&mut ws).await;
    ///     if text.is_empty() { break }
    ///     texts.push(text);
    /// }
    /// assert_eq!(texts.iter().filter(|t| t.contains("tick")).count(), 1, "{texts:?}");
    /// assert!(texts.iter().any(|t| t.contains("4100")), "{texts:?}");
    /// drop(ws);
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn send(&self, frame: &F) -> bool {
        match self.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.terminate(self.slow_close.0, self.slow_close.1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Ask the socket's task to close with `code`. The first request wins.
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
    /// use futures_util::FutureExt as _;
    /// use switchboard_server::adapter::Publish;
    /// use switchboard_server::{Adapter, LocalAdapter, Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let (mut ws, socket_id) = connect(&server).await?;
    /// join_presence(&mut ws, &socket_id, "presence-room", "42").await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// // Terminating a user asks each of its sockets to close with 4009.
    /// LocalAdapter.terminate_user(&app, "42").await?;
    /// let error = next_text(&mut ws).await;
    /// assert!(error.contains("pusher:error") && error.contains("4009"), "{error}");
    /// drop(ws);
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn terminate(&self, code: u16, message: &str) {
        let mut close = self.close.lock().unwrap_or_else(|p| p.into_inner());
        if close.is_none() {
            *close = Some(CloseRequest { code, message: message.to_owned() });
            // Every waiter: the socket task's loop and a write it is stuck in both wait
            // (with notify_one the loop's could take the wake-up while the write, the one
            // being polled, kept waiting for its full timeout).
            self.close_notify.notify_waiters();
        }
    }

    /// Wait until someone asked for a close, and return the request.
    pub(crate) async fn close_requested(&self) -> CloseRequest {
        loop {
            // Registered before the check: `notify_waiters` keeps no permit, so a request
            // made between the check and the wait must still wake this one.
            let notified = self.close_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(req) = self.close.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return req;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_close_request_wakes_every_waiter() {
        let (tx, _rx) = mpsc::channel::<Bytes>(1);
        let handle = std::sync::Arc::new(ConnectionHandle::new(1, "1.1".into(), tx));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let handle = handle.clone();
                tokio::spawn(async move { handle.close_requested().await.code })
            })
            .collect();
        tokio::task::yield_now().await; // both are waiting
        handle.terminate(4009, "bye");
        for waiter in waiters {
            let code = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
            assert_eq!(code.expect("woken").expect("joined"), 4009);
        }
    }

    #[tokio::test]
    async fn a_full_queue_asks_for_a_4100_close_and_never_blocks() {
        let (tx, mut rx) = mpsc::channel(2);
        let handle = ConnectionHandle::new(1, "1.1".into(), tx);
        let frame = Bytes::from_static(b"{}");
        assert!(handle.send(&frame));
        assert!(handle.send(&frame));
        assert!(!handle.send(&frame), "third frame does not fit");
        let req = handle.close_requested().await;
        assert_eq!(req.code, 4100);
        // Two waiters at once (the socket loop and a stuck write) both wake.
        let (a, b) = (handle.close_requested(), handle.close_requested());
        assert_eq!(tokio::join!(a, b).0.code, 4100);
        // The first request wins: a later terminate does not replace it.
        handle.terminate(4009, "later");
        assert_eq!(handle.close_requested().await.code, 4100);
        assert_eq!(rx.recv().await, Some(frame.clone()));
        drop(rx);
        assert!(!handle.send(&frame), "closed queue");
    }
}
