//! Scale-out over Redis: several `switchboard serve` nodes behind a load balancer act as one
//! server, as Reverb's scaling does, with the cluster state exact on every node.
//!
//! - Redis holds the cluster state: each node's subscriptions, channel counts, presence
//!   rosters (per user, so two tabs on two nodes are one member), cache channels and
//!   connection counts; and the Phoenix rooms' members (`rooms.rs`), a key space of their
//!   own. Pub/sub (one bus per app, one for the Phoenix rooms) carries only messages.
//! - A state change and the event it causes run in one Lua script (`scripts.rs`): the script's
//!   answer tells exactly one node that a member was added or removed or a channel occupied
//!   or vacated, and that node alone fires the webhook.
//! - Every bus message is numbered by the app's sequence inside its script; every node, the
//!   origin included, delivers from the bus in that order, and a join's snapshot number
//!   tells which messages a new subscriber gets (those ordered after it).
//! - Nodes hold a lease (renewed every heartbeat). A node whose lease runs out is reaped by
//!   the others: its subscriptions leave through the same script, so `member_removed` and
//!   webhooks fire once. A reaped node that wakes up is fenced: it closes its sockets with
//!   4200 and rejoins under a new id. So is a node that lost Redis (its leaves may have been
//!   lost) or that finds Redis emptied, and one whose bus skipped messages.
//! - When Redis does not answer, publishes and queries fail with 503 and subscribes with a
//!   503 `subscription_error`; sockets stay up.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use switchboard_server::config::ScalingConfig;
//! use switchboard_server::{Server, ServerConfig};
//! let scaling = ScalingConfig { enabled: true, url: "redis://127.0.0.1:6379".into(), ..ScalingConfig::default() };
//! let server = Server::start(ServerConfig { scaling, ..ServerConfig::default() }).await?;
//! server.run_until_signal().await;
//! # Ok(()) }
//! ```

mod bus;
mod gateway;
mod keys;
mod rooms;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Value};
use switchboard_protocol::frame::encode_server_frame;
use switchboard_protocol::presence::{member_added_data, member_removed_data};
use switchboard_protocol::{ChannelName, PresenceRoster};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::adapter::TopicSubscribe;
use crate::adapter::{Adapter, AdapterError, AdapterFuture, Publish};
use crate::config::ScalingConfig;
use crate::connection_handle::ConnectionHandle;
use crate::gateway::{GatewayHandle, Outgoing};
use crate::metrics::Metrics;
use crate::phoenix::{RoomMember, Rooms};
use crate::pusher::app::{App, ChannelCounts, Joining, SubscribeRefused, Subscribed};
use crate::pusher::webhooks::WebhookEvent;
use bus::{Header, Kind};
use keys::Keys;

/// The key space of the Phoenix rooms (apps have theirs under their ids; `~` keeps it apart
/// from any app id a Pusher SDK would send).
const PHOENIX_SPACE: &str = "~phoenix";

/// How long a cache channel keeps its last event (as on one node).
const CACHE_TTL_MS: u64 = 3_600_000;
/// The close a fenced node's sockets get: Pusher's "reconnect", so clients come back and
/// their state is rebuilt.
const FENCE_CLOSE: (u16, &str) = (4200, "This server node rejoined the cluster; reconnect");

/// The Redis scale-out adapter (see the module doc).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use switchboard_server::config::ScalingConfig;
/// use switchboard_server::scaling::RedisAdapter;
/// use switchboard_server::{Server, ServerConfig};
/// let scaling = ScalingConfig { enabled: true, url: "unix:///tmp/redis.sock".into(), ..ScalingConfig::default() };
/// let adapter = RedisAdapter::connect(&scaling).await?;
/// let server = Server::start_with_adapter(ServerConfig { scaling, ..ServerConfig::default() }, Arc::new(adapter)).await?;
/// # drop(server); Ok(()) }
/// ```
pub struct RedisAdapter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapter").field("node", &self.inner.node_id()).finish_non_exhaustive()
    }
}

struct Inner {
    client: redis::Client,
    redis: ConnectionManager,
    config: ScalingConfig,
    node: Mutex<String>,
    /// The key spaces (each app's, and the Phoenix rooms'), set by `start`.
    apps: Mutex<Vec<Space>>,
    metrics: Mutex<Option<Arc<Metrics>>>,
    /// A leave (or other write) failed: the cluster may hold state this node no longer has,
    /// so it fences itself once Redis answers again.
    dirty: AtomicBool,
    stop: watch::Sender<bool>,
    /// True while the bus subscriber is subscribed and has its baseline number: joins wait
    /// for it, or a subscriber would miss what is published before the bus is back.
    bus_ready: watch::Sender<bool>,
    /// False while the node is fenced and not yet registered under its new id: joins wait
    /// for it rather than be refused while clients reconnect.
    registered: watch::Sender<bool>,
    /// Gateway connections by (app id, handle id) → the node id they joined under, so their
    /// later subscribes, leaves and slot releases touch that id's keys even after a fence.
    gateway_nodes: Mutex<HashMap<(String, u64), String>>,
    /// Wakes the bus subscriber from its reconnect backoff (a fenced node rejoins now).
    bus_wake: tokio::sync::Notify,
    tasks: TaskTracker,
}

/// What one key space and bus serve.
#[derive(Clone)]
enum Serves {
    /// A Pusher app (its Pusher and RealtimeX sockets).
    Pusher(Arc<App>),
    /// The Phoenix endpoint's rooms (server-wide, as on one node).
    PhoenixRooms(Arc<Rooms>),
}

/// One key space as the cluster sees it: an app, or the Phoenix rooms.
#[derive(Clone)]
struct Space {
    serves: Serves,
    /// The app id (or [`PHOENIX_SPACE`]), for keys and logs.
    id: String,
    keys: Keys,
    /// The last bus number delivered (0 before the first).
    last_seq: Arc<AtomicU64>,
}

impl Space {
    fn connection_count(&self) -> usize {
        match &self.serves {
            Serves::Pusher(app) => app.connection_count(),
            Serves::PhoenixRooms(_) => 0, // no per-app quota: the server-wide one is local
        }
    }

    /// Close every socket that holds cluster state in this space with `code`.
    fn close_all(&self, code: u16, reason: &str) -> usize {
        match &self.serves {
            // Gateway sockets get 1012 (Service Restart): the SDKs reconnect on it.
            Serves::Pusher(app) => app.close_all(code, reason) + app.gateway.close(None, 1012, reason),
            Serves::PhoenixRooms(rooms) => rooms.close_all(code, reason),
        }
    }
}

fn unavailable(e: redis::RedisError) -> AdapterError {
    AdapterError::Unavailable(e.to_string())
}

fn new_node_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl RedisAdapter {
    /// Connect to Redis (`config.url`). Fails if Redis does not answer now; once running,
    /// the adapter reconnects by itself.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use switchboard_server::config::ScalingConfig;
    /// use switchboard_server::scaling::RedisAdapter;
    /// let config = ScalingConfig { enabled: true, ..ScalingConfig::default() };
    /// let adapter = RedisAdapter::connect(&config).await?;
    /// println!("node {}", adapter.node_id());
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: &ScalingConfig) -> Result<Self, AdapterError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let redis = ConnectionManager::new_with_config(client.clone(), manager_config).await.map_err(unavailable)?;
        let (stop, _) = watch::channel(false);
        let (bus_ready, _) = watch::channel(false);
        let (registered, _) = watch::channel(true);
        let inner = Inner {
            client,
            redis,
            config: config.clone(),
            node: Mutex::new(new_node_id()),
            apps: Mutex::default(),
            metrics: Mutex::default(),
            dirty: AtomicBool::new(false),
            stop,
            bus_ready,
            registered,
            bus_wake: tokio::sync::Notify::new(),
            gateway_nodes: Mutex::default(),
            tasks: TaskTracker::new(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// This node's current id in the cluster (a new one after each fencing).
    ///
    /// ```no_run
    /// # async fn run(adapter: switchboard_server::scaling::RedisAdapter) {
    /// assert_eq!(adapter.node_id().len(), 16);
    /// # }
    /// ```
    pub fn node_id(&self) -> String {
        self.inner.node_id()
    }
}

impl Inner {
    fn node_id(&self) -> String {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Wait (up to 3 s) until the bus subscriber is subscribed: a join answered before that
    /// could miss the messages published meanwhile.
    /// Likewise while the node is rejoining after a fence.
    async fn bus_ready(&self) -> Result<(), AdapterError> {
        if *self.registered.borrow() && *self.bus_ready.borrow() {
            return Ok(()); // the usual case: no waiter to set up per join
        }
        let (mut bus, mut registered) = (self.bus_ready.subscribe(), self.registered.subscribe());
        let both = async { registered.wait_for(|r| *r).await.is_ok() && bus.wait_for(|ready| *ready).await.is_ok() };
        match tokio::time::timeout(Duration::from_secs(3), both).await {
            Ok(true) => Ok(()),
            _ => Err(AdapterError::Unavailable("the cluster bus is reconnecting".into())),
        }
    }

    fn metrics(&self) -> Option<Arc<Metrics>> {
        self.metrics.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn cluster_app(&self, app: &App) -> Option<Space> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter().find(|c| matches!(&c.serves, Serves::Pusher(a) if a.config.id == app.config.id)).cloned()
    }

    fn phoenix_space(&self) -> Option<Space> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter().find(|c| matches!(c.serves, Serves::PhoenixRooms(_))).cloned()
    }

    fn keys(&self, app: &App) -> Keys {
        Keys::new(&self.config.prefix, &app.config.id)
    }

    fn redis_up(&self, up: bool) {
        if let Some(metrics) = self.metrics() {
            metrics.scaling_redis_up.set(i64::from(up));
        }
    }

    /// Register (or renew) this node for every app. Returns false if fenced.
    async fn beat(&self, register: bool) -> Result<bool, redis::RedisError> {
        let node = self.node_id();
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut conn = self.conn();
        let mut fenced = false;
        for cluster in &apps {
            let keys = &cluster.keys;
            let seq: i64 = scripts::BEAT
                .key(keys.node(&node))
                .key(keys.nodes())
                .key(keys.seq())
                .key(keys.conns())
                .arg(&node)
                .arg(self.config.lease_ms)
                .arg(cluster.connection_count())
                .arg(if register { "1" } else { "0" })
                .invoke_async(&mut conn)
                .await?;
            if seq < 0 {
                fenced = true;
            }
        }
        Ok(!fenced)
    }

    /// Close every socket with 4200, take a new id and register it. The old id's state is
    /// left to the reapers (its lease is ended now, so any node reaps it at its next scan).
    async fn fence(&self, why: &str) {
        let old = self.node_id();
        tracing::warn!(node = %old, "fenced out of the cluster ({why}): closing every socket with 4200 and rejoining");
        self.registered.send_replace(false);
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut conn = self.conn();
        for cluster in &apps {
            // First end the old membership: a join in flight under the old id now answers
            // 'fenced', and the old lease ends, so the next scan reaps its leftovers.
            let _: Result<(), _> = conn.del(cluster.keys.node(&old)).await;
            let _: Result<(), _> = conn.zadd(cluster.keys.nodes(), &old, 0).await;
        }
        for cluster in &apps {
            let closed = cluster.close_all(FENCE_CLOSE.0, FENCE_CLOSE.1);
            tracing::info!(space = %cluster.id, closed, "closed sockets of a fenced node");
        }
        *self.node.lock().unwrap_or_else(|p| p.into_inner()) = new_node_id();
        if let Some(metrics) = self.metrics() {
            metrics.scaling_fenced.inc();
        }
        // Redis may have been emptied (its sequence restarted): follow it from here, or
        // every message numbered below the old mark would be taken for a repeat. Before the
        // new id registers, so no join is confirmed until then.
        for cluster in &apps {
            if let Ok(current) = conn.get::<_, Option<u64>>(cluster.keys.seq()).await
                && current.unwrap_or(0) < cluster.last_seq.load(Ordering::Acquire)
            {
                cluster.last_seq.store(current.unwrap_or(0), Ordering::Release);
            }
        }
        self.dirty.store(false, Ordering::Release);
        self.bus_wake.notify_one();
        match self.beat(true).await {
            Ok(_) => {
                self.registered.send_replace(true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "rejoining the cluster failed; retrying at the next heartbeat");
                self.dirty.store(true, Ordering::Release);
            }
        }
    }

    /// Reap every node whose lease ran out (any node may; the claim decides who).
    async fn reap_dead(&self) -> Result<(), redis::RedisError> {
        let me = self.node_id();
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut conn = self.conn();
        for cluster in &apps {
            let dead: Vec<String> = scripts::DEAD.key(cluster.keys.nodes()).invoke_async(&mut conn).await?;
            for node in dead.into_iter().filter(|n| *n != me) {
                let claimed: i64 = scripts::CLAIM
                    .key(cluster.keys.reap(&node))
                    .key(cluster.keys.node(&node))
                    .arg(&me)
                    .invoke_async(&mut conn)
                    .await?;
                if claimed == 1 {
                    self.reap(cluster, &node).await?;
                }
            }
        }
        Ok(())
    }

    /// Leave every subscription of a dead node, firing what those leaves cause, then forget it.
    async fn reap(&self, cluster: &Space, node: &str) -> Result<(), redis::RedisError> {
        let keys = &cluster.keys;
        let mut conn = self.conn();
        let subscriptions: HashMap<String, String> = conn.hgetall(keys.sock(node)).await?;
        let count = subscriptions.len();
        for (field, value) in subscriptions {
            match &cluster.serves {
                Serves::Pusher(app) => {
                    let Some((socket, channel)) = field.split_once('|') else { continue };
                    let user = (!value.is_empty()).then_some(value.as_str());
                    leave_script(self, app, keys, node, socket, channel, user).await?;
                }
                Serves::PhoenixRooms(_) => {
                    let Some((_, topic)) = field.split_once('|') else { continue };
                    rooms::leave_script(self, keys, node, &field, topic).await?;
                }
            }
        }
        let gateway_connections = match &cluster.serves {
            Serves::Pusher(_) => gateway::reap(self, keys, node).await?,
            Serves::PhoenixRooms(_) => 0,
        };
        let _: i64 = scripts::FORGET
            .key(keys.sock(node))
            .key(keys.nodes())
            .key(keys.conns())
            .arg(node)
            .invoke_async(&mut conn)
            .await?;
        tracing::info!(space = %cluster.id, node, subscriptions = count, gateway_connections, "reaped a dead node");
        if let Some(metrics) = self.metrics() {
            metrics.scaling_reaped_nodes.inc();
            metrics.scaling_reaped_subscriptions.inc_by(count as u64);
        }
        Ok(())
    }
}

/// Run `leave.lua` for one subscription of `node` and fire the webhooks it decides.
async fn leave_script(
    inner: &Inner,
    app: &App,
    keys: &Keys,
    node: &str,
    socket_id: &str,
    channel: &str,
    user_id: Option<&str>,
) -> Result<(), redis::RedisError> {
    let frame = user_id.map_or_else(String::new, |user| {
        encode_server_frame("pusher_internal:member_removed", Some(channel), Some(&member_removed_data(user)), None)
    });
    let tail = Header { c: Some(channel.into()), ..Header::new("e", node) }.tail();
    let mut conn = inner.conn();
    let (removed, vacated): (i64, i64) = scripts::LEAVE
        .key(keys.sock(node))
        .key(keys.cnt())
        .key(keys.ch())
        .key(keys.pu(channel))
        .key(keys.pi(channel))
        .key(keys.po(channel))
        .key(keys.seq())
        .arg(socket_id)
        .arg(channel)
        .arg(keys.bus())
        .arg(tail)
        .arg(user_id.unwrap_or(""))
        .arg(frame)
        .invoke_async(&mut conn)
        .await?;
    if removed == 1
        && let Some(user) = user_id
    {
        app.webhook(WebhookEvent::member(channel, "member_removed", user));
    }
    if vacated == 1 {
        app.webhook(WebhookEvent::channel(channel, "channel_vacated"));
    }
    Ok(())
}

/// The heartbeat: renew the lease, fence on loss, detect a silent bus, reap the dead.
async fn heartbeat_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut down_since: Option<tokio::time::Instant> = None;
    // Bus numbers seen by the previous beat: by now they must have arrived.
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut beat = tokio::time::interval(Duration::from_millis(inner.config.heartbeat_ms.max(50)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            _ = stop.changed() => return,
        }
        match inner.beat(false).await {
            Ok(true) => {
                down_since = None;
                inner.redis_up(true);
                if inner.dirty.load(Ordering::Acquire) {
                    inner.fence("Redis was unreachable while sockets left").await;
                    expected.clear();
                    continue;
                }
            }
            Ok(false) => {
                inner.redis_up(true);
                down_since = None;
                inner.fence("its lease was taken (reaped, or Redis lost its data)").await;
                expected.clear();
                continue;
            }
            Err(e) => {
                inner.redis_up(false);
                let since = *down_since.get_or_insert_with(tokio::time::Instant::now);
                tracing::warn!(error = %e, "cluster heartbeat failed");
                if since.elapsed() >= Duration::from_millis(inner.config.lease_ms) {
                    // Others may reap this node meanwhile: rejoin cleanly when Redis is back.
                    inner.dirty.store(true, Ordering::Release);
                }
                continue;
            }
        }
        if let Err(e) = check_bus(&inner, &mut expected).await {
            tracing::warn!(error = %e, "bus check failed");
        }
        if let Err(e) = inner.reap_dead().await {
            tracing::warn!(error = %e, "reaping dead nodes failed");
        }
    }
}

/// A bus that fell behind the sequence for a whole heartbeat lost messages (a dropped
/// subscriber connection, an output-buffer kill): close the app's sockets with 4200 so
/// clients resubscribe, rather than leave them silently missing events.
async fn check_bus(inner: &Inner, expected: &mut HashMap<String, u64>) -> Result<(), redis::RedisError> {
    let apps = inner.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut conn = inner.conn();
    for cluster in &apps {
        let seen = cluster.last_seq.load(Ordering::Acquire);
        if let Some(due) = expected.get(&cluster.id)
            && seen < *due
        {
            bus_gap(inner, cluster, *due - seen, "the bus fell behind");
            cluster.last_seq.fetch_max(*due, Ordering::AcqRel);
        }
        let current: Option<u64> = conn.get(cluster.keys.seq()).await?;
        expected.insert(cluster.id.clone(), current.unwrap_or(0));
    }
    Ok(())
}

fn bus_gap(inner: &Inner, cluster: &Space, missed: u64, why: &str) {
    tracing::warn!(space = %cluster.id, missed, "{why}: closing the space's sockets with 4200 so they resubscribe");
    if let Some(metrics) = inner.metrics() {
        metrics.scaling_bus_gaps.inc_by(missed);
    }
    cluster.close_all(FENCE_CLOSE.0, "Messages were lost between server nodes; reconnect");
}

/// The dedicated subscriber connection: every app's bus, delivered in order by one task.
async fn subscriber_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let result = subscribe_and_dispatch(&inner, &mut stop).await;
        let was_ready = inner.bus_ready.send_replace(false);
        match result {
            Ok(()) => return,
            Err(e) => {
                inner.redis_up(false);
                tracing::warn!(error = %e, "cluster bus subscriber lost; reconnecting");
            }
        }
        if was_ready {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            () = inner.bus_wake.notified() => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn subscribe_and_dispatch(inner: &Arc<Inner>, stop: &mut watch::Receiver<bool>) -> Result<(), redis::RedisError> {
    let apps = inner.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut pubsub = inner.client.get_async_pubsub().await?;
    for cluster in &apps {
        pubsub.subscribe(cluster.keys.bus()).await?;
    }
    // Subscribed: everything numbered after the current sequence reaches this connection.
    let mut conn = inner.conn();
    for cluster in &apps {
        let current: Option<u64> = conn.get(cluster.keys.seq()).await?;
        let current = current.unwrap_or(0);
        let seen = cluster.last_seq.load(Ordering::Acquire);
        if seen > 0 && current > seen {
            bus_gap(inner, cluster, current - seen, "the bus reconnected after missing messages");
        }
        cluster.last_seq.store(current, Ordering::Release);
    }
    inner.bus_ready.send_replace(true);
    let by_bus: HashMap<String, Space> = apps.iter().map(|c| (c.keys.bus(), c.clone())).collect();
    let mut messages = pubsub.into_on_message();
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = stop.changed() => return Ok(()),
        };
        let Some(message) = message else {
            return Err(redis::RedisError::from((redis::ErrorKind::Io, "the subscriber connection closed")));
        };
        let Some(cluster) = by_bus.get(message.get_channel_name()) else { continue };
        dispatch(inner, cluster, message.get_payload_bytes());
    }
}

fn dispatch(inner: &Arc<Inner>, cluster: &Space, payload: &[u8]) {
    let metrics = inner.metrics();
    let Some(message) = bus::decode(payload) else {
        tracing::warn!(space = %cluster.id, "malformed bus message dropped");
        return;
    };
    if let Some(metrics) = &metrics {
        metrics.scaling_bus_messages.inc();
    }
    let last = cluster.last_seq.load(Ordering::Acquire);
    if message.seq <= last {
        return; // before this subscriber's start (or a repeat)
    }
    if message.seq > last + 1 {
        bus_gap(inner, cluster, message.seq - last - 1, "bus messages were lost");
    }
    cluster.last_seq.store(message.seq, Ordering::Release);
    match (&cluster.serves, message.kind) {
        (Serves::Pusher(app), Kind::Channel { channel, except, frame }) => {
            app.deliver_bus(&channel, &frame, except.as_deref(), message.seq);
        }
        (Serves::Pusher(app), Kind::Terminate { user }) => {
            app.terminate_user(&user);
        }
        (Serves::Pusher(app), Kind::Gateway { topic, binary, ack, frame }) => {
            app.gateway.publish_numbered(&topic, &Outgoing { frame, binary }, message.seq);
            // The sender's ack, after its echo (queued just now on the same queue).
            if let Some((id, ack)) = ack
                && message.origin == inner.node_id()
            {
                app.gateway.send_to(id, &Outgoing::text(ack));
            }
        }
        (Serves::Pusher(app), Kind::GatewayClose { connection_id, code, reason }) => {
            app.gateway.close(connection_id.as_deref(), code, &reason);
        }
        (Serves::Pusher(app), Kind::GatewayUnsubscribe { subject, patterns }) => {
            gateway::on_unsubscribe_subject(inner, app, &subject, &patterns);
        }
        (Serves::PhoenixRooms(rooms), Kind::Room { topic, body }) => match rooms::decode_body(&body) {
            Some(room_message) => rooms.deliver_bus(&topic, room_message, message.seq),
            None => tracing::warn!(space = %cluster.id, "undecodable room message dropped"),
        },
        (_, kind) => tracing::warn!(space = %cluster.id, ?kind, "bus message of another space dropped"),
    }
}

/// Build `subscription_succeeded` data from a roster read in join order.
fn roster_data(ids: &[String], infos: &[Option<String>]) -> String {
    let mut roster = PresenceRoster::default();
    for (id, info) in ids.iter().zip(infos.iter().chain(std::iter::repeat(&None))) {
        roster.add(id, info.as_deref().unwrap_or("null"));
    }
    roster.subscription_data()
}

fn as_i64(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

fn as_string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

impl Adapter for RedisAdapter {
    fn start<'a>(
        &'a self,
        apps: &'a [Arc<App>],
        rooms: &'a Arc<Rooms>,
        metrics: &'a Arc<Metrics>,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            *inner.metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(metrics.clone());
            let mut spaces: Vec<Space> = apps
                .iter()
                .map(|app| Space {
                    serves: Serves::Pusher(app.clone()),
                    id: app.config.id.clone(),
                    keys: inner.keys(app),
                    last_seq: Arc::default(),
                })
                .collect();
            spaces.push(Space {
                serves: Serves::PhoenixRooms(rooms.clone()),
                id: PHOENIX_SPACE.to_owned(),
                keys: Keys::new(&inner.config.prefix, PHOENIX_SPACE),
                last_seq: Arc::default(),
            });
            *inner.apps.lock().unwrap_or_else(|p| p.into_inner()) = spaces;
            inner.beat(true).await.map_err(unavailable)?;
            inner.redis_up(true);
            let stop = inner.stop.subscribe();
            inner.tasks.spawn(subscriber_loop(inner.clone(), stop.clone()));
            inner.tasks.spawn(heartbeat_loop(inner.clone(), stop));
            tracing::info!(node = %inner.node_id(), prefix = %inner.config.prefix, "joined the cluster");
            Ok(())
        })
    }

    fn stop<'a>(&'a self) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let _ = inner.stop.send(true);
            inner.tasks.close();
            inner.tasks.wait().await;
            // Sockets have left (each through leave.lua); what is left of this node goes now.
            let node = inner.node_id();
            let apps = inner.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for cluster in &apps {
                inner.reap(cluster, &node).await.map_err(unavailable)?;
                let mut conn = inner.conn();
                let _: () = conn.del(cluster.keys.node(&node)).await.map_err(unavailable)?;
            }
            Ok(())
        })
    }

    fn publish<'a>(&'a self, app: &'a App, publish: Publish<'a>) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(app);
            let node = inner.node_id();
            let remember = publish.remember && ChannelName::parse(publish.channel).is_ok_and(|c| c.is_cache());
            let header = Header {
                c: Some(publish.channel.into()),
                x: publish.except_socket_id.map(Into::into),
                ..Header::new("e", &node)
            };
            let mut conn = inner.conn();
            let _: u64 = scripts::PUBLISH
                .key(keys.seq())
                .key(keys.cache(publish.channel))
                .arg(keys.bus())
                .arg(header.tail())
                .arg(&publish.frame[..])
                .arg(if remember { "1" } else { "0" })
                .arg(CACHE_TTL_MS)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn join<'a>(
        &'a self,
        app: &'a App,
        conn: &'a Arc<ConnectionHandle>,
        channel: &'a str,
        is_cache: bool,
        joining: Option<Joining>,
    ) -> AdapterFuture<'a, Result<Subscribed, SubscribeRefused>> {
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(app);
            let node = inner.node_id();
            let user = joining.as_ref().map(|j| j.user_id.clone());
            let is_presence = joining.is_some() || channel.starts_with("presence-");
            // Local first, so the bus frames ordered after the join find the subscriber.
            inner.bus_ready().await?;
            let newly = app.add_pending(conn, channel, user.clone());
            let (added_frame, info) = match &joining {
                Some(join) => (
                    encode_server_frame(
                        "pusher_internal:member_added",
                        Some(channel),
                        Some(&member_added_data(&join.user_id, &join.user_info)),
                        None,
                    ),
                    join.user_info.clone(),
                ),
                None => (String::new(), String::new()),
            };
            let tail =
                Header { c: Some(channel.into()), x: Some((*conn.socket_id).into()), ..Header::new("e", &node) }.tail();
            let mut redis = inner.conn();
            let reply: Result<Value, _> = scripts::JOIN
                .key(keys.node(&node))
                .key(keys.sock(&node))
                .key(keys.cnt())
                .key(keys.ch())
                .key(keys.pu(channel))
                .key(keys.pi(channel))
                .key(keys.po(channel))
                .key(keys.seq())
                .key(keys.cache(channel))
                .arg(&*conn.socket_id)
                .arg(channel)
                .arg(user.as_deref().unwrap_or(""))
                .arg(info)
                .arg(app.config.max_presence_members)
                .arg(keys.bus())
                .arg(tail)
                .arg(added_frame)
                .arg(if is_cache { "1" } else { "0" })
                .arg(if is_presence { "1" } else { "0" })
                .invoke_async(&mut redis)
                .await;
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    if newly {
                        app.remove_local(conn.id, channel);
                    }
                    // The script may have run: if so, the cluster holds a subscription this
                    // node does not; a fence once Redis answers clears it.
                    inner.dirty.store(true, Ordering::Release);
                    return Err(unavailable(e));
                }
            };
            let items = as_array(&reply);
            match items.first().and_then(as_string).as_deref() {
                Some("ok") => {}
                Some("full") => {
                    if newly {
                        app.remove_local(conn.id, channel);
                    }
                    return Ok(Err(SubscribeRefused::PresenceFull(app.config.max_presence_members)));
                }
                Some("fenced") => {
                    if newly {
                        app.remove_local(conn.id, channel);
                    }
                    inner.dirty.store(true, Ordering::Release);
                    return Err(AdapterError::Fenced);
                }
                _ => {
                    if newly {
                        app.remove_local(conn.id, channel);
                    }
                    return Err(AdapterError::Unavailable(format!("unexpected join reply {reply:?}")));
                }
            }
            let snap = items.get(1).map_or(0, as_i64).max(0) as u64;
            let occupied = items.get(2).map_or(0, as_i64) == 1;
            let added = items.get(3).map_or(0, as_i64) == 1;
            let ids: Vec<String> =
                items.get(4).map(as_array).unwrap_or_default().iter().filter_map(as_string).collect();
            let infos: Vec<Option<String>> =
                items.get(5).map(as_array).unwrap_or_default().iter().map(as_string).collect();
            let cached = is_cache.then(|| items.get(6).and_then(as_string).map(Bytes::from));
            if occupied {
                app.webhook(WebhookEvent::channel(channel, "channel_occupied"));
            }
            if added && let Some(user) = &user {
                app.webhook(WebhookEvent::member(channel, "member_added", user));
            }
            if matches!(cached, Some(None)) {
                app.webhook(WebhookEvent::channel(channel, "cache_miss"));
            }
            let data = if is_presence { roster_data(&ids, &infos) } else { "{}".to_owned() };
            Ok(Ok(Subscribed { data, cached, since: Some(snap) }))
        })
    }

    fn leave<'a>(&'a self, app: &'a App, conn: &'a ConnectionHandle, channel: &'a str) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let Some(user) = app.remove_local(conn.id, channel) else {
                return Ok(()); // not subscribed here (or already closed by a fence)
            };
            let Some(cluster) = inner.cluster_app(app) else { return Ok(()) };
            let node = inner.node_id();
            if let Err(e) =
                leave_script(inner, app, &cluster.keys, &node, &conn.socket_id, channel, user.as_deref()).await
            {
                inner.dirty.store(true, Ordering::Release);
                return Err(unavailable(e));
            }
            Ok(())
        })
    }

    fn terminate_user<'a>(&'a self, app: &'a App, user_id: &'a str) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(app);
            let node = inner.node_id();
            let header = Header { u: Some(user_id.into()), ..Header::new("t", &node) };
            let mut conn = inner.conn();
            let _: u64 = scripts::PUBLISH
                .key(keys.seq())
                .key(keys.cache(""))
                .arg(keys.bus())
                .arg(header.tail())
                .arg("")
                .arg("0")
                .arg(CACHE_TTL_MS)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn channel_counts<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, ChannelCounts> {
        Box::pin(async move {
            let keys = self.inner.keys(app);
            let mut conn = self.inner.conn();
            let (subscriptions, users): (Option<usize>, usize) = redis::pipe()
                .hget(keys.cnt(), channel)
                .hlen(keys.pu(channel))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let user_count = channel.starts_with("presence-").then_some(users);
            Ok(ChannelCounts { subscription_count: subscriptions.unwrap_or(0), user_count })
        })
    }

    fn occupied_channels<'a>(
        &'a self,
        app: &'a App,
        prefix: &'a str,
    ) -> AdapterFuture<'a, Vec<(String, ChannelCounts)>> {
        Box::pin(async move {
            let keys = self.inner.keys(app);
            let mut conn = self.inner.conn();
            let flat: Vec<Value> = scripts::CHANNELS
                .key(keys.ch())
                .key(keys.cnt())
                .arg(prefix)
                .arg(keys.pu_base())
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(flat
                .chunks_exact(3)
                .filter_map(|row| {
                    let name = as_string(&row[0])?;
                    let users = as_i64(&row[2]);
                    let counts = ChannelCounts {
                        subscription_count: as_i64(&row[1]).max(0) as usize,
                        user_count: (users >= 0).then_some(users as usize),
                    };
                    Some((name, counts))
                })
                .collect())
        })
    }

    fn presence_users<'a>(&'a self, app: &'a App, channel: &'a str) -> AdapterFuture<'a, Vec<String>> {
        Box::pin(async move {
            let keys = self.inner.keys(app);
            let mut conn = self.inner.conn();
            conn.zrange(keys.po(channel), 0, -1).await.map_err(unavailable)
        })
    }

    fn acquire_connection<'a>(&'a self, app: &'a App) -> AdapterFuture<'a, bool> {
        Box::pin(async move {
            if !app.try_add_connection() {
                return Ok(false);
            }
            let max = app.config.max_connections;
            if max == 0 {
                return Ok(true);
            }
            let keys = self.inner.keys(app);
            let mut conn = self.inner.conn();
            let taken: Result<i64, _> =
                scripts::ACQUIRE.key(keys.conns()).arg(self.inner.node_id()).arg(max).invoke_async(&mut conn).await;
            match taken {
                Ok(1) => Ok(true),
                Ok(_) => {
                    app.remove_connection();
                    Ok(false)
                }
                Err(e) => {
                    app.remove_connection();
                    Err(unavailable(e))
                }
            }
        })
    }

    fn release_connection(&self, app: &Arc<App>) {
        // The node's count in Redis is rewritten from the local count at every heartbeat.
        app.remove_connection();
    }

    fn room_join<'a>(
        &'a self,
        rooms: &'a Rooms,
        topic: &'a str,
        member: RoomMember,
        max_members: usize,
    ) -> AdapterFuture<'a, Option<serde_json::Value>> {
        Box::pin(rooms::join(&self.inner, rooms, topic, member, max_members))
    }

    fn room_leave<'a>(&'a self, rooms: &'a Rooms, topic: &'a str, conn: u64) -> AdapterFuture<'a, ()> {
        Box::pin(rooms::leave(&self.inner, rooms, topic, conn))
    }

    fn room_update_typing<'a>(
        &'a self,
        rooms: &'a Rooms,
        topic: &'a str,
        conn: u64,
        typing: bool,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(rooms::update_typing(&self.inner, rooms, topic, conn, typing))
    }

    fn room_shout<'a>(
        &'a self,
        _rooms: &'a Rooms,
        topic: &'a str,
        payload: switchboard_protocol::phoenix::Payload,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(rooms::shout(&self.inner, topic, payload))
    }

    fn gateway_reserve_subject<'a>(
        &'a self,
        app: &'a App,
        subject: Option<&'a str>,
        limit: usize,
    ) -> AdapterFuture<'a, bool> {
        Box::pin(gateway::reserve_subject(&self.inner, app, subject, limit))
    }

    fn gateway_release_subject(&self, app: &Arc<App>, subject: Option<&str>) {
        gateway::release_subject(&self.inner, app, subject);
    }

    fn gateway_join<'a>(
        &'a self,
        app: &'a App,
        handle: &'a Arc<GatewayHandle>,
        subject: Option<&'a str>,
        automatic: &'a [String],
        goodbye: String,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(gateway::join(&self.inner, app, handle, subject, automatic, goodbye))
    }

    fn gateway_leave<'a>(&'a self, app: &'a App, id: u64) -> AdapterFuture<'a, bool> {
        Box::pin(gateway::leave(&self.inner, app, id))
    }

    fn gateway_subscribe<'a>(
        &'a self,
        app: &'a App,
        handle: &'a GatewayHandle,
        subject: Option<&'a str>,
        topic: &'a str,
        limit: usize,
    ) -> AdapterFuture<'a, TopicSubscribe> {
        Box::pin(gateway::subscribe(&self.inner, app, handle, subject, topic, limit))
    }

    fn gateway_unsubscribe_topic<'a>(
        &'a self,
        app: &'a App,
        handle: &'a GatewayHandle,
        topic: &'a str,
    ) -> AdapterFuture<'a, bool> {
        Box::pin(gateway::unsubscribe_topic(&self.inner, app, handle, topic))
    }

    fn gateway_publish<'a>(
        &'a self,
        app: &'a App,
        topic: &'a str,
        frame: &'a Outgoing,
        ack: Option<(u64, Outgoing)>,
    ) -> AdapterFuture<'a, usize> {
        Box::pin(gateway::publish(&self.inner, app, topic, frame, ack))
    }

    fn gateway_close<'a>(
        &'a self,
        app: &'a App,
        connection_id: Option<&'a str>,
        code: u16,
        reason: &'a str,
    ) -> AdapterFuture<'a, usize> {
        Box::pin(gateway::close(&self.inner, app, connection_id, code, reason))
    }

    fn gateway_unsubscribe<'a>(
        &'a self,
        app: &'a App,
        subject: &'a str,
        patterns: &'a [String],
    ) -> AdapterFuture<'a, usize> {
        Box::pin(gateway::unsubscribe_subject(&self.inner, app, subject, patterns))
    }
}
