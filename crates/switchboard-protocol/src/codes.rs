//! Pusher error and close codes and what a client should do when it meets one.
//!
//! Codes arrive as `pusher:error` `data.code` or as the WebSocket close code. The ranges
//! come from the protocol page as quoted by the Swift client's `ChannelsProtocolCloseCode`
//! and pusher-js `Protocol.getCloseAction`.
//!
//! ```
//! use switchboard_protocol::{CloseAction, ErrorCode};
//! // A close with 4001 (no such app) must not be retried unchanged; 4201 (no pong) may be at once.
//! assert_eq!(ErrorCode(4001).close_action(), CloseAction::Stop);
//! assert_eq!(ErrorCode::PONG_NOT_RECEIVED.close_action(), CloseAction::ReconnectNow);
//! ```

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
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::TLS_ONLY, ErrorCode(4000));
    /// assert_eq!(ErrorCode::TLS_ONLY.close_action(), CloseAction::SwitchToTls);
    /// ```
    pub const TLS_ONLY: Self = Self(4000);
    /// 4001: no app with this key exists.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::APP_NOT_FOUND, ErrorCode(4001));
    /// assert_eq!(ErrorCode::APP_NOT_FOUND.close_action(), CloseAction::Stop);
    /// ```
    pub const APP_NOT_FOUND: Self = Self(4001);
    /// 4003: the app is disabled.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::APP_DISABLED, ErrorCode(4003));
    /// assert_eq!(ErrorCode::APP_DISABLED.close_action(), CloseAction::Stop);
    /// ```
    pub const APP_DISABLED: Self = Self(4003);
    /// 4004: the app is over its connection quota.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::OVER_QUOTA, ErrorCode(4004));
    /// assert_eq!(ErrorCode::OVER_QUOTA.close_action(), CloseAction::Stop);
    /// ```
    pub const OVER_QUOTA: Self = Self(4004);
    /// 4005: no such path.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::PATH_NOT_FOUND, ErrorCode(4005));
    /// assert_eq!(ErrorCode::PATH_NOT_FOUND.close_action(), CloseAction::Stop);
    /// ```
    pub const PATH_NOT_FOUND: Self = Self(4005);
    /// 4007: unsupported protocol version.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::UNSUPPORTED_PROTOCOL, ErrorCode(4007));
    /// assert_eq!(ErrorCode::UNSUPPORTED_PROTOCOL.close_action(), CloseAction::Stop);
    /// ```
    pub const UNSUPPORTED_PROTOCOL: Self = Self(4007);
    /// 4009: the connection is not authorized (bad signature, not a member, terminated user).
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::UNAUTHORIZED, ErrorCode(4009));
    /// assert_eq!(ErrorCode::UNAUTHORIZED.close_action(), CloseAction::Stop);
    /// ```
    pub const UNAUTHORIZED: Self = Self(4009);
    /// 4100: the server is over capacity; reconnect after a backoff.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::OVER_CAPACITY, ErrorCode(4100));
    /// assert_eq!(ErrorCode::OVER_CAPACITY.close_action(), CloseAction::Backoff);
    /// ```
    pub const OVER_CAPACITY: Self = Self(4100);
    /// 4200: generic "reconnect now" (the server is closing or restarting).
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::RECONNECT, ErrorCode(4200));
    /// assert_eq!(ErrorCode::RECONNECT.close_action(), CloseAction::ReconnectNow);
    /// ```
    pub const RECONNECT: Self = Self(4200);
    /// 4201: the client did not answer a ping in time.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::PONG_NOT_RECEIVED, ErrorCode(4201));
    /// assert_eq!(ErrorCode::PONG_NOT_RECEIVED.close_action(), CloseAction::ReconnectNow);
    /// ```
    pub const PONG_NOT_RECEIVED: Self = Self(4201);
    /// 4202: closed after inactivity.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::INACTIVE, ErrorCode(4202));
    /// assert_eq!(ErrorCode::INACTIVE.close_action(), CloseAction::ReconnectNow);
    /// ```
    pub const INACTIVE: Self = Self(4202);
    /// 4300: a generic error that does not end the connection (malformed or oversized message).
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::GENERIC, ErrorCode(4300));
    /// assert_eq!(ErrorCode::GENERIC.close_action(), CloseAction::Backoff);
    /// ```
    pub const GENERIC: Self = Self(4300);
    /// 4301: client event rejected (rate limit, disabled, or not allowed on this channel).
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode::CLIENT_EVENT_REJECTED, ErrorCode(4301));
    /// assert_eq!(ErrorCode::CLIENT_EVENT_REJECTED.close_action(), CloseAction::Backoff);
    /// ```
    pub const CLIENT_EVENT_REJECTED: Self = Self(4301);

    /// What a client should do when the connection closes (or fails) with this code.
    ///
    /// ```
    /// use switchboard_protocol::{CloseAction, ErrorCode};
    /// assert_eq!(ErrorCode(4000).close_action(), CloseAction::SwitchToTls);
    /// assert_eq!(ErrorCode(4050).close_action(), CloseAction::Stop);
    /// assert_eq!(ErrorCode(4150).close_action(), CloseAction::Backoff);
    /// assert_eq!(ErrorCode(4250).close_action(), CloseAction::ReconnectNow);
    /// // An ordinary WebSocket close (1006: abnormal closure) is retried after a backoff.
    /// assert_eq!(ErrorCode(1006).close_action(), CloseAction::Backoff);
    /// ```
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
///
/// ```
/// use switchboard_protocol::{CloseAction, ErrorCode};
/// // How long a client might wait before reconnecting, or `None` to give up.
/// let retry_after_ms = |code: u16| match ErrorCode(code).close_action() {
///     CloseAction::ReconnectNow => Some(0),
///     CloseAction::Backoff => Some(1_000),
///     CloseAction::SwitchToTls | CloseAction::Stop => None,
/// };
/// assert_eq!(retry_after_ms(4200), Some(0));
/// assert_eq!(retry_after_ms(4100), Some(1_000));
/// assert_eq!(retry_after_ms(4001), None);
/// ```
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
