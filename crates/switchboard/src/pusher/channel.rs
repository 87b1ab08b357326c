//! Channels: the handle you bind handlers to, stream events from, and trigger client events
//! on. Handlers and streams belong to the channel, not to a socket, so they survive
//! reconnects.
//!
//! ```no_run
//! # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
//! let news = client.subscribe("news").await?;
//! news.bind("headline", |e| println!("{:?}", e.data()));
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use switchboard_protocol::ChannelKind;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventStream, HandlerId};
use crate::listeners::Listeners;
use crate::pusher::client::Client;
use crate::pusher::presence::Members;

/// State shared between a channel's handles and the connection task.
pub(crate) struct ChannelShared {
    pub(crate) name: String,
    pub(crate) kind: ChannelKind,
    pub(crate) listeners: Arc<Listeners>,
    pub(crate) members: Mutex<Members>,
    pub(crate) subscribed: AtomicBool,
}

impl ChannelShared {
    /// A channel whose events go to existing listeners (the signed-in user's channel).
    pub(crate) fn with_listeners(name: String, kind: ChannelKind, listeners: Arc<Listeners>) -> Self {
        Self { name, kind, listeners, members: Mutex::default(), subscribed: AtomicBool::new(false) }
    }

    pub(crate) fn members(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A subscribed channel. Cheap to clone; every clone is the same subscription.
///
/// Unsubscribing is explicit ([`Channel::unsubscribe`]): bound handlers keep working after
/// every handle is dropped, as with pusher-js.
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let orders = client.subscribe("private-orders.1").await?; // resolves once the server confirms
/// assert!(orders.is_subscribed());
/// orders.bind("OrderShipped", |e| println!("{:?}", e.data()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Channel {
    pub(crate) shared: Arc<ChannelShared>,
    pub(crate) client: Client,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("name", &self.shared.name).field("subscribed", &self.is_subscribed()).finish()
    }
}

impl Channel {
    /// The channel name.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// assert_eq!(client.subscribe("news").await?.name(), "news");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// True while the server has confirmed the subscription on the current connection.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let news = client.subscribe("news").await?;
    /// news.unsubscribe().await;
    /// assert!(!news.is_subscribed());
    /// # Ok(()) }
    /// ```
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::Acquire)
    }

    /// Call `handler` for every `event` on this channel (`"*"` for all). Returns an id for
    /// [`Channel::unbind`].
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let channel = client.subscribe("private-orders.1").await?;
    /// let id = channel.bind("OrderShipped", |event| println!("{:?}", event.data()));
    /// channel.unbind("OrderShipped", Some(id));
    /// # Ok(()) }
    /// ```
    pub fn bind(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.shared.listeners.bind(event, handler)
    }

    /// As [`Channel::bind`], with an async handler (awaited in order with the others).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let channel = client.subscribe("private-orders.1").await?;
    /// channel.bind_async("OrderShipped", |event| async move {
    ///     // awaited in order with the other handlers
    ///     println!("{:?}", event.data());
    /// });
    /// # Ok(()) }
    /// ```
    pub fn bind_async<F, Fut>(&self, event: &str, handler: F) -> HandlerId
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.listeners.bind_async(event, handler)
    }

    /// Remove the handlers of `event` — all of them, or only `id`. Returns how many.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let news = client.subscribe("news").await?;
    /// news.bind("headline", |_| {});
    /// news.bind("headline", |_| {});
    /// assert_eq!(news.unbind("headline", None), 2); // None: every handler of the event
    /// # Ok(()) }
    /// ```
    pub fn unbind(&self, event: &str, id: Option<HandlerId>) -> usize {
        self.shared.listeners.unbind(event, id)
    }

    /// Remove every handler of this channel.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let news = client.subscribe("news").await?;
    /// news.bind("*", |_| {});
    /// news.unbind_all();
    /// # Ok(()) }
    /// ```
    pub fn unbind_all(&self) {
        self.shared.listeners.unbind_all();
    }

    /// A stream of every event on this channel, from its confirmation if this is among the
    /// first listeners attached (see [`Client::subscribe`]). A stream read slower than
    /// events arrive slows the socket instead of losing events (see
    /// [`crate::SlowConsumer`]).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// use futures_util::StreamExt;
    /// let channel = client.subscribe("news").await?;
    /// let mut events = channel.events();
    /// while let Some(event) = events.next().await {
    ///     println!("{} {:?}", event.name(), event.data());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> EventStream {
        self.shared.listeners.stream(None, self.client.options().event_queue)
    }

    /// A stream of one event name on this channel (`"*"`: every event, as [`Channel::bind`]
    /// takes it).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let mut shipped = client.subscribe("private-orders.1").await?.events_named("OrderShipped");
    /// while let Some(event) = shipped.recv().await {
    ///     println!("{:?}", event.data());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events_named(&self, event: &str) -> EventStream {
        self.shared.listeners.stream(Some(event.to_owned()), self.client.options().event_queue)
    }

    /// The members of a presence channel (empty for other kinds).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = client.subscribe_presence("presence-room", me).await?;
    /// for member in room.members().iter() {
    ///     println!("{} {}", member.id, member.info);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn members(&self) -> Members {
        self.shared.members().clone()
    }

    /// Send a client event to the other members. `client-` is added to `event` unless it is
    /// already there; `data` must serialize to a JSON object. Refused before sending on
    /// public and encrypted channels. Above the client-event rate (10/s) events wait in a
    /// queue instead of getting the connection closed.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let room = client.subscribe("private-room").await?;
    /// room.trigger("typing", &serde_json::json!({"on": true})).await?; // sent as client-typing
    /// # Ok(()) }
    /// ```
    pub async fn trigger(&self, event: &str, data: &impl Serialize) -> Result<()> {
        match self.shared.kind {
            ChannelKind::Private | ChannelKind::Presence => {}
            ChannelKind::PrivateEncrypted => {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!("{}: client events are not supported on encrypted channels", self.name()),
                ));
            }
            ChannelKind::Public | ChannelKind::ServerToUser => {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!("{}: client events need a private- or presence- channel", self.name()),
                ));
            }
        }
        let event = if event.starts_with("client-") { event.to_owned() } else { format!("client-{event}") };
        switchboard_protocol::channel::validate_event_name(&event)
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, e.to_string()))?;
        let value = serde_json::to_value(data)
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("data does not serialize: {e}")))?;
        if !value.is_object() {
            return Err(Error::new(ErrorKind::InvalidRequest, "client event data must be a JSON object"));
        }
        self.client.trigger(&self.shared.name, event, value.to_string()).await
    }

    /// Leave the channel. Handlers stay bound; subscribing again reuses them.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let channel = client.subscribe("private-orders.1").await?;
    /// channel.unsubscribe().await;
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(&self) {
        self.client.unsubscribe(self.name()).await;
    }
}
