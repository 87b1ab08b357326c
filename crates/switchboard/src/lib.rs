//! Switchboard: a Pusher Channels protocol v7 client you can trust, for Laravel Reverb,
//! Pusher, Soketi and Sockudo.
//!
//! - One cheap, cloneable [`Client`] in front of one background connection task.
//! - `subscribe` resolves when the server confirms, fails with the server's code, or times
//!   out. Handlers and streams survive reconnects; every channel is resubscribed with fresh
//!   auth for the new socket id, presence is rebuilt as a diff, and each channel receives a
//!   [`GAP_EVENT`] because events published while offline are lost.
//! - Dead sockets are noticed: a ping after the activity timeout, a reconnect after the pong
//!   timeout. Reconnects back off exponentially with jitter and follow the close-code classes.
//! - Nothing is lost: a listener that reads slower than events arrive slows the socket
//!   (backpressure) instead of dropping; one that stalls meets an explicit
//!   [`SlowConsumer`] policy, and every drop is reported. Events that arrive between the
//!   confirmation and your first listener are held for it.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! use switchboard::{Client, ClientOptions};
//! let client = Client::connect(ClientOptions::from_env()?.build()?).await?;
//! let channel = client.subscribe("orders").await?;
//! channel.bind("*", |event| println!("{}: {:?}", event.name(), event.data()));
//! # Ok(()) }
//! ```

//! # Layout
//!
//! One module per protocol, each holding only that protocol's rules: [`pusher`] (Pusher
//! Channels v7: [`Client`], [`Channel`], auth, presence, Echo, the HTTP [`Publisher`]),
//! [`phoenix`] (Phoenix Channels) and [`gateway`] (the Realtime Pub/Sub gateway). Everything outside them is the machinery they share:
//! backoff, event queues and backpressure, event buffers, connection state, the TLS
//! connect, the I/O thread. The items users write most are re-exported here.

pub mod backoff;
mod buffers;
mod delivery;
pub mod error;
pub mod event;
pub mod gateway;
pub mod io_thread;
mod listeners;
pub mod phoenix;
pub mod pusher;
mod queue;
pub mod realtimex;
pub mod state;
mod transport;

use std::future::Future;
use std::pin::Pin;

pub use backoff::Backoff;
pub use delivery::{SlowConsumer, StallAction};
pub use error::{Error, ErrorKind, Result};
pub use event::{DECRYPTION_ERROR_EVENT, Event, EventStream, GAP_EVENT, HandlerId, LAGGED_EVENT, MEMBERS_CAPPED_EVENT};
pub use io_thread::IoRuntime;
pub use pusher::auth::{
    AuthRequest, Authorizer, ChannelAuth, FnAuthorizer, HttpAuthorizer, PresenceUser, SecretAuthorizer, UserAuth,
};
pub use pusher::channel::Channel;
pub use pusher::client::Client;
pub use pusher::echo::{Echo, EchoChannel};
pub use pusher::options::{ClientOptions, ClientOptionsBuilder, Protocol};
pub use pusher::presence::{Member, Members};
pub use pusher::publisher::{BatchEvent, Publisher};
pub use state::ConnectionState;

/// A boxed future, as authorizers return.
///
/// ```
/// use switchboard::BoxFuture;
/// use switchboard::{AuthRequest, Authorizer, ChannelAuth, Result};
/// /// Signs with a key fetched from a vault on every call.
/// struct VaultSigner;
/// impl Authorizer for VaultSigner {
///     fn authorize_channel(&self, request: AuthRequest) -> BoxFuture<'_, Result<ChannelAuth>> {
///         Box::pin(async move {
///             let auth = format!("key:{}", request.socket_id); // stand-in for a real signature
///             Ok(ChannelAuth { auth, channel_data: None, shared_secret: None })
///         })
///     }
/// }
/// # let _ = VaultSigner;
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
