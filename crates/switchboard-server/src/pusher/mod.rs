//! The Pusher Channels protocol v7 side of the server: what `/app/{key}` and `/apps/{id}/…`
//! speak. Only the protocol's rules live here; the adapter, config, metrics and the socket
//! write rules are shared with the other protocols (see the crate root).
//!
//! - [`app`]: one app's channels, subscribers, presence rosters and cache channels;
//! - `connection`: the task that owns one Pusher WebSocket;
//! - [`connection_handle`]: what other tasks use to queue frames for a socket or close it;
//! - [`http_api`]: the signed HTTP API;
//! - `upgrade`: the `/app/{key}` upgrade;
//! - [`webhooks`]: batched, signed webhooks.
//!
//! ```
//! use switchboard_server::pusher::connection_handle::CloseRequest;
//! let request = CloseRequest { code: 4200, message: "Server is shutting down".into() };
//! assert_eq!(request.code / 100, 42, "4200-4299: reconnect at once");
//! ```

pub mod app;
pub(crate) mod connection;
pub mod connection_handle;
pub mod http_api;
pub(crate) mod upgrade;
pub mod webhooks;
