//! RealtimeX: Pusher channels spoken as Socket.IO v5 events over Engine.IO v4, WebSocket
//! transport only (`gateway-and-realtimex.md` B.5). A RealtimeX socket shares the app's
//! channels, presence rosters, limits and HTTP API with the Pusher sockets: it subscribes
//! through the same `channel_rules`, and every channel frame reaches it through the same
//! fan-out, transcoded once per publish (`fanout`, [`wire`](self)).
//!
//! - `upgrade`: `GET /socket.io/?EIO=4&transport=websocket[&api_key=KEY]`, refused with
//!   engine.io's HTTP error JSON before the 101 when it cannot be served;
//! - `connection`: the socket task (open packet, namespace CONNECT, heartbeat, events);
//! - `wire`: Pusher channel frames as RealtimeX `server-event`s.
//!
//! ```
//! use switchboard_server::ServerConfig;
//! // Socket.IO's own defaults: path, heartbeat and connect timeout.
//! let config = ServerConfig::default();
//! assert_eq!(config.realtimex_path, "/socket.io");
//! assert_eq!((config.realtimex_ping_interval_ms, config.realtimex_ping_timeout_ms), (25_000, 20_000));
//! assert_eq!(config.realtimex_connect_timeout_ms, 45_000);
//! ```

mod connection;
pub(crate) mod upgrade;
pub(crate) mod wire;
