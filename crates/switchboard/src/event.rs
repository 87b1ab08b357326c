//! Events, and the names of the events the client itself emits.
//!
//! Listeners receive every event, in order. Each stream has a bounded queue, and bound
//! handlers run on one handler task fed by a bounded queue; when a queue is full the client
//! stops reading the socket until it has room (backpressure), so nothing is lost. A listener
//! that takes nothing for the stall limit meets the [`crate::SlowConsumer`] policy, and
//! every drop is reported: a stream's next item is `switchboard:lagged` with
//! `{"dropped": n}`. A panicking handler is caught and logged.
//!
//! Events that arrive right after `subscribe(..).await` resolves, before a listener is
//! attached, are held for the listeners attached next (see [`crate::Channel::events`]).
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

use serde::de::DeserializeOwned;

use switchboard_protocol::PackedFrame;

use crate::error::{Error, ErrorKind, Result};
pub use crate::listeners::EventStream;

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
/// Name of the event a presence channel receives once when its roster reached the client's
/// `max_presence_members` and members were left out (data `{"limit": N}`); `members()` then
/// holds the first N and says it is not complete.
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
/// let stadium = client.subscribe_presence("presence-stadium", me).await?;
/// stadium.bind(switchboard::MEMBERS_CAPPED_EVENT, |e| eprintln!("roster capped: {:?}", e.data()));
/// # Ok(()) }
/// ```
pub const MEMBERS_CAPPED_EVENT: &str = "switchboard:members_capped";

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
    /// What few events carry: a Phoenix V2 binary payload, or the gateway's compressed
    /// flag. Boxed: rare, and events are moved through queues by value, so size matters.
    extra: Option<Box<Extra>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Extra {
    /// The payload of a Phoenix V2 binary frame (then there is no text payload).
    binary: Option<bytes::Bytes>,
    /// The gateway delivered it as a binary frame (the publisher's `compress`).
    compressed: bool,
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
        event.extra.clone_from(&self.extra);
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
        self.extra.as_ref().and_then(|e| e.binary.as_ref())
    }

    /// True if the gateway delivered this event as a binary frame: the publisher asked for
    /// `compress` (the JSON is the same; the SDKs call it `compression`).
    ///
    /// ```
    /// assert!(!switchboard::Event::new(Some("chat"), "text", Some("{}")).compressed());
    /// ```
    pub fn compressed(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.compressed)
    }

    /// A gateway frame's event: the topic as its channel, the messageType as its name, the
    /// frame's `data` as its data; the buffer from this thread's pool.
    pub(crate) fn gateway(topic: &str, message_type: &str, data: &str, compressed: bool) -> Self {
        let mut event = Self::received(topic, message_type, data);
        if compressed {
            event.extra = Some(Box::new(Extra { binary: None, compressed }));
        }
        event
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
        Self { frame, extra: None }
    }

    /// An event read from a socket whose frames are not packed as they are decoded (Phoenix):
    /// its buffer comes from this thread's pool, as a Pusher frame's does (see `buffers.rs`).
    pub(crate) fn received(channel: &str, name: &str, data: &str) -> Self {
        let buffer = crate::buffers::take(channel.len() + name.len() + data.len());
        Self::from_frame(PackedFrame::from_parts_into(buffer, name, Some(channel), Some(data), None))
    }

    /// Start moving its buffer into this core's cache (a consumer's coming event), without
    /// reading it.
    pub(crate) fn prefetch(&self) {
        crate::buffers::prefetch_for_read(self.frame.buffer());
    }

    pub(crate) fn internal(channel: Option<&str>, name: &str, data: Option<String>) -> Self {
        Self::pack(channel, name, data.as_deref(), None)
    }

    pub(crate) fn binary_payload(channel: &str, name: &str, payload: bytes::Bytes) -> Self {
        let mut event = Self::pack(Some(channel), name, None, None);
        event.extra = Some(Box::new(Extra { binary: Some(payload), compressed: false }));
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
        (self.channel(), self.name(), self.data(), self.user_id(), self.binary(), self.compressed())
            == (other.channel(), other.name(), other.data(), other.user_id(), other.binary(), other.compressed())
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
        if let Some(binary) = self.binary() {
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
pub struct HandlerId(pub(crate) u64);

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
