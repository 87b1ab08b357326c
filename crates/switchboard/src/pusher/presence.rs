//! A presence channel's member list, kept from `subscription_succeeded`, `member_added` and
//! `member_removed`, and rebuilt as a diff after a reconnect.
//!
//! ```no_run
//! # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
//! let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
//! let room = client.subscribe_presence("presence-room", me).await?;
//! println!("{} members", room.members().count());
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use serde_json::Value;

/// One member: id and info.
///
/// ```no_run
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
/// let room = client.subscribe_presence("presence-room", me).await?;
/// if let Some(member) = room.members().get("42") {
///     println!("{} is {}", member.id, member.info["name"]);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The member's user id (numbers become strings).
    pub id: String,
    /// Its `user_info` (`Null` when absent).
    pub info: Value,
}

/// The members of a presence channel, in join order.
///
/// ```
/// let members = switchboard::Members::default(); // what a non-presence channel has
/// assert_eq!((members.count(), members.me()), (0, None));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members {
    order: Vec<String>,
    by_id: HashMap<String, Value>,
    me: Option<String>,
    /// The most members kept (0: [`DEFAULT_MAX_MEMBERS`]).
    cap: usize,
    /// Members were left untracked because of the cap.
    capped: bool,
    /// ... and the channel has not been told yet.
    capped_unreported: bool,
}

/// The most members a roster keeps unless configured otherwise: 200,000 members cost the
/// client 60 MB before there was a cap.
pub(crate) const DEFAULT_MAX_MEMBERS: usize = 50_000;

impl Members {
    /// False if the roster hit the client's `max_presence_members` and left members out
    /// (the channel got `switchboard:members_capped`).
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = client.subscribe_presence("presence-stadium", me).await?;
    /// if !room.members().is_complete() {
    ///     eprintln!("only the first {} members are tracked", room.members().count());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_complete(&self) -> bool {
        !self.capped
    }

    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    fn limit(&self) -> usize {
        if self.cap == 0 { DEFAULT_MAX_MEMBERS } else { self.cap }
    }

    fn note_capped(&mut self) {
        if !self.capped {
            self.capped_unreported = true;
        }
        self.capped = true;
    }

    /// True once after the roster first left a member out: the channel is then told.
    pub(crate) fn take_capped_report(&mut self) -> bool {
        std::mem::take(&mut self.capped_unreported)
    }

    /// Number of members.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = client.subscribe_presence("presence-room", me).await?;
    /// println!("{} here", room.members().count());
    /// # Ok(()) }
    /// ```
    pub fn count(&self) -> usize {
        self.order.len()
    }

    /// A member by id.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = client.subscribe_presence("presence-room", me).await?;
    /// let present = room.members().get("7").is_some();
    /// # let _ = present;
    /// # Ok(()) }
    /// ```
    pub fn get(&self, id: &str) -> Option<Member> {
        self.by_id.get(id).map(|info| Member { id: id.to_owned(), info: info.clone() })
    }

    /// Every member, in join order.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = client.subscribe_presence("presence-room", me).await?;
    /// let names: Vec<String> = room.members().iter().map(|m| m.info["name"].to_string()).collect();
    /// # let _ = names;
    /// # Ok(()) }
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Member> + '_ {
        self.order.iter().filter_map(|id| self.get(id))
    }

    /// This connection's own member, once subscribed.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// let room = client.subscribe_presence("presence-room", me).await?;
    /// assert_eq!(room.members().me().map(|m| m.id), Some("42".to_string()));
    /// # Ok(()) }
    /// ```
    pub fn me(&self) -> Option<Member> {
        self.me.as_deref().and_then(|id| self.get(id))
    }

    pub(crate) fn set_me(&mut self, id: Option<String>) {
        self.me = id;
    }

    /// Replace the list with `snapshot` (the `presence` object of subscription_succeeded).
    /// Returns who was added and who removed relative to the old list, so a resubscription
    /// after a reconnect announces only real changes.
    pub(crate) fn replace(&mut self, snapshot: &Value) -> (Vec<Member>, Vec<Member>) {
        let mut order = Vec::new();
        let mut by_id = HashMap::new();
        let hash = snapshot.get("hash");
        let limit = self.limit();
        let mut capped = false;
        if let Some(ids) = snapshot.get("ids").and_then(Value::as_array) {
            for id in ids {
                let Some(id) = id_string(id) else { continue };
                // Past the cap only this client itself is kept (servers list the newest
                // member, often this one, last).
                if order.len() >= limit && self.me.as_deref() != Some(id.as_str()) {
                    capped = true;
                    continue;
                }
                let info = hash.and_then(|h| h.get(&id)).cloned().unwrap_or(Value::Null);
                if by_id.insert(id.clone(), info).is_none() {
                    order.push(id);
                }
            }
        }
        let removed = self.order.iter().filter(|id| !by_id.contains_key(*id)).filter_map(|id| self.get(id)).collect();
        let added = order
            .iter()
            .filter(|id| !self.by_id.contains_key(*id))
            .map(|id| Member { id: id.clone(), info: by_id[id].clone() })
            .collect();
        self.order = order;
        self.by_id = by_id;
        self.capped = false; // a fresh snapshot: capped again only if it is over the cap too
        if capped {
            self.note_capped();
        }
        (added, removed)
    }

    /// Add a member; false if already present.
    pub(crate) fn add(&mut self, id: String, info: Value) -> bool {
        if self.by_id.contains_key(&id) {
            return false;
        }
        if self.order.len() >= self.limit() {
            self.note_capped();
            return false;
        }
        self.by_id.insert(id.clone(), info);
        self.order.push(id);
        true
    }

    /// Remove a member; the removed member if it was known.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Member> {
        let info = self.by_id.remove(id)?;
        self.order.retain(|m| m != id);
        Some(Member { id: id.to_owned(), info })
    }
}

/// A user id from JSON: strings as they are, numbers spelled out.
pub(crate) fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resubscribe_snapshot_is_a_diff() {
        let mut m = Members::default();
        let (added, removed) = m.replace(&json!({"ids":["1","2"],"hash":{"1":{"n":1},"2":{"n":2}},"count":2}));
        assert_eq!((added.len(), removed.len()), (2, 0));
        let (added, removed) = m.replace(&json!({"ids":["2",3],"hash":{"2":{"n":2},"3":null},"count":2}));
        assert_eq!(added, vec![Member { id: "3".into(), info: Value::Null }]);
        assert_eq!(removed, vec![Member { id: "1".into(), info: json!({"n":1}) }]);
        assert_eq!(m.iter().map(|m| m.id).collect::<Vec<_>>(), vec!["2", "3"]);
        assert!(!m.add("2".into(), Value::Null));
        assert!(m.remove("9").is_none());
    }

    #[test]
    fn the_roster_keeps_at_most_its_cap_and_reports_once() {
        let mut m = Members::default();
        m.set_cap(2);
        m.replace(&json!({"ids":["1","2","3"],"hash":{},"count":3}));
        assert_eq!((m.count(), m.is_complete()), (2, false));
        assert!(m.take_capped_report());
        assert!(!m.add("4".into(), Value::Null), "full");
        assert!(!m.take_capped_report(), "reported once");
        // Room again after a removal, and a snapshot under the cap is complete again.
        m.remove("1");
        assert!(m.add("4".into(), Value::Null));
        m.replace(&json!({"ids":["1"],"hash":{},"count":1}));
        assert!(m.is_complete());
        assert!(!m.take_capped_report());
        // The client itself is kept even past the cap.
        m.set_me(Some("me".into()));
        m.replace(&json!({"ids":["1","2","3","me"],"hash":{},"count":4}));
        assert_eq!(m.iter().map(|m| m.id).collect::<Vec<_>>(), vec!["1", "2", "me"]);
        assert!(m.me().is_some() && !m.is_complete());
    }
}
