//! One app's gateway state: which connection is on which topic, and who each connection is.
//!
//! One mutex, held only for map updates and `try_send`s of ready frames (never across an
//! await), as `App` does for Pusher channels. The topic sets live here only, so the socket
//! task, the admin API and the adapter all see the same subscriptions.
//!
//! ```
//! use switchboard_server::gateway::{Outgoing, Registry};
//! let registry = Registry::default();
//! // Nobody is subscribed yet: a publish reaches no one.
//! assert_eq!(registry.publish("chat", &Outgoing::text("{}")), 0);
//! assert_eq!(registry.connection_count(), 0);
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use switchboard_protocol::gateway::glob_matches;

use super::GatewayHandle;
use crate::bus_gate::{BusGate, Offer};

/// A frame ready for a gateway socket: text, or binary when the publisher asked for
/// `compress` (the same UTF-8 JSON; clients flag it as compressed).
///
/// ```
/// use switchboard_server::gateway::Outgoing;
/// assert!(!Outgoing::text("{}").binary);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The encoded frame.
    pub frame: Bytes,
    /// Send as a binary WebSocket frame.
    pub binary: bool,
}

impl Outgoing {
    /// A text frame.
    pub fn text(frame: impl Into<Bytes>) -> Self {
        Self { frame: frame.into(), binary: false }
    }
}

struct Member {
    handle: Arc<GatewayHandle>,
    subject: Option<String>,
    topics: HashSet<String>,
    /// `main` and `priv/<id>`: subscribed by the server, not counted against the limit, and
    /// kept by an admin unsubscribe (replies to the connection go to its `priv/<id>`).
    automatic: Vec<String>,
}

struct Subscription {
    handle: Arc<GatewayHandle>,
    /// How it takes a clustered bus's messages (always live on one node).
    since: BusGate<Outgoing>,
}

#[derive(Default)]
struct Inner {
    topics: HashMap<String, HashMap<u64, Subscription>>,
    members: HashMap<u64, Member>,
    /// Connections per token subject, reserved before the upgrade (see `reserve_subject`).
    subjects: HashMap<String, usize>,
}

/// Topics and connections of one app (see the module doc).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("connections", &self.connection_count()).finish_non_exhaustive()
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a connection, subscribed to `automatic` topics (`main`, `priv/<id>`).
    pub(crate) fn join(&self, handle: Arc<GatewayHandle>, subject: Option<String>, automatic: &[String]) {
        self.join_as(handle, subject, automatic, false);
    }

    /// [`Registry::join`], its automatic topics pending until [`Registry::go_live`] (a cluster).
    pub(crate) fn join_pending(&self, handle: Arc<GatewayHandle>, subject: Option<String>, automatic: &[String]) {
        self.join_as(handle, subject, automatic, true);
    }

    fn join_as(&self, handle: Arc<GatewayHandle>, subject: Option<String>, automatic: &[String], pending: bool) {
        let mut inner = self.lock();
        let id = handle.id;
        for topic in automatic {
            let since = if pending { BusGate::pending() } else { BusGate::live() };
            inner.topics.entry(topic.clone()).or_default().insert(id, Subscription { handle: handle.clone(), since });
        }
        let topics = automatic.iter().cloned().collect();
        inner.members.insert(id, Member { handle, subject, topics, automatic: automatic.to_vec() });
    }

    /// Remove a connection from every topic, and give back its subject's slot. Returns
    /// its connection id, subject and topics (a cluster removes them from Redis too).
    pub(crate) fn leave(&self, id: u64) -> Option<(Box<str>, Option<String>, Vec<String>)> {
        let mut inner = self.lock();
        let member = inner.members.remove(&id)?;
        for topic in &member.topics {
            remove_from_topic(&mut inner, topic, id);
        }
        release(&mut inner, member.subject.as_deref());
        Some((member.handle.socket_id.clone(), member.subject, member.topics.into_iter().collect()))
    }

    /// Queue `frame` for connection `id` alone (an ack that follows its echo); false if it
    /// is gone or its queue is full.
    pub(crate) fn send_to(&self, id: u64, frame: &Outgoing) -> bool {
        self.lock().members.get(&id).is_some_and(|member| member.handle.send(frame))
    }

    /// Take one of `subject`'s connection slots, unless it already has `limit` (0: no
    /// limit). Checked and taken in one step, so two connections racing cannot both pass.
    /// The slot is given back by [`Registry::leave`] or [`Registry::release_subject`].
    pub(crate) fn reserve_subject(&self, subject: Option<&str>, limit: usize) -> bool {
        let Some(subject) = subject else { return true };
        let mut inner = self.lock();
        let count = inner.subjects.entry(subject.to_owned()).or_default();
        if limit > 0 && *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Give back a slot taken by [`Registry::reserve_subject`] for a socket that never joined.
    pub(crate) fn release_subject(&self, subject: Option<&str>) {
        release(&mut self.lock(), subject);
    }

    /// Subscribe connection `id` to `topic`, unless it already has `limit` topics of its own.
    /// `Ok(true)` if it was new, `Ok(false)` if already subscribed, `Err(())` over the limit.
    #[allow(clippy::result_unit_err)]
    pub(crate) fn subscribe(&self, id: u64, topic: &str, limit: usize) -> Result<bool, ()> {
        self.subscribe_as(id, topic, limit, false)
    }

    /// [`Registry::subscribe`], pending until [`Registry::go_live`] (a cluster).
    #[allow(clippy::result_unit_err)]
    pub(crate) fn subscribe_pending(&self, id: u64, topic: &str, limit: usize) -> Result<bool, ()> {
        self.subscribe_as(id, topic, limit, true)
    }

    fn subscribe_as(&self, id: u64, topic: &str, limit: usize, pending: bool) -> Result<bool, ()> {
        let mut inner = self.lock();
        let Some(member) = inner.members.get_mut(&id) else { return Ok(false) };
        if member.topics.contains(topic) {
            return Ok(false);
        }
        let own = member.topics.iter().filter(|t| !member.automatic.contains(t)).count();
        if own >= limit {
            return Err(());
        }
        member.topics.insert(topic.to_owned());
        let handle = member.handle.clone();
        let since = if pending { BusGate::pending() } else { BusGate::live() };
        inner.topics.entry(topic.to_owned()).or_default().insert(id, Subscription { handle, since });
        Ok(true)
    }

    /// A cluster answered connection `id`'s subscribes to `topics` with bus number `snap`:
    /// queue what was buffered after it, and deliver live from now on. False if one of them
    /// was unsubscribed meanwhile.
    pub(crate) fn go_live(&self, id: u64, topics: &[&str], snap: u64) -> bool {
        let mut inner = self.lock();
        let mut all = true;
        for topic in topics {
            let Some(subscription) = inner.topics.get_mut(*topic).and_then(|subs| subs.get_mut(&id)) else {
                all = false;
                continue;
            };
            for frame in subscription.since.go_live(snap) {
                subscription.handle.send(&frame);
            }
        }
        all
    }

    /// A cluster bus message numbered `seq` for `topic`'s subscriptions here. Returns how
    /// many it was queued for.
    pub(crate) fn publish_numbered(&self, topic: &str, frame: &Outgoing, seq: u64) -> usize {
        let mut inner = self.lock();
        let Some(subscriptions) = inner.topics.get_mut(topic) else { return 0 };
        let mut queued = 0;
        for subscription in subscriptions.values_mut() {
            match subscription.since.offer(seq, || frame.clone()) {
                Offer::Now => queued += usize::from(subscription.handle.send(frame)),
                Offer::Later => {}
                Offer::Full => {
                    subscription
                        .handle
                        .terminate(1013, "Too many unsent messages: the client reads slower than messages arrive");
                }
            }
        }
        queued
    }

    /// Unsubscribe connection `id` from `topic`; true if it was subscribed.
    pub(crate) fn unsubscribe(&self, id: u64, topic: &str) -> bool {
        let mut inner = self.lock();
        let removed = inner.members.get_mut(&id).is_some_and(|m| m.topics.remove(topic));
        if removed {
            remove_from_topic(&mut inner, topic, id);
        }
        removed
    }

    /// Queue `frame` for every subscriber of `topic`. Returns how many it was queued for.
    ///
    /// ```
    /// # use switchboard_server::gateway::{Outgoing, Registry};
    /// assert_eq!(Registry::default().publish("main", &Outgoing::text("{}")), 0);
    /// ```
    pub fn publish(&self, topic: &str, frame: &Outgoing) -> usize {
        let inner = self.lock();
        let Some(subscribers) = inner.topics.get(topic) else { return 0 };
        // A full queue asks its socket to close (1013) and counts as not delivered.
        subscribers.values().filter(|subscription| subscription.handle.send(frame)).count()
    }

    /// Ask connections to close with `code` and `reason`: the one whose connection id is
    /// `connection_id`, or all of them. Returns how many.
    ///
    /// ```
    /// # use switchboard_server::gateway::Registry;
    /// assert_eq!(Registry::default().close(None, 1008, "Connection terminated"), 0);
    /// ```
    pub fn close(&self, connection_id: Option<&str>, code: u16, reason: &str) -> usize {
        let inner = self.lock();
        let mut closed = 0;
        for member in inner.members.values() {
            if connection_id.is_none_or(|id| *member.handle.socket_id == *id) {
                member.handle.terminate(code, reason);
                closed += 1;
            }
        }
        closed
    }

    /// Unsubscribe every connection of `subject` from the topics matching any of `patterns`
    /// (`*` globs). Returns how many subscriptions ended.
    ///
    /// ```
    /// # use switchboard_server::gateway::Registry;
    /// assert_eq!(Registry::default().unsubscribe_subject("ada", &["chat/*".into()]), 0);
    /// ```
    pub fn unsubscribe_subject(&self, subject: &str, patterns: &[String]) -> usize {
        self.unsubscribe_subject_ended(subject, patterns).len()
    }

    /// [`Registry::unsubscribe_subject`], returning each ended subscription as (connection
    /// id, topic, handle id).
    pub(crate) fn unsubscribe_subject_ended(&self, subject: &str, patterns: &[String]) -> Vec<(Box<str>, String, u64)> {
        let mut inner = self.lock();
        let mut ended = Vec::new();
        for (id, member) in inner.members.iter_mut() {
            if member.subject.as_deref() != Some(subject) {
                continue;
            }
            let automatic = &member.automatic;
            member.topics.retain(|topic| {
                let matched = !automatic.contains(topic) && patterns.iter().any(|p| glob_matches(p, topic));
                if matched {
                    ended.push((*id, topic.clone()));
                }
                !matched
            });
        }
        let mut out = Vec::with_capacity(ended.len());
        for (id, topic) in ended {
            remove_from_topic(&mut inner, &topic, id);
            if let Some(member) = inner.members.get(&id) {
                out.push((member.handle.socket_id.clone(), topic, id));
            }
        }
        out
    }

    /// Open gateway connections of this app.
    pub fn connection_count(&self) -> usize {
        self.lock().members.len()
    }

    /// Connections subscribed to `topic`.
    ///
    /// ```
    /// # use switchboard_server::gateway::Registry;
    /// assert_eq!(Registry::default().subscriber_count("main"), 0);
    /// ```
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.lock().topics.get(topic).map_or(0, HashMap::len)
    }
}

fn release(inner: &mut Inner, subject: Option<&str>) {
    let Some(subject) = subject else { return };
    if let Some(count) = inner.subjects.get_mut(subject) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            inner.subjects.remove(subject);
        }
    }
}

fn remove_from_topic(inner: &mut Inner, topic: &str, id: u64) {
    if let Some(subscribers) = inner.topics.get_mut(topic) {
        subscribers.remove(&id);
        if subscribers.is_empty() {
            inner.topics.remove(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn member(registry: &Registry, id: u64, subject: &str) -> mpsc::Receiver<Outgoing> {
        let (tx, rx) = mpsc::channel(4);
        let handle = Arc::new(GatewayHandle::with_slow_close(id, format!("c{id}"), tx, (1013, "slow")));
        registry.join(handle, Some(subject.into()), &["main".into(), format!("priv/c{id}")]);
        rx
    }

    #[test]
    fn topics_limits_and_leaving() {
        let registry = Registry::default();
        let mut a = member(&registry, 1, "ada");
        let mut b = member(&registry, 2, "bob");
        assert_eq!(registry.subscribe(1, "chat", 2), Ok(true));
        assert_eq!(registry.subscribe(1, "chat", 2), Ok(false), "idempotent");
        assert_eq!(registry.subscribe(1, "news", 2), Ok(true));
        assert_eq!(registry.subscribe(1, "more", 2), Err(()), "main and priv are not counted, the rest is");
        assert_eq!(registry.publish("main", &Outgoing::text("m")), 2);
        assert_eq!(registry.publish("chat", &Outgoing::text("c")), 1);
        assert_eq!(a.try_recv().map(|o| o.frame), Ok(Bytes::from("m")));
        assert_eq!(a.try_recv().map(|o| o.frame), Ok(Bytes::from("c")));
        assert_eq!(b.try_recv().map(|o| o.frame), Ok(Bytes::from("m")));
        assert!(b.try_recv().is_err());
        assert!(registry.unsubscribe(1, "chat") && !registry.unsubscribe(1, "chat"));
        registry.leave(1);
        assert_eq!(
            (registry.connection_count(), registry.subscriber_count("main"), registry.subscriber_count("news")),
            (1, 1, 0)
        );
    }

    #[test]
    fn subject_slots_are_bounded_and_given_back() {
        let registry = Registry::default();
        assert!(registry.reserve_subject(Some("ada"), 2) && registry.reserve_subject(Some("ada"), 2));
        assert!(!registry.reserve_subject(Some("ada"), 2), "a third is refused");
        assert!(registry.reserve_subject(Some("bob"), 2) && registry.reserve_subject(None, 2));
        registry.release_subject(Some("ada"));
        assert!(registry.reserve_subject(Some("ada"), 2));
        // A member's leave gives its slot back.
        let _rx = member(&registry, 9, "ada");
        registry.leave(9);
        assert!(registry.reserve_subject(Some("ada"), 2));
        assert!((0..1000).all(|_| registry.reserve_subject(Some("carol"), 0)), "0: no limit");
    }

    #[test]
    fn admin_unsubscribe_and_close_reach_the_right_connections() {
        let registry = Registry::default();
        let _a = member(&registry, 1, "ada");
        let _b = member(&registry, 2, "bob");
        for topic in ["chat/1", "chat/2", "news"] {
            registry.subscribe(1, topic, 10).expect("room");
            registry.subscribe(2, topic, 10).expect("room");
        }
        assert_eq!(registry.unsubscribe_subject("ada", &["chat/*".into()]), 2);
        assert_eq!(registry.unsubscribe_subject("ada", &["*".into()]), 1, "news; main and priv/c1 stay");
        assert_eq!((registry.subscriber_count("main"), registry.subscriber_count("priv/c1")), (2, 1));
        assert_eq!(
            (registry.subscriber_count("chat/1"), registry.subscriber_count("news")),
            (1, 1),
            "news is bob's alone now"
        );
        assert_eq!(registry.close(Some("c2"), 1008, "Connection terminated"), 1);
        assert_eq!(registry.close(Some("nobody"), 1008, "x"), 0);
        assert_eq!(registry.close(None, 1008, "x"), 2);
    }
}
