//! Presence rosters: members keyed by `user_id`, several connections of one user counted as
//! one member.
//!
//! `member_added` must fire only for a user's first connection and `member_removed` only
//! when the last one leaves (Soketi `ws-handler.ts`, Reverb PR #216); the roster returns
//! which of those happened so the caller sends each event exactly once.
//!
//! ```
//! use switchboard_protocol::presence::{member_added_data, member_removed_data};
//! use switchboard_protocol::{PresenceChange, PresenceRoster};
//! let mut roster = PresenceRoster::default();
//! if roster.add("7", r#"{"name":"Ada"}"#) == PresenceChange::Added {
//!     assert_eq!(member_added_data("7", r#"{"name":"Ada"}"#), r#"{"user_id":"7","user_info":{"name":"Ada"}}"#);
//! }
//! assert_eq!(roster.remove("7"), PresenceChange::Removed);
//! assert_eq!(member_removed_data("7"), r#"{"user_id":"7"}"#);
//! ```

use std::collections::HashMap;

use crate::frame::push_json_string;

/// What an add or remove did to the member list.
///
/// ```
/// use switchboard_protocol::{PresenceChange, PresenceRoster};
/// let announce = |change: PresenceChange| match change {
///     PresenceChange::Added => Some("pusher_internal:member_added"),
///     PresenceChange::Removed => Some("pusher_internal:member_removed"),
///     PresenceChange::Unchanged => None,
/// };
/// let mut roster = PresenceRoster::default();
/// assert_eq!(announce(roster.add("1", "null")), Some("pusher_internal:member_added"));
/// assert_eq!(announce(roster.add("1", "null")), None); // a second connection of user 1
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// A new member: announce `member_added`.
    Added,
    /// The last connection of a member left: announce `member_removed`.
    Removed,
    /// Another connection of a known member came or went: announce nothing.
    Unchanged,
}

#[derive(Debug, Clone)]
struct Member {
    /// `user_info` as raw JSON text (`null` when absent).
    info: String,
    connections: u32,
}

/// The members of one presence channel, in join order.
///
/// ```
/// use switchboard_protocol::{PresenceChange, PresenceRoster};
/// let mut roster = PresenceRoster::default();
/// assert_eq!(roster.add("1", r#"{"name":"Ada"}"#), PresenceChange::Added);
/// assert_eq!(roster.add("1", r#"{"name":"Ada"}"#), PresenceChange::Unchanged); // second tab
/// assert_eq!(roster.remove("1"), PresenceChange::Unchanged);
/// assert_eq!(roster.remove("1"), PresenceChange::Removed);
/// assert_eq!(roster.count(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PresenceRoster {
    members: HashMap<String, Member>,
    /// Join order, so snapshots list members the way they arrived.
    order: Vec<String>,
}

impl PresenceRoster {
    /// Count a connection of `user_id` with `info` (raw JSON text, `null` for none).
    ///
    /// ```
    /// use switchboard_protocol::{PresenceChange, PresenceRoster};
    /// let mut roster = PresenceRoster::default();
    /// assert_eq!(roster.add("1", r#"{"name":"Ada"}"#), PresenceChange::Added);
    /// assert_eq!(roster.add("2", "null"), PresenceChange::Added);
    /// assert_eq!(roster.add("1", r#"{"name":"Ada"}"#), PresenceChange::Unchanged);
    /// assert_eq!(roster.count(), 2);
    /// ```
    pub fn add(&mut self, user_id: &str, info: &str) -> PresenceChange {
        if let Some(member) = self.members.get_mut(user_id) {
            member.connections += 1;
            return PresenceChange::Unchanged;
        }
        self.members.insert(user_id.to_owned(), Member { info: info.to_owned(), connections: 1 });
        self.order.push(user_id.to_owned());
        PresenceChange::Added
    }

    /// Forget one connection of `user_id`.
    ///
    /// ```
    /// use switchboard_protocol::{PresenceChange, PresenceRoster};
    /// let mut roster = PresenceRoster::default();
    /// roster.add("1", "null");
    /// assert_eq!(roster.remove("1"), PresenceChange::Removed);
    /// assert_eq!(roster.remove("1"), PresenceChange::Unchanged, "unknown users are ignored");
    /// ```
    pub fn remove(&mut self, user_id: &str) -> PresenceChange {
        let Some(member) = self.members.get_mut(user_id) else {
            return PresenceChange::Unchanged;
        };
        member.connections -= 1;
        if member.connections > 0 {
            return PresenceChange::Unchanged;
        }
        self.members.remove(user_id);
        self.order.retain(|id| id != user_id);
        PresenceChange::Removed
    }

    /// True if `user_id` is a member.
    ///
    /// ```
    /// use switchboard_protocol::PresenceRoster;
    /// let mut roster = PresenceRoster::default();
    /// roster.add("1", "null");
    /// assert!(roster.contains("1"));
    /// assert!(!roster.contains("2"));
    /// ```
    pub fn contains(&self, user_id: &str) -> bool {
        self.members.contains_key(user_id)
    }

    /// Number of distinct members.
    ///
    /// ```
    /// use switchboard_protocol::PresenceRoster;
    /// let mut roster = PresenceRoster::default();
    /// roster.add("1", "null");
    /// roster.add("1", "null"); // same user, second tab
    /// roster.add("2", "null");
    /// assert_eq!(roster.count(), 2);
    /// ```
    pub fn count(&self) -> usize {
        self.members.len()
    }

    /// Member ids in join order.
    ///
    /// ```
    /// use switchboard_protocol::PresenceRoster;
    /// let mut roster = PresenceRoster::default();
    /// roster.add("b", "null");
    /// roster.add("a", "null");
    /// assert_eq!(roster.ids().collect::<Vec<_>>(), ["b", "a"]);
    /// ```
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// The `user_info` JSON text of a member.
    ///
    /// ```
    /// use switchboard_protocol::PresenceRoster;
    /// let mut roster = PresenceRoster::default();
    /// roster.add("1", r#"{"name":"Ada"}"#);
    /// assert_eq!(roster.info("1"), Some(r#"{"name":"Ada"}"#));
    /// assert_eq!(roster.info("2"), None);
    /// ```
    pub fn info(&self, user_id: &str) -> Option<&str> {
        self.members.get(user_id).map(|m| m.info.as_str())
    }

    /// The `pusher_internal:subscription_succeeded` data for a presence channel:
    /// `{"presence":{"ids":[..],"hash":{id:info},"count":n}}`.
    ///
    /// ```
    /// use switchboard_protocol::PresenceRoster;
    /// let mut roster = PresenceRoster::default();
    /// roster.add("1", r#"{"name":"Ada"}"#);
    /// assert_eq!(roster.subscription_data(),
    ///     r#"{"presence":{"ids":["1"],"hash":{"1":{"name":"Ada"}},"count":1}}"#);
    /// ```
    pub fn subscription_data(&self) -> String {
        let mut out = String::from("{\"presence\":{\"ids\":[");
        for (i, id) in self.order.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, id);
        }
        out.push_str("],\"hash\":{");
        for (i, id) in self.order.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, id);
            out.push(':');
            out.push_str(self.members.get(id).map_or("null", |m| m.info.as_str()));
        }
        out.push_str("},\"count\":");
        out.push_str(&self.count().to_string());
        out.push_str("}}");
        out
    }
}

/// `pusher_internal:member_added` data: `{"user_id":..,"user_info":..}`.
///
/// ```
/// use switchboard_protocol::presence::member_added_data;
/// assert_eq!(member_added_data("1", r#"{"name":"Ada"}"#), r#"{"user_id":"1","user_info":{"name":"Ada"}}"#);
/// ```
pub fn member_added_data(user_id: &str, info: &str) -> String {
    let mut out = String::from("{\"user_id\":");
    push_json_string(&mut out, user_id);
    out.push_str(",\"user_info\":");
    out.push_str(info);
    out.push('}');
    out
}

/// `pusher_internal:member_removed` data: `{"user_id":..}`.
///
/// ```
/// use switchboard_protocol::presence::member_removed_data;
/// assert_eq!(member_removed_data("1"), r#"{"user_id":"1"}"#);
/// ```
pub fn member_removed_data(user_id: &str) -> String {
    let mut out = String::from("{\"user_id\":");
    push_json_string(&mut out, user_id);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_valid_json_in_join_order() {
        let mut r = PresenceRoster::default();
        r.add("b", "null");
        r.add("a\"q", r#"{"x":[1,2]}"#);
        r.add("b", "null");
        let v: serde_json::Value = serde_json::from_str(&r.subscription_data()).unwrap();
        assert_eq!(v["presence"]["ids"], serde_json::json!(["b", "a\"q"]));
        assert_eq!(v["presence"]["count"], 2);
        assert_eq!(v["presence"]["hash"]["a\"q"]["x"][1], 2);
        assert_eq!(r.remove("b"), PresenceChange::Unchanged);
        assert_eq!(r.remove("b"), PresenceChange::Removed);
        assert_eq!(r.remove("b"), PresenceChange::Unchanged);
        assert_eq!(r.ids().collect::<Vec<_>>(), vec!["a\"q"]);
    }
}
