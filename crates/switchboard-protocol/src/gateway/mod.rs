//! The Realtime Pub/Sub gateway protocol (realtime.21no.de, the `realtime-pubsub-client`
//! SDKs): frames, the delivery envelope, acks and replies, presence events, the SDKs'
//! wildcard matcher, and the JWT access tokens with their permission grammar. No I/O.
//!
//! Sources: `gateway-and-realtimex.md` Part A, `seed-clients.md` §C.
//!
//! ```
//! use switchboard_protocol::gateway::{ClientFrame, event_matches};
//! let frame = ClientFrame::decode(r#"{"type":"subscribe","data":{"topic":"chat"}}"#)?;
//! assert_eq!(frame, ClientFrame::Subscribe { topic: "chat".into() });
//! assert!(event_matches("chat.*", "chat.text"));
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

pub mod frames;
pub mod jwt;
pub mod permissions;
pub mod wildcard;

pub use frames::{ClientFrame, ServerFrame};
pub use permissions::{MANAGE_CONNECTIONS, MANAGE_SUBSCRIBERS, Permissions, glob_matches};
pub use wildcard::event_matches;
