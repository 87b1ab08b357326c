//! Pusher error and close codes and what a client should do when it meets one.
//!
//! Codes arrive as `pusher:error` `data.code` or as the WebSocket close code. The ranges
//! come from the protocol page as quoted by the Swift client's `ChannelsProtocolCloseCode`
//! and pusher-js `Protocol.getCloseAction`.

/// Well-known Pusher error codes.
///
/// ```
/// use switchboard_protocol::{ErrorCode, CloseAction};
/// assert_eq!(ErrorCode::PONG_NOT_RECEIVED.close_action(), CloseAction::ReconnectNow);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// 4000: the app only accepts TLS connections.
    pub const TLS_ONLY: Self = Self(4000);
    /// 4001: no app with this key exists.
    pub const APP_NOT_FOUND: Self = Self(4001);
    /// 4003: the app is disabled.
    pub const APP_DISABLED: Self = Self(4003);
    /// 4004: the app is over its connection quota.
    pub const OVER_QUOTA: Self = Self(4004);
    /// 4005: no such path.
    pub const PATH_NOT_FOUND: Self = Self(4005);
    /// 4007: unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL: Self = Self(4007);
    /// 4009: the connection is not authorized (bad signature, not a member, terminated user).
    pub const UNAUTHORIZED: Self = Self(4009);
    /// 4100: the server is over capacity; reconnect after a backoff.
    pub const OVER_CAPACITY: Self = Self(4100);
    /// 4200: generic "reconnect now" (the server is closing or restarting).
    pub const RECONNECT: Self = Self(4200);
    /// 4201: the client did not answer a ping in time.
    pub const PONG_NOT_RECEIVED: Self = Self(4201);
    /// 4202: closed after inactivity.
    pub const INACTIVE: Self = Self(4202);
    /// 4300: a generic error that does not end the connection (malformed or oversized message).
    pub const GENERIC: Self = Self(4300);
    /// 4301: client event rejected (rate limit, disabled, or not allowed on this channel).
    pub const CLIENT_EVENT_REJECTED: Self = Self(4301);

    /// What a client should do when the connection closes (or fails) with this code.
    pub fn close_action(self) -> CloseAction {
        match self.0 {
            4000 => CloseAction::SwitchToTls,
            4001..=4099 => CloseAction::Stop,
            4100..=4199 => CloseAction::Backoff,
            4200..=4299 => CloseAction::ReconnectNow,
            4300..=4399 => CloseAction::Backoff,
            // 1000..=3999 and anything unknown: an ordinary network-level close.
            _ => CloseAction::Backoff,
        }
    }
}

/// The reconnect class of a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// 4000: reconnect over TLS.
    SwitchToTls,
    /// 4001–4099: do not reconnect unchanged; tell the user why.
    Stop,
    /// 4100–4199 and transport failures: reconnect after an (exponential) backoff.
    Backoff,
    /// 4200–4299: reconnect at once.
    ReconnectNow,
}
