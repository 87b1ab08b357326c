//! Events and the listeners that receive them: streams and bound handlers.
//!
//! The socket reader never waits for a listener. Each stream has a bounded queue; when it is
//! full the event is dropped for that stream and counted, and the stream's next item is a
//! `switchboard:lagged` event with `{"dropped": n}` — every drop is reported. Bound handlers
//! run on one dispatcher task fed by a bounded queue with the same policy (drops are counted
//! in [`crate::Client::dropped_events`] and logged). A panicking handler is caught and logged.
//!
//! ```no_run
//! # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
//! let news = client.subscribe("news").await?;
//! let mut events = news.events();            // a stream with its own bounded queue
//! news.bind("headline", |e| println!("{:?}", e.data())); // a handler on the handler task
//! while let Some(event) = events.recv().await {
//!     println!("{}", event.name());
//! }
//! # Ok(()) }
//! ```

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use serde::de::DeserializeOwned;

use switchboard_protocol::PackedFrame;

use crate::auth::BoxFuture;
use crate::error::{Error, ErrorKind, Result};
use crate::queue::{PushError, QueueReceiver, QueueSender, WakeBatch, Wakes, queue};

/// Name of the event a stream receives after it missed events: data `{"dropped": n}`.
///
/// ```no_run
/// # async fn run(channel: switchboard::Channel) {
/// let mut events = channel.events();
/// while let Some(event) = events.recv().await {
///     if event.name() == switchboard::LAGGED_EVENT {
///         let dropped: serde_json::Value = event.json().unwrap_or_default();
///         eprintln!("missed {} events: resynchronise", dropped["dropped"]);
///     }
/// }
/// # }
/// ```
pub const LAGGED_EVENT: &str = "switchboard:lagged";
/// Name of the event an encrypted channel receives when an event could not be decrypted
/// even with a freshly fetched key (data `{"event": name}`); the event itself is dropped.
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let vault = client.subscribe("private-encrypted-vault").await?;
/// vault.bind(switchboard::DECRYPTION_ERROR_EVENT, |e| eprintln!("undecryptable: {:?}", e.data()));
/// # Ok(()) }
/// ```
pub const DECRYPTION_ERROR_EVENT: &str = "switchboard:decryption_error";
/// Name of the event a channel receives after it was resubscribed on a new connection:
/// events published while it was offline are lost (no Pusher server replays them), so
/// resynchronise from your source of truth.
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let stock = client.subscribe("inventory").await?;
/// stock.bind(switchboard::GAP_EVENT, |_| println!("reconnected: reload the inventory from the API"));
/// # Ok(()) }
/// ```
pub const GAP_EVENT: &str = "switchboard:gap";

/// One event as delivered to listeners.
///
/// Its channel, name, payload and user id share one buffer: the socket reader allocates
/// once per event (the frame decoder unescapes straight into it), and the consumer frees
/// once. Read it through the accessors.
///
/// ```
/// let ev = switchboard::Event::new(Some("orders"), "shipped", Some(r#"{"id":7}"#));
/// assert_eq!((ev.channel(), ev.name(), ev.data()), (Some("orders"), "shipped", Some(r#"{"id":7}"#)));
/// assert_eq!(ev.user_id(), None);
/// ```
#[derive(Clone)]
pub struct Event {
    frame: PackedFrame,
    /// The payload of a Phoenix V2 binary frame (then there is no text payload). Boxed:
    /// it is rare, and events are moved through queues by value, so size matters.
    binary: Option<Box<bytes::Bytes>>,
}

impl Event {
    /// An event built by hand (tests, relays, replays).
    ///
    /// ```
    /// let replay = switchboard::Event::new(Some("orders"), "OrderShipped", Some(r#"{"id":7}"#));
    /// assert_eq!(replay.json::<serde_json::Value>()?["id"], 7);
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn new(channel: Option<&str>, name: &str, data: Option<&str>) -> Self {
        Self::pack(channel, name, data, None)
    }

    /// The same event, from the presence member `user_id` (as on client events).
    ///
    /// ```
    /// let ev = switchboard::Event::new(Some("presence-room"), "client-typing", Some("{}")).with_user_id("42");
    /// assert_eq!(ev.user_id(), Some("42"));
    /// ```
    pub fn with_user_id(self, user_id: &str) -> Self {
        let mut event = Self::pack(self.channel(), self.name(), self.data(), Some(user_id));
        event.binary.clone_from(&self.binary);
        event
    }

    /// The channel, or `None` for connection-level events such as `pusher:error`.
    ///
    /// ```
    /// let ev = switchboard::Event::new(None, "pusher:error", Some("{}"));
    /// assert_eq!(ev.channel(), None); // a connection-level event
    /// ```
    pub fn channel(&self) -> Option<&str> {
        self.frame.channel()
    }

    /// The event name, e.g. `App\Events\OrderShipped`, `client-typing`, `pusher:member_added`.
    ///
    /// ```
    /// let ev = switchboard::Event::new(Some("orders"), "App\\Events\\OrderShipped", None);
    /// assert!(ev.name().ends_with("OrderShipped"));
    /// ```
    pub fn name(&self) -> &str {
        self.frame.event()
    }

    /// The payload as text: usually JSON (server strings are unwrapped, objects kept raw).
    ///
    /// ```
    /// // Servers send data as a JSON string; the event holds it unwrapped.
    /// let ev = switchboard::Event::new(Some("news"), "headline", Some(r#"{"title":"hi"}"#));
    /// assert_eq!(ev.data(), Some(r#"{"title":"hi"}"#));
    /// ```
    pub fn data(&self) -> Option<&str> {
        self.frame.data()
    }

    /// The sender's user id on presence client events.
    ///
    /// ```
    /// let ev = switchboard::Event::new(Some("presence-room"), "client-typing", Some("{}")).with_user_id("7");
    /// assert_eq!(ev.user_id(), Some("7"));
    /// ```
    pub fn user_id(&self) -> Option<&str> {
        self.frame.user_id()
    }

    /// The payload of a Phoenix V2 binary frame (then [`Event::data`] is `None`).
    ///
    /// ```
    /// let ev = switchboard::Event::new(Some("room:lobby"), "shout", Some("{}"));
    /// assert!(ev.binary().is_none()); // only Phoenix V2 binary pushes carry bytes
    /// ```
    pub fn binary(&self) -> Option<&bytes::Bytes> {
        self.binary.as_deref()
    }

    /// Deserialize the payload.
    ///
    /// ```
    /// let ev = switchboard::Event::new(Some("orders"), "shipped", Some(r#"{"id":7}"#));
    /// let v: serde_json::Value = ev.json()?;
    /// assert_eq!(v["id"], 7);
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        let text = self.data().unwrap_or("null");
        serde_json::from_str(text).map_err(|e| {
            Error::new(ErrorKind::Protocol, format!("event {} data is not the expected JSON: {e}", self.name()))
        })
    }

    /// A received frame, adopting its buffer without copying.
    pub(crate) fn from_frame(frame: PackedFrame) -> Self {
        Self { frame, binary: None }
    }

    pub(crate) fn internal(channel: Option<&str>, name: &str, data: Option<String>) -> Self {
        Self::pack(channel, name, data.as_deref(), None)
    }

    pub(crate) fn binary_payload(channel: &str, name: &str, payload: bytes::Bytes) -> Self {
        let mut event = Self::pack(Some(channel), name, None, None);
        event.binary = Some(Box::new(payload));
        event
    }

    /// The same event with another payload (a decrypted one).
    pub(crate) fn with_data(&self, data: &str) -> Self {
        Self::pack(self.channel(), self.name(), Some(data), self.user_id())
    }

    fn pack(channel: Option<&str>, name: &str, data: Option<&str>, user_id: Option<&str>) -> Self {
        Self::from_frame(PackedFrame::from_parts(name, channel, data, user_id))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        crate::buffers::give(std::mem::take(&mut self.frame).into_parts().0);
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.channel(), self.name(), self.data(), self.user_id(), &self.binary)
            == (other.channel(), other.name(), other.data(), other.user_id(), &other.binary)
    }
}

impl Eq for Event {}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Event");
        out.field("channel", &self.channel()).field("name", &self.name()).field("data", &self.data());
        if let Some(user_id) = self.user_id() {
            out.field("user_id", &user_id);
        }
        if let Some(binary) = &self.binary {
            out.field("binary", binary);
        }
        out.finish()
    }
}

/// Identifies a bound handler, for [`crate::Channel::unbind`].
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let news = client.subscribe("news").await?;
/// let id = news.bind("headline", |e| println!("{:?}", e.data()));
/// assert_eq!(news.unbind("headline", Some(id)), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

type SyncHandler = Arc<dyn Fn(&Event) + Send + Sync>;
type AsyncHandler = Arc<dyn Fn(Event) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
enum Handler {
    Sync(SyncHandler),
    Async(AsyncHandler),
}

struct StreamSlot {
    tx: QueueSender<Event>,
    /// Only this event name, or everything.
    filter: Option<String>,
    dropped: u64,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// (id, slot): a few per channel, so a `Vec` is the cheapest thing to walk per event.
    streams: Vec<(u64, StreamSlot)>,
    /// (id, event name or "*", handler), in bind order.
    handlers: Vec<(u64, String, Handler)>,
}

/// The listeners of one channel, or the client's global listeners.
#[derive(Default)]
pub(crate) struct Listeners {
    registry: Mutex<Registry>,
    /// Streams plus handlers, so a set nobody listens to is skipped without locking.
    active: AtomicUsize,
}

/// A registry guard that republishes the listener count when it is dropped.
struct RegistryGuard<'a> {
    guard: std::sync::MutexGuard<'a, Registry>,
    active: &'a AtomicUsize,
}

impl std::ops::Deref for RegistryGuard<'_> {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.guard
    }
}

impl std::ops::DerefMut for RegistryGuard<'_> {
    fn deref_mut(&mut self) -> &mut Registry {
        &mut self.guard
    }
}

impl Drop for RegistryGuard<'_> {
    fn drop(&mut self) {
        self.active.store(self.guard.streams.len() + self.guard.handlers.len(), Ordering::Release);
    }
}

impl Listeners {
    fn lock(&self) -> RegistryGuard<'_> {
        RegistryGuard { guard: self.registry.lock().unwrap_or_else(|p| p.into_inner()), active: &self.active }
    }

    /// True if any stream or handler listens here.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    pub(crate) fn bind(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.add_handler(event, Handler::Sync(Arc::new(handler)))
    }

    pub(crate) fn bind_async<F, Fut>(&self, event: &str, handler: F) -> HandlerId
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.add_handler(event, Handler::Async(Arc::new(move |e| Box::pin(handler(e)))))
    }

    fn add_handler(&self, event: &str, handler: Handler) -> HandlerId {
        let mut reg = self.lock();
        reg.next_id += 1;
        let id = reg.next_id;
        reg.handlers.push((id, event.to_owned(), handler));
        HandlerId(id)
    }

    /// Remove handlers of `event` (all of them, or the one with `id`). Returns how many.
    pub(crate) fn unbind(&self, event: &str, id: Option<HandlerId>) -> usize {
        let mut reg = self.lock();
        let before = reg.handlers.len();
        reg.handlers.retain(|(hid, name, _)| !(name == event && id.is_none_or(|id| id.0 == *hid)));
        before - reg.handlers.len()
    }

    pub(crate) fn unbind_all(&self) {
        self.lock().handlers.clear();
    }

    pub(crate) fn stream(self: &Arc<Self>, filter: Option<String>, capacity: usize) -> EventStream {
        let (tx, rx) = queue(capacity);
        let mut reg = self.lock();
        reg.next_id += 1;
        let id = reg.next_id;
        reg.streams.push((id, StreamSlot { tx, filter, dropped: 0 }));
        EventStream { rx, owner: Arc::downgrade(self), id }
    }

    /// Offer `event` to every matching stream without waiting (full queues count a drop),
    /// moving it into the last taker instead of cloning. Returns it if handlers want it.
    pub(crate) fn offer(&self, event: Event, wakes: &Wakes) -> Option<Event> {
        if !self.is_active() {
            return None;
        }
        let mut reg = self.lock();
        let wants_handlers = reg.handlers.iter().any(|(_, name, _)| *name == event.name() || name == "*");
        let matches = |slot: &StreamSlot, name: &str| slot.filter.as_deref().is_none_or(|f| f == name);
        let takers = reg.streams.iter().filter(|(_, slot)| matches(slot, event.name())).count();
        let mut event = Some(event);
        let mut seen = 0;
        reg.streams.retain_mut(|(_, slot)| {
            let Some(current) = event.as_ref() else { return true };
            if !matches(slot, current.name()) {
                return true;
            }
            seen += 1;
            if slot.dropped > 0 {
                let dropped = format!("{{\"dropped\":{}}}", slot.dropped);
                let lagged = Event::new(current.channel(), LAGGED_EVENT, Some(&dropped));
                match slot.tx.try_push(lagged, wakes) {
                    Ok(()) => slot.dropped = 0,
                    Err(PushError::Full(_)) => {
                        slot.dropped += 1;
                        return true;
                    }
                    Err(PushError::Closed(_)) => return false,
                }
            }
            let last = seen == takers && !wants_handlers;
            let outgoing = if last { event.take() } else { event.clone() };
            let Some(outgoing) = outgoing else { return true };
            match slot.tx.try_push(outgoing, wakes) {
                Ok(()) => true,
                Err(PushError::Full(dropped)) => {
                    slot.dropped += 1;
                    tracing::warn!(event = %dropped.name(), "event stream full: dropping an event (reported as {LAGGED_EVENT})");
                    true
                }
                Err(PushError::Closed(_)) => false,
            }
        });
        if wants_handlers { event } else { None }
    }

    fn handlers_for(&self, event: &str) -> Vec<Handler> {
        self.lock()
            .handlers
            .iter()
            .filter(|(_, name, _)| name == event || name == "*")
            .map(|(_, _, h)| h.clone())
            .collect()
    }

    fn remove_stream(&self, id: u64) {
        self.lock().streams.retain(|(sid, _)| *sid != id);
    }
}

/// A stream of events (`while let Some(ev) = stream.next().await`). Dropping it stops the
/// delivery to it; the channel stays subscribed (other streams and handlers may use it).
///
/// ```no_run
/// use futures_util::StreamExt;
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let news = client.subscribe("news").await?;
/// let mut headlines = news.events_named("headline");
/// tokio::spawn(async move {
///     while let Some(event) = headlines.next().await {
///         println!("{:?}", event.data());
///     }
/// });
/// # Ok(()) }
/// ```
pub struct EventStream {
    rx: QueueReceiver<Event>,
    owner: Weak<Listeners>,
    id: u64,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("id", &self.id).finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event, or `None` once the client is gone.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let mut events = client.subscribe("news").await?.events();
    /// if let Some(first) = events.recv().await {
    ///     println!("{}", first.name());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.remove_stream(self.id);
        }
    }
}

/// An event on its way to bound handlers.
pub(crate) struct Dispatch {
    pub(crate) listeners: Arc<Listeners>,
    pub(crate) event: Event,
}

/// Sends events to streams and to the handler task without ever waiting.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    tx: QueueSender<Dispatch>,
    pub(crate) dropped: Arc<AtomicU64>,
    wakes: Arc<Wakes>,
}

impl Dispatcher {
    /// Start the handler task.
    pub(crate) fn start(capacity: usize) -> Self {
        let (tx, rx) = queue(capacity);
        tokio::spawn(run_handlers(rx));
        Self { tx, dropped: Arc::new(AtomicU64::new(0)), wakes: Arc::default() }
    }

    /// Hold listeners' wake-ups until the guard drops: the socket reader opens one around
    /// each burst of frames, so a consumer that keeps up is woken once per burst, not once
    /// per event.
    pub(crate) fn batch(&self) -> WakeBatch {
        self.wakes.batch()
    }

    /// Wake the listeners held by an open batch now: call it before the reader awaits
    /// something that may take long (a socket write) in the middle of a burst.
    pub(crate) fn release_held(&self) {
        self.wakes.release_held();
    }

    /// Deliver to streams now and queue for handlers (only if any are bound).
    pub(crate) fn deliver(&self, listeners: &Arc<Listeners>, event: Event) {
        let Some(event) = listeners.offer(event, &self.wakes) else { return };
        let name = event.name().to_owned();
        let dispatch = Dispatch { listeners: listeners.clone(), event };
        if self.tx.try_push(dispatch, &self.wakes).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(event = %name, dropped_total = n, "handlers are behind: dropping an event for bound handlers");
        }
    }
}

async fn run_handlers(mut rx: QueueReceiver<Dispatch>) {
    while let Some(Dispatch { listeners, event }) = rx.recv().await {
        for handler in listeners.handlers_for(event.name()) {
            let outcome = match handler {
                Handler::Sync(f) => std::panic::catch_unwind(AssertUnwindSafe(|| f(&event))),
                Handler::Async(f) => AssertUnwindSafe(f(event.clone())).catch_unwind().await,
            };
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                tracing::error!(event = %event.name(), "an event handler panicked (the connection lives on): {message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_small_to_move() {
        // Every event is moved through the listener queues by value.
        assert!(std::mem::size_of::<Event>() <= 80, "{}", std::mem::size_of::<Event>());
        let binary = Event::binary_payload("room:1", "blob", bytes::Bytes::from_static(b"\x01\x02"));
        assert_eq!((binary.channel(), binary.name(), binary.data()), (Some("room:1"), "blob", None));
        assert_eq!(binary.binary().map(|b| &b[..]), Some(&b"\x01\x02"[..]));
        let with_user = binary.clone().with_user_id("7");
        assert_eq!((with_user.user_id(), with_user.binary()), (Some("7"), binary.binary()));
    }
}
