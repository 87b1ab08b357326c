//! The Pusher Channels protocol v7 client (Laravel Reverb, Pusher, Soketi, Sockudo): the
//! protocol's rules only; queues, backoff, buffers and the TLS connect are shared with the
//! other protocols (see the crate root).
//!
//! - [`client`]: the cheap, cloneable [`Client`](crate::Client) in front of one connection task;
//! - `connection`: that task (handshake, subscriptions, pings, reconnects);
//! - [`channel`], [`presence`]: subscriptions and presence rosters;
//! - [`auth`]: channel and user authorizers (secret, endpoint, closure);
//! - [`echo`]: Laravel Echo's naming helpers;
//! - [`options`]: the options builder;
//! - [`publisher`]: the HTTP API client (trigger, batch, channel queries).
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! use switchboard::pusher::{client::Client, options::ClientOptions};
//! let client = Client::connect(ClientOptions::builder("app-key").host("127.0.0.1").port(8080).tls(false).build()?).await?;
//! let orders = client.subscribe("orders").await?;
//! # let _ = orders; Ok(()) }
//! ```

pub mod auth;
pub mod channel;
pub mod client;
pub(crate) mod connection;
pub mod echo;
pub mod options;
pub mod presence;
pub mod publisher;
