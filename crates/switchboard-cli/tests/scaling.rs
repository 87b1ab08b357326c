//! Three `switchboard serve` processes behind one `redis-server` (started for the test on a
//! unix socket): a node killed with SIGKILL has its members removed once, with webhooks once;
//! a node frozen past its lease is reaped, and when it wakes it closes its sockets with 4200
//! and rejoins under a new id. Configured as an operator would: a TOML file with `[scaling]`
//! and the lease from the environment.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::signature::sign_channel;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const KEY: &str = "scale-key";
const SECRET: &str = "scale-secret";
const WAIT: Duration = Duration::from_secs(15);

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Processes killed when the test ends, however it ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("sb-scale-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn start_redis(dir: &std::path::Path) -> (Child, String) {
    let socket = dir.join("redis.sock");
    let child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocketperm", "700"])
        .arg("--unixsocket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (Debian package redis-server; .ci/run installs it)");
    for _ in 0..250 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return (child, format!("unix://{}", socket.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(Procs(vec![child]));
    panic!("redis-server did not start");
}

/// Start a node; returns it and its address.
fn start_node(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env("SWITCHBOARD_SCALING_LEASE_MS", "1500")
        .env("SWITCHBOARD_SCALING_HEARTBEAT_MS", "250")
        .env_remove("REDIS_URL")
        .env_remove("REVERB_SCALING_ENABLED")
        .current_dir(std::env::temp_dir())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Log lines (RUST_LOG=info) may come first.
    let first = loop {
        let line = rx.recv_timeout(Duration::from_secs(15)).expect("serve prints where it listens");
        if line.contains("listening on 127.0.0.1:") {
            break line;
        }
    };
    let addr = first.rsplit(' ').next().expect("address").to_owned();
    let scaling = rx.recv_timeout(Duration::from_secs(5)).expect("second line");
    assert!(scaling.contains("scaling out over Redis"), "{scaling}");
    std::thread::spawn(move || {
        while let Ok(line) = rx.recv() {
            eprintln!("[node] {line}");
        }
    });
    (child, addr)
}

/// Webhook events as (name, channel, user_id).
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
                    sink.lock().expect("hooks").push((name, channel, event["user_id"].as_str().map(str::to_owned)));
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

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("frame in time");
        let message = message.expect("socket open").expect("frame");
        if let Some(text) = message.as_text() {
            return serde_json::from_str(text).expect("json");
        }
        if message.is_close() {
            return json!({"event": "close", "code": message.as_close().map(|(c, _)| u16::from(c))});
        }
    }
}

async fn expect_event(ws: &mut Ws, event: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["event"] == event {
            return frame;
        }
        assert_ne!(frame["event"], "close", "closed while waiting for {event}: {frame}");
    }
}

/// Join `presence-room` as `user` on the node at `addr`.
async fn join(addr: &str, user: &str) -> Ws {
    let url = format!("ws://{addr}/app/{KEY}?protocol=7");
    let builder = ClientBuilder::new().uri(&url).expect("uri");
    let (mut ws, _) = tokio::time::timeout(WAIT, builder.connect()).await.expect("in time").expect("connects");
    let hello = expect_event(&mut ws, "pusher:connection_established").await;
    let data: Value = serde_json::from_str(hello["data"].as_str().expect("data")).expect("json");
    let socket_id = data["socket_id"].as_str().expect("socket_id");
    let channel_data = json!({ "user_id": user }).to_string();
    let auth = sign_channel(KEY, SECRET, socket_id, "presence-room", Some(&channel_data));
    let subscribe =
        json!({"event":"pusher:subscribe","data":{"channel":"presence-room","auth":auth,"channel_data":channel_data}});
    ws.send(Message::text(subscribe.to_string())).await.expect("send");
    expect_event(&mut ws, "pusher_internal:subscription_succeeded").await;
    ws
}

/// Join Phoenix room `room:lobby` as `username` on the node at `addr` (serializer V2).
async fn phx_join(addr: &str, username: &str) -> Ws {
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
    let builder = ClientBuilder::new().uri(&url).expect("uri");
    let (mut ws, _) = tokio::time::timeout(WAIT, builder.connect()).await.expect("in time").expect("connects");
    let join = json!(["1", "1", "room:lobby", "phx_join", { "username": username }]);
    ws.send(Message::text(join.to_string())).await.expect("send");
    let reply = next_json(&mut ws).await;
    assert_eq!((reply[3].as_str(), reply[4]["status"].as_str()), (Some("phx_reply"), Some("ok")), "{reply}");
    assert_eq!(next_json(&mut ws).await[3], "presence_state");
    ws
}

/// A gateway connection (`/apps/1`) with `claims`, signed with the app secret; its welcome read.
async fn gateway(addr: &str, claims: Value) -> (Ws, String) {
    use switchboard_protocol::gateway::jwt::{self, Algorithm};
    let token = jwt::sign(&claims, SECRET.as_bytes(), Algorithm::Hs256);
    let url = format!("ws://{addr}/apps/1?access_token={token}");
    let builder = ClientBuilder::new().uri(&url).expect("uri");
    let (mut ws, _) = tokio::time::timeout(WAIT, builder.connect()).await.expect("in time").expect("connects");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["messageType"], "welcome", "{welcome}");
    let id = welcome["data"]["connection"]["id"].as_str().expect("id").to_owned();
    (ws, id)
}

/// Usernames in the `presence_diff` leaves a Phoenix member gets until quiet for `quiet`.
async fn phx_leaves_until_quiet(member: &mut Ws, quiet: Duration) -> Vec<String> {
    let mut leaves = Vec::new();
    loop {
        let Ok(message) = tokio::time::timeout(quiet, member.next()).await else { break };
        let message = message.expect("member open").expect("frame");
        let Some(text) = message.as_text() else { continue };
        let frame: Value = serde_json::from_str(text).expect("json");
        if frame[3] == "presence_diff" {
            leaves.extend(frame[4]["leaves"].as_object().into_iter().flat_map(|o| o.keys().cloned()));
        }
    }
    leaves.sort();
    leaves
}

/// `member_removed` user ids the observer gets until it has been quiet for `quiet`.
async fn removed_until_quiet(observer: &mut Ws, first_within: Duration, quiet: Duration) -> Vec<String> {
    let mut removed = Vec::new();
    let mut wait = first_within;
    loop {
        let Ok(message) = tokio::time::timeout(wait, observer.next()).await else { break };
        let message = message.expect("observer open").expect("frame");
        let Some(text) = message.as_text() else { continue };
        let frame: Value = serde_json::from_str(text).expect("json");
        if frame["event"] == "pusher_internal:member_removed" {
            let data: Value = serde_json::from_str(frame["data"].as_str().expect("data")).expect("json");
            removed.push(data["user_id"].as_str().expect("user_id").to_owned());
            wait = quiet;
        }
    }
    removed.sort();
    removed
}

async fn user_count(addr: &str) -> (u16, Value) {
    let path = "/apps/1/channels/presence-room";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let params = [("info".to_owned(), "user_count".to_owned())];
    let signed = switchboard_protocol::http_auth::sign_request(KEY, SECRET, "GET", path, &params, None, now);
    let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!("http://{addr}{path}?{}", query.join("&"));
    tokio::time::timeout(WAIT, reqwest_get(&url)).await.expect("in time")
}

/// A plain HTTP/1.1 GET over a TcpStream (the CLI's tests carry no HTTP client).
async fn reqwest_get(url: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
}

fn hooks_of(hooks: &Hooks, name: &str) -> Vec<String> {
    let mut users: Vec<String> =
        hooks.lock().expect("hooks").iter().filter(|(n, _, _)| n == name).filter_map(|(_, _, u)| u.clone()).collect();
    users.sort();
    users
}

#[tokio::test]
async fn a_killed_node_is_reaped_once_and_a_frozen_one_is_fenced() {
    let dir = temp_dir();
    let (redis, redis_url) = start_redis(&dir);
    let mut procs = Procs(vec![redis]);
    let (hook, hooks) = webhook_sink().await;
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[scaling]\nenabled = true\nurl = \"{redis_url}\"\nprefix = \"it\"\n\n[[apps]]\nid = \"1\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\nwebhooks = [{{ url = \"{hook}\" }}]\n"
        ),
    )
    .expect("config");
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let (child, addr) = start_node(&config);
        procs.0.push(child);
        addrs.push(addr);
    }
    let (a, b, c) = (addrs[0].clone(), addrs[1].clone(), addrs[2].clone());
    let mut observer = join(&a, "obs").await;
    // u0..u5: two tabs each, on nodes i and i+1; c0..c2 only on C; b0, b1 only on B.
    let mut sockets = Vec::new();
    for i in 0..6 {
        let user = format!("u{i}");
        sockets.push((i % 3, join(&addrs[i % 3], &user).await));
        sockets.push(((i + 1) % 3, join(&addrs[(i + 1) % 3], &user).await));
    }
    for i in 0..3 {
        sockets.push((2, join(&c, &format!("c{i}")).await));
    }
    for i in 0..2 {
        sockets.push((1, join(&b, &format!("b{i}")).await));
    }
    for addr in &addrs {
        assert_eq!(user_count(addr).await, (200, json!({"user_count": 12, "occupied": true})), "{addr}");
    }
    // Drain the observer's member_added frames (12 - itself = 11).
    for _ in 0..11 {
        expect_event(&mut observer, "pusher_internal:member_added").await;
    }
    // Phoenix rooms too: an observer on A, one member on each node (p1 twice: on B and C).
    let mut phx_observer = phx_join(&a, "pobs").await;
    let _pa = phx_join(&a, "pa").await;
    let mut pb = phx_join(&b, "pb").await;
    let _pc = phx_join(&c, "pc").await;
    let _p1_b = phx_join(&b, "p1").await;
    let _p1_c = phx_join(&c, "p1").await;
    assert!(phx_leaves_until_quiet(&mut phx_observer, Duration::from_millis(500)).await.is_empty());
    // The gateway: a backend on A listening on secure/inbound, a device on C.
    let inbound = json!({"sub": "backend", "permissions": ["realtime:subscriber:read:topic:secure/inbound", "realtime:publisher:write:topic:priv/*"]});
    let (mut backend, backend_id) = gateway(&a, inbound).await;
    backend
        .send(Message::text(json!({"type": "subscribe", "data": {"topic": "secure/inbound"}}).to_string()))
        .await
        .expect("send");
    // Subscribes have no answer; a publish to its own topic after it comes back once the
    // subscribe is done (one socket's frames are handled in order).
    let mark = json!({"type": "publish", "data": {"topic": format!("priv/{backend_id}"), "payload": "mark"}});
    backend.send(Message::text(mark.to_string())).await.expect("send");
    assert_eq!(next_json(&mut backend).await["data"]["payload"], "mark");
    let (mut device_b, device_b_id) = gateway(&b, json!({"sub": "device-b"})).await;
    assert_eq!(next_json(&mut backend).await["data"]["client"]["connectionId"], device_b_id);
    let (_device, device_id) = gateway(&c, json!({"sub": "device-1"})).await;
    let came = next_json(&mut backend).await;
    assert_eq!(
        (came["data"]["payload"]["status"].as_str(), came["data"]["client"]["connectionId"].as_str()),
        (Some("connected"), Some(device_id.as_str()))
    );

    // SIGKILL C: only the users whose every tab was on C go, each once.
    let started = std::time::Instant::now();
    procs.0[3].kill().expect("kill -9 C");
    let _ = procs.0[3].wait();
    let removed = removed_until_quiet(&mut observer, WAIT, Duration::from_secs(2)).await;
    eprintln!("kill -9: members removed {:.1} s after the kill", started.elapsed().as_secs_f64() - 2.0);
    assert_eq!(removed, ["c0", "c1", "c2"]);
    for addr in [&a, &b] {
        assert_eq!(user_count(addr).await.1["user_count"], 9, "{addr}");
    }
    assert_eq!(hooks_of(&hooks, "member_removed"), ["c0", "c1", "c2"], "one webhook per removed member");
    // Phoenix Presence tracks each socket: C's two members leave, once each.
    let leaves = phx_leaves_until_quiet(&mut phx_observer, Duration::from_secs(1)).await;
    assert_eq!(leaves, ["p1", "pc"], "one leave diff per member of the killed node");
    // Backends hear that the killed node's gateway connection is gone (code -1: no close).
    let gone = next_json(&mut backend).await;
    assert_eq!(gone["data"]["payload"], json!({"code": -1, "status": "disconnected"}), "{gone}");
    assert_eq!(gone["data"]["client"]["connectionId"], device_id);
    let sockets: Vec<(usize, Ws)> = sockets.into_iter().filter(|(node, _)| *node != 2).collect();

    // SIGSTOP B past its lease: A reaps it. Users whose remaining tabs were on B go once.
    let b_pid = procs.0[2].id().to_string();
    assert!(Command::new("kill").args(["-STOP", &b_pid]).status().expect("kill").success());
    let removed = removed_until_quiet(&mut observer, WAIT, Duration::from_secs(2)).await;
    // u1 and u4 had tabs on B and C; b0 and b1 were only on B.
    assert_eq!(removed, ["b0", "b1", "u1", "u4"]);
    assert_eq!(user_count(&a).await.1["user_count"], 5);
    let mut expected = vec!["b0", "b1", "c0", "c1", "c2", "u1", "u4"];
    expected.sort();
    assert_eq!(hooks_of(&hooks, "member_removed"), expected, "one webhook per removed member, cluster-wide");
    let leaves = phx_leaves_until_quiet(&mut phx_observer, Duration::from_secs(1)).await;
    assert_eq!(leaves, ["p1", "pb"], "the frozen node's members leave once each");
    let gone = next_json(&mut backend).await;
    assert_eq!(gone["data"]["payload"], json!({"code": -1, "status": "disconnected"}), "{gone}");
    assert_eq!(gone["data"]["client"]["connectionId"], device_b_id);
    assert!(Command::new("kill").args(["-CONT", &b_pid]).status().expect("kill").success());
    // Awake, B finds it was fenced: its sockets are closed with 4200.
    type OnNode = Vec<(usize, Ws)>;
    let (on_b, _on_a): (OnNode, OnNode) = sockets.into_iter().partition(|(node, _)| *node == 1);
    let mut on_b: Vec<Ws> = on_b.into_iter().map(|(_, ws)| ws).collect();
    assert!(!on_b.is_empty());
    for ws in &mut on_b {
        let frame = expect_event(ws, "pusher:error").await;
        assert!(frame["data"].as_str().unwrap_or_default().contains("4200"), "{frame}");
    }
    // B's Phoenix members are closed with 4200 as well (phoenix.js reconnects).
    let mut closed = None;
    for _ in 0..100 {
        let frame = next_json(&mut pb).await;
        if frame["event"] == "close" {
            closed = frame["code"].as_u64();
            break;
        }
    }
    assert_eq!(closed, Some(4200));
    // Its gateway socket gets 1012, and backends hear of it once (the reaper told them).
    let mut closed = None;
    for _ in 0..100 {
        let frame = next_json(&mut device_b).await;
        if frame["event"] == "close" {
            closed = frame["code"].as_u64();
            break;
        }
    }
    assert_eq!(closed, Some(1012));
    // (Its own close waits out the close handshake first: give it time to come, if it would.)
    if let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(4), backend.next()).await {
        panic!("backends heard of the fenced socket twice: {:?}", message.as_text());
    }
    // Rejoined under a new id: B answers exactly again, and a client reconnecting there is
    // announced once.
    let mut last = (0, Value::Null);
    for _ in 0..50 {
        last = user_count(&b).await;
        if last == (200, json!({"user_count": 5, "occupied": true})) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, (200, json!({"user_count": 5, "occupied": true})), "B serves the cluster state after rejoining");
    let _back = join(&b, "b0").await;
    let added = expect_event(&mut observer, "pusher_internal:member_added").await;
    assert!(added["data"].as_str().unwrap_or_default().contains("b0"), "{added}");
    let removed = removed_until_quiet(&mut observer, Duration::from_secs(2), Duration::from_secs(1)).await;
    assert!(removed.is_empty(), "B's old state never comes back: {removed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
