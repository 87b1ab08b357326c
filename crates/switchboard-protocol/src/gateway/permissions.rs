//! What a token allows: the gateway's permission strings, from the `permissions` claim (a
//! list) and the OAuth2-style `scope` claim (space separated), which mean the same.
//!
//! ```text
//! realtime:subscriber:read:topic:<pattern>    subscribe to a secure/… topic
//! realtime:publisher:write:topic:<pattern>    publish to a topic
//! realtime:admin:manage:connections           HTTP: close connections
//! realtime:admin:manage:subscribers           HTTP: unsubscribe a subject
//! realtime:admin:manage:application           telemetry (not served here)
//! ```
//!
//! In a pattern `*` matches any run of characters, `/` included, so
//! `realtime:publisher:write:topic:priv/*` lets a backend reply on every `priv/<id>` topic.
//! Unknown strings are kept (and shown to `secure/inbound` subscribers) but grant nothing.
//!
//! ```
//! use switchboard_protocol::gateway::Permissions;
//! let grants = Permissions::from_claims(&["realtime:publisher:write:topic:priv/*".into()], Some("realtime:subscriber:read:topic:secure/inbound"));
//! assert!(grants.may_publish("priv/4389b2ed1a7e"));
//! assert!(!grants.may_publish("chat"));
//! assert!(grants.may_subscribe("secure/inbound"));
//! ```

/// Subscribing to a topic under this prefix needs a `subscriber:read` grant.
pub const SECURE_PREFIX: &str = "secure/";
const SUBSCRIBE: &str = "realtime:subscriber:read:topic:";
const PUBLISH: &str = "realtime:publisher:write:topic:";
/// The grant `DELETE /api/connections/{app}[/{id}]` needs.
pub const MANAGE_CONNECTIONS: &str = "realtime:admin:manage:connections";
/// The grant `POST /api/topics/{app}/unsubscribe` needs.
pub const MANAGE_SUBSCRIBERS: &str = "realtime:admin:manage:subscribers";

/// The permission strings of one token.
///
/// ```
/// use switchboard_protocol::gateway::Permissions;
/// let none = Permissions::default();
/// assert!(none.may_subscribe("chat"), "only secure/ topics need a grant");
/// assert!(!none.may_subscribe("secure/tasks"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    grants: Vec<String>,
}

impl Permissions {
    /// The union of a `permissions` list and a `scope` string, in that order, without
    /// duplicates.
    ///
    /// ```
    /// use switchboard_protocol::gateway::Permissions;
    /// let p = Permissions::from_claims(&["a".into()], Some("b  a c"));
    /// assert_eq!(p.as_slice(), ["a", "b", "c"]);
    /// ```
    pub fn from_claims(permissions: &[String], scope: Option<&str>) -> Self {
        let mut grants: Vec<String> = Vec::new();
        for grant in permissions.iter().map(String::as_str).chain(scope.unwrap_or("").split_whitespace()) {
            if !grant.is_empty() && !grants.iter().any(|g| g == grant) {
                grants.push(grant.to_owned());
            }
        }
        Self { grants }
    }

    /// Every grant, as the token listed them.
    ///
    /// ```
    /// # use switchboard_protocol::gateway::Permissions;
    /// assert!(Permissions::default().as_slice().is_empty());
    /// ```
    pub fn as_slice(&self) -> &[String] {
        &self.grants
    }

    /// True if a grant is exactly `permission` (the admin grants).
    ///
    /// ```
    /// use switchboard_protocol::gateway::{MANAGE_CONNECTIONS, Permissions};
    /// assert!(Permissions::from_claims(&[MANAGE_CONNECTIONS.into()], None).has(MANAGE_CONNECTIONS));
    /// ```
    pub fn has(&self, permission: &str) -> bool {
        self.grants.iter().any(|g| g == permission)
    }

    /// May this token subscribe to `topic`? Only `secure/…` topics need a grant.
    ///
    /// ```
    /// use switchboard_protocol::gateway::Permissions;
    /// let p = Permissions::from_claims(&["realtime:subscriber:read:topic:secure/app-*".into()], None);
    /// assert!(p.may_subscribe("secure/app-tasks") && !p.may_subscribe("secure/inbound"));
    /// ```
    pub fn may_subscribe(&self, topic: &str) -> bool {
        !topic.starts_with(SECURE_PREFIX) || self.grants_topic(SUBSCRIBE, topic)
    }

    /// May this token publish to `topic`?
    ///
    /// ```
    /// use switchboard_protocol::gateway::Permissions;
    /// assert!(Permissions::from_claims(&["realtime:publisher:write:topic:*".into()], None).may_publish("any/thing"));
    /// ```
    pub fn may_publish(&self, topic: &str) -> bool {
        self.grants_topic(PUBLISH, topic)
    }

    fn grants_topic(&self, prefix: &str, topic: &str) -> bool {
        self.grants.iter().filter_map(|g| g.strip_prefix(prefix)).any(|pattern| glob_matches(pattern, topic))
    }
}

/// `*` matches any run of characters (`/` included); everything else matches itself.
///
/// ```
/// use switchboard_protocol::gateway::glob_matches;
/// assert!(glob_matches("priv/*", "priv/abc/def"));
/// assert!(glob_matches("a*c*e", "abcde"));
/// assert!(!glob_matches("priv/*", "private"));
/// ```
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    // Greedy match with one backtrack point (the last `*`): linear in practice, and
    // O(pattern × text) at worst, so a hostile pattern cannot blow up.
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "secure/inbound", true),
            ("secure/inbound", "secure/inbound", true),
            ("secure/inbound", "secure/inbound2", false),
            ("priv/*", "priv/", true),
            ("*/inbound", "secure/inbound", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("**", "x", true),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn the_demos_grants() {
        // realtime-forum demos and the smoke test's server token.
        let server = Permissions::from_claims(
            &["realtime:subscriber:read:topic:secure/inbound".into(), "realtime:publisher:write:topic:priv/*".into()],
            None,
        );
        assert!(server.may_subscribe("secure/inbound") && server.may_publish("priv/4389b2ed1a7e"));
        assert!(!server.may_publish("main"));
        // `permissions: []` (demos/rpc/client.ts): public topics only, no publish.
        let client = Permissions::default();
        assert!(client.may_subscribe("my-custom-topic") && !client.may_subscribe("secure/tasks"));
        assert!(!client.may_publish("chat"));
        // A subscribe grant is no publish grant, and vice versa.
        let reader = Permissions::from_claims(&[], Some("realtime:subscriber:read:topic:*"));
        assert!(reader.may_subscribe("secure/x") && !reader.may_publish("x"));
    }
}
