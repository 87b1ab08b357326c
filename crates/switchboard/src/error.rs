//! The one error type of the client, with a [`ErrorKind`] to match on.
//!
//! The kinds are python-reverb's exception set in Rust form: connection, authentication,
//! subscription, protocol, timeout, closed — plus configuration. Every message says what to
//! fix; codes and HTTP statuses travel with the error.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The WebSocket could not be opened, or the server refused the connection
    /// (`pusher:error` 4001–4099 such as an unknown app key).
    Connection,
    /// An auth endpoint or authorizer refused or failed (HTTP 401/403/419/5xx, bad JSON).
    Authentication,
    /// The server refused a subscription (`pusher:subscription_error`, or 4009).
    Subscription,
    /// The server sent something the protocol does not allow, or refused what we sent.
    Protocol,
    /// Something did not happen in time (connect, subscribe, auth).
    Timeout,
    /// The client was disconnected by the user or stopped for good.
    Closed,
    /// A setting is missing or invalid.
    Config,
    /// A client event was refused before sending (public or encrypted channel, bad name).
    InvalidRequest,
}

/// A client error: its kind, a message saying what to fix, and the code or HTTP status when
/// the server or an auth endpoint supplied one.
///
/// ```
/// use switchboard::{Error, ErrorKind};
/// let err = Error::new(ErrorKind::Timeout, "no subscription_succeeded for private-x within 10s");
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// assert!(err.to_string().contains("private-x"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    code: Option<u16>,
    status: Option<u16>,
    body: Option<String>,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), code: None, status: None, body: None }
    }

    /// Attach a Pusher error code (e.g. 4009).
    pub fn with_code(mut self, code: u16) -> Self {
        self.code = Some(code);
        self
    }

    /// Attach an HTTP status and response body (auth endpoints, the HTTP API).
    pub fn with_http(mut self, status: u16, body: impl Into<String>) -> Self {
        self.status = Some(status);
        self.body = Some(body.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The Pusher error code, if the server sent one.
    pub fn code(&self) -> Option<u16> {
        self.code
    }

    /// The HTTP status, for auth-endpoint and HTTP API failures.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The HTTP response body, for auth-endpoint and HTTP API failures.
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn closed() -> Self {
        Self::new(ErrorKind::Closed, "the client is disconnected (disconnect() was called or it stopped for good)")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Connection => "connection error",
            ErrorKind::Authentication => "authentication error",
            ErrorKind::Subscription => "subscription error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Config => "configuration error",
            ErrorKind::InvalidRequest => "invalid request",
        };
        write!(f, "{kind}: {}", self.message)?;
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
