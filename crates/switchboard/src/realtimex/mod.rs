//! RealtimeX: Pusher channels spoken as Socket.IO v5 events over Engine.IO v4 (WebSocket
//! transport), as `switchboard serve` serves them at `/socket.io/` and the seed
//! `realtimex-python` SDK speaks them.
//!
//! A RealtimeX client is a [`crate::Client`] whose options say [`Protocol::RealtimeX`]:
//! the same [`crate::Channel`]s, presence members, `bind` / `bind_global` / streams,
//! `trigger` of client events, authorizers (the app secret, an HTTP endpoint — Laravel form
//! style, or the seed's JSON style with [`crate::HttpAuthorizer::json_body`] — or a closure),
//! lossless queues, resubscription with fresh auth and a `switchboard:gap` after every
//! reconnect. What differs is the wire, which this module holds:
//!
//! - the socket id is the namespace sid from the CONNECT answer (what any Socket.IO server
//!   calls `socket.id`; the seed signs over the Engine.IO sid, its bug), and every signature
//!   is made over it;
//! - the server pings; no ping for `pingInterval + pingTimeout` means the connection is dead;
//! - a server `41` (its terminate) stops the client for good, as socket.io-client stops; a
//!   CONNECT_ERROR does too; any other close reconnects after a jittered backoff;
//!   [`crate::Client::disconnect`] sends `41` and stays disconnected;
//! - acks both ways: [`crate::Client::emit_with_ack`] waits for the server's answer, and an
//!   event the server sends with an ack id is answered `{"ok":true}` once it is queued for the
//!   listeners.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! use switchboard::{Client, realtimex};
//! let options = realtimex::options("switchboard-key")
//!     .host("127.0.0.1")
//!     .port(8080)
//!     .tls(false)
//!     .secret("switchboard-secret") // signs private and presence channels locally
//!     .build()?;
//! let client = Client::new(options);
//! let news = client.subscribe("news").await?;
//! let mut events = news.events();
//! while let Some(event) = events.recv().await {
//!     println!("{}: {:?}", event.name(), event.data());
//! }
//! # Ok(()) }
//! ```

pub(crate) mod wire;

use crate::pusher::options::{ClientOptions, ClientOptionsBuilder, Protocol};

/// Options for a RealtimeX client of app `api_key` (`wss://localhost:443/socket.io/` until
/// host, port and TLS are set).
///
/// ```
/// use switchboard::realtimex;
/// let options = realtimex::options("app-key").host("127.0.0.1").port(8080).tls(false).build()?;
/// assert_eq!(options.url(), "ws://127.0.0.1:8080/socket.io/?api_key=app-key&EIO=4&transport=websocket");
/// # Ok::<(), switchboard::Error>(())
/// ```
pub fn options(api_key: impl Into<String>) -> ClientOptionsBuilder {
    ClientOptions::builder(api_key).protocol(Protocol::RealtimeX)
}
