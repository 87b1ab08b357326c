//! The gateway client handle: cheap to clone, in front of one connection task.
//!
//! Every call is a command to the task, which handles them in order: a publish's ack and
//! reply waiters are registered there *before* its frame is written, so no answer can
//! arrive first and be lost (the SDKs register them after sending). Subscriptions are kept
//! and replayed after every welcome; publishes made while offline wait in a bounded queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use switchboard_protocol::gateway::frames::{ConnectionInfo, Delivery, Response};
use tokio::sync::{mpsc, oneshot, watch};

use super::GatewayOptions;
use super::connection::{Command, Outbound, Task};
use crate::delivery::Dispatcher;
use crate::listeners::Listeners;
use crate::{ConnectionState, Error, ErrorKind, Event, EventStream, HandlerId, Result};

/// How to publish or send.
///
/// ```
/// use switchboard::gateway::PublishOptions;
/// let options = PublishOptions::new().message_type("text-message").compress(true);
/// assert_eq!(options, PublishOptions { message_type: Some("text-message".into()), compress: true, ..PublishOptions::default() });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// The listeners' second key; the server uses `broadcast` if none.
    pub message_type: Option<String>,
    /// Ask for delivery as a binary frame.
    pub compress: bool,
    /// The message id (acked, quoted by replies); a random one if none.
    pub id: Option<String>,
    /// Also wait for a reply (`messageType: "response"` on this connection's `priv/` topic).
    pub expect_reply: bool,
}

impl PublishOptions {
    /// The defaults: `broadcast`, not compressed, a random id, no reply expected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the messageType.
    pub fn message_type(mut self, message_type: impl Into<String>) -> Self {
        self.message_type = Some(message_type.into());
        self
    }

    /// Deliver as a binary frame.
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// Use this message id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Register a reply waiter too (see [`Pending::reply`]).
    pub fn expect_reply(mut self) -> Self {
        self.expect_reply = true;
        self
    }
}

/// A sent publish or message: its ack and (if asked for) its reply, registered before the
/// frame went out. Dropping it cancels both waits.
#[derive(Debug)]
pub struct Pending {
    id: String,
    ack: Option<oneshot::Receiver<Result<()>>>,
    reply: Option<oneshot::Receiver<Result<Response>>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Pending {
    /// The message id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Wait for the server's ack. A timeout says that the server acks only when the app's
    /// inbound-ack setting is on; a lost connection fails it (the message may or may not
    /// have been delivered: it is not sent again, so it is never delivered twice).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::gateway::GatewayClient) -> Result<(), switchboard::Error> {
    /// let mut pending = client.publish("chat", &serde_json::json!({"text": "hi"}), Default::default())?;
    /// pending.ack().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack(&mut self) -> Result<()> {
        let Some(ack) = self.ack.take() else {
            return Err(Error::new(ErrorKind::InvalidRequest, "this ack was already awaited"));
        };
        ack.await.unwrap_or_else(|_| Err(Error::closed()))
    }

    /// Wait for the reply (only if [`PublishOptions::expect_reply`] was set, or the call was
    /// [`GatewayClient::request`]).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::gateway::GatewayClient) -> Result<(), switchboard::Error> {
    /// let answer = client.request(&serde_json::json!({"tz": "UTC"}), switchboard::gateway::PublishOptions::new().message_type("gettime"))?.reply().await?;
    /// println!("{} {}", answer.status, answer.data);
    /// # Ok(()) }
    /// ```
    pub async fn reply(mut self) -> Result<Response> {
        let Some(reply) = self.reply.take() else {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "no reply was expected: use request() or PublishOptions::expect_reply",
            ));
        };
        reply.await.unwrap_or_else(|_| Err(Error::closed()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.ack.is_some() || self.reply.is_some() {
            let _ = self.commands.send(Command::Cancel { id: std::mem::take(&mut self.id) });
        }
    }
}

/// A delivered message, read from an [`Event`]: who sent it, its id, its payload, and
/// whether it came compressed.
///
/// ```
/// use switchboard::gateway::Incoming;
/// let event = switchboard::Event::new(Some("chat"), "text", Some(r#"{"client":{"connectionId":"4389b2ed1a7e"},"id":"m1","payload":{"x":1}}"#));
/// let incoming = Incoming::from_event(&event)?;
/// assert_eq!((incoming.topic.as_str(), incoming.message_type.as_str(), incoming.id.as_deref()), ("chat", "text", Some("m1")));
/// assert_eq!(incoming.payload, serde_json::json!({"x": 1}));
/// # Ok::<(), switchboard::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The topic.
    pub topic: String,
    /// The messageType.
    pub message_type: String,
    /// The sender's connection id (none for an HTTP publish).
    pub connection_id: Option<String>,
    /// The sender's token subject.
    pub subject: Option<String>,
    /// The sender's message id.
    pub id: Option<String>,
    /// The message.
    pub payload: Value,
    /// It arrived as a binary frame.
    pub compressed: bool,
}

impl Incoming {
    /// Read a delivered message from its event.
    pub fn from_event(event: &Event) -> Result<Incoming> {
        let data = event.data().unwrap_or("null");
        let raw = RawValue::from_string(data.to_owned()).map_err(|e| Error::new(ErrorKind::Protocol, e.to_string()))?;
        let frame = switchboard_protocol::gateway::ServerFrame {
            topic: event.channel().unwrap_or_default().to_owned(),
            message_type: Some(event.name().to_owned()),
            data: raw,
        };
        let Delivery { client, id, payload } =
            frame.delivery().map_err(|e| Error::new(ErrorKind::Protocol, e.to_string()))?;
        Ok(Incoming {
            topic: frame.topic,
            message_type: event.name().to_owned(),
            connection_id: client.connection_id,
            subject: client.subject,
            id,
            payload: serde_json::from_str(payload.get()).unwrap_or(Value::Null),
            compressed: event.compressed(),
        })
    }
}

struct Shared {
    options: GatewayOptions,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    info: watch::Receiver<Option<ConnectionInfo>>,
    listeners: Arc<Listeners>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
}

/// What the task tells the handles without a round trip. Apart from `Shared` so the task
/// holds no command sender: once every handle is dropped, its command stream ends and it
/// stops.
#[derive(Default)]
pub(crate) struct Counters {
    /// A session is up.
    pub(crate) online: AtomicBool,
    /// Messages waiting to be sent.
    pub(crate) offline_len: AtomicUsize,
}

/// A Realtime Pub/Sub gateway client (see the [module doc](super)).
#[derive(Clone)]
pub struct GatewayClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient").field("state", &self.state()).finish_non_exhaustive()
    }
}

impl GatewayClient {
    /// Start a client that connects (and reconnects) in the background; calls made before
    /// the first welcome are kept and run after it.
    ///
    /// ```no_run
    /// # async fn run() {
    /// use switchboard::gateway::{GatewayClient, GatewayOptions};
    /// let client = GatewayClient::new(GatewayOptions::new("ws://127.0.0.1:8080/apps/1000?access_token=…"));
    /// client.subscribe("chat").ok(); // sent once the session starts
    /// # }
    /// ```
    pub fn new(options: GatewayOptions) -> GatewayClient {
        let (commands, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ConnectionState::Initialized);
        let (info_tx, info) = watch::channel(None);
        let dispatcher = Dispatcher::start(8_192);
        let listeners = dispatcher.gateway_listeners();
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            options: options.clone(),
            commands,
            state,
            info,
            listeners: listeners.clone(),
            counters: counters.clone(),
            next_id: AtomicU64::new(rand::random::<u32>() as u64),
        });
        let task = Task::new(options.clone(), dispatcher, listeners, state_tx, info_tx, counters);
        crate::io_thread::spawn(options.io_runtime, task.run(rx));
        GatewayClient { shared }
    }

    /// Connect, and wait for the first welcome (`session.started`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard::Error> {
    /// use switchboard::gateway::{GatewayClient, GatewayOptions};
    /// let client = GatewayClient::connect(GatewayOptions::new("ws://127.0.0.1:8080/apps/1000?access_token=…")).await?;
    /// println!("connection id {}", client.connection_info().map(|i| i.id).unwrap_or_default());
    /// # Ok(()) }
    /// ```
    pub async fn connect(options: GatewayOptions) -> Result<GatewayClient> {
        let timeout = options.connect_timeout;
        let client = GatewayClient::new(options);
        let mut info = client.shared.info.clone();
        let mut state = client.shared.state.clone();
        let started = async {
            tokio::select! {
                started = info.wait_for(Option::is_some) => started.is_ok(),
                _ = state.wait_for(ConnectionState::is_final) => false,
            }
        };
        match tokio::time::timeout(timeout, started).await {
            Ok(true) => Ok(client),
            _ => {
                let reason = match client.state() {
                    ConnectionState::Unavailable { reason, .. } | ConnectionState::Failed { reason, .. } => reason,
                    other => other.name().to_owned(),
                };
                client.disconnect().await;
                Err(Error::new(ErrorKind::Connection, format!("no gateway session within {timeout:?}: {reason}")))
            }
        }
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.shared.state.borrow().clone()
    }

    /// A receiver of state changes.
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    /// The current session's connection info (from the last welcome), if connected.
    pub fn connection_info(&self) -> Option<ConnectionInfo> {
        self.shared.info.borrow().clone()
    }

    fn command(&self, command: Command) -> Result<()> {
        self.shared.commands.send(command).map_err(|_| Error::closed())
    }

    /// Subscribe to `topic`, now and after every reconnect. The protocol confirms nothing; a
    /// server that refuses (a `secure/` topic without the grant) closes the socket, and the
    /// client then reports `switchboard:subscription_error` on the topic
    /// (`"{topic}.switchboard:subscription_error"`), drops it, and reconnects without it.
    pub fn subscribe(&self, topic: &str) -> Result<()> {
        if topic.is_empty() {
            return Err(Error::new(ErrorKind::InvalidRequest, "the topic is empty"));
        }
        self.command(Command::Subscribe { topic: topic.to_owned() })
    }

    /// Unsubscribe from `topic` (and stop replaying it).
    pub fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.command(Command::Unsubscribe { topic: topic.to_owned() })
    }

    /// Publish `payload` to `topic` (needs a `realtime:publisher:write:topic:…` grant).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::gateway::GatewayClient) -> Result<(), switchboard::Error> {
    /// use switchboard::gateway::PublishOptions;
    /// client.publish("chat", &serde_json::json!({"text": "hi"}), PublishOptions::new().message_type("text"))?.ack().await?;
    /// # Ok(()) }
    /// ```
    pub fn publish(&self, topic: &str, payload: &impl Serialize, options: PublishOptions) -> Result<Pending> {
        if topic.is_empty() {
            return Err(Error::new(ErrorKind::InvalidRequest, "the topic is empty"));
        }
        self.outbound(Some(topic.to_owned()), payload, options)
    }

    /// Send `payload` to the backends (`secure/inbound`; the SDKs' `send`). No grant needed.
    pub fn send(&self, payload: &impl Serialize, options: PublishOptions) -> Result<Pending> {
        self.outbound(None, payload, options)
    }

    /// Send and expect a reply: [`GatewayClient::send`] with a reply waiter.
    pub fn request(&self, payload: &impl Serialize, options: PublishOptions) -> Result<Pending> {
        self.send(payload, options.expect_reply())
    }

    /// Answer `incoming` (the SDKs' `reply`): `{data, status, id}` published to its sender's
    /// `priv/` topic as messageType `response` (needs the `priv/*` publish grant).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::gateway::GatewayClient) -> Result<(), switchboard::Error> {
    /// let mut requests = client.events("secure/inbound.gettime");
    /// while let Some(event) = requests.recv().await {
    ///     let incoming = switchboard::gateway::Incoming::from_event(&event)?;
    ///     client.reply(&incoming, &serde_json::json!({"time": "12:00"}), "ok")?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn reply(&self, incoming: &Incoming, data: &impl Serialize, status: &str) -> Result<Pending> {
        let Some(connection_id) = incoming.connection_id.as_deref() else {
            return Err(Error::new(ErrorKind::InvalidRequest, "the message has no sender connection id to reply to"));
        };
        let data = serde_json::to_value(data).map_err(|e| Error::new(ErrorKind::InvalidRequest, e.to_string()))?;
        let answer = switchboard_protocol::gateway::frames::response_payload(&data, status, incoming.id.as_deref());
        let options = PublishOptions::new().message_type("response").compress(incoming.compressed);
        self.outbound(Some(format!("priv/{connection_id}")), &answer, options)
    }

    fn outbound(&self, topic: Option<String>, payload: &impl Serialize, options: PublishOptions) -> Result<Pending> {
        if !self.shared.counters.online.load(Ordering::Acquire)
            && self.shared.counters.offline_len.load(Ordering::Acquire) >= self.shared.options.max_offline
        {
            return Err(Error::new(
                ErrorKind::Connection,
                format!(
                    "offline, and {} messages already wait to be sent (max_offline)",
                    self.shared.options.max_offline
                ),
            ));
        }
        let payload = serde_json::value::to_raw_value(payload)
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, e.to_string()))?;
        let id = options.id.clone().unwrap_or_else(|| {
            format!("{:016x}{:08x}", rand::random::<u64>(), self.shared.next_id.fetch_add(1, Ordering::Relaxed) as u32)
        });
        let (ack_tx, ack) = oneshot::channel();
        let (reply_tx, reply) = if options.expect_reply {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let outbound = Outbound { topic, options, id: id.clone(), payload, ack: ack_tx, reply: reply_tx };
        self.command(Command::Publish(Box::new(outbound)))?;
        Ok(Pending { id, ack: Some(ack), reply, commands: self.shared.commands.clone() })
    }

    /// Run `handler` for every event whose `"{topic}.{messageType}"` matches `pattern`
    /// (`*` one segment, `**` any; e.g. `chat.*`, `*.response`, `secure/inbound.**`). The
    /// client's own: `session.started` (data: the connection info).
    ///
    /// ```no_run
    /// # fn run(client: switchboard::gateway::GatewayClient) {
    /// client.on("chat.*", |event| println!("{}: {:?}", event.name(), event.data()));
    /// # }
    /// ```
    pub fn on(&self, pattern: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.shared.listeners.bind(pattern, handler)
    }

    /// As [`GatewayClient::on`], with an async handler (awaited in order with the others).
    pub fn on_async<F, Fut>(&self, pattern: &str, handler: F) -> HandlerId
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.listeners.bind_async(pattern, handler)
    }

    /// Remove the handlers of `pattern` (all, or the one with `id`). Returns how many.
    pub fn off(&self, pattern: &str, id: Option<HandlerId>) -> usize {
        self.shared.listeners.unbind(pattern, id)
    }

    /// A stream of the events matching `pattern` (see [`GatewayClient::on`]); lossless: a
    /// stream that is read slower than events arrive slows the socket.
    pub fn events(&self, pattern: &str) -> EventStream {
        self.shared.listeners.stream(Some(pattern.to_owned()), self.shared.options.event_queue)
    }

    /// Close the connection and stop reconnecting. Waiters fail with `Closed`.
    pub async fn disconnect(&self) {
        let _ = self.shared.commands.send(Command::Disconnect);
        let mut state = self.shared.state.clone();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), state.wait_for(ConnectionState::is_final)).await;
    }
}
