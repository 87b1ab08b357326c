//! [`Client`]: a cheap, cloneable handle in front of one background connection task.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! let client = switchboard::Client::connect(switchboard::ClientOptions::from_env()?.build()?).await?;
//! let other_handle = client.clone(); // cheap: both talk to the same connection task
//! # let _ = other_handle;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use switchboard_protocol::{ChannelKind, ChannelName};
use tokio::sync::{mpsc, oneshot, watch};

use crate::delivery::Dispatcher;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventStream, HandlerId};
use crate::listeners::Listeners;
use crate::pusher::auth::PresenceUser;
use crate::pusher::channel::{Channel, ChannelShared};
use crate::pusher::connection::{self, Command, EmitReply};
use crate::pusher::options::ClientOptions;
use crate::state::ConnectionState;

/// Handlers queued for the handler task before events are dropped (and counted).
const HANDLER_QUEUE: usize = 8_192;

struct Shared {
    options: ClientOptions,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    channels: Mutex<HashMap<String, Arc<ChannelShared>>>,
    global: Arc<Listeners>,
    user: Arc<Listeners>,
    dispatcher: Dispatcher,
}

/// A Pusher-protocol client. Clone it freely: every clone drives the same connection, which
/// a background task owns, reconnects and resubscribes. The task ends when `disconnect()` is
/// called or the last handle is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard::Error> {
/// use futures_util::StreamExt;
/// use switchboard::{Client, ClientOptions};
///
/// let options = ClientOptions::from_url("ws://127.0.0.1:8080/app/switchboard-key")?
///     .secret("switchboard-secret")
///     .build()?;
/// let client = Client::connect(options).await?;
/// let orders = client.subscribe("private-orders.1").await?;
/// orders.bind("OrderShipped", |event| println!("shipped: {:?}", event.data()));
/// let mut events = orders.events();
/// while let Some(event) = events.next().await {
///     println!("{} {:?}", event.name(), event.data());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("state", &self.state().name()).finish_non_exhaustive()
    }
}

impl Client {
    /// Start connecting in the background and return at once. Must be called inside a tokio
    /// runtime.
    ///
    /// ```
    /// # fn main() -> Result<(), switchboard::Error> {
    /// # let rt = tokio::runtime::Runtime::new().unwrap();
    /// # let _guard = rt.enter();
    /// let options = switchboard::ClientOptions::builder("app-key").host("127.0.0.1").port(8080).tls(false).build()?;
    /// // Starts connecting in the background; subscribe right away, it waits for the connection.
    /// let client = switchboard::Client::new(options);
    /// assert_eq!(client.options().port(), 8080);
    /// # Ok(()) }
    /// ```
    pub fn new(options: ClientOptions) -> Client {
        let dispatcher = Dispatcher::start(HANDLER_QUEUE);
        let global = dispatcher.channel_listeners();
        let user = dispatcher.channel_listeners();
        let (commands, state) = connection::spawn(options.clone(), global.clone(), user.clone(), dispatcher.clone());
        let channels = Mutex::default();
        Client { shared: Arc::new(Shared { options, commands, state, channels, global, user, dispatcher }) }
    }

    /// Start connecting and wait until connected (or failed for good).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard::Error> {
    /// let options = switchboard::ClientOptions::from_url("wss://ws.example.com/app/app-key")?.build()?;
    /// let client = switchboard::Client::connect(options).await?; // fails if the first connection does
    /// println!("socket id {:?}", client.socket_id());
    /// # Ok(()) }
    /// ```
    pub async fn connect(options: ClientOptions) -> Result<Client> {
        let client = Client::new(options);
        client.connected().await?;
        Ok(client)
    }

    /// The options this client was built with.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// println!("connected to {}", client.options().url());
    /// # Ok(()) }
    /// ```
    pub fn options(&self) -> &ClientOptions {
        &self.shared.options
    }

    /// The current connection state.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// if client.state().is_final() {
    ///     eprintln!("the client stopped: {:?}", client.state());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn state(&self) -> ConnectionState {
        self.shared.state.borrow().clone()
    }

    /// The socket id while connected.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// // The id auth endpoints sign for, and the one to exclude from your own triggers.
    /// let socket_id = client.socket_id();
    /// # let _ = socket_id;
    /// # Ok(()) }
    /// ```
    pub fn socket_id(&self) -> Option<String> {
        self.shared.state.borrow().socket_id().map(str::to_owned)
    }

    /// A receiver of state changes (`changed().await`, then `borrow()`).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let mut states = client.state_changes();
    /// while states.changed().await.is_ok() {
    ///     println!("now {}", states.borrow().name());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    /// State changes as a `Stream`, starting with the current state.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) {
    /// use futures_util::StreamExt;
    /// let mut states = std::pin::pin!(client.state_stream());
    /// while let Some(state) = states.next().await {
    ///     println!("now {}", state.name());
    /// }
    /// # }
    /// ```
    pub fn state_stream(&self) -> impl futures_core::Stream<Item = ConnectionState> + Send + 'static {
        let rx = self.shared.state.clone();
        futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let state = rx.borrow_and_update().clone();
            Some((state, (rx, false)))
        })
    }

    /// Call `handler(previous, current)` on every state change, on a task of its own.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.on_state_change(|before, now| eprintln!("{} -> {}", before.name(), now.name()));
    /// # Ok(()) }
    /// ```
    pub fn on_state_change(&self, handler: impl Fn(&ConnectionState, &ConnectionState) + Send + 'static) {
        let mut rx = self.shared.state.clone();
        tokio::spawn(async move {
            let mut previous = rx.borrow_and_update().clone();
            while rx.changed().await.is_ok() {
                let current = rx.borrow_and_update().clone();
                handler(&previous, &current);
                previous = current;
            }
        });
    }

    /// Wait until connected; returns the socket id. Fails if the client stops for good.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let socket_id = client.connected().await?;
    /// println!("connected as {socket_id}");
    /// # Ok(()) }
    /// ```
    pub async fn connected(&self) -> Result<String> {
        let mut rx = self.shared.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                ConnectionState::Connected { socket_id } => return Ok(socket_id.clone()),
                ConnectionState::Failed { reason, code } => {
                    let e = Error::new(ErrorKind::Connection, reason.clone());
                    return Err(code.map_or(e.clone(), |c| e.with_code(c)));
                }
                ConnectionState::Disconnected => return Err(Error::closed()),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(Error::closed());
            }
        }
    }

    /// Subscribe to `name` and wait for the server's confirmation. Private and presence
    /// channels are authorized with the configured authorizer, again for every new socket
    /// after a reconnect. Subscribing to a channel twice returns the same channel. On a
    /// timeout the subscription stays pending and completes when it can; `unsubscribe`
    /// cancels it.
    ///
    /// Nothing the server sends right behind its confirmation is lost while you attach
    /// listeners: a channel confirmed with no listener holds its events, and every
    /// listener attached within 2 s of the confirmation (streams, handlers, and the
    /// client's global listeners alike) gets all of them, in order, then the live ones.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// match client.subscribe("private-orders.1").await {
    ///     Ok(channel) => println!("subscribed to {}", channel.name()),
    ///     Err(e) => eprintln!("refused: {e} (code {:?}, HTTP {:?})", e.code(), e.status()),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&self, name: &str) -> Result<Channel> {
        self.subscribe_inner(name, None).await
    }

    /// Subscribe to a presence channel as `user` (the authorizer signs this identity).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = client.subscribe_presence("presence-room", me).await?;
    /// println!("{} members", room.members().count());
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_presence(&self, name: &str, user: PresenceUser) -> Result<Channel> {
        self.subscribe_inner(name, Some(user)).await
    }

    async fn subscribe_inner(&self, name: &str, presence: Option<PresenceUser>) -> Result<Channel> {
        let parsed = ChannelName::parse(name).map_err(|e| Error::new(ErrorKind::InvalidRequest, e.to_string()))?;
        if parsed.kind() == ChannelKind::ServerToUser {
            return Err(Error::new(ErrorKind::InvalidRequest, "#server-to-user- channels are subscribed by sign-in"));
        }
        let shared = {
            let mut channels = self.shared.channels.lock().unwrap_or_else(|p| p.into_inner());
            channels
                .entry(name.to_owned())
                .or_insert_with(|| {
                    let listeners = self.shared.dispatcher.channel_listeners();
                    Arc::new(ChannelShared::with_listeners(name.to_owned(), parsed.kind(), listeners))
                })
                .clone()
        };
        let (reply, answer) = oneshot::channel();
        self.command(Command::Subscribe { channel: shared.clone(), presence, reply })?;
        let timeout = self.shared.options.subscribe_timeout;
        let result = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::closed()),
            // The subscription stays pending and is made when the connection allows (as with
            // pusher-js); other handles of it are not disturbed. `unsubscribe` cancels it.
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no answer to the subscription of {name} within {timeout:?}"),
            )),
        };
        result.map(|()| Channel { shared, client: self.clone() })
    }

    /// The channel `name`, if it was subscribed with this client.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.subscribe("news").await?;
    /// assert!(client.channel("news").is_some());
    /// assert!(client.channel("sports").is_none());
    /// # Ok(()) }
    /// ```
    pub fn channel(&self, name: &str) -> Option<Channel> {
        let channels = self.shared.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.get(name).map(|shared| Channel { shared: shared.clone(), client: self.clone() })
    }

    /// Leave `name`. It stays left across reconnects. Its handlers stay bound.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.subscribe("news").await?;
    /// client.unsubscribe("news").await;
    /// assert!(client.channel("news").is_none());
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(&self, name: &str) {
        if let Some(channel) = self.shared.channels.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            channel.subscribed.store(false, Ordering::Release);
        }
        let _ = self.command(Command::Unsubscribe { name: name.to_owned() });
    }

    /// Call `handler` for every event on every channel and for connection events such as
    /// `pusher:error` (`"*"` for all names).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.bind_global("pusher:error", |event| eprintln!("server error: {:?}", event.data()));
    /// # Ok(()) }
    /// ```
    pub fn bind_global(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.shared.global.bind_global(event, handler, &self.channel_listeners())
    }

    /// Remove global handlers of `event` (all, or `id`).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let id = client.bind_global("pusher:error", |e| eprintln!("{:?}", e.data()));
    /// assert_eq!(client.unbind_global("pusher:error", Some(id)), 1);
    /// # Ok(()) }
    /// ```
    pub fn unbind_global(&self, event: &str, id: Option<HandlerId>) -> usize {
        self.shared.global.unbind(event, id)
    }

    /// Remove every global handler.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.bind_global("*", |e| println!("{}", e.name()));
    /// client.unbind_all_global();
    /// # Ok(()) }
    /// ```
    pub fn unbind_all_global(&self) {
        self.shared.global.unbind_all();
    }

    /// A stream of every event the client receives (channels subscribed earlier replay
    /// what they hold for their first listeners, see [`Client::subscribe`]).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// use futures_util::StreamExt;
    /// let mut all = client.events();
    /// while let Some(event) = all.next().await {
    ///     println!("{:?} {}", event.channel(), event.name());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> EventStream {
        self.shared.global.global_stream(None, self.shared.options.event_queue, &self.channel_listeners())
    }

    /// Every channel's listeners: a global listener attached after a `subscribe` gets the
    /// events the channel holds for its first listeners, as a channel listener would.
    fn channel_listeners(&self) -> Vec<Arc<Listeners>> {
        let channels = self.shared.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.values().map(|c| c.listeners.clone()).collect()
    }

    /// Sign the user in (`pusher:signin`) with the authorizer's user authentication, and
    /// receive events sent to this user (`#server-to-user-{id}`) through
    /// [`Client::user_events`] and [`Client::bind_user`]. Redone after every reconnect.
    /// Reverb does not implement sign-in; Pusher, Soketi, Sockudo and switchboard do.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.signin().await?;
    /// client.bind_user("notice", |event| println!("for me: {:?}", event.data()));
    /// # Ok(()) }
    /// ```
    pub async fn signin(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Signin { reply })?;
        let timeout = self.shared.options.subscribe_timeout;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::closed()),
            Err(_) => Err(Error::new(ErrorKind::Timeout, format!("no answer to the sign-in within {timeout:?}"))),
        }
    }

    /// A stream of the signed-in user's events (and `pusher:signin_success` /
    /// `pusher:signin_error`).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.signin().await?;
    /// let mut mine = client.user_events(); // events sent to this user with `sendToUser`
    /// while let Some(event) = mine.recv().await {
    ///     println!("{} {:?}", event.name(), event.data());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn user_events(&self) -> EventStream {
        self.shared.user.stream(None, self.shared.options.event_queue)
    }

    /// Call `handler` for the signed-in user's `event` (`"*"` for all).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.bind_user("invoice-paid", |e| println!("paid: {:?}", e.data()));
    /// client.signin().await?;
    /// # Ok(()) }
    /// ```
    pub fn bind_user(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.shared.user.bind(event, handler)
    }

    /// Events dropped because bound handlers fell behind (each was also logged).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// if client.dropped_events() > 0 {
    ///     eprintln!("handlers fell behind: some events never reached them");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn dropped_events(&self) -> u64 {
        self.shared.dispatcher.dropped.load(Ordering::Relaxed)
    }

    /// Close the connection for good. Pending subscribes fail with [`ErrorKind::Closed`].
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.disconnect().await;
    /// assert!(client.state().is_final());
    /// # Ok(()) }
    /// ```
    pub async fn disconnect(&self) {
        let _ = self.command(Command::Disconnect);
        let mut rx = self.shared.state.clone();
        let _ = rx.wait_for(ConnectionState::is_final).await;
    }

    /// RealtimeX: send a raw Socket.IO event (`42["event", data]`) and return once it is
    /// written. For events the server defines beyond channels; channel events go through
    /// [`crate::Channel::trigger`]. On a Pusher client: [`ErrorKind::InvalidRequest`]. Not
    /// connected (yet): [`ErrorKind::Connection`] at once; unlike subscribes, emits are not
    /// queued, since what a raw event means later is the application's to say.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// client.emit("realtimex:ping", serde_json::json!({})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn emit(&self, event: &str, data: serde_json::Value) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Emit { event: event.to_owned(), args: vec![data], reply: EmitReply::Sent(reply) };
        self.command(command)?;
        answer.await.map_err(|_| Error::closed())?
    }

    /// RealtimeX: send a raw Socket.IO event with an ack id and wait (up to the subscribe
    /// timeout) for the server's answer; returns its first argument (`null` if none). A
    /// connection lost first fails it, and it is not re-sent. `switchboard serve` answers
    /// every RealtimeX event with `{"ok": true, …}` or `{"ok": false, "code", "message"}`.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let answer = client.emit_with_ack("realtimex:ping", serde_json::json!({})).await?;
    /// assert_eq!(answer["ok"], true);
    /// # Ok(()) }
    /// ```
    pub async fn emit_with_ack(&self, event: &str, data: serde_json::Value) -> Result<serde_json::Value> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Emit { event: event.to_owned(), args: vec![data], reply: EmitReply::Ack(reply) };
        self.command(command)?;
        let timeout = self.shared.options.subscribe_timeout;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result.map(|args| args.into_iter().next().unwrap_or(serde_json::Value::Null)),
            Ok(Err(_)) => Err(Error::closed()),
            Err(_) => Err(Error::new(ErrorKind::Timeout, format!("no ack for {event} within {timeout:?}"))),
        }
    }

    pub(crate) async fn trigger(&self, channel: &str, event: String, data: String) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Trigger { channel: channel.to_owned(), event, data, reply })?;
        answer.await.map_err(|_| Error::closed())?
    }

    fn command(&self, command: Command) -> Result<()> {
        self.shared.commands.send(command).map_err(|_| Error::closed())
    }
}
