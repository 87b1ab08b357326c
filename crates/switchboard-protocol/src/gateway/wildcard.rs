//! Event-name patterns, exactly as the protocol's SDKs match them (Python
//! `EventEmitter.event_matches`, Go `eventMatches`): names and patterns are split on `.`;
//! `*` matches one segment, `**` zero or more (anywhere, with backtracking); anything else
//! must be equal. `/` is not a separator, so `*.response` matches `priv/abc.response`.
//!
//! Listeners are keyed `"{topic}.{messageType}"`, so a topic with dots shifts the segments:
//! `test.topic` + `update` is `test.topic.update`, which `test.topic.*` matches and
//! `test.*` does not (as in every SDK).
//!
//! ```
//! use switchboard_protocol::gateway::event_matches;
//! assert!(event_matches("chat.*", "chat.text"));
//! assert!(event_matches("*.response", "priv/4389b2ed1a7e.response"));
//! assert!(event_matches("app.**", "app"));
//! assert!(!event_matches("user.*", "user.profile.update"));
//! ```

/// True if `pattern` matches `event` (see the module doc).
///
/// ```
/// use switchboard_protocol::gateway::event_matches;
/// assert!(event_matches("a.**.z", "a.b.c.z"));
/// assert!(event_matches("a.**.z", "a.z"));
/// assert!(!event_matches("a.**.z", "a.b.c"));
/// ```
pub fn event_matches(pattern: &str, event: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let event: Vec<&str> = event.split('.').collect();
    segments_match(&pattern, &event)
}

/// [`event_matches`] for the listener key `"{topic}.{message_type}"`, without building it.
///
/// ```
/// use switchboard_protocol::gateway::wildcard::event_matches_parts;
/// assert!(event_matches_parts("test.topic.*", "test.topic", "update"));
/// assert!(!event_matches_parts("test.*", "test.topic", "update"));
/// assert!(event_matches_parts("session.started", "session", "started"));
/// ```
pub fn event_matches_parts(pattern: &str, topic: &str, message_type: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let event: Vec<&str> = topic.split('.').chain(message_type.split('.')).collect();
    segments_match(&pattern, &event)
}

/// The SDKs' `match_segments`, step for step (its recursion is bounded by the pattern's
/// `**` count, and each level tries at most every suffix of the event).
fn segments_match(pattern: &[&str], event: &[&str]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < pattern.len() && j < event.len() {
        match pattern[i] {
            "**" if i == pattern.len() - 1 => return true,
            "**" => return (j..=event.len()).any(|k| segments_match(&pattern[i + 1..], &event[k..])),
            "*" => {}
            literal if literal == event[j] => {}
            _ => return false,
        }
        i += 1;
        j += 1;
    }
    while pattern.get(i) == Some(&"**") {
        i += 1;
    }
    i == pattern.len() && j == event.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_as_the_go_and_python_sdks_do() {
        // The Go SDK's TestEventEmitterEventPatternMatching table, verbatim.
        for (pattern, event, expected) in [
            ("user.*", "user.login", true),
            ("user.*", "user.profile.update", false),
            ("user.**", "user.profile.update", true),
            ("**", "any.event.name", true),
            ("order.**", "order.created", true),
            ("order.**", "order.processed.shipped", true),
            ("*.created", "user.created", true),
            ("*.created", "order.created", true),
            ("*.created", "user.profile.created", false),
            ("app.*.start", "app.server.start", true),
            ("app.*.start", "app.client.start", true),
            ("app.*.start", "app.server.stop", false),
        ] {
            assert_eq!(event_matches(pattern, event), expected, "{pattern} vs {event}");
        }
    }

    #[test]
    fn the_corners_seed_clients_md_lists() {
        assert!(event_matches("a.**", "a"), "a trailing ** matches zero segments");
        assert!(event_matches("*.response", "priv/abc.response"), "/ is no separator");
        assert!(event_matches("test.topic.*", "test.topic.update"));
        assert!(!event_matches("test.*", "test.topic.update"));
        assert!(event_matches("**.ack", "priv/acks.ack"));
        assert!(event_matches("**", ""));
        assert!(!event_matches("*", "a.b"));
        assert!(event_matches("a.**.**.b", "a.b"));
        assert!(!event_matches("a.b", "a.b.c"));
        assert!(event_matches("main.welcome", "main.welcome"));
    }
}
