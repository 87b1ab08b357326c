//! The Realtime Pub/Sub gateway protocol (`realtime-pubsub-client` and its siblings) in
//! `switchboard serve`: `GET /apps/{app_id}?access_token=JWT`, and its admin HTTP API under
//! `/api/`. The spec is `gateway-and-realtimex.md` A.5; the decisions it marks "ours" are
//! listed in ARCHITECTURE.md.
//!
//! - `upgrade`: the token is checked before the 101 (HTTP 401 with a JSON reason, 404 for an
//!   unknown app), so a client can tell "mint a new token" from "network down";
//! - `connection`: the socket task (welcome, `main` and `priv/<id>`, publish and message,
//!   acks, presence to `secure/inbound`, WebSocket ping liveness, limits);
//! - [`registry`]: each app's topics and connections, apart from Pusher channels (the
//!   semantics differ: the sender is echoed, permissions come from the token);
//! - [`http_api`]: publish, unsubscribe a subject, close connections.
//!
//! Joins, subscribes, fan-out and the admin calls go through the [`Adapter`](crate::Adapter)
//! like every protocol's, so with scaling on (`crate::scaling`) a topic spans nodes.
//!
//! ```
//! use switchboard_protocol::gateway::jwt::{self, Algorithm};
//! use switchboard_server::config::DEV_APP_SECRET;
//! // A token for the development app, as `switchboard token` mints it: the app secret
//! // verifies it unless `gateway_client_key` is set.
//! let token = jwt::sign(&serde_json::json!({"sub": "ada", "permissions": ["realtime:publisher:write:topic:*"]}), DEV_APP_SECRET.as_bytes(), Algorithm::Hs256);
//! let url = format!("ws://127.0.0.1:8080/apps/1000?access_token={token}");
//! assert!(url.contains("/apps/1000?access_token=ey"));
//! ```

pub(crate) mod connection;
pub mod http_api;
pub mod registry;
pub(crate) mod upgrade;

pub use registry::{Outgoing, Registry};

/// The handle other tasks hold for one gateway socket.
pub type GatewayHandle = crate::connection_handle::ConnectionHandle<Outgoing>;
