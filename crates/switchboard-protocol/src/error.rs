//! The one error type of the protocol crate: what was wrong with the input.
//!
//! ```
//! use switchboard_protocol::{ChannelName, ProtocolError};
//! let err = ChannelName::parse("#other").unwrap_err();
//! assert!(matches!(err, ProtocolError::InvalidChannelName { .. }));
//! assert!(err.to_string().starts_with("invalid channel name \"#other\""));
//! ```

/// Why a frame, name or payload was refused.
///
/// ```
/// use switchboard_protocol::{Frame, ProtocolError};
/// assert!(matches!(Frame::decode("not json"), Err(ProtocolError::MalformedJson(_))));
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The text is not valid JSON, or not a JSON object.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The frame is JSON but lacks a field the protocol requires, or has it in the wrong type.
    #[error("invalid frame: {0}")]
    InvalidFrame(String),
    /// A channel name breaks the protocol's naming rules.
    #[error("invalid channel name {name:?}: {reason}")]
    InvalidChannelName {
        /// The offending name (cut to 64 characters).
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The frame's type is not one the protocol has (the gateway's `type`).
    #[error("unknown frame type {0:?}")]
    UnknownFrameType(String),
    /// An `auth` string is not of the form `key:hexsignature`.
    #[error("malformed auth string: expected \"<app key>:<hex signature>\"")]
    MalformedAuth,
}
