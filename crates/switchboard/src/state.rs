//! Connection states, as pusher-js names them, observable as a stream or with callbacks.
//!
//! ```no_run
//! # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
//! client.on_state_change(|from, to| println!("{} -> {}", from.name(), to.name()));
//! # Ok(()) }
//! ```

use std::time::Duration;

/// Where the connection stands.
///
/// `Initialized → Connecting → Connected`; while reconnecting, `Unavailable` (with the wait
/// before the next attempt); `Disconnected` after `disconnect()`; `Failed` when the server
/// refused for good (4001–4099) or `max_retries` ran out.
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// use switchboard::ConnectionState;
/// match client.state() {
///     ConnectionState::Connected { socket_id } => println!("connected as {socket_id}"),
///     ConnectionState::Unavailable { retry_in, reason } => println!("{reason}; retrying in {retry_in:?}"),
///     ConnectionState::Failed { reason, code } => eprintln!("gave up ({code:?}): {reason}"),
///     other => println!("{}", other.name()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Created, not yet connecting.
    Initialized,
    /// Opening the socket and waiting for `pusher:connection_established`.
    Connecting,
    /// Connected; the socket id is fresh for every connection.
    Connected {
        /// The server-assigned socket id.
        socket_id: String,
    },
    /// Not connected; the next attempt starts after `retry_in`.
    Unavailable {
        /// Wait before the next attempt.
        retry_in: Duration,
        /// Why the last connection ended or the last attempt failed.
        reason: String,
    },
    /// Disconnected by the user.
    Disconnected,
    /// Stopped for good; the error says why.
    Failed {
        /// Why the client gave up.
        reason: String,
        /// The Pusher code, when the server refused.
        code: Option<u16>,
    },
}

impl ConnectionState {
    /// The socket id when connected.
    ///
    /// ```
    /// use switchboard::ConnectionState;
    /// let state = ConnectionState::Connected { socket_id: "123.456".into() };
    /// assert_eq!(state.socket_id(), Some("123.456"));
    /// assert_eq!(ConnectionState::Connecting.socket_id(), None);
    /// ```
    pub fn socket_id(&self) -> Option<&str> {
        match self {
            ConnectionState::Connected { socket_id } => Some(socket_id),
            _ => None,
        }
    }

    /// True for `Disconnected` and `Failed`: nothing more will happen.
    ///
    /// ```
    /// use switchboard::ConnectionState;
    /// assert!(ConnectionState::Disconnected.is_final());
    /// assert!(!ConnectionState::Connecting.is_final());
    /// ```
    pub fn is_final(&self) -> bool {
        matches!(self, ConnectionState::Disconnected | ConnectionState::Failed { .. })
    }

    /// pusher-js's name for the state.
    ///
    /// ```
    /// use switchboard::ConnectionState;
    /// assert_eq!(ConnectionState::Initialized.name(), "initialized");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            ConnectionState::Initialized => "initialized",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected { .. } => "connected",
            ConnectionState::Unavailable { .. } => "unavailable",
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Failed { .. } => "failed",
        }
    }
}
