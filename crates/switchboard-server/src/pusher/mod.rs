//! The Pusher Channels protocol v7 side of the server: what `/app/{key}` and `/apps/{id}/…`
//! speak. Only the protocol's rules live here; the adapter, config, metrics and the socket
//! write rules are shared with the other protocols (see the crate root).
//!
//! - [`app`]: one app's channels, subscribers, presence rosters and cache channels;
//! - `channel_rules`: who may subscribe and send client events (shared with RealtimeX);
//! - `connection`: the task that owns one Pusher WebSocket;
//! - [`http_api`]: the signed HTTP API;
//! - `upgrade`: the `/app/{key}` upgrade;
//! - [`webhooks`]: batched, signed webhooks.
//!
//! ```
//! use switchboard_server::pusher::app::ChannelCounts;
//! // What the HTTP API reports for a channel nobody is on.
//! assert_eq!(ChannelCounts::default().subscription_count, 0);
//! ```

pub mod app;
pub(crate) mod channel_rules;
pub(crate) mod connection;
pub mod http_api;
pub(crate) mod upgrade;
pub mod webhooks;
