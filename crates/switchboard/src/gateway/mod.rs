//! A Realtime Pub/Sub gateway client (the protocol of `realtime-pubsub-client`, served by
//! realtime.21no.de and by `switchboard serve`), without the SDKs' defects
//! (`gateway-and-realtimex.md` A.4): the URL provider runs on every connect; ack and reply
//! waiters are registered before the frame is written; subscriptions are replayed after
//! every reconnect; any close the user did not ask for reconnects, with jittered backoff;
//! a WebSocket ping notices a dead socket; binary (compressed) frames are read, flagged; no
//! 6 KiB read limit; sends while offline wait in a bounded queue; events reach listeners
//! losslessly through the queues every protocol shares.
//!
//! Listeners take the SDKs' patterns over `"{topic}.{messageType}"`: `*` one segment, `**`
//! any number (`chat.*`, `*.response`, `secure/inbound.**`). An [`Event`](crate::Event)'s
//! channel is the topic, its name the messageType, its data the frame's `data`;
//! [`Incoming::from_event`] reads the delivery envelope.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! use switchboard::gateway::{GatewayClient, GatewayOptions, Incoming, PublishOptions};
//! let client = GatewayClient::connect(GatewayOptions::with_url_provider(|| async {
//!     Ok("ws://127.0.0.1:8080/apps/1000?access_token=…".to_owned()) // mint a fresh token here
//! }))
//! .await?;
//! client.subscribe("chat")?;
//! client.on("chat.*", |event| {
//!     if let Ok(message) = Incoming::from_event(event) {
//!         println!("{} says {}", message.subject.unwrap_or_default(), message.payload);
//!     }
//! });
//! client.publish("chat", &serde_json::json!({"text": "hi"}), PublishOptions::new().message_type("text"))?.ack().await?;
//! // RPC: send to the backends and wait for their reply.
//! let answer = client.request(&serde_json::json!({}), PublishOptions::new().message_type("gettime"))?.reply().await?;
//! println!("{}", answer.data);
//! # Ok(()) }
//! ```

mod client;
mod connection;
mod options;

pub use client::{GatewayClient, Incoming, Pending, PublishOptions};
pub use connection::SUBSCRIPTION_ERROR_EVENT;
pub use options::{GatewayOptions, UrlProvider};
pub use switchboard_protocol::gateway::frames::{ConnectionInfo, Response};
