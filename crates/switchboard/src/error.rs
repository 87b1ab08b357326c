//! The one error type of the client, with a [`ErrorKind`] to match on.
//!
//! The kinds are python-reverb's exception set in Rust form: connection, authentication,
//! subscription, protocol, timeout, closed — plus configuration. Every message says what to
//! fix; codes and HTTP statuses travel with the error.
//!
//! ```
//! use switchboard::{ClientOptions, ErrorKind};
//! let err = ClientOptions::from_url("http://example.com/").err().expect("not a ws URL with /app/KEY");
//! assert_eq!(err.kind(), ErrorKind::Config);
//! ```

use std::fmt;

/// What kind of failure an [`Error`] is.
///
/// ```
/// use switchboard::{ClientOptions, ErrorKind};
/// let err = ClientOptions::builder("").build().err().expect("an empty key is refused");
/// match err.kind() {
///     ErrorKind::Config => eprintln!("fix the settings: {}", err.message()),
///     other => eprintln!("{other:?}: {err}"),
/// }
/// ```
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
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Protocol, "unexpected frame");
    /// assert_eq!((err.kind(), err.message(), err.code()), (ErrorKind::Protocol, "unexpected frame", None));
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), code: None, status: None, body: None }
    }

    /// Attach a Pusher error code (e.g. 4009).
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Subscription, "private-x: invalid signature").with_code(4009);
    /// assert_eq!(err.code(), Some(4009));
    /// assert!(err.to_string().ends_with("(code 4009)"));
    /// ```
    pub fn with_code(mut self, code: u16) -> Self {
        self.code = Some(code);
        self
    }

    /// Attach an HTTP status and response body (auth endpoints, the HTTP API).
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Authentication, "auth endpoint refused").with_http(403, "Forbidden");
    /// assert_eq!((err.status(), err.body()), (Some(403), Some("Forbidden")));
    /// ```
    pub fn with_http(mut self, status: u16, body: impl Into<String>) -> Self {
        self.status = Some(status);
        self.body = Some(body.into());
        self
    }

    /// The kind of failure.
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Timeout, "late").kind(), ErrorKind::Timeout);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The Pusher error code, if the server sent one.
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Connection, "over quota").with_code(4004).code(), Some(4004));
    /// ```
    pub fn code(&self) -> Option<u16> {
        self.code
    }

    /// The HTTP status, for auth-endpoint and HTTP API failures.
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Authentication, "CSRF").with_http(419, "").status(), Some(419));
    /// ```
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The HTTP response body, for auth-endpoint and HTTP API failures.
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Authentication, "refused").with_http(401, r#"{"message":"Unauthenticated."}"#);
    /// assert!(err.body().is_some_and(|b| b.contains("Unauthenticated")));
    /// ```
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// The message.
    ///
    /// ```
    /// use switchboard::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Config, "REVERB_APP_KEY: is not set");
    /// assert_eq!(err.message(), "REVERB_APP_KEY: is not set");
    /// assert_eq!(err.to_string(), "configuration error: REVERB_APP_KEY: is not set");
    /// ```
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
///
/// ```
/// fn port(text: &str) -> switchboard::Result<u16> {
///     text.parse().map_err(|e| switchboard::Error::new(switchboard::ErrorKind::Config, format!("port: {e}")))
/// }
/// assert!(port("8080").is_ok() && port("eighty").is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
