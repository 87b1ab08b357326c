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

pub mod auth;
pub mod backoff;
mod buffers;
pub mod channel;
pub mod client;
mod connection;
mod delivery;
pub mod echo;
pub mod error;
pub mod event;
pub mod io_thread;
mod listeners;
pub mod options;
pub mod phoenix;
pub mod presence;
pub mod publisher;
mod queue;
pub mod state;
mod transport;

pub use auth::{
    AuthRequest, Authorizer, ChannelAuth, FnAuthorizer, HttpAuthorizer, PresenceUser, SecretAuthorizer, UserAuth,
};
pub use backoff::Backoff;
pub use channel::Channel;
pub use client::Client;
pub use delivery::{SlowConsumer, StallAction};
pub use echo::{Echo, EchoChannel};
pub use error::{Error, ErrorKind, Result};
pub use event::{DECRYPTION_ERROR_EVENT, Event, EventStream, GAP_EVENT, HandlerId, LAGGED_EVENT, MEMBERS_CAPPED_EVENT};
pub use io_thread::IoRuntime;
pub use options::{ClientOptions, ClientOptionsBuilder};
pub use presence::{Member, Members};
pub use publisher::Publisher;
pub use state::ConnectionState;
