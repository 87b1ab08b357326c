//! Redis key names of one app's cluster state, all under the prefix
//! (`REVERB_SCALING_CHANNEL`, default `reverb`) and the app's hash tag.
//!
//! ```
//! // Crate-internal. The shape, for reference (prefix `reverb`, app 1000):
//! let key = format!("{}:{{{}}}:{}", "reverb", "1000", "nodes");
//! assert_eq!(key, "reverb:{1000}:nodes");
//! ```

/// The keys of one app.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    base: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, app_id: &str) -> Self {
        Self { base: format!("{prefix}:{{{app_id}}}:") }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }

    /// ZSET node → lease expiry (ms, Redis clock).
    pub(crate) fn nodes(&self) -> String {
        self.key("nodes")
    }
    /// "1" while the node is a member; deleted when it is reaped (fencing it).
    pub(crate) fn node(&self, node: &str) -> String {
        self.key(&format!("node:{node}"))
    }
    /// HASH `socket|channel` → user id (`""` for non-members): the node's subscriptions.
    /// In the Phoenix space: `conn|topic` → member (`node:conn`), the node's room members.
    pub(crate) fn sock(&self, node: &str) -> String {
        self.key(&format!("sock:{node}"))
    }
    /// HASH channel → subscription count.
    pub(crate) fn cnt(&self) -> String {
        self.key("cnt")
    }
    /// ZSET of occupied channels (score 0, so ordered by name).
    pub(crate) fn ch(&self) -> String {
        self.key("ch")
    }
    /// HASH user → connection count, per presence channel.
    pub(crate) fn pu(&self, channel: &str) -> String {
        self.key(&format!("pu:{channel}"))
    }
    /// The presence users key without its channel (for the channels script).
    pub(crate) fn pu_base(&self) -> String {
        self.key("pu:")
    }
    /// HASH user → user_info JSON, per presence channel.
    pub(crate) fn pi(&self, channel: &str) -> String {
        self.key(&format!("pi:{channel}"))
    }
    /// ZSET user → bus number of its first join (join order).
    pub(crate) fn po(&self, channel: &str) -> String {
        self.key(&format!("po:{channel}"))
    }
    /// The app's bus sequence.
    pub(crate) fn seq(&self) -> String {
        self.key("seq")
    }
    /// A cache channel's last event.
    pub(crate) fn cache(&self, channel: &str) -> String {
        self.key(&format!("cache:{channel}"))
    }
    /// HASH node → open connections.
    pub(crate) fn conns(&self) -> String {
        self.key("conns")
    }
    /// A reaper's claim on a dead node.
    pub(crate) fn reap(&self, node: &str) -> String {
        self.key(&format!("reap:{node}"))
    }
    /// Phoenix rooms: HASH member (`node:conn`) → its meta JSON, per room.
    pub(crate) fn room_metas(&self, topic: &str) -> String {
        self.key(&format!("rm:{topic}"))
    }
    /// Phoenix rooms: HASH member → its username as a JSON string, per room.
    pub(crate) fn room_names(&self, topic: &str) -> String {
        self.key(&format!("rn:{topic}"))
    }
    /// Phoenix rooms: ZSET member → bus number of its join (join order), per room.
    pub(crate) fn room_order(&self, topic: &str) -> String {
        self.key(&format!("ro:{topic}"))
    }
    /// Gateway: HASH topic → subscriptions, cluster-wide.
    pub(crate) fn gateway_topics(&self) -> String {
        self.key("gt")
    }
    /// Gateway: HASH connection id → node.
    pub(crate) fn gateway_connections(&self) -> String {
        self.key("gc")
    }
    /// Gateway: HASH `conn|topic` → subject, one node's subscriptions.
    pub(crate) fn gateway_node_subscriptions(&self, node: &str) -> String {
        self.key(&format!("gsock:{node}"))
    }
    /// Gateway: the node subscriptions key without its node id.
    pub(crate) fn gateway_node_subscriptions_base(&self) -> String {
        self.key("gsock:")
    }
    /// Gateway: the node connections key without its node id.
    pub(crate) fn gateway_node_connections_base(&self) -> String {
        self.key("gconn:")
    }
    /// Gateway: HASH conn → the presence frame backends get if the node dies.
    pub(crate) fn gateway_node_connections(&self, node: &str) -> String {
        self.key(&format!("gconn:{node}"))
    }
    /// Gateway: SET of subjects with connections on a node.
    pub(crate) fn gateway_node_subjects(&self, node: &str) -> String {
        self.key(&format!("gsub:{node}"))
    }
    /// Gateway: HASH node → connections of one subject (key base without the subject).
    pub(crate) fn gateway_subject_slots_base(&self) -> String {
        self.key("gs:")
    }
    /// Gateway: SET of `conn|topic`, one subject's own topics (key base without the subject).
    pub(crate) fn gateway_subject_topics_base(&self) -> String {
        self.key("gsubj:")
    }
    /// The app's pub/sub bus.
    pub(crate) fn bus(&self) -> String {
        self.key("bus")
    }
}
