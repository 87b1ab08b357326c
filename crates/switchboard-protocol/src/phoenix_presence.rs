//! Phoenix Presence on the client side, synced exactly as phoenix.js `presence.js` does:
//! diffs are buffered until the `presence_state` for the current join arrives; a state is
//! turned into a diff against what is known; joins are applied before leaves.
//!
//! Keys are kept in lexicographic order (`BTreeMap`); phoenix.js uses JS object order.
//!
//! ```
//! use serde_json::json;
//! use switchboard_protocol::phoenix_presence::{PresenceTracker, Presences};
//! let mut tracker = PresenceTracker::default();
//! let state: Presences = [("ada".to_string(), json!({"metas": [{"phx_ref": "1"}]}))].into();
//! tracker.on_state("1", &state);
//! let leaves = state.clone();
//! tracker.on_diff("1", &Presences::new(), &leaves);
//! assert!(tracker.list().is_empty());
//! ```

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Presences by key: each `{"metas": [{..., "phx_ref": ...}], ...}`.
///
/// ```
/// use serde_json::json;
/// use switchboard_protocol::phoenix_presence::Presences;
/// let mut presences = Presences::new();
/// presences.insert("bob".into(), json!({"metas": [{"phx_ref": "2"}]}));
/// presences.insert("ada".into(), json!({"metas": [{"phx_ref": "1"}]}));
/// assert_eq!(presences.keys().collect::<Vec<_>>(), ["ada", "bob"]); // lexicographic order
/// ```
pub type Presences = BTreeMap<String, Value>;

/// What a sync did, in order.
///
/// ```
/// use serde_json::json;
/// use switchboard_protocol::phoenix_presence::{PresenceEvent, Presences, sync_diff};
/// let mut state = Presences::new();
/// let ada: Presences = [("ada".to_string(), json!({"metas": [{"phx_ref": "1"}]}))].into();
/// let joined = sync_diff(&mut state, &ada, &Presences::new());
/// assert_eq!(
///     joined,
///     [PresenceEvent::Join { key: "ada".into(), current: None, joined: json!({"metas": [{"phx_ref": "1"}]}) }]
/// );
/// let left = sync_diff(&mut state, &Presences::new(), &ada);
/// assert!(matches!(
///     &left[..],
///     [PresenceEvent::Leave { key, current, .. }] if key == "ada" && current["metas"] == json!([])
/// ));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceEvent {
    /// Metas joined under `key`; `current` is the presence before, `joined` holds only the
    /// joined metas.
    Join {
        /// The presence key.
        key: String,
        /// The presence before the join, if the key was known.
        current: Option<Value>,
        /// The joined presence (only the new metas).
        joined: Value,
    },
    /// Metas left `key`; `current` is what remains (no metas: gone from every device).
    Leave {
        /// The presence key.
        key: String,
        /// The presence after removing the left metas.
        current: Value,
        /// The left presence.
        left: Value,
    },
}

fn metas(p: &Value) -> Vec<Value> {
    p.get("metas").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn refs(p: &Value) -> Vec<String> {
    metas(p).iter().filter_map(|m| m.get("phx_ref").and_then(Value::as_str).map(str::to_owned)).collect()
}

fn with_metas(p: &Value, metas: Vec<Value>) -> Value {
    let mut out = if p.is_object() { p.clone() } else { json!({}) };
    out["metas"] = Value::Array(metas);
    out
}

/// Apply a full state: computes the joins and leaves against `state` and applies them.
///
/// ```
/// use serde_json::json;
/// use switchboard_protocol::phoenix_presence::{PresenceEvent, Presences, sync_state};
/// let mut state: Presences = [("u1".to_string(), json!({"metas": [{"phx_ref": "1"}]}))].into();
/// let new_state: Presences = [("u2".to_string(), json!({"metas": [{"phx_ref": "2"}]}))].into();
/// let events = sync_state(&mut state, &new_state);
/// assert_eq!(state, new_state);
/// assert!(matches!(
///     &events[..],
///     [PresenceEvent::Join { key: joined, .. }, PresenceEvent::Leave { key: left, .. }]
///         if joined == "u2" && left == "u1"
/// ));
/// ```
pub fn sync_state(state: &mut Presences, new_state: &Presences) -> Vec<PresenceEvent> {
    let mut joins = Presences::new();
    let mut leaves = Presences::new();
    for (key, presence) in state.iter() {
        if !new_state.contains_key(key) {
            leaves.insert(key.clone(), presence.clone());
        }
    }
    for (key, new_presence) in new_state {
        match state.get(key) {
            Some(current) => {
                let (new_refs, cur_refs) = (refs(new_presence), refs(current));
                let joined: Vec<Value> = metas(new_presence)
                    .into_iter()
                    .filter(|m| {
                        m.get("phx_ref").and_then(Value::as_str).is_none_or(|r| !cur_refs.iter().any(|c| c == r))
                    })
                    .collect();
                let left: Vec<Value> = metas(current)
                    .into_iter()
                    .filter(|m| {
                        m.get("phx_ref").and_then(Value::as_str).is_none_or(|r| !new_refs.iter().any(|n| n == r))
                    })
                    .collect();
                if !joined.is_empty() {
                    joins.insert(key.clone(), with_metas(new_presence, joined));
                }
                if !left.is_empty() {
                    leaves.insert(key.clone(), with_metas(current, left));
                }
            }
            None => {
                joins.insert(key.clone(), new_presence.clone());
            }
        }
    }
    sync_diff(state, &joins, &leaves)
}

/// Apply a diff: joins first (new metas appended after the kept old ones), then leaves.
///
/// ```
/// use serde_json::json;
/// use switchboard_protocol::phoenix_presence::{Presences, sync_diff};
/// let mut state: Presences = [("ada".to_string(), json!({"metas": [{"phx_ref": "1"}]}))].into();
/// let second_tab: Presences = [("ada".to_string(), json!({"metas": [{"phx_ref": "2"}]}))].into();
/// sync_diff(&mut state, &second_tab, &Presences::new());
/// assert_eq!(state["ada"]["metas"], json!([{"phx_ref": "1"}, {"phx_ref": "2"}]));
/// let first_tab: Presences = [("ada".to_string(), json!({"metas": [{"phx_ref": "1"}]}))].into();
/// sync_diff(&mut state, &Presences::new(), &first_tab);
/// assert_eq!(state["ada"]["metas"], json!([{"phx_ref": "2"}]));
/// ```
pub fn sync_diff(state: &mut Presences, joins: &Presences, leaves: &Presences) -> Vec<PresenceEvent> {
    let mut events = Vec::new();
    for (key, joined) in joins {
        let current = state.get(key).cloned();
        let mut merged = joined.clone();
        if let Some(current) = &current {
            let joined_refs = refs(joined);
            let mut kept: Vec<Value> = metas(current)
                .into_iter()
                .filter(|m| {
                    m.get("phx_ref").and_then(Value::as_str).is_none_or(|r| !joined_refs.iter().any(|j| j == r))
                })
                .collect();
            kept.extend(metas(joined));
            merged = with_metas(joined, kept);
        }
        state.insert(key.clone(), merged);
        events.push(PresenceEvent::Join { key: key.clone(), current, joined: joined.clone() });
    }
    for (key, left) in leaves {
        let Some(current) = state.get(key).cloned() else { continue };
        let left_refs = refs(left);
        let remaining: Vec<Value> = metas(&current)
            .into_iter()
            .filter(|m| m.get("phx_ref").and_then(Value::as_str).is_none_or(|r| !left_refs.iter().any(|l| l == r)))
            .collect();
        let current = with_metas(&current, remaining.clone());
        if remaining.is_empty() {
            state.remove(key);
        } else {
            state.insert(key.clone(), current.clone());
        }
        events.push(PresenceEvent::Leave { key: key.clone(), current, left: left.clone() });
    }
    events
}

/// A channel's presence: buffers diffs until the state for the current join has arrived.
///
/// ```
/// use serde_json::json;
/// use switchboard_protocol::phoenix_presence::{Presences, PresenceTracker};
/// let mut p = PresenceTracker::default();
/// let diff: Presences = [("u2".to_string(), json!({"metas":[{"phx_ref":"2"}]}))].into();
/// assert!(p.on_diff("1", &diff, &Presences::new()).is_none(), "buffered before the state");
/// let state: Presences = [("u1".to_string(), json!({"metas":[{"phx_ref":"1"}]}))].into();
/// p.on_state("1", &state);
/// assert_eq!(p.list().keys().collect::<Vec<_>>(), vec!["u1", "u2"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PresenceTracker {
    state: Presences,
    pending: Vec<(Presences, Presences)>,
    synced_join_ref: Option<String>,
}

impl PresenceTracker {
    /// A `presence_state` for the join `join_ref`: sync, then apply the buffered diffs.
    ///
    /// ```
    /// use serde_json::json;
    /// use switchboard_protocol::phoenix_presence::{PresenceEvent, PresenceTracker, Presences};
    /// let mut tracker = PresenceTracker::default();
    /// let state: Presences = [("u1".to_string(), json!({"metas": [{"phx_ref": "1"}]}))].into();
    /// let events = tracker.on_state("1", &state);
    /// assert!(matches!(&events[..], [PresenceEvent::Join { key, current: None, .. }] if key == "u1"));
    /// assert_eq!(tracker.list(), &state);
    /// ```
    pub fn on_state(&mut self, join_ref: &str, new_state: &Presences) -> Vec<PresenceEvent> {
        self.synced_join_ref = Some(join_ref.to_owned());
        let mut events = sync_state(&mut self.state, new_state);
        for (joins, leaves) in std::mem::take(&mut self.pending) {
            events.extend(sync_diff(&mut self.state, &joins, &leaves));
        }
        events
    }

    /// A `presence_diff` while the channel's current join is `current_join_ref`. Returns
    /// `None` when buffered (no state yet for this join, e.g. right after a rejoin).
    ///
    /// ```
    /// use serde_json::json;
    /// use switchboard_protocol::phoenix_presence::{PresenceTracker, Presences};
    /// let mut tracker = PresenceTracker::default();
    /// tracker.on_state("1", &Presences::new());
    /// let joins: Presences = [("u2".to_string(), json!({"metas": [{"phx_ref": "2"}]}))].into();
    /// let applied = tracker.on_diff("1", &joins, &Presences::new());
    /// assert_eq!(applied.map(|events| events.len()), Some(1));
    /// // After a rejoin (join ref "2"), diffs wait for that join's state.
    /// assert!(tracker.on_diff("2", &joins, &Presences::new()).is_none());
    /// ```
    pub fn on_diff(
        &mut self,
        current_join_ref: &str,
        joins: &Presences,
        leaves: &Presences,
    ) -> Option<Vec<PresenceEvent>> {
        if self.synced_join_ref.as_deref() != Some(current_join_ref) {
            self.pending.push((joins.clone(), leaves.clone()));
            return None;
        }
        Some(sync_diff(&mut self.state, joins, leaves))
    }

    /// The presences, by key.
    ///
    /// ```
    /// use serde_json::json;
    /// use switchboard_protocol::phoenix_presence::{PresenceTracker, Presences};
    /// let mut tracker = PresenceTracker::default();
    /// tracker.on_state("1", &[("ada".to_string(), json!({"metas": [{"phx_ref": "1"}]}))].into());
    /// assert!(tracker.list().contains_key("ada"));
    /// ```
    pub fn list(&self) -> &Presences {
        &self.state
    }

    /// `list` with a chooser, as phoenix.js `Presence.list(state, chooser)`.
    ///
    /// ```
    /// use serde_json::json;
    /// use switchboard_protocol::phoenix_presence::{PresenceTracker, Presences};
    /// let mut tracker = PresenceTracker::default();
    /// let state: Presences = [("ada".to_string(), json!({"metas": [{"phx_ref": "1"}, {"phx_ref": "2"}]}))].into();
    /// tracker.on_state("1", &state);
    /// let devices =
    ///     tracker.list_by(|key, presence| format!("{key}: {}", presence["metas"].as_array().map_or(0, Vec::len)));
    /// assert_eq!(devices, ["ada: 2"]);
    /// ```
    pub fn list_by<T>(&self, mut chooser: impl FnMut(&str, &Value) -> T) -> Vec<T> {
        self.state.iter().map(|(k, v)| chooser(k, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    //! Cases ported from phoenix.js `assets/test/presence_test.js` (facts, restated).
    use super::*;

    fn p(pairs: &[(&str, Value)]) -> Presences {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn fixture_state() -> Presences {
        p(&[
            ("u1", json!({"metas":[{"id":1,"phx_ref":"1"}]})),
            ("u2", json!({"metas":[{"id":2,"phx_ref":"2"}]})),
            ("u3", json!({"metas":[{"id":3,"phx_ref":"3"}]})),
        ])
    }

    #[test]
    fn syncs_empty_state() {
        let mut state = Presences::new();
        let new_state = p(&[("u1", json!({"metas":[{"id":1,"phx_ref":"1"}]}))]);
        sync_state(&mut state, &new_state);
        assert_eq!(state, new_state);
    }

    #[test]
    fn joins_new_presences_and_leaves_left_ones() {
        let mut state = Presences::new();
        sync_state(&mut state, &p(&[("u4", json!({"metas":[{"id":4,"phx_ref":"4"}]}))]));
        let events = sync_state(&mut state, &fixture_state());
        assert_eq!(state, fixture_state());
        let joined: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                PresenceEvent::Join { key, current: None, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(joined, vec!["u1", "u2", "u3"]);
        assert!(events.contains(&PresenceEvent::Leave {
            key: "u4".into(),
            current: json!({"metas":[]}),
            left: json!({"metas":[{"id":4,"phx_ref":"4"}]}),
        }));
    }

    #[test]
    fn joins_only_newly_added_metas() {
        let mut state = p(&[("u3", json!({"metas":[{"id":3,"phx_ref":"3"}]}))]);
        let new_state = p(&[("u3", json!({"metas":[{"id":3,"phx_ref":"3"},{"id":3,"phx_ref":"3.new"}]}))]);
        let events = sync_state(&mut state, &new_state);
        assert_eq!(state, new_state);
        assert_eq!(
            events,
            vec![PresenceEvent::Join {
                key: "u3".into(),
                current: Some(json!({"metas":[{"id":3,"phx_ref":"3"}]})),
                joined: json!({"metas":[{"id":3,"phx_ref":"3.new"}]}),
            }]
        );
    }

    #[test]
    fn removes_presence_when_metas_empty_and_adds_additional_meta() {
        let mut state = Presences::new();
        sync_state(&mut state, &fixture_state());
        sync_diff(
            &mut state,
            &p(&[("u1", json!({"metas":[{"id":1,"phx_ref":"1.2"}]}))]),
            &p(&[("u2", json!({"metas":[{"id":2,"phx_ref":"2"}]}))]),
        );
        assert_eq!(
            state,
            p(&[
                ("u1", json!({"metas":[{"id":1,"phx_ref":"1"},{"id":1,"phx_ref":"1.2"}]})),
                ("u3", json!({"metas":[{"id":3,"phx_ref":"3"}]})),
            ])
        );
    }

    #[test]
    fn removes_a_meta_but_keeps_the_key_while_others_exist() {
        let mut state = p(&[("u1", json!({"metas":[{"id":1,"phx_ref":"1"},{"id":1,"phx_ref":"1.2"}]}))]);
        sync_diff(&mut state, &Presences::new(), &p(&[("u1", json!({"metas":[{"id":1,"phx_ref":"1"}]}))]));
        assert_eq!(state, p(&[("u1", json!({"metas":[{"id":1,"phx_ref":"1.2"}]}))]));
    }

    #[test]
    fn an_update_is_a_join_then_a_leave_of_the_same_key() {
        let mut state = p(&[("ada", json!({"metas":[{"typing":false,"phx_ref":"a"}]}))]);
        let events = sync_diff(
            &mut state,
            &p(&[("ada", json!({"metas":[{"typing":true,"phx_ref":"b","phx_ref_prev":"a"}]}))]),
            &p(&[("ada", json!({"metas":[{"typing":false,"phx_ref":"a"}]}))]),
        );
        assert!(matches!(events[0], PresenceEvent::Join { .. }) && matches!(events[1], PresenceEvent::Leave { .. }));
        assert_eq!(state["ada"]["metas"], json!([{"typing":true,"phx_ref":"b","phx_ref_prev":"a"}]));
    }

    #[test]
    fn diffs_wait_for_the_state_of_the_current_join() {
        let mut tracker = PresenceTracker::default();
        let leaves = p(&[("u2", json!({"metas":[{"id":2,"phx_ref":"2"}]}))]);
        assert!(tracker.on_diff("1", &Presences::new(), &leaves).is_none());
        tracker.on_state(
            "1",
            &p(&[("u1", json!({"metas":[{"id":1,"phx_ref":"1"}]})), ("u2", json!({"metas":[{"id":2,"phx_ref":"2"}]}))]),
        );
        assert_eq!(tracker.list().keys().collect::<Vec<_>>(), vec!["u1"]);
        // After a rejoin (new join_ref) diffs wait again.
        assert!(tracker.on_diff("5", &leaves, &Presences::new()).is_none());
        assert!(tracker.on_diff("1", &leaves, &Presences::new()).is_some());
    }

    #[test]
    fn list_with_a_chooser() {
        let mut tracker = PresenceTracker::default();
        tracker.on_state(
            "1",
            &p(&[("u1", json!({"metas":[{"id":1,"phx_ref":"1.first"},{"id":1,"phx_ref":"1.second"}]}))]),
        );
        let firsts = tracker.list_by(|_, presence| presence["metas"][0].clone());
        assert_eq!(firsts, vec![json!({"id":1,"phx_ref":"1.first"})]);
    }
}
