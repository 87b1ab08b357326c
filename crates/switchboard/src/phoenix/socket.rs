//! The Phoenix socket: options, the cloneable handle, channels, and the connection task.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::phoenix::{Message, Payload, RawMessage, Vsn};
use switchboard_protocol::phoenix_presence::{PresenceEvent, PresenceTracker, Presences};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_websockets::ClientBuilder;

use super::{reconnect_after, rejoin_after};
use crate::delivery::{Dispatcher, Outbox, SlowConsumer, Stall};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventStream, HandlerId};
use crate::listeners::Listeners;
use crate::queue::Burst;
use crate::state::ConnectionState;

type Ws = crate::transport::ClientSocket;
type ParamsFn = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;
type Backoff = Arc<dyn Fn(u32) -> Duration + Send + Sync>;

/// Pushes waiting for a join (or a connection), per channel, at most.
const MAX_BUFFERED_PUSHES: usize = 1_000;

/// How to reach and talk to a Phoenix endpoint.
///
/// ```
/// use switchboard::phoenix::SocketOptions;
/// use std::time::Duration;
/// let options = SocketOptions::new("wss://chat.example.com/socket")
///     .params(&[("token", "user-token")])
///     .heartbeat(Duration::from_secs(15));
/// assert!(options.url().starts_with("wss://chat.example.com/socket/websocket?token=user-token&vsn=2.0.0"));
/// ```
#[derive(Clone)]
pub struct SocketOptions {
    endpoint: String,
    params: ParamsFn,
    auth_token: Option<String>,
    vsn: Vsn,
    heartbeat: Duration,
    timeout: Duration,
    reconnect_after: Backoff,
    rejoin_after: Backoff,
    event_queue: usize,
    slow_consumer: SlowConsumer,
    healthy_after: Duration,
    max_message_size: usize,
    io_runtime: crate::IoRuntime,
}

impl std::fmt::Debug for SocketOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketOptions")
            .field("endpoint", &self.endpoint)
            .field("vsn", &self.vsn)
            .finish_non_exhaustive()
    }
}

impl SocketOptions {
    /// Options for the endpoint `ws[s]://host:port/socket` (`/websocket` is appended).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// assert_eq!(SocketOptions::new("ws://127.0.0.1:4000/socket").url(), "ws://127.0.0.1:4000/socket/websocket?vsn=2.0.0");
    /// ```
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            params: Arc::new(Vec::new),
            auth_token: None,
            vsn: Vsn::V2,
            heartbeat: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            reconnect_after: Arc::new(reconnect_after),
            rejoin_after: Arc::new(rejoin_after),
            event_queue: 1024,
            slow_consumer: SlowConsumer::default(),
            healthy_after: crate::backoff::HEALTHY_AFTER,
            max_message_size: crate::transport::DEFAULT_MAX_MESSAGE_SIZE,
            io_runtime: crate::IoRuntime::default(),
        }
    }

    /// Which runtime runs the socket's task: the library's I/O thread (the default), or the
    /// caller's (see [`crate::io_thread`]).
    ///
    /// ```
    /// use switchboard::IoRuntime;
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").io_runtime(IoRuntime::Caller);
    /// # let _ = options;
    /// ```
    pub fn io_runtime(mut self, runtime: crate::IoRuntime) -> Self {
        self.io_runtime = runtime;
        self
    }

    /// The largest message accepted from the server (16 MiB). A larger one closes the socket
    /// with 1009 and a clear reason; the socket reconnects and rejoins its channels.
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").max_message_size(1024 * 1024);
    /// # let _ = options;
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.max(1024);
        self
    }

    /// Static connect params (sent in the query string).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").params(&[("room", "a b")]);
    /// assert!(options.url().contains("room=a%20b&vsn=2.0.0"));
    /// ```
    pub fn params(mut self, params: &[(&str, &str)]) -> Self {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.params = Arc::new(move || params.clone());
        self
    }

    /// Connect params from a closure, evaluated again at every reconnect (fresh tokens).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let issued = AtomicU32::new(0);
    /// let options = SocketOptions::new("ws://h/socket")
    ///     .params_fn(move || vec![("token".into(), format!("t{}", issued.fetch_add(1, Ordering::SeqCst)))]);
    /// assert!(options.url().contains("token=t0"));
    /// assert!(options.url().contains("token=t1")); // a fresh token for every attempt
    /// ```
    pub fn params_fn(mut self, params: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static) -> Self {
        self.params = Arc::new(params);
        self
    }

    /// A token sent in the `Sec-WebSocket-Protocol` header (Phoenix ≥ 1.8 `auth_token`).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("wss://chat.example.com/socket").auth_token("user-token");
    /// // The token travels in Sec-WebSocket-Protocol, not in the URL.
    /// assert!(!options.url().contains("user-token"));
    /// ```
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// The serializer (V2 by default; V1 for old servers).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// use switchboard::phoenix::Vsn;
    /// assert!(SocketOptions::new("ws://h/socket").vsn(Vsn::V1).url().ends_with("vsn=1.0.0"));
    /// ```
    pub fn vsn(mut self, vsn: Vsn) -> Self {
        self.vsn = vsn;
        self
    }

    /// Heartbeat interval, also the wait for its reply (30 s).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").heartbeat(std::time::Duration::from_secs(10));
    /// # let _ = options;
    /// ```
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Default timeout of joins and pushes (10 s).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").timeout(std::time::Duration::from_secs(3));
    /// # let _ = options;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reconnect delay by attempt number (1-based).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// use std::time::Duration;
    /// // 1 s, 2 s, 4 s … capped at 30 s.
    /// let options = SocketOptions::new("ws://h/socket")
    ///     .reconnect_after(|tries| Duration::from_secs(1 << tries.min(5)).min(Duration::from_secs(30)));
    /// # let _ = options;
    /// ```
    pub fn reconnect_after(mut self, f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.reconnect_after = Arc::new(f);
        self
    }

    /// Rejoin delay by attempt number (1-based).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").rejoin_after(|_| std::time::Duration::from_secs(2));
    /// # let _ = options;
    /// ```
    pub fn rejoin_after(mut self, f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.rejoin_after = Arc::new(f);
        self
    }

    /// Events waiting per stream before the socket stops being read for it (1024); see
    /// [`SocketOptions::slow_consumer`]. Also the bound on the events a channel holds for
    /// listeners attached after its join.
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").event_queue(65_536);
    /// # let _ = options;
    /// ```
    pub fn event_queue(mut self, capacity: usize) -> Self {
        self.event_queue = capacity.max(1);
        self
    }

    /// What happens when a listener reads slower than events arrive (default: backpressure,
    /// then drop for a listener stalled 10 s and report it), as for the Pusher client.
    ///
    /// ```
    /// use switchboard::SlowConsumer;
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").slow_consumer(SlowConsumer::DropAndReport);
    /// # let _ = options;
    /// ```
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// How long a socket must stay open before the reconnect table starts again from its
    /// first entry (10 s): a server that accepts and closes at once is retried further along
    /// the table (50, 100, 150 ms … 5 s), not every 10 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://h/socket").healthy_after(Duration::from_secs(30));
    /// # let _ = options;
    /// ```
    pub fn healthy_after(mut self, duration: Duration) -> Self {
        self.healthy_after = duration;
        self
    }

    /// The URL of one connection attempt (params re-evaluated).
    ///
    /// ```
    /// use switchboard::phoenix::SocketOptions;
    /// let options = SocketOptions::new("ws://127.0.0.1:4000/socket").params(&[("user_id", "7")]);
    /// assert_eq!(options.url(), "ws://127.0.0.1:4000/socket/websocket?user_id=7&vsn=2.0.0");
    /// ```
    pub fn url(&self) -> String {
        let mut query = form_urlencoded_pairs(&(self.params)());
        let vsn = match self.vsn {
            Vsn::V2 => "2.0.0",
            Vsn::V1 => "1.0.0",
        };
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("vsn=");
        query.push_str(vsn);
        format!("{}/websocket?{query}", self.endpoint)
    }
}

fn form_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

enum Command {
    Join {
        topic: String,
        params: Value,
        listeners: Arc<Listeners>,
        presence: Arc<Mutex<PresenceTracker>>,
        reply: oneshot::Sender<Result<Value>>,
    },
    Push {
        topic: String,
        event: String,
        payload: Value,
        reply: oneshot::Sender<Result<Value>>,
    },
    PushBinary {
        topic: String,
        event: String,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>>>,
    },
    Leave {
        topic: String,
        reply: oneshot::Sender<Result<Value>>,
    },
    Disconnect,
}

struct Shared {
    options: SocketOptions,
    /// For new channels' listeners (bound handlers run on its task).
    dispatcher: Dispatcher,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
}

/// A Phoenix socket. Clone it freely; the task ends on `disconnect()` or when the last handle
/// is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard::Error> {
/// use switchboard::phoenix::{Socket, SocketOptions};
/// let socket = Socket::connect(SocketOptions::new("ws://127.0.0.1:4000/socket")).await?;
/// let lobby = socket.channel("room:lobby", serde_json::json!({}));
/// let alerts = socket.clone().channel("alerts", serde_json::json!({})); // same connection
/// # let _ = (lobby, alerts);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Socket {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("state", &self.state().name()).finish_non_exhaustive()
    }
}

impl Socket {
    /// Start connecting in the background.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() {
    /// use switchboard::phoenix::{Socket, SocketOptions};
    /// // Returns at once; joins wait for the connection.
    /// let socket = Socket::new(SocketOptions::new("ws://127.0.0.1:4000/socket"));
    /// let room = socket.channel("room:lobby", serde_json::json!({}));
    /// # let _ = room;
    /// # }
    /// ```
    pub fn new(options: SocketOptions) -> Socket {
        let (commands, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ConnectionState::Initialized);
        let dispatcher = Dispatcher::start(8_192);
        let task = Task {
            options: options.clone(),
            state: state_tx,
            outbox: Outbox::new(dispatcher.clone(), options.slow_consumer),
            channels: HashMap::default(),
            replies: HashMap::new(),
            next_ref: 0,
            heartbeat_ref: None,
            tries: 0,
        };
        crate::io_thread::spawn(options.io_runtime, task.run(rx));
        Socket { shared: Arc::new(Shared { options, dispatcher, commands, state }) }
    }

    /// Connect and wait for the socket to open.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard::Error> {
    /// use switchboard::phoenix::{Socket, SocketOptions};
    /// let socket = Socket::connect(SocketOptions::new("ws://127.0.0.1:4000/socket")).await?; // fails if the first attempt does
    /// # let _ = socket;
    /// # Ok(()) }
    /// ```
    pub async fn connect(options: SocketOptions) -> Result<Socket> {
        let socket = Socket::new(options);
        let mut rx = socket.shared.state.clone();
        let opened = rx.wait_for(|s| matches!(s, ConnectionState::Connected { .. }) || s.is_final());
        match tokio::time::timeout(socket.shared.options.timeout, opened).await {
            Ok(Ok(state)) if matches!(*state, ConnectionState::Connected { .. }) => {}
            _ => {
                let reason = match socket.state() {
                    ConnectionState::Unavailable { reason, .. } => reason,
                    other => other.name().to_owned(),
                };
                return Err(Error::new(
                    ErrorKind::Connection,
                    format!("cannot open {}: {reason}", socket.shared.options.endpoint),
                ));
            }
        }
        Ok(socket)
    }

    /// The connection state.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// println!("socket is {}", socket.state().name());
    /// # Ok(()) }
    /// ```
    pub fn state(&self) -> ConnectionState {
        self.shared.state.borrow().clone()
    }

    /// A receiver of state changes.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let mut states = socket.state_changes();
    /// while states.changed().await.is_ok() {
    ///     println!("{}", states.borrow().name());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    /// A channel for `topic` with join `params`. Join it with [`PhxChannel::join`].
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.join().await?;
    /// # Ok(()) }
    /// ```
    pub fn channel(&self, topic: &str, params: Value) -> PhxChannel {
        PhxChannel {
            socket: self.clone(),
            topic: topic.to_owned(),
            params,
            listeners: self.shared.dispatcher.channel_listeners(),
            presence: Arc::default(),
        }
    }

    /// Close for good.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// socket.disconnect().await; // every channel stops; the task ends
    /// # Ok(()) }
    /// ```
    pub async fn disconnect(&self) {
        let _ = self.shared.commands.send(Command::Disconnect);
        let mut rx = self.shared.state.clone();
        let _ = rx.wait_for(ConnectionState::is_final).await;
    }

    async fn request(
        &self,
        command: Command,
        answer: oneshot::Receiver<Result<Value>>,
        timeout: Duration,
        what: &str,
    ) -> Result<Value> {
        self.shared.commands.send(command).map_err(|_| Error::closed())?;
        match tokio::time::timeout(timeout + Duration::from_millis(200), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::closed()),
            Err(_) => Err(Error::new(ErrorKind::Timeout, format!("no reply to {what} within {timeout:?}"))),
        }
    }
}

/// One channel (topic) of a socket.
///
/// ```no_run
/// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
/// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
/// room.on("new_msg", |e| println!("{:?}", e.data()));
/// room.join().await?;
/// let reply = room.push("new_msg", serde_json::json!({"body": "hi"})).await?;
/// println!("{reply}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PhxChannel {
    socket: Socket,
    topic: String,
    params: Value,
    listeners: Arc<Listeners>,
    presence: Arc<Mutex<PresenceTracker>>,
}

impl std::fmt::Debug for PhxChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhxChannel").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl PhxChannel {
    /// The topic.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// assert_eq!(room.topic(), "room:lobby");
    /// # Ok(()) }
    /// ```
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Join; resolves to the `ok` response, or fails with the `error` response or a timeout.
    /// A refused join is retried in the background with the rejoin backoff (as phoenix.js
    /// does) until `leave()`, except "unmatched topic", which fails for good.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// let response = room.join().await?;
    /// println!("joined: {response}");
    /// # Ok(()) }
    /// ```
    pub async fn join(&self) -> Result<Value> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Join {
            topic: self.topic.clone(),
            params: self.params.clone(),
            listeners: self.listeners.clone(),
            presence: self.presence.clone(),
            reply,
        };
        self.socket
            .request(command, answer, self.socket.shared.options.timeout, &format!("the join of {}", self.topic))
            .await
    }

    /// Push `event`; resolves to the `ok` response, or fails with the `error` response or a
    /// timeout. Pushes made before the join are sent after it.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.join().await?;
    /// let reply = room.push("ping", serde_json::json!({"n": 1})).await?;
    /// println!("{reply}");
    /// # Ok(()) }
    /// ```
    pub async fn push(&self, event: &str, payload: Value) -> Result<Value> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Push { topic: self.topic.clone(), event: event.to_owned(), payload, reply };
        self.socket
            .request(command, answer, self.socket.shared.options.timeout, &format!("{event} on {}", self.topic))
            .await
    }

    /// Push `event` without waiting for a reply, for events the server does not answer (a
    /// Hub-style `shout`): queued at once, so casts and pushes go out in the order they were
    /// made; made before the join (or while the socket is down), they are sent after it.
    /// Fails only if the socket is gone.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.join().await?;
    /// room.cast("shout", serde_json::json!({"body": "first"}))?;
    /// room.cast("shout", serde_json::json!({"body": "second"}))?; // after the first
    /// # Ok(()) }
    /// ```
    pub fn cast(&self, event: &str, payload: Value) -> Result<()> {
        // Nobody waits on the reply: its receiver is dropped at once.
        let (reply, _) = oneshot::channel();
        let command = Command::Push { topic: self.topic.clone(), event: event.to_owned(), payload, reply };
        self.socket.shared.commands.send(command).map_err(|_| Error::closed())
    }

    /// Push `event` with a binary payload (a V2 binary frame); resolves to the binary reply
    /// (a JSON reply comes back as its text). The channel must be joined.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.join().await?;
    /// let reply = room.push_binary("upload", vec![0x89, b'P', b'N', b'G']).await?;
    /// println!("{} bytes back", reply.len());
    /// # Ok(()) }
    /// ```
    pub async fn push_binary(&self, event: &str, payload: Vec<u8>) -> Result<Vec<u8>> {
        let (reply, answer) = oneshot::channel();
        let command = Command::PushBinary { topic: self.topic.clone(), event: event.to_owned(), payload, reply };
        self.socket.shared.commands.send(command).map_err(|_| Error::closed())?;
        let timeout = self.socket.shared.options.timeout;
        match tokio::time::timeout(timeout + Duration::from_millis(200), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::closed()),
            Err(_) => {
                Err(Error::new(ErrorKind::Timeout, format!("no reply to {event} on {} within {timeout:?}", self.topic)))
            }
        }
    }

    /// Leave the channel (`phx_leave`); it will not rejoin.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.join().await?;
    /// room.leave().await?; // no rejoin after this
    /// # Ok(()) }
    /// ```
    pub async fn leave(&self) -> Result<Value> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Leave { topic: self.topic.clone(), reply };
        self.socket
            .request(command, answer, self.socket.shared.options.timeout, &format!("the leave of {}", self.topic))
            .await
    }

    /// Call `handler` for every `event` (`"*"` for all): data is the payload as JSON text.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.on("shout", |e| println!("{:?}", e.data()));
    /// room.on("*", |e| println!("any: {}", e.name()));
    /// # Ok(()) }
    /// ```
    pub fn on(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.listeners.bind(event, handler)
    }

    /// Every event of this channel as a stream (including `presence:join`, `presence:leave`,
    /// `presence:sync`, `phx_error`, `phx_close`).
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// let mut events = room.events();
    /// room.join().await?;
    /// while let Some(event) = events.recv().await {
    ///     println!("{} {:?}", event.name(), event.data());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> EventStream {
        self.listeners.stream(None, self.socket.shared.options.event_queue)
    }

    /// The channel's presence.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// let presence = room.presence();
    /// presence.on_sync(|| println!("members changed"));
    /// room.join().await?;
    /// let names = presence.list_by(|key, _| key.to_owned());
    /// println!("{names:?}");
    /// # Ok(()) }
    /// ```
    pub fn presence(&self) -> PresenceHandle {
        PresenceHandle { tracker: self.presence.clone(), listeners: self.listeners.clone() }
    }
}

/// Presence of a channel: `list`, and callbacks as phoenix.js `onJoin` / `onLeave` / `onSync`.
///
/// ```no_run
/// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
/// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
/// let presence = room.presence();
/// presence.on_join(|key, current, _joined| if current.is_none() { println!("{key} joined") });
/// presence.on_leave(|key, _current, _left| println!("{key} left"));
/// room.join().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PresenceHandle {
    tracker: Arc<Mutex<PresenceTracker>>,
    listeners: Arc<Listeners>,
}

impl std::fmt::Debug for PresenceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceHandle").finish_non_exhaustive()
    }
}

impl PresenceHandle {
    /// The presences by key (`{"metas": [...]}` each).
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.join().await?;
    /// for (key, presence) in room.presence().list() {
    ///     println!("{key}: {presence:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(&self) -> Presences {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner()).list().clone()
    }

    /// `list` with a chooser.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.join().await?;
    /// let keys: Vec<String> = room.presence().list_by(|key, _presence| key.to_owned());
    /// # let _ = keys;
    /// # Ok(()) }
    /// ```
    pub fn list_by<T>(&self, chooser: impl FnMut(&str, &Value) -> T) -> Vec<T> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner()).list_by(chooser)
    }

    /// `handler(key, current, joined)` for every join (data of `presence:join`).
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.presence().on_join(|key, current, joined| {
    ///     // `current` is None for a first join; Some for another device of the same user.
    ///     println!("{key} joined (first: {}) with {joined}", current.is_none());
    /// });
    /// # Ok(()) }
    /// ```
    pub fn on_join(&self, handler: impl Fn(&str, Option<&Value>, &Value) + Send + Sync + 'static) -> HandlerId {
        self.listeners.bind("presence:join", move |event| {
            if let Ok(v) = event.json::<Value>() {
                let current = v.get("current").filter(|c| !c.is_null());
                handler(v["key"].as_str().unwrap_or_default(), current, &v["joined"]);
            }
        })
    }

    /// `handler(key, current, left)` for every leave.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// room.presence().on_leave(|key, current, left| println!("{key} left {left}; still here: {current}"));
    /// # Ok(()) }
    /// ```
    pub fn on_leave(&self, handler: impl Fn(&str, &Value, &Value) + Send + Sync + 'static) -> HandlerId {
        self.listeners.bind("presence:leave", move |event| {
            if let Ok(v) = event.json::<Value>() {
                handler(v["key"].as_str().unwrap_or_default(), &v["current"], &v["left"]);
            }
        })
    }

    /// `handler()` after every state or diff.
    ///
    /// ```no_run
    /// # async fn run(socket: switchboard::phoenix::Socket) -> Result<(), switchboard::Error> {
    /// let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
    /// let presence = room.presence();
    /// let view = presence.clone();
    /// presence.on_sync(move || println!("{} online", view.list().len()));
    /// # Ok(()) }
    /// ```
    pub fn on_sync(&self, handler: impl Fn() + Send + Sync + 'static) -> HandlerId {
        self.listeners.bind("presence:sync", move |_| handler())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChanStatus {
    Joining,
    Joined,
    Errored,
    Leaving,
}

struct PendingPush {
    event: String,
    payload: Value,
    reply: oneshot::Sender<Result<Value>>,
    deadline: Instant,
}

struct Chan {
    params: Value,
    status: ChanStatus,
    join_ref: Option<String>,
    join_waiters: Vec<oneshot::Sender<Result<Value>>>,
    buffer: VecDeque<PendingPush>,
    listeners: Arc<Listeners>,
    presence: Arc<Mutex<PresenceTracker>>,
    rejoin_tries: u32,
    rejoin_at: Option<Instant>,
    /// Joined on an earlier connection (a rejoin opens no hold).
    joined_before: bool,
}

enum Awaiting {
    Join { topic: String, join_ref: String },
    Push { reply: oneshot::Sender<Result<Value>> },
    PushBinary { reply: oneshot::Sender<Result<Vec<u8>>> },
    Leave { topic: String, reply: oneshot::Sender<Result<Value>> },
}

struct PendingReply {
    awaiting: Awaiting,
    deadline: Instant,
}

struct Task {
    options: SocketOptions,
    state: watch::Sender<ConnectionState>,
    /// Delivery to listeners, with backpressure.
    outbox: Outbox,
    /// By topic; looked up for every received event, hence the fast (non-SipHash) hasher.
    channels: HashMap<String, Chan, foldhash::fast::RandomState>,
    replies: HashMap<String, PendingReply>,
    next_ref: u64,
    heartbeat_ref: Option<(String, Instant)>,
    tries: u32,
}

enum Flow {
    Reconnect(String),
    Stop,
}

impl Task {
    fn make_ref(&mut self) -> String {
        self.next_ref = self.next_ref.wrapping_add(1);
        self.next_ref.to_string()
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.state.send_replace(ConnectionState::Connecting);
            let url = self.options.url();
            match self.open(&url).await {
                Ok(mut ws) => {
                    let opened_at = Instant::now();
                    self.state.send_replace(ConnectionState::Connected { socket_id: String::new() });
                    let flow = self.serve(&mut ws, &mut commands).await;
                    // Only a socket that stayed open counts as a recovery: one that the server
                    // closes at once is retried further along the backoff table.
                    if opened_at.elapsed() >= self.options.healthy_after {
                        self.tries = 0;
                    }
                    match flow {
                        Flow::Stop => {
                            let _ = ws
                                .send(tokio_websockets::Message::close(
                                    Some(tokio_websockets::CloseCode::NORMAL_CLOSURE),
                                    "",
                                ))
                                .await;
                            return self.finish();
                        }
                        Flow::Reconnect(reason) => self.on_lost(&reason),
                    }
                }
                Err(reason) => self.on_lost(&reason),
            }
            self.tries += 1;
            let delay = (self.options.reconnect_after)(self.tries);
            self.state.send_replace(ConnectionState::Unavailable { retry_in: delay, reason: "reconnecting".into() });
            let deadline = Instant::now() + delay;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    command = commands.recv() => match command {
                        None | Some(Command::Disconnect) => return self.finish(),
                        Some(command) => self.on_command_offline(command),
                    },
                }
            }
        }
    }

    fn finish(&mut self) {
        for (_, pending) in self.replies.drain() {
            match pending.awaiting {
                Awaiting::Push { reply } | Awaiting::Leave { reply, .. } => {
                    let _ = reply.send(Err(Error::closed()));
                }
                Awaiting::PushBinary { reply } => {
                    let _ = reply.send(Err(Error::closed()));
                }
                Awaiting::Join { .. } => {}
            }
        }
        for chan in self.channels.values_mut() {
            for waiter in chan.join_waiters.drain(..) {
                let _ = waiter.send(Err(Error::closed()));
            }
            for push in chan.buffer.drain(..) {
                let _ = push.reply.send(Err(Error::closed()));
            }
            // Nothing more will come: the channel's streams end after what they hold.
            chan.listeners.close();
        }
        self.state.send_replace(ConnectionState::Disconnected);
    }

    async fn open(&self, url: &str) -> std::result::Result<Ws, String> {
        let mut builder = ClientBuilder::new().uri(url).map_err(|e| format!("invalid URL {url}: {e}"))?;
        if let Some(token) = &self.options.auth_token {
            let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
            let value = http::HeaderValue::try_from(format!("phoenix, base64url.bearer.phx.{encoded}"))
                .map_err(|e| e.to_string())?;
            builder = builder.add_header(http::header::SEC_WEBSOCKET_PROTOCOL, value).map_err(|e| e.to_string())?;
        }
        match tokio::time::timeout(
            self.options.timeout,
            crate::transport::connect(builder, url, self.options.max_message_size),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(format!("no answer from {url} within {:?}", self.options.timeout)),
        }
    }

    /// The socket is gone: channels error (they rejoin on the next open), replies fail.
    fn on_lost(&mut self, reason: &str) {
        tracing::debug!("phoenix socket lost: {reason}");
        self.heartbeat_ref = None;
        for (_, pending) in self.replies.drain() {
            let lost = Error::new(ErrorKind::Connection, format!("connection lost: {reason}"));
            match pending.awaiting {
                Awaiting::Push { reply } | Awaiting::Leave { reply, .. } => {
                    let _ = reply.send(Err(lost));
                }
                Awaiting::PushBinary { reply } => {
                    let _ = reply.send(Err(lost));
                }
                Awaiting::Join { .. } => {}
            }
        }
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for topic in topics {
            if let Some(chan) = self.channels.get_mut(&topic)
                && chan.status != ChanStatus::Leaving
            {
                chan.status = ChanStatus::Errored;
                chan.rejoin_at = None;
                let listeners = chan.listeners.clone();
                let data = json!({ "source": "transport", "reason": "connection_closed" }).to_string();
                self.outbox.deliver(&listeners, Event::internal(Some(&topic), "phx_error", Some(data)));
            }
        }
        self.channels.retain(|_, chan| chan.status != ChanStatus::Leaving);
    }

    fn on_command_offline(&mut self, command: Command) {
        match command {
            Command::Join { topic, params, listeners, presence, reply } => {
                let chan = self.channels.entry(topic).or_insert_with(|| Chan {
                    params: params.clone(),
                    status: ChanStatus::Errored,
                    join_ref: None,
                    join_waiters: Vec::new(),
                    buffer: VecDeque::new(),
                    listeners,
                    presence,
                    rejoin_tries: 0,
                    rejoin_at: None,
                    joined_before: false,
                });
                chan.params = params;
                chan.join_waiters.push(reply);
            }
            Command::Push { topic, event, payload, reply } => self.buffer_push(&topic, event, payload, reply),
            Command::Leave { topic, reply } => {
                self.channels.remove(&topic);
                let _ = reply.send(Ok(json!({})));
            }
            Command::PushBinary { topic, reply, .. } => {
                let _ = reply.send(Err(Error::new(
                    ErrorKind::Connection,
                    format!("not connected: binary push on {topic} not sent"),
                )));
            }
            Command::Disconnect => {}
        }
    }

    fn buffer_push(&mut self, topic: &str, event: String, payload: Value, reply: oneshot::Sender<Result<Value>>) {
        let deadline = Instant::now() + self.options.timeout;
        match self.channels.get_mut(topic) {
            None => {
                let _ = reply.send(Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!("{topic} is not joined: join() before push()"),
                )));
            }
            Some(chan) if chan.buffer.len() >= MAX_BUFFERED_PUSHES => {
                tracing::warn!(%topic, %event, "push buffer full: dropping the push");
                let _ = reply.send(Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!("{MAX_BUFFERED_PUSHES} pushes already wait for {topic}"),
                )));
            }
            Some(chan) => chan.buffer.push_back(PendingPush { event, payload, reply, deadline }),
        }
    }

    async fn send(&self, ws: &mut Ws, message: &Message) -> std::result::Result<(), String> {
        // A write may wait (a slow server): listeners must not wait on it for the events of
        // the read burst this write happens in.
        self.outbox.release_held();
        // Within the request timeout: a stalled write ends the connection.
        let text = tokio_websockets::Message::text(message.encode_client_text(self.options.vsn));
        crate::transport::send_within(ws, text, self.options.timeout).await
    }

    async fn send_join(&mut self, ws: &mut Ws, topic: &str) -> std::result::Result<(), String> {
        let join_ref = self.make_ref();
        let Some(chan) = self.channels.get_mut(topic) else { return Ok(()) };
        chan.status = ChanStatus::Joining;
        chan.join_ref = Some(join_ref.clone());
        chan.rejoin_at = None;
        let message = Message {
            join_ref: Some(join_ref.clone()),
            reference: Some(join_ref.clone()),
            topic: topic.to_owned(),
            event: "phx_join".into(),
            payload: Payload::Json(chan.params.clone()),
        };
        let deadline = Instant::now() + self.options.timeout;
        self.replies.insert(
            join_ref.clone(),
            PendingReply { awaiting: Awaiting::Join { topic: topic.to_owned(), join_ref }, deadline },
        );
        self.send(ws, &message).await
    }

    async fn send_push(&mut self, ws: &mut Ws, topic: &str, push: PendingPush) -> std::result::Result<(), String> {
        let reference = self.make_ref();
        let join_ref = self.channels.get(topic).and_then(|c| c.join_ref.clone());
        let message = Message {
            join_ref,
            reference: Some(reference.clone()),
            topic: topic.to_owned(),
            event: push.event,
            payload: Payload::Json(push.payload),
        };
        self.replies.insert(
            reference,
            PendingReply { awaiting: Awaiting::Push { reply: push.reply }, deadline: push.deadline },
        );
        self.send(ws, &message).await
    }

    /// Forget a channel whose leave completed — unless it was joined again meanwhile.
    fn remove_if_leaving(&mut self, topic: &str) {
        if self.channels.get(topic).is_some_and(|c| c.status == ChanStatus::Leaving) {
            self.channels.remove(topic);
        }
    }

    fn schedule_rejoin(&mut self, topic: &str) {
        if let Some(chan) = self.channels.get_mut(topic) {
            chan.rejoin_tries += 1;
            chan.rejoin_at = Some(Instant::now() + (self.options.rejoin_after)(chan.rejoin_tries));
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let replies = self.replies.values().map(|r| r.deadline);
        let buffered = self.channels.values().flat_map(|c| c.buffer.iter().map(|p| p.deadline));
        let rejoins = self.channels.values().filter_map(|c| c.rejoin_at);
        let heartbeat = self.heartbeat_ref.as_ref().map(|(_, sent)| *sent + self.options.heartbeat);
        replies.chain(buffered).chain(rejoins).chain(heartbeat).min().unwrap_or(far).min(far)
    }

    async fn serve(&mut self, ws: &mut Ws, commands: &mut mpsc::UnboundedReceiver<Command>) -> Flow {
        // Every channel that was joining or errored rejoins at once on open.
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for topic in topics {
            if let Err(reason) = self.send_join(ws, &topic).await {
                return Flow::Reconnect(reason);
            }
        }
        let mut next_heartbeat = Instant::now() + self.options.heartbeat;
        let timer = tokio::time::sleep_until(next_heartbeat);
        tokio::pin!(timer);
        loop {
            if self.outbox.is_blocked() {
                if let Err(flow) = self.wait_for_listeners(ws, commands).await {
                    return flow;
                }
                // Heartbeats written meanwhile are answered behind the unread frames.
                self.heartbeat_ref = None;
                next_heartbeat = Instant::now() + self.options.heartbeat;
            }
            let wake = self.next_deadline().min(next_heartbeat);
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            tokio::select! {
                inbound = ws.next() => {
                    // This frame and those already buffered, without going back through
                    // select!, waking each listener once for the burst.
                    let mut burst = Burst::new(self.outbox.batch());
                    let mut inbound = inbound;
                    loop {
                        if let Err(flow) = self.on_inbound(ws, inbound).await {
                            return flow;
                        }
                        if self.outbox.is_blocked() {
                            break; // a listener is full: read no further (backpressure)
                        }
                        match burst.next_buffered(ws) {
                            Some(next) => inbound = next,
                            None => break,
                        }
                    }
                    burst.end().await;
                    if self.heartbeat_ref.is_none() && next_heartbeat < Instant::now() {
                        next_heartbeat = Instant::now() + self.options.heartbeat;
                    }
                },
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Flow::Stop,
                    Some(command) => if let Err(reason) = self.on_command(ws, command).await {
                        return Flow::Reconnect(reason);
                    },
                },
                () = &mut timer => {
                    let now = Instant::now();
                    if let Some((_, sent)) = &self.heartbeat_ref
                        && *sent + self.options.heartbeat <= now
                    {
                        return Flow::Reconnect("heartbeat timeout".into());
                    }
                    if self.heartbeat_ref.is_none() && next_heartbeat <= now {
                        let reference = self.make_ref();
                        let beat = Message { join_ref: None, reference: Some(reference.clone()), topic: "phoenix".into(), event: "heartbeat".into(), payload: Payload::Json(json!({})) };
                        if let Err(reason) = self.send(ws, &beat).await {
                            return Flow::Reconnect(reason);
                        }
                        self.heartbeat_ref = Some((reference, now));
                        next_heartbeat = now + self.options.heartbeat;
                    }
                    if let Err(reason) = self.on_timers(ws, now).await {
                        return Flow::Reconnect(reason);
                    }
                }
            }
        }
    }

    /// A listener has no room: read nothing more until it has (TCP then slows the server).
    /// Commands are still served, and heartbeats still written (their replies wait unread),
    /// so the server keeps the socket. A listener that takes nothing for the stall limit
    /// meets the policy (see `delivery.rs`).
    async fn wait_for_listeners(
        &mut self,
        ws: &mut Ws,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> std::result::Result<(), Flow> {
        let mut next_beat = Instant::now() + self.options.heartbeat;
        loop {
            let Some((blocker, stall_at)) = self.outbox.flush() else { return Ok(()) };
            self.outbox.release_held();
            // A reply someone awaits (a push, a join) may sit behind the unread events, and
            // the consumer may be the one awaiting it: read on, keeping what arrives in order
            // behind the waiting events, up to a bound.
            let read_on = self.outbox.may_read_on(!self.replies.is_empty());
            let deadline = self.next_deadline();
            tokio::select! {
                () = blocker.wait() => {}
                () = tokio::time::sleep_until(stall_at) => {
                    if self.outbox.stalled() == Stall::Reconnect {
                        return Err(Flow::Reconnect("a listener took no event within the stall limit (policy StallAction::Reconnect)".into()));
                    }
                }
                // Reply deadlines, buffered pushes and rejoins still run.
                () = tokio::time::sleep_until(deadline) => self.on_timers(ws, Instant::now()).await.map_err(Flow::Reconnect)?,
                inbound = ws.next(), if read_on => self.on_inbound(ws, inbound).await?,
                () = tokio::time::sleep_until(next_beat) => {
                    let reference = self.make_ref();
                    let beat = Message { join_ref: None, reference: Some(reference), topic: "phoenix".into(), event: "heartbeat".into(), payload: Payload::Json(json!({})) };
                    self.send(ws, &beat).await.map_err(Flow::Reconnect)?;
                    next_beat = Instant::now() + self.options.heartbeat;
                }
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Err(Flow::Stop),
                    Some(command) => self.on_command(ws, command).await.map_err(Flow::Reconnect)?,
                },
            }
        }
    }

    /// Handle one frame from the socket (or its end).
    async fn on_inbound(
        &mut self,
        ws: &mut Ws,
        inbound: Option<std::result::Result<tokio_websockets::Message, tokio_websockets::Error>>,
    ) -> std::result::Result<(), Flow> {
        let frame = match inbound {
            None => return Err(Flow::Reconnect("the server closed the connection".into())),
            Some(Err(e)) => {
                let reason = crate::transport::close_after_read_error(ws, &e).await;
                if matches!(e, tokio_websockets::Error::PayloadTooLong { .. }) {
                    tracing::warn!("{reason}");
                }
                return Err(Flow::Reconnect(reason));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(text) = frame.as_text() {
            match RawMessage::decode(text, self.options.vsn) {
                Ok(message) => self.on_message(ws, message).await.map_err(Flow::Reconnect)?,
                Err(e) => tracing::warn!("ignoring an undecodable Phoenix frame: {e}"),
            }
        } else if frame.is_binary() {
            match Message::decode_binary(frame.as_payload(), true) {
                Ok(message) => self.on_binary(ws, message).await.map_err(Flow::Reconnect)?,
                Err(e) => tracing::warn!("ignoring an undecodable binary frame: {e}"),
            }
        }
        Ok(())
    }

    async fn on_timers(&mut self, ws: &mut Ws, now: Instant) -> std::result::Result<(), String> {
        // Expired replies.
        let expired: Vec<String> =
            self.replies.iter().filter(|(_, r)| r.deadline <= now).map(|(k, _)| k.clone()).collect();
        for reference in expired {
            let Some(pending) = self.replies.remove(&reference) else { continue };
            match pending.awaiting {
                Awaiting::Push { reply } => {
                    let _ = reply.send(Err(Error::new(ErrorKind::Timeout, "no reply to the push in time")));
                }
                Awaiting::PushBinary { reply } => {
                    let _ = reply.send(Err(Error::new(ErrorKind::Timeout, "no reply to the push in time")));
                }
                Awaiting::Leave { topic, reply } => {
                    self.remove_if_leaving(&topic);
                    let _ = reply.send(Ok(json!({})));
                }
                Awaiting::Join { topic, join_ref } => {
                    if self.channels.get(&topic).is_none_or(|c| c.join_ref.as_deref() != Some(join_ref.as_str())) {
                        continue; // an earlier join attempt; the current one has its own deadline
                    }
                    // phoenix.js: leave, mark errored, rejoin later.
                    let leave = Message {
                        join_ref: Some(join_ref.clone()),
                        reference: Some(self.make_ref()),
                        topic: topic.clone(),
                        event: "phx_leave".into(),
                        payload: Payload::Json(json!({})),
                    };
                    self.send(ws, &leave).await?;
                    if let Some(chan) = self.channels.get_mut(&topic) {
                        chan.status = ChanStatus::Errored;
                        for waiter in chan.join_waiters.drain(..) {
                            let _ = waiter.send(Err(Error::new(
                                ErrorKind::Timeout,
                                format!("no reply to the join of {topic} in time"),
                            )));
                        }
                    }
                    self.schedule_rejoin(&topic);
                }
            }
        }
        // Buffered pushes past their deadline.
        for chan in self.channels.values_mut() {
            while chan.buffer.front().is_some_and(|p| p.deadline <= now) {
                if let Some(push) = chan.buffer.pop_front() {
                    let _ = push.reply.send(Err(Error::new(
                        ErrorKind::Timeout,
                        format!("{}: the channel did not join in time", push.event),
                    )));
                }
            }
        }
        // Rejoins due.
        let due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.rejoin_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for topic in due {
            self.send_join(ws, &topic).await?;
        }
        Ok(())
    }

    async fn on_command(&mut self, ws: &mut Ws, command: Command) -> std::result::Result<(), String> {
        match command {
            Command::Join { topic, params, listeners, presence, reply } => {
                let already_joined = self.channels.get(&topic).is_some_and(|c| c.status == ChanStatus::Joined);
                self.on_command_offline(Command::Join { topic: topic.clone(), params, listeners, presence, reply });
                if already_joined {
                    // Answer at once; the channel stays as it is.
                    if let Some(chan) = self.channels.get_mut(&topic) {
                        for waiter in chan.join_waiters.drain(..) {
                            let _ = waiter.send(Ok(json!({})));
                        }
                    }
                    return Ok(());
                }
                if self.channels.get(&topic).is_some_and(|c| c.status != ChanStatus::Joining) {
                    self.send_join(ws, &topic).await?;
                }
            }
            Command::Push { topic, event, payload, reply } => {
                let joined = self.channels.get(&topic).is_some_and(|c| c.status == ChanStatus::Joined);
                if joined {
                    let deadline = Instant::now() + self.options.timeout;
                    self.send_push(ws, &topic, PendingPush { event, payload, reply, deadline }).await?;
                } else {
                    self.buffer_push(&topic, event, payload, reply);
                }
            }
            Command::PushBinary { topic, event, payload, reply } => {
                let joined =
                    self.channels.get(&topic).filter(|c| c.status == ChanStatus::Joined).map(|c| c.join_ref.clone());
                let Some(join_ref) = joined else {
                    let _ = reply.send(Err(Error::new(
                        ErrorKind::InvalidRequest,
                        format!("{topic} is not joined: binary pushes need a joined channel"),
                    )));
                    return Ok(());
                };
                if self.options.vsn != Vsn::V2 {
                    let _ =
                        reply.send(Err(Error::new(ErrorKind::InvalidRequest, "binary frames need the V2 serializer")));
                    return Ok(());
                }
                let reference = self.make_ref();
                let message = Message {
                    join_ref,
                    reference: Some(reference.clone()),
                    topic,
                    event,
                    payload: Payload::Binary(payload),
                };
                let bytes = match message.encode_binary_push() {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let _ = reply.send(Err(Error::new(ErrorKind::InvalidRequest, e.to_string())));
                        return Ok(());
                    }
                };
                let deadline = Instant::now() + self.options.timeout;
                self.replies.insert(reference, PendingReply { awaiting: Awaiting::PushBinary { reply }, deadline });
                let binary = tokio_websockets::Message::binary(bytes);
                crate::transport::send_within(ws, binary, self.options.timeout).await?;
            }
            Command::Leave { topic, reply } => {
                let Some(chan) = self.channels.get_mut(&topic) else {
                    let _ = reply.send(Ok(json!({})));
                    return Ok(());
                };
                chan.status = ChanStatus::Leaving;
                chan.rejoin_at = None;
                let join_ref = chan.join_ref.clone();
                let reference = self.make_ref();
                let deadline = Instant::now() + self.options.timeout;
                self.replies.insert(
                    reference.clone(),
                    PendingReply { awaiting: Awaiting::Leave { topic: topic.clone(), reply }, deadline },
                );
                let leave = Message {
                    join_ref,
                    reference: Some(reference),
                    topic,
                    event: "phx_leave".into(),
                    payload: Payload::Json(json!({})),
                };
                self.send(ws, &leave).await?;
            }
            Command::Disconnect => {}
        }
        Ok(())
    }

    async fn on_message(&mut self, ws: &mut Ws, message: RawMessage<'_>) -> std::result::Result<(), String> {
        if message.event == "phx_reply" {
            let payload = message.payload_value();
            let Some(reference) = message.reference.clone() else { return Ok(()) };
            if self.heartbeat_ref.as_ref().is_some_and(|(r, _)| *r == reference) {
                self.heartbeat_ref = None;
                return Ok(());
            }
            let Some(pending) = self.replies.remove(&reference) else { return Ok(()) };
            let status = payload["status"].as_str().unwrap_or("error");
            let response = payload.get("response").cloned().unwrap_or(Value::Null);
            return self.on_reply(ws, pending.awaiting, status, response).await;
        }
        if !matches!(&*message.event, "phx_error" | "phx_close" | "presence_state" | "presence_diff") {
            // The hot path, an app event: no copies of the topic, the join ref or handles.
            let Some(chan) = self.channels.get(&*message.topic) else { return Ok(()) };
            if message.join_ref.is_some() && message.join_ref != chan.join_ref {
                return Ok(()); // for an earlier join of this topic
            }
            let event = Event::received(&message.topic, &message.event, message.payload);
            self.outbox.deliver(&chan.listeners, event);
            return Ok(());
        }
        let topic = message.topic.clone().into_owned();
        let Some(chan) = self.channels.get(&topic) else { return Ok(()) };
        // Drop what belongs to an earlier join of this topic.
        if message.join_ref.is_some() && message.join_ref != chan.join_ref {
            tracing::debug!(%topic, event = %message.event, "dropping a message for a previous join");
            return Ok(());
        }
        let listeners = chan.listeners.clone();
        let presence = chan.presence.clone();
        let join_ref = chan.join_ref.clone().unwrap_or_default();
        match &*message.event {
            "phx_error" => {
                if let Some(chan) = self.channels.get_mut(&topic) {
                    chan.status = ChanStatus::Errored;
                }
                self.schedule_rejoin(&topic);
            }
            "phx_close" => {
                self.channels.remove(&topic);
            }
            "presence_state" => {
                let state: Presences = serde_json::from_str(message.payload).unwrap_or_default();
                let events = presence.lock().unwrap_or_else(|p| p.into_inner()).on_state(&join_ref, &state);
                self.emit_presence(&listeners, &topic, events);
            }
            "presence_diff" => {
                let payload = message.payload_value();
                let joins: Presences = serde_json::from_value(payload["joins"].clone()).unwrap_or_default();
                let leaves: Presences = serde_json::from_value(payload["leaves"].clone()).unwrap_or_default();
                let events = presence.lock().unwrap_or_else(|p| p.into_inner()).on_diff(&join_ref, &joins, &leaves);
                if let Some(events) = events {
                    self.emit_presence(&listeners, &topic, events);
                }
            }
            _ => {}
        }
        // The payload goes on as the text it arrived as (no value tree), in one allocation
        // with the topic and name.
        let event = Event::received(&topic, &message.event, message.payload);
        self.outbox.deliver(&listeners, event);
        Ok(())
    }

    /// A V2 binary frame from the server: a reply to a push, or a push / broadcast.
    async fn on_binary(&mut self, ws: &mut Ws, message: Message) -> std::result::Result<(), String> {
        if let Payload::BinaryReply { status, response } = message.payload {
            let Some(pending) = message.reference.and_then(|r| self.replies.remove(&r)) else { return Ok(()) };
            let outcome = if status == "ok" {
                Ok(response)
            } else {
                Err(Error::new(ErrorKind::Subscription, format!("binary reply with status {status}")))
            };
            match pending.awaiting {
                Awaiting::PushBinary { reply } => {
                    let _ = reply.send(outcome);
                }
                Awaiting::Push { reply } => {
                    let _ =
                        reply.send(outcome.map(|bytes| Value::String(String::from_utf8_lossy(&bytes).into_owned())));
                }
                // A join or leave answered in binary: its status is what matters.
                awaiting => return self.on_reply(ws, awaiting, &status, Value::Null).await,
            }
            return Ok(());
        }
        let Payload::Binary(bytes) = message.payload else { return Ok(()) };
        let Some(chan) = self.channels.get(&message.topic) else { return Ok(()) };
        if message.join_ref.is_some() && message.join_ref != chan.join_ref {
            return Ok(()); // a push for an earlier join
        }
        let listeners = chan.listeners.clone();
        let event = Event::binary_payload(&message.topic, &message.event, bytes.into());
        self.outbox.deliver(&listeners, event);
        Ok(())
    }

    fn emit_presence(&mut self, listeners: &Arc<Listeners>, topic: &str, events: Vec<PresenceEvent>) {
        for event in events {
            let (name, data) = match event {
                PresenceEvent::Join { key, current, joined } => {
                    ("presence:join", json!({ "key": key, "current": current, "joined": joined }))
                }
                PresenceEvent::Leave { key, current, left } => {
                    ("presence:leave", json!({ "key": key, "current": current, "left": left }))
                }
            };
            self.outbox.deliver(listeners, Event::internal(Some(topic), name, Some(data.to_string())));
        }
        self.outbox.deliver(listeners, Event::internal(Some(topic), "presence:sync", Some("{}".into())));
    }

    async fn on_reply(
        &mut self,
        ws: &mut Ws,
        awaiting: Awaiting,
        status: &str,
        response: Value,
    ) -> std::result::Result<(), String> {
        let outcome = if status == "ok" {
            Ok(response.clone())
        } else {
            let reason =
                response.get("reason").and_then(Value::as_str).map_or_else(|| response.to_string(), str::to_owned);
            Err(Error::new(ErrorKind::Subscription, reason))
        };
        match awaiting {
            Awaiting::Push { reply } => {
                let _ = reply.send(outcome);
            }
            Awaiting::PushBinary { reply } => {
                let _ = reply.send(outcome.map(|v| v.to_string().into_bytes()));
            }
            Awaiting::Leave { topic, reply } => {
                self.remove_if_leaving(&topic);
                let _ = reply.send(Ok(response));
            }
            Awaiting::Join { topic, join_ref } => {
                let Some(chan) = self.channels.get_mut(&topic) else { return Ok(()) };
                if chan.join_ref.as_deref() != Some(join_ref.as_str()) {
                    return Ok(()); // a reply to an earlier join attempt
                }
                match outcome {
                    Ok(response) => {
                        chan.status = ChanStatus::Joined;
                        chan.rejoin_tries = 0;
                        // What the server sends right behind the reply is held for the
                        // listeners attached after `join().await` (see listeners.rs).
                        if !chan.joined_before && !chan.listeners.is_active() {
                            chan.listeners.open_hold(self.options.event_queue);
                        }
                        chan.joined_before = true;
                        for waiter in chan.join_waiters.drain(..) {
                            let _ = waiter.send(Ok(response.clone()));
                        }
                        let buffered: Vec<PendingPush> = chan.buffer.drain(..).collect();
                        for push in buffered {
                            self.send_push(ws, &topic, push).await?;
                        }
                    }
                    Err(error) => {
                        let unmatched = error.message() == "unmatched topic";
                        for waiter in chan.join_waiters.drain(..) {
                            let _ = waiter.send(Err(error.clone()));
                        }
                        if unmatched {
                            // No such topic on the server: retrying cannot help.
                            if let Some(chan) = self.channels.remove(&topic) {
                                for push in chan.buffer {
                                    let _ = push.reply.send(Err(error.clone()));
                                }
                            }
                        } else {
                            chan.status = ChanStatus::Errored;
                            self.schedule_rejoin(&topic);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
