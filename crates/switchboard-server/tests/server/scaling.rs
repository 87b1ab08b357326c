//! Scale-out over Redis: three nodes (each a `Server` with its own Redis adapter and node id)
//! behind one real `redis-server` started for the test on a unix socket, and stopped after.
//! What one node does, the others see exactly: deliveries once and in one order, presence
//! members per user, counts, cache channels, webhooks once, limits and terminations.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_protocol::phoenix::Vsn;
use switchboard_server::config::ScalingConfig;
use switchboard_server::{ClientEventPolicy, RunningServer, WebhookConfig};

use crate::common::*;
use crate::gateway::{ALL, Gw, admin, status_of, token, url};
use crate::phoenix::{Phx, json_of, phoenix_js_meets_ours};
use crate::realtimex::Rtx;

/// A `redis-server` of the test's own: no TCP port, no persistence, killed on drop.
pub struct Redis {
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!("sb-redis-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut redis = Redis { dir, child: None };
        redis.spawn();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocketperm", "700"])
            .arg("--unixsocket")
            .arg(self.socket())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; .ci/run installs it)");
        self.child = Some(child);
        for _ in 0..250 {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not open {} within 5 s", self.socket().display());
    }

    /// SIGKILL the server (its data is gone: nothing is persisted).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same socket, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64)
}

fn scaling(redis: &Redis) -> ScalingConfig {
    ScalingConfig { enabled: true, url: redis.url(), lease_ms: 1_500, heartbeat_ms: 250, ..ScalingConfig::default() }
}

/// Webhook events as (name, channel, user_id), in arrival order.
type Hooks = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

async fn webhook_sink() -> (String, Hooks) {
    let hooks: Hooks = Arc::default();
    let sink = hooks.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                let batch: Value = serde_json::from_slice(&body).unwrap_or_default();
                for event in batch["events"].as_array().into_iter().flatten() {
                    let name = event["name"].as_str().unwrap_or_default().to_owned();
                    let channel = event["channel"].as_str().unwrap_or_default().to_owned();
                    let user = event["user_id"].as_str().map(str::to_owned);
                    sink.lock().expect("hooks").push((name, channel, user));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, hooks)
}

fn count(hooks: &Hooks, name: &str, channel: &str) -> usize {
    hooks.lock().expect("hooks").iter().filter(|(n, c, _)| n == name && c == channel).count()
}

async fn cluster(redis: &Redis, nodes: usize, hook: Option<&str>, max_connections: usize) -> Vec<RunningServer> {
    cluster_with(redis, nodes, hook, max_connections, |_| {}).await
}

async fn cluster_with(
    redis: &Redis,
    nodes: usize,
    hook: Option<&str>,
    max_connections: usize,
    edit: impl Fn(&mut switchboard_server::ServerConfig),
) -> Vec<RunningServer> {
    let mut servers = Vec::new();
    for _ in 0..nodes {
        let mut app = app();
        app.client_events = ClientEventPolicy::All;
        app.max_connections = max_connections;
        if let Some(url) = hook {
            app.webhooks = vec![WebhookConfig { url: url.into(), events: vec![] }];
        }
        let mut config = switchboard_server::ServerConfig { scaling: scaling(redis), ..config_with(app) };
        edit(&mut config);
        servers.push(start(config).await);
    }
    servers
}

async fn shutdown(servers: Vec<RunningServer>) {
    for server in servers {
        tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await.expect("shutdown in time");
    }
}

/// The `i` of every `tick` event until `n` of them, in arrival order.
async fn ticks(client: &mut Client, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let frame = client.expect("tick").await;
        let data: Value = frame.data.parse().expect("tick data");
        seen.push(data["i"].as_u64().expect("i"));
    }
    seen
}

#[tokio::test]
async fn events_reach_every_node_once_and_in_one_order() {
    let redis = Redis::start();
    let (hook, hooks) = webhook_sink().await;
    let nodes = cluster(&redis, 3, Some(&hook), 0).await;
    let mut subscribers = Vec::new();
    for i in 0..90 {
        let mut client = Client::connect(&nodes[i % 3]).await;
        client.subscribe("news").await;
        subscribers.push(client);
    }
    for node in &nodes {
        let (status, body) = Api::new(node).get("/apps/1000/channels/news", &[("info", "subscription_count")]).await;
        assert_eq!((status, &body), (200, &json!({"subscription_count": 90, "occupied": true})));
    }
    // Sequential publishes, round-robin over the nodes.
    for i in 0..300u64 {
        let data = json!({ "i": i }).to_string();
        let (status, body) = Api::new(&nodes[i as usize % 3])
            .post("/apps/1000/events", json!({"name":"tick","channel":"news","data":data}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for client in &mut subscribers {
        assert_eq!(ticks(client, 300).await, (0..300).collect::<Vec<_>>(), "every event once, in order");
        client.expect_silence(100).await;
    }
    eventually(|| count(&hooks, "channel_occupied", "news") >= 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&hooks, "channel_occupied", "news"), 1, "one channel_occupied cluster-wide");
    drop(subscribers);
    eventually(|| count(&hooks, "channel_vacated", "news") >= 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&hooks, "channel_vacated", "news"), 1, "one channel_vacated cluster-wide");
    for node in &nodes {
        let (_, body) = Api::new(node).get("/apps/1000/channels", &[]).await;
        assert_eq!(body, json!({"channels": {}}));
    }
    shutdown(nodes).await;
}

#[tokio::test]
async fn a_user_on_two_nodes_is_one_member() {
    let redis = Redis::start();
    let (hook, hooks) = webhook_sink().await;
    let nodes = cluster(&redis, 3, Some(&hook), 0).await;
    let mut observer = Client::connect(&nodes[0]).await;
    observer.join("presence-room", "obs", json!({"name": "Observer"})).await;
    let mut tabs = Vec::new();
    for i in 0..30 {
        let user = format!("u{i:02}");
        let mut first = Client::connect(&nodes[i % 3]).await;
        let mut second = Client::connect(&nodes[(i + 1) % 3]).await;
        // Both tabs join at once, on different nodes.
        first.send_join("presence-room", &user, json!({"n": i})).await;
        second.send_join("presence-room", &user, json!({"n": i})).await;
        first.expect("pusher_internal:subscription_succeeded").await;
        second.expect("pusher_internal:subscription_succeeded").await;
        tabs.push((first, second));
    }
    let mut added = Vec::new();
    for _ in 0..30 {
        let frame = observer.expect("pusher_internal:member_added").await;
        let data: Value = frame.data.parse().expect("data");
        added.push(data["user_id"].as_str().expect("user_id").to_owned());
    }
    observer.expect_silence(300).await;
    added.sort();
    assert_eq!(added, (0..30).map(|i| format!("u{i:02}")).collect::<Vec<_>>(), "one member_added per user");
    let mut lists = Vec::new();
    for node in &nodes {
        let api = Api::new(node);
        let (_, info) =
            api.get("/apps/1000/channels/presence-room", &[("info", "user_count,subscription_count")]).await;
        assert_eq!(info, json!({"user_count": 31, "subscription_count": 61, "occupied": true}));
        let (_, users) = api.get("/apps/1000/channels/presence-room/users", &[]).await;
        assert_eq!(users["users"].as_array().map(Vec::len), Some(31));
        lists.push(users);
    }
    assert!(lists.windows(2).all(|w| w[0] == w[1]), "the same roster, in the same order, on every node");
    // A late joiner's roster holds everyone, each once.
    let mut late = Client::connect(&nodes[2]).await;
    let succeeded = late.join("presence-room", "late", json!(null)).await;
    let roster: Value = succeeded.data.parse().expect("roster");
    assert_eq!(roster["presence"]["count"], 32);
    assert_eq!(observer.expect("pusher_internal:member_added").await.channel.as_deref(), Some("presence-room"));
    // Closing one tab of every user removes nobody.
    let mut seconds = Vec::new();
    for (first, second) in tabs {
        drop(first);
        seconds.push(second);
    }
    observer.expect_silence(500).await;
    let (_, info) = Api::new(&nodes[1]).get("/apps/1000/channels/presence-room", &[("info", "user_count")]).await;
    assert_eq!(info["user_count"], 32);
    // Closing the other removes each once.
    drop(seconds);
    let mut removed = Vec::new();
    for _ in 0..30 {
        let frame = observer.expect("pusher_internal:member_removed").await;
        let data: Value = frame.data.parse().expect("data");
        removed.push(data["user_id"].as_str().expect("user_id").to_owned());
    }
    observer.expect_silence(300).await;
    removed.sort();
    assert_eq!(removed, (0..30).map(|i| format!("u{i:02}")).collect::<Vec<_>>());
    eventually(|| count(&hooks, "member_removed", "presence-room") >= 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&hooks, "member_added", "presence-room"), 32, "one webhook per first join, cluster-wide");
    assert_eq!(count(&hooks, "member_removed", "presence-room"), 30, "one webhook per last leave");
    assert_eq!(count(&hooks, "channel_occupied", "presence-room"), 1);
    drop((observer, late));
    shutdown(nodes).await;
}

#[tokio::test]
async fn client_events_exclusion_cache_and_terminate_cross_nodes() {
    let redis = Redis::start();
    let nodes = cluster(&redis, 2, None, 0).await;
    let mut a = Client::connect(&nodes[0]).await;
    let mut b = Client::connect(&nodes[1]).await;
    a.subscribe("private-chat").await;
    b.subscribe("private-chat").await;
    // A client event from A reaches B (other node), not A.
    a.send_json(json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}})).await;
    let typed = b.expect("client-typing").await;
    assert_eq!(typed.data.parse::<Value>().expect("data"), json!({"who":"a"}));
    a.expect_silence(300).await;
    // socket_id exclusion through the HTTP API of the other node.
    let event = json!({"name":"note","channel":"private-chat","data":"{}","socket_id": b.socket_id});
    assert_eq!(Api::new(&nodes[0]).post("/apps/1000/events", event).await.0, 200);
    a.expect("note").await;
    b.expect_silence(300).await;
    // A cache channel serves its last event from any node; a cold one misses.
    let mut cold = Client::connect(&nodes[1]).await;
    cold.subscribe("cache-prices").await;
    cold.expect("pusher:cache_miss").await;
    let price = json!({"name":"price","channel":"cache-prices","data":"{\"p\":1}"});
    assert_eq!(Api::new(&nodes[0]).post("/apps/1000/events", price).await.0, 200);
    cold.expect("price").await;
    let mut warm = Client::connect(&nodes[1]).await;
    warm.subscribe("cache-prices").await;
    assert_eq!(warm.expect("price").await.data.parse::<Value>().expect("data"), json!({"p":1}));
    // terminate_connections on one node closes the user's sockets on the other.
    let mut member = Client::connect(&nodes[1]).await;
    member.join("presence-x", "42", json!(null)).await;
    let (status, body) = Api::new(&nodes[0]).post("/apps/1000/users/42/terminate_connections", json!({})).await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(member.expect_error().await.0, 4009);
    assert_eq!(member.expect_close().await, Some(4009));
    a.assert_alive().await;
    drop((a, b, cold, warm));
    shutdown(nodes).await;
}

#[tokio::test]
async fn max_connections_counts_the_whole_cluster() {
    let redis = Redis::start();
    let nodes = cluster(&redis, 2, None, 2).await;
    let first = Client::connect(&nodes[0]).await;
    let second = Client::connect(&nodes[1]).await;
    let mut third = connect_raw(&ws_url(&nodes[0], KEY)).await;
    let refusal = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut third)).await.expect("in time");
    let text = refusal.and_then(Result::ok).and_then(|m| m.as_text().map(str::to_owned)).unwrap_or_default();
    assert!(text.contains("pusher:error") && text.contains("4004"), "{text}");
    drop(first);
    // Once a slot is free again (after the heartbeat rewrites the node's count), it is taken.
    let mut taken = false;
    for _ in 0..50 {
        let mut retry = connect_raw(&ws_url(&nodes[1], KEY)).await;
        let reply = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut retry)).await.expect("in time");
        let text = reply.and_then(Result::ok).and_then(|m| m.as_text().map(str::to_owned)).unwrap_or_default();
        if text.contains("connection_established") {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken, "the freed slot is usable from another node");
    drop(second);
    shutdown(nodes).await;
}

#[tokio::test]
async fn redis_down_answers_503_keeps_sockets_and_recovers() {
    let mut redis = Redis::start();
    let nodes = cluster(&redis, 2, None, 0).await;
    let mut subscriber = Client::connect(&nodes[1]).await;
    subscriber.subscribe("news").await;
    let mut member = Phx::connect(&nodes[1], Vsn::V2).await;
    let (member_ref, _) = member.join("room:lobby", "ada").await;
    member.expect("presence_diff").await;
    let mut device = Gw::connect(&nodes[1], json!({"sub": "dev"})).await;
    redis.kill();
    let api = Api::new(&nodes[0]);
    let (status, body) = api.post("/apps/1000/events", json!({"name":"tick","channel":"news","data":"{}"})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("scaling backend unavailable"), "{body}");
    let (status, _) = api.get("/apps/1000/channels", &[]).await;
    assert_eq!(status, 503, "never a local-only answer");
    let (status, _) = api.get("/apps/1000/channels/news", &[]).await;
    assert_eq!(status, 503);
    // Subscribes are refused with a 503 subscription_error; the socket stays.
    let mut other = Client::connect(&nodes[0]).await;
    other.send_json(json!({"event":"pusher:subscribe","data":{"channel":"later"}})).await;
    let error = other.expect("pusher:subscription_error").await;
    assert_eq!(error.data.parse::<Value>().expect("data")["status"], 503);
    other.assert_alive().await;
    subscriber.assert_alive().await;
    // Phoenix: a join is refused with the reason, a shout gets an error reply; the member stays.
    let mut late = Phx::connect(&nodes[0], Vsn::V2).await;
    late.push(None, "room:lobby", "phx_join", json!({"username": "bob"})).await;
    let reply = json_of(&late.expect("phx_reply").await);
    assert_eq!(reply["status"], "error");
    assert!(
        reply["response"]["reason"].as_str().unwrap_or_default().contains("scaling backend unavailable"),
        "{reply}"
    );
    member.push(Some(&member_ref), "room:lobby", "shout", json!({"body": "hi"})).await;
    let reply = json_of(&member.expect("phx_reply").await);
    assert_eq!(reply["status"], "error", "{reply}");
    let r = member.push(Some(&member_ref), "room:lobby", "ping", json!({"alive": true})).await;
    let pong = member.expect("phx_reply").await;
    assert_eq!(pong.reference.as_deref(), Some(r.as_str()));
    // Gateway: an admin publish is a 503; a new socket is closed with 1011 and the reason.
    let publish = format!("/api/topics/{APP_ID}/publish");
    let (status, body) = admin(
        &nodes[0],
        reqwest::Method::POST,
        &publish,
        json!({"permissions": [ALL]}),
        Some(json!({"topic": "chat", "message": 1})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("scaling backend unavailable"), "{body}");
    let mut refused = connect_raw(&url(&nodes[0], &token(json!({"sub": "new"})))).await;
    let close = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut refused)).await.expect("in time");
    let close = close.and_then(Result::ok).expect("a close frame");
    let (code, reason) = close.as_close().expect("close");
    assert_eq!(u16::from(code), 1011);
    assert!(reason.contains("scaling backend unavailable"), "{reason}");
    eventually(|| nodes[0].metrics().scaling_redis_up.get() == 0).await;
    let text = reqwest::get(format!("http://{}/metrics", nodes[0].local_addr())).await.expect("metrics");
    let text = text.text().await.expect("body");
    assert!(text.lines().any(|l| l.starts_with("switchboard_scaling_redis_up") && l.ends_with(" 0")), "{text}");
    // Redis comes back empty: every node notices (its membership is gone) and closes its
    // sockets with 4200, so clients reconnect and rebuild the state.
    redis.restart();
    let deadline = Duration::from_secs(10);
    let code = tokio::time::timeout(deadline, subscriber.expect_close()).await.expect("closed in time");
    assert_eq!(code, Some(4200));
    assert_eq!(member.expect_close().await, Some(4200), "a Phoenix member is closed with 4200 too");
    assert_eq!(device.expect_close().await.0, 1012, "a gateway socket with 1012 (its SDKs reconnect)");
    assert!(nodes[1].metrics().scaling_fenced.get() >= 1);
    let text = reqwest::get(format!("http://{}/metrics", nodes[1].local_addr())).await.expect("metrics");
    let text = text.text().await.expect("body");
    assert!(text.lines().any(|l| l.starts_with("switchboard_scaling_fenced") && !l.ends_with(" 0")), "{text}");
    let mut again = Client::connect(&nodes[1]).await;
    again.subscribe("news").await;
    let event = json!({"name":"tick","channel":"news","data":"{\"i\":0}"});
    let (status, body) = api.post("/apps/1000/events", event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ticks(&mut again, 1).await, vec![0]);
    let (_, info) = api.get("/apps/1000/channels/news", &[("info", "subscription_count")]).await;
    assert_eq!(info["subscription_count"], 1);
    // And the rooms work again once the member is back.
    let mut back = Phx::connect(&nodes[1], Vsn::V2).await;
    let (_, state) = back.join("room:lobby", "ada").await;
    assert_eq!(state, json!({}), "the old member was reaped, not kept as a ghost");
    drop((other, again, late, back));
    shutdown(nodes).await;
}

#[tokio::test]
async fn the_gateway_is_one_server_across_nodes() {
    let redis = Redis::start();
    let nodes = cluster_with(&redis, 3, None, 0, |config| config.apps[0].gateway_max_connections_per_subject = 2).await;
    let subscribed = |node: usize, topic: &'static str, n: usize| {
        let app = nodes[node].app(APP_ID).expect("app");
        move || app.gateway.subscriber_count(topic) == n
    };
    let mut r0 = Gw::connect(&nodes[0], json!({"sub": "r0"})).await;
    let mut r1 = Gw::connect(&nodes[1], json!({"sub": "r1"})).await;
    let mut publisher = Gw::connect(&nodes[2], json!({"sub": "ada", "permissions": [ALL]})).await;
    for gw in [&mut r0, &mut r1, &mut publisher] {
        gw.subscribe("chat").await;
    }
    for node in 0..3 {
        eventually(subscribed(node, "chat", 1)).await;
    }
    // A socket's publishes reach every node in order; its own echo comes before each ack.
    for n in 0..20 {
        let id = format!("m{n}");
        publisher.send(json!({"type": "publish", "data": {"topic": "chat", "payload": n, "id": id}})).await;
    }
    for n in 0..20 {
        assert_eq!(publisher.next().await["data"]["payload"], n, "the echo");
        assert_eq!(publisher.next().await["data"]["data"], format!("m{n}"), "then its ack");
    }
    for reader in [&mut r0, &mut r1] {
        for n in 0..20 {
            assert_eq!(reader.next().await["data"]["payload"], n);
        }
    }
    // The admin API on any node answers for the cluster.
    let publish = format!("/api/topics/{APP_ID}/publish");
    let manage =
        json!({"permissions": ["realtime:admin:manage:subscribers", "realtime:admin:manage:connections", ALL]});
    let (status, body) = admin(
        &nodes[0],
        reqwest::Method::POST,
        &publish,
        manage.clone(),
        Some(json!({"topic": "chat", "message": "x"})),
    )
    .await;
    assert_eq!((status, body["delivered"].as_u64()), (200, Some(3)), "{body}");
    for gw in [&mut r0, &mut r1, &mut publisher] {
        assert_eq!(gw.next().await["data"]["payload"], "x");
    }
    // Backends on one node hear devices on another, and answer on their private topic.
    let backend_claims = json!({"sub": "backend", "permissions": ["realtime:subscriber:read:topic:secure/inbound", "realtime:publisher:write:topic:priv/*"]});
    let mut backend = Gw::connect(&nodes[1], backend_claims).await;
    backend.subscribe("secure/inbound").await;
    eventually(subscribed(1, "secure/inbound", 1)).await;
    let mut device = Gw::connect(&nodes[2], json!({"sub": "device-1"})).await;
    let came = backend.next().await;
    assert_eq!(came["data"]["payload"], json!({"code": 0, "status": "connected"}));
    assert_eq!(came["data"]["client"]["connectionId"], device.id);
    device.send(json!({"type": "message", "data": {"messageType": "gettime", "payload": {}, "id": "q1"}})).await;
    assert_eq!(backend.next().await["data"]["id"], "q1");
    assert_eq!(device.next().await["messageType"], "ack");
    let reply_to = format!("priv/{}", device.id);
    backend
        .send(json!({"type": "publish", "data": {"topic": reply_to, "messageType": "response", "payload": "12:00"}}))
        .await;
    assert_eq!(device.next().await["data"]["payload"], "12:00");
    // Unsubscribe a subject on another node: counted, and it stops getting the topic.
    let unsubscribe = format!("/api/topics/{APP_ID}/unsubscribe");
    let (status, body) = admin(
        &nodes[0],
        reqwest::Method::POST,
        &unsubscribe,
        manage.clone(),
        Some(json!({"topicPatterns": ["ch*"], "subject": "ada"})),
    )
    .await;
    assert_eq!((status, body["unsubscribed"].as_u64()), (200, Some(1)), "{body}");
    eventually(subscribed(2, "chat", 0)).await;
    let mut delivered = None;
    for _ in 0..50 {
        let (_, body) = admin(
            &nodes[1],
            reqwest::Method::POST,
            &publish,
            manage.clone(),
            Some(json!({"topic": "chat", "message": "y"})),
        )
        .await;
        r0.next().await;
        r1.next().await;
        delivered = body["delivered"].as_u64();
        if delivered == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(delivered, Some(2), "the cluster's count follows the unsubscribe");
    publisher.expect_silence(200).await;
    // A subject's connection limit counts every node.
    let _sam0 = Gw::connect(&nodes[0], json!({"sub": "sam"})).await;
    let _sam1 = Gw::connect(&nodes[1], json!({"sub": "sam"})).await;
    let (status, body) = status_of(&nodes[2], &token(json!({"sub": "sam"}))).await;
    assert_eq!(status, 429, "{body}");
    // Close one connection through another node: counted once, closed where it lives, and
    // backends hear of it.
    let path = format!("/api/connections/{APP_ID}/{}", device.id);
    let (status, body) = admin(&nodes[0], reqwest::Method::DELETE, &path, manage.clone(), None).await;
    assert_eq!((status, body["closed"].as_u64()), (200, Some(1)));
    assert_eq!(device.expect_close().await, (1008, "Connection terminated".into()));
    let mut gone = backend.next().await;
    while gone["data"]["payload"]["status"] != "disconnected" {
        gone = backend.next().await;
    }
    assert_eq!(gone["data"]["client"]["connectionId"], device.id);
    // And close all: every node's connections, counted cluster-wide.
    let (status, body) =
        admin(&nodes[2], reqwest::Method::DELETE, &format!("/api/connections/{APP_ID}"), manage, None).await;
    assert_eq!((status, body["closed"].as_u64()), (200, Some(6)), "{body}");
    for gw in [&mut r0, &mut r1, &mut publisher] {
        assert_eq!(gw.expect_close().await.0, 1008);
    }
    shutdown(nodes).await;
}

/// The usernames a `presence_diff` joins (or leaves), sorted.
fn diff_names(diff: &Value, side: &str) -> Vec<String> {
    let mut names: Vec<String> = diff[side].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn phoenix_rooms_are_one_room_across_nodes() {
    let redis = Redis::start();
    let nodes = cluster_with(&redis, 3, None, 0, |config| config.phoenix_max_room_members = 6).await;
    // Six members join in turn, round-robin over the nodes (V1 and V2 serializers mixed).
    let mut members: Vec<(Phx, String)> = Vec::new();
    for i in 0..6 {
        let vsn = if i % 2 == 0 { Vsn::V2 } else { Vsn::V1 };
        let mut socket = Phx::connect(&nodes[i % 3], vsn).await;
        let name = format!("m{i}");
        let (join_ref, state) = socket.join("room:lobby", &name).await;
        let mut before: Vec<String> = state.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        before.sort();
        assert_eq!(before, (0..i).map(|j| format!("m{j}")).collect::<Vec<_>>(), "state before m{i}'s join");
        // The joiner's own join diff, then each earlier member's one diff for it.
        let own = json_of(&socket.expect("presence_diff").await);
        assert_eq!(diff_names(&own, "joins"), [name.as_str()]);
        for (earlier, _) in &mut members {
            let diff = json_of(&earlier.expect("presence_diff").await);
            assert_eq!(diff_names(&diff, "joins"), [name.as_str()], "exactly one join diff per member");
        }
        members.push((socket, join_ref));
    }
    // The room is full cluster-wide: a seventh member is refused on any node.
    let mut seventh = Phx::connect(&nodes[2], Vsn::V2).await;
    seventh.push(None, "room:lobby", "phx_join", json!({"username": "m6"})).await;
    let reply = seventh.expect("phx_reply").await;
    assert_eq!(json_of(&reply)["response"]["reason"], "room is full: at most 6 members", "{reply:?}");
    // A typing update on node 1 reaches every member once, with the old meta in leaves.
    let (typist, typist_ref) = &mut members[1];
    let r = typist.push(Some(typist_ref.as_str()), "room:lobby", "user:typing", json!({"typing": true})).await;
    let reply = typist.expect("phx_reply").await;
    assert_eq!((reply.reference.as_deref(), json_of(&reply)["status"].as_str()), (Some(r.as_str()), Some("ok")));
    for (socket, _) in &mut members {
        let diff = json_of(&socket.expect("presence_diff").await);
        let (new, old) = (&diff["joins"]["m1"]["metas"][0], &diff["leaves"]["m1"]["metas"][0]);
        assert_eq!((new["typing"].as_bool(), old["typing"].as_bool()), (Some(true), Some(false)));
        assert_eq!(new["phx_ref_prev"], old["phx_ref"]);
    }
    // Shouts from three nodes interleaved: every member gets all of them once, in one order.
    for n in 0..30u64 {
        let (sender, join_ref) = &mut members[(n % 3) as usize];
        sender.push(Some(join_ref.as_str()), "room:lobby", "shout", json!({ "n": n })).await;
    }
    let mut orders = Vec::new();
    for (socket, _) in &mut members {
        let mut seen = Vec::new();
        while seen.len() < 30 {
            seen.push(json_of(&socket.expect("shout").await)["n"].as_u64().expect("n"));
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..30).collect::<Vec<_>>(), "every shout once");
        orders.push(seen);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order on every node: {orders:?}");
    // A member that disconnects is one leave diff for each of the others.
    drop(members.remove(0));
    for (socket, _) in &mut members {
        let diff = json_of(&socket.expect("presence_diff").await);
        assert_eq!((diff_names(&diff, "leaves"), diff_names(&diff, "joins")), (vec!["m0".to_owned()], vec![]));
    }
    // Its place is free: the seventh joins now, and sees the five that stayed.
    let (_, state) = seventh.join("room:lobby", "m6").await;
    assert_eq!(state.as_object().map(|o| o.len()), Some(5));
    drop((members, seventh));
    shutdown(nodes).await;
}

#[tokio::test]
async fn realtimex_sockets_share_channels_and_presence_across_nodes() {
    let redis = Redis::start();
    let nodes = cluster(&redis, 2, None, 0).await;
    let mut ada = Client::connect(&nodes[0]).await;
    ada.join("presence-room", "ada", json!({ "name": "Ada" })).await;
    // A RealtimeX member on the other node sees the Pusher member in its roster.
    let mut bob = Rtx::connect(&nodes[1]).await;
    let confirmed = bob.subscribe("presence-room", Some(("bob", json!({ "name": "Bob" })))).await;
    assert_eq!(confirmed["presence"]["count"], 2);
    assert_eq!(confirmed["presence"]["ids"], json!(["ada", "bob"]));
    assert_eq!(confirmed["presence"]["hash"]["ada"], json!({ "name": "Ada" }));
    let added = ada.expect("pusher_internal:member_added").await;
    assert!(added.data.as_text().expect("data").contains("\"bob\""));
    // A client event from the RealtimeX socket reaches the Pusher one, with its user id.
    bob.emit(Some(1), "client-event", json!({ "channel": "presence-room", "event": "client-hi", "data": { "n": 1 } }))
        .await;
    assert_eq!(bob.expect_ack(1).await, json!({ "ok": true }));
    let relayed = ada.expect("client-hi").await;
    assert_eq!(relayed.user_id.as_deref(), Some("bob"));
    // An HTTP publish on the Pusher member's node reaches the RealtimeX member, in order.
    for i in 0..20 {
        let event = json!({"name":"tick","channel":"presence-room","data": json!({ "i": i }).to_string()});
        assert_eq!(Api::new(&nodes[0]).post("/apps/1000/events", event).await.0, 200);
    }
    for i in 0..20 {
        let body = bob.expect_server_event("tick").await;
        assert_eq!(body["data"], json!({ "i": i }));
    }
    for i in 0..20 {
        let tick = ada.expect("tick").await;
        assert_eq!(tick.data.parse::<Value>().expect("data"), json!({ "i": i }), "the Pusher member too");
    }
    // A second RealtimeX tab of ada's on node 1 adds no member; closing bob removes one.
    let mut ada_tab = Rtx::connect(&nodes[1]).await;
    let confirmed = ada_tab.subscribe("presence-room", Some(("ada", json!({ "name": "Ada" })))).await;
    assert_eq!(confirmed["presence"]["count"], 2);
    drop(bob);
    let removed = ada.expect("pusher_internal:member_removed").await;
    assert!(removed.data.as_text().expect("data").contains("\"bob\""));
    ada.expect_silence(300).await;
    let (_, info) = Api::new(&nodes[1]).get("/apps/1000/channels/presence-room", &[("info", "user_count")]).await;
    assert_eq!(info["user_count"], 1);
    drop((ada, ada_tab));
    shutdown(nodes).await;
}

#[tokio::test]
async fn phoenix_js_and_our_member_meet_across_two_nodes() {
    let redis = Redis::start();
    let nodes = cluster(&redis, 2, None, 0).await;
    phoenix_js_meets_ours(&nodes[0], &nodes[1]).await;
    shutdown(nodes).await;
}

#[tokio::test]
async fn redis_emptied_under_running_nodes_is_noticed_and_delivery_resumes() {
    let redis = Redis::start();
    let nodes = cluster(&redis, 2, None, 0).await;
    let mut subscriber = Client::connect(&nodes[1]).await;
    subscriber.subscribe("news").await;
    let api = Api::new(&nodes[0]);
    for i in 0..10u64 {
        let event = json!({"name":"tick","channel":"news","data": json!({ "i": i }).to_string()});
        assert_eq!(api.post("/apps/1000/events", event).await.0, 200);
    }
    assert_eq!(ticks(&mut subscriber, 10).await, (0..10).collect::<Vec<_>>());
    // FLUSHALL with the connections kept: the bus sequence restarts below what nodes saw.
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("flushall");
    let code = tokio::time::timeout(Duration::from_secs(10), subscriber.expect_close()).await.expect("closed in time");
    assert_eq!(code, Some(4200), "the node finds its membership gone and closes with 4200");
    // Rejoined: the restarted numbering is followed, not taken for repeats.
    let mut again = Client::connect(&nodes[1]).await;
    again.subscribe("news").await;
    eventually(|| nodes[0].metrics().scaling_fenced.get() >= 1).await;
    let event = json!({"name":"tick","channel":"news","data": json!({ "i": 42 }).to_string()});
    assert_eq!(api.post("/apps/1000/events", event).await.0, 200);
    assert_eq!(ticks(&mut again, 1).await, vec![42]);
    drop(again);
    shutdown(nodes).await;
}
