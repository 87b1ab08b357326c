//! Channel names and the kind of channel each name denotes.
//!
//! Rules from `pusher-http-node` `validateChannel`, Soketi and Sockudo: the characters
//! `[-a-zA-Z0-9_=@,.;]`, at most 200 of them; a leading `#` only for the reserved
//! `#server-to-user-{id}` channels. The kind comes from the prefix, cache variants included.
//!
//! ```
//! use switchboard_protocol::{ChannelKind, ChannelName};
//! let channel = ChannelName::parse("private-encrypted-cache-prices")?;
//! assert_eq!(channel.kind(), ChannelKind::PrivateEncrypted);
//! assert!(channel.is_cache() && channel.kind().requires_auth());
//! assert!(ChannelName::parse("no spaces").is_err());
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use crate::ProtocolError;

/// Longest channel name the protocol allows.
///
/// ```
/// use switchboard_protocol::ChannelName;
/// use switchboard_protocol::channel::MAX_CHANNEL_NAME_LEN;
/// assert!(ChannelName::parse(&"a".repeat(MAX_CHANNEL_NAME_LEN)).is_ok());
/// assert!(ChannelName::parse(&"a".repeat(MAX_CHANNEL_NAME_LEN + 1)).is_err());
/// ```
pub const MAX_CHANNEL_NAME_LEN: usize = 200;
/// Longest event name the protocol allows.
///
/// ```
/// use switchboard_protocol::channel::{MAX_EVENT_NAME_LEN, validate_event_name};
/// assert!(validate_event_name(&"e".repeat(MAX_EVENT_NAME_LEN)).is_ok());
/// assert!(validate_event_name(&"e".repeat(MAX_EVENT_NAME_LEN + 1)).is_err());
/// ```
pub const MAX_EVENT_NAME_LEN: usize = 200;
/// Prefix of the reserved channels that carry events to one signed-in user.
///
/// ```
/// use switchboard_protocol::channel::SERVER_TO_USER_PREFIX;
/// use switchboard_protocol::{ChannelKind, ChannelName};
/// let name = format!("{SERVER_TO_USER_PREFIX}42");
/// let channel = ChannelName::parse(&name)?;
/// assert_eq!(channel.kind(), ChannelKind::ServerToUser);
/// assert_eq!(channel.server_to_user_id(), Some("42"));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What a channel's name makes it.
///
/// ```
/// use switchboard_protocol::{ChannelKind, ChannelName};
/// assert_eq!(ChannelName::parse("news")?.kind(), ChannelKind::Public);
/// assert_eq!(ChannelName::parse("private-orders")?.kind(), ChannelKind::Private);
/// assert_eq!(ChannelName::parse("private-encrypted-prices")?.kind(), ChannelKind::PrivateEncrypted);
/// assert_eq!(ChannelName::parse("presence-room")?.kind(), ChannelKind::Presence);
/// assert_eq!(ChannelName::parse("#server-to-user-42")?.kind(), ChannelKind::ServerToUser);
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// `private-`: subscription needs a signature over `socket_id:channel`.
    Private,
    /// `private-encrypted-`: private, and payloads are end-to-end encrypted (no client events).
    PrivateEncrypted,
    /// `presence-`: signature over `socket_id:channel:channel_data`, members tracked.
    Presence,
    /// `#server-to-user-{id}`: only the signed-in user `id` may subscribe.
    ServerToUser,
}

impl ChannelKind {
    /// True if subscribing needs an `auth` signature.
    ///
    /// ```
    /// use switchboard_protocol::ChannelKind;
    /// assert!(ChannelKind::Private.requires_auth());
    /// assert!(ChannelKind::PrivateEncrypted.requires_auth());
    /// assert!(ChannelKind::Presence.requires_auth());
    /// assert!(!ChannelKind::Public.requires_auth());
    /// // Server-to-user channels need a sign-in instead of a channel signature.
    /// assert!(!ChannelKind::ServerToUser.requires_auth());
    /// ```
    pub fn requires_auth(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence)
    }
}

/// A validated channel name with its kind and whether it is a cache channel.
///
/// ```
/// use switchboard_protocol::{ChannelKind, ChannelName};
/// let c = ChannelName::parse("private-encrypted-cache-prices")?;
/// assert_eq!(c.kind(), ChannelKind::PrivateEncrypted);
/// assert!(c.is_cache());
/// assert!(ChannelName::parse("bad name").is_err());
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelName<'a> {
    name: &'a str,
    kind: ChannelKind,
    cache: bool,
}

impl<'a> ChannelName<'a> {
    /// Validate `name` and classify it.
    ///
    /// ```
    /// use switchboard_protocol::{ChannelKind, ChannelName};
    /// let channel = ChannelName::parse("presence-cache-room")?;
    /// assert_eq!((channel.kind(), channel.is_cache()), (ChannelKind::Presence, true));
    /// assert!(ChannelName::parse("").is_err());
    /// assert!(ChannelName::parse("room/1").is_err());
    /// assert!(ChannelName::parse("#other").is_err(), "'#' is reserved for #server-to-user-");
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn parse(name: &'a str) -> Result<Self, ProtocolError> {
        let invalid = |reason| ProtocolError::InvalidChannelName { name: name.chars().take(64).collect(), reason };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(invalid("longer than 200 characters"));
        }
        let (body, reserved) = match name.strip_prefix('#') {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        if !body.bytes().all(is_channel_byte) {
            return Err(invalid("only a-z, A-Z, 0-9 and -_=@,.; are allowed"));
        }
        if reserved {
            return match name.strip_prefix(SERVER_TO_USER_PREFIX) {
                Some(user) if !user.is_empty() => Ok(Self { name, kind: ChannelKind::ServerToUser, cache: false }),
                _ => Err(invalid("'#' is reserved for #server-to-user-{id}")),
            };
        }
        const PREFIXES: [(&str, ChannelKind, bool); 7] = [
            ("private-encrypted-cache-", ChannelKind::PrivateEncrypted, true),
            ("private-encrypted-", ChannelKind::PrivateEncrypted, false),
            ("private-cache-", ChannelKind::Private, true),
            ("private-", ChannelKind::Private, false),
            ("presence-cache-", ChannelKind::Presence, true),
            ("presence-", ChannelKind::Presence, false),
            ("cache-", ChannelKind::Public, true),
        ];
        let (kind, cache) = PREFIXES
            .iter()
            .find(|(prefix, _, _)| name.starts_with(prefix))
            .map_or((ChannelKind::Public, false), |&(_, kind, cache)| (kind, cache));
        Ok(Self { name, kind, cache })
    }

    /// The name as given.
    ///
    /// ```
    /// use switchboard_protocol::ChannelName;
    /// assert_eq!(ChannelName::parse("private-orders")?.as_str(), "private-orders");
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn as_str(&self) -> &'a str {
        self.name
    }

    /// The channel kind.
    ///
    /// ```
    /// use switchboard_protocol::{ChannelKind, ChannelName};
    /// assert_eq!(ChannelName::parse("private-cache-orders")?.kind(), ChannelKind::Private);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// True for the `cache-` variants, which replay the last event on subscribe.
    ///
    /// ```
    /// use switchboard_protocol::ChannelName;
    /// assert!(ChannelName::parse("cache-news")?.is_cache());
    /// assert!(!ChannelName::parse("news")?.is_cache());
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn is_cache(&self) -> bool {
        self.cache
    }

    /// For `#server-to-user-{id}`, the user id.
    ///
    /// ```
    /// use switchboard_protocol::ChannelName;
    /// assert_eq!(ChannelName::parse("#server-to-user-42")?.server_to_user_id(), Some("42"));
    /// assert_eq!(ChannelName::parse("private-orders")?.server_to_user_id(), None);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn server_to_user_id(&self) -> Option<&'a str> {
        self.name.strip_prefix(SERVER_TO_USER_PREFIX)
    }
}

fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'@' | b',' | b'.' | b';')
}

/// Validate an event name: non-empty and at most 200 characters.
///
/// ```
/// use switchboard_protocol::channel::validate_event_name;
/// assert!(validate_event_name("client-typing").is_ok());
/// assert!(validate_event_name("").is_err());
/// assert!(validate_event_name(&"e".repeat(201)).is_err());
/// ```
pub fn validate_event_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty() || name.len() > MAX_EVENT_NAME_LEN {
        return Err(ProtocolError::InvalidFrame("event name must be 1 to 200 characters".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let cases = [
            ("news", ChannelKind::Public, false),
            ("cache-news", ChannelKind::Public, true),
            ("private-a", ChannelKind::Private, false),
            ("private-cache-a", ChannelKind::Private, true),
            ("private-encrypted-a", ChannelKind::PrivateEncrypted, false),
            ("private-encrypted-cache-a", ChannelKind::PrivateEncrypted, true),
            ("presence-a", ChannelKind::Presence, false),
            ("presence-cache-a", ChannelKind::Presence, true),
            ("#server-to-user-42", ChannelKind::ServerToUser, false),
            ("privateish", ChannelKind::Public, false),
        ];
        for (name, kind, cache) in cases {
            let c = ChannelName::parse(name).unwrap();
            assert_eq!((c.kind(), c.is_cache()), (kind, cache), "{name}");
        }
        assert_eq!(ChannelName::parse("#server-to-user-42").unwrap().server_to_user_id(), Some("42"));
    }

    #[test]
    fn invalid_names() {
        for bad in ["", "a b", "#other", "#server-to-user-", "ü", "a/b", &"x".repeat(201)] {
            assert!(ChannelName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ChannelName::parse(&"x".repeat(200)).is_ok());
        assert!(ChannelName::parse("private-a_b=c@d,e.f;g").is_ok());
    }
}
