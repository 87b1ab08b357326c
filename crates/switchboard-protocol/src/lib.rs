//! Pure codecs, signatures and presence state for the Pusher Channels protocol v7.
//!
//! This crate does no I/O: it turns text into typed frames and back, classifies channel
//! names, computes and verifies every signature the protocol uses (channel auth, user
//! sign-in, HTTP API requests, webhooks) and keeps presence rosters. The client
//! (`switchboard`) and the server (`switchboard-server`) both build on it, so both sides
//! agree on every byte. Everything here is deterministic and cheap to fuzz.
//!
//! ```
//! use switchboard_protocol::{Frame, ChannelName, ChannelKind};
//!
//! let frame = Frame::decode(r#"{"event":"pusher:subscribe","data":{"channel":"presence-room"}}"#)?;
//! assert_eq!(frame.event, "pusher:subscribe");
//! let name = ChannelName::parse("presence-room")?;
//! assert_eq!(name.kind(), ChannelKind::Presence);
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

pub mod channel;
pub mod codes;
pub mod encryption;
pub mod engineio;
pub mod error;
pub mod frame;
pub mod fuzz;
pub mod gateway;
pub mod http_auth;
mod json_scan;
pub mod messages;
pub mod packed;
pub mod phoenix;
pub mod phoenix_presence;
pub mod presence;
pub mod realtimex;
pub mod signature;
pub mod socketio;

pub use channel::{ChannelKind, ChannelName};
pub use codes::{CloseAction, ErrorCode};
pub use error::ProtocolError;
pub use frame::{Data, Frame};
pub use packed::PackedFrame;
pub use presence::{PresenceChange, PresenceRoster};

/// The protocol version this crate speaks (`?protocol=7` in the connection URL).
///
/// ```
/// use switchboard_protocol::PROTOCOL_VERSION;
/// let url = format!("ws://127.0.0.1:8080/app/my-key?protocol={PROTOCOL_VERSION}");
/// assert!(url.ends_with("?protocol=7"));
/// ```
pub const PROTOCOL_VERSION: u8 = 7;
