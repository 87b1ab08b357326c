//! The RealtimeX endpoint (`/socket.io/`): the Engine.IO handshake and its HTTP errors, the
//! namespace CONNECT, heartbeat and connect deadlines, channels shared with Pusher clients
//! (publishes, presence, client events both ways), and every kind of bad input, each with
//! the protocol's answer while the server keeps serving everyone else.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::signature::sign_channel;
use switchboard_server::{AppConfig, RunningServer, ServerConfig};
use tokio::net::TcpStream;
use tokio_websockets::{MaybeTlsStream, Message, WebSocketStream};

use crate::common::*;

/// A raw Engine.IO / Socket.IO client.
pub(crate) struct Rtx {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The open packet.
    open: Value,
}

fn rtx_url(server: &RunningServer, query: &str) -> String {
    format!("ws://{}/socket.io/?{query}", server.local_addr())
}

impl Rtx {
    /// Upgrade with `query` and read the open packet.
    pub(crate) async fn open(server: &RunningServer, query: &str) -> Rtx {
        let ws = connect_raw(&rtx_url(server, query)).await;
        let mut client = Rtx { ws, open: Value::Null };
        let first = client.next_text().await;
        let json = first.strip_prefix('0').expect("the open packet comes first");
        client.open = serde_json::from_str(json).expect("open packet JSON");
        client
    }

    /// Open with the test key and connect the namespace.
    pub(crate) async fn connect(server: &RunningServer) -> Rtx {
        let mut client = Rtx::open(server, &format!("EIO=4&transport=websocket&api_key={KEY}")).await;
        client.send("40").await;
        let reply = client.next_text().await;
        assert_eq!(reply, format!(r#"40{{"sid":"{}"}}"#, client.sid()));
        client
    }

    pub(crate) fn sid(&self) -> String {
        self.open["sid"].as_str().expect("sid").to_owned()
    }

    pub(crate) async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send");
    }

    pub(crate) async fn emit(&mut self, ack_id: Option<u64>, event: &str, data: Value) {
        let id = ack_id.map(|id| id.to_string()).unwrap_or_default();
        self.send(&format!("42{id}{}", json!([event, data]))).await;
    }

    /// The next text frame, answering the server's pings on the way (`2` → `3`).
    pub(crate) async fn next_text(&mut self) -> String {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame in time");
            let message = message.expect("socket open").expect("no socket error");
            if let Some(text) = message.as_text() {
                if text == "2" {
                    self.send("3").await;
                    continue;
                }
                return text.to_owned();
            }
            assert!(!message.is_close(), "unexpected close: {:?}", message.as_close());
        }
    }

    /// Keep reading for `ms`, answering pings; any other frame fails the test.
    pub(crate) async fn answer_pings_for(&mut self, ms: u64) -> usize {
        let until = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut pings = 0;
        while let Ok(message) = tokio::time::timeout_at(until, self.ws.next()).await {
            let message = message.expect("socket open").expect("no socket error");
            assert_eq!(message.as_text(), Some("2"), "only pings while idle");
            self.send("3").await;
            pings += 1;
        }
        pings
    }

    /// The next Socket.IO EVENT: (name, first argument).
    pub(crate) async fn next_event(&mut self) -> (String, Value) {
        let text = self.next_text().await;
        let json = text.strip_prefix("42").unwrap_or_else(|| panic!("not an event: {text}"));
        let items: Vec<Value> = serde_json::from_str(json).expect("event JSON");
        (items[0].as_str().expect("name").to_owned(), items.get(1).cloned().unwrap_or(Value::Null))
    }

    /// Read events until `name`; panics on another.
    pub(crate) async fn expect_event(&mut self, name: &str) -> Value {
        let (got, data) = self.next_event().await;
        assert_eq!(got, name, "unexpected event {data}");
        data
    }

    /// The next `server-event` on a channel: (event, data, whole body).
    pub(crate) async fn expect_server_event(&mut self, event: &str) -> Value {
        let body = self.expect_event("server-event").await;
        assert_eq!(body["event"], event, "unexpected server-event {body}");
        body
    }

    /// An ACK for `id`: its first argument.
    pub(crate) async fn expect_ack(&mut self, id: u64) -> Value {
        let text = self.next_text().await;
        let json = text.strip_prefix(&format!("43{id}")).unwrap_or_else(|| panic!("not ack {id}: {text}"));
        let items: Vec<Value> = serde_json::from_str(json).expect("ack JSON");
        items.into_iter().next().unwrap_or(Value::Null)
    }

    /// Read until the server closes: the close code (None if the TCP connection just ended).
    pub(crate) async fn expect_close(&mut self) -> (Option<u16>, Vec<String>) {
        let mut texts = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("close in time") {
                None | Some(Err(_)) => return (None, texts),
                Some(Ok(m)) if m.is_close() => return (m.as_close().map(|(code, _)| u16::from(code)), texts),
                Some(Ok(m)) => texts.extend(m.as_text().map(str::to_owned)),
            }
        }
    }

    /// Subscribe (signing private and presence channels as the app's auth endpoint would).
    pub(crate) async fn subscribe(&mut self, channel: &str, user: Option<(&str, Value)>) -> Value {
        let mut data = json!({ "channel": channel });
        let sid = self.sid();
        if let Some((user_id, info)) = user {
            let channel_data = json!({ "user_id": user_id, "user_info": info }).to_string();
            data["auth"] = json!(sign_channel(KEY, SECRET, &sid, channel, Some(&channel_data)));
            data["channel_data"] = json!(channel_data);
        } else if channel.starts_with("private-") {
            data["auth"] = json!(sign_channel(KEY, SECRET, &sid, channel, None));
        }
        self.emit(None, "realtimex:subscribe", data).await;
        let confirmed = self.expect_event("realtimex_internal:subscription_succeeded").await;
        assert_eq!(confirmed["channel"], channel);
        // The mirrors the seed SDK binds to on channels (default on).
        self.expect_server_event("realtimex_internal:subscription_succeeded").await;
        if channel.starts_with("presence-") {
            self.expect_server_event("presence:subscription_succeeded").await;
        }
        confirmed
    }

    /// Ping and expect the pong: the socket is alive and in step.
    pub(crate) async fn assert_alive(&mut self) {
        self.emit(Some(900), "realtimex:ping", json!({})).await;
        assert_eq!(self.expect_event("realtimex:pong").await, json!({}));
        assert_eq!(self.expect_ack(900).await, json!({ "ok": true }));
    }
}

fn fast_heartbeat(ping_ms: u64, timeout_ms: u64) -> ServerConfig {
    ServerConfig { realtimex_ping_interval_ms: ping_ms, realtimex_ping_timeout_ms: timeout_ms, ..config_with(app()) }
}

#[tokio::test]
async fn the_handshake_uses_one_pusher_socket_id_for_every_sid() {
    let server = start_default().await;
    let client = Rtx::connect(&server).await;
    let sid = client.sid();
    let (left, right) = sid.split_once('.').expect("\\d+.\\d+");
    assert!(left.bytes().chain(right.bytes()).all(|b| b.is_ascii_digit()), "{sid}");
    assert_eq!(client.open["upgrades"], json!([]));
    assert_eq!(
        (client.open["pingInterval"].as_u64(), client.open["pingTimeout"].as_u64()),
        (Some(25_000), Some(20_000))
    );
    assert_eq!(client.open["maxPayload"], 1_000_000);
    // python-engineio's request line, with its t= cache buster, works too; the key may come
    // in the CONNECT payload instead of the query.
    let mut other = Rtx::open(&server, "transport=websocket&EIO=4&t=1700000000").await;
    other.send(&format!(r#"40{{"api_key":"{KEY}"}}"#)).await;
    assert_eq!(other.next_text().await, format!(r#"40{{"sid":"{}"}}"#, other.sid()));
    let app = server.app(APP_ID).expect("app");
    assert_eq!(app.connection_count(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn what_engine_io_refuses_is_refused_before_the_upgrade_with_its_json() {
    let server = start_default().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/socket.io/", server.local_addr());
    let upgrade = |url: String| {
        http.get(url)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    for (query, code) in [
        ("EIO=4&transport=polling", 0),
        ("EIO=4", 0),
        ("EIO=4&transport=websocket&sid=abc", 1),
        ("EIO=3&transport=websocket", 5),
        ("transport=websocket", 5),
    ] {
        let response = upgrade(format!("{base}?{query}")).send().await.expect("response");
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(body["code"], code, "{query}: {body}");
    }
    // Not a WebSocket upgrade at all: code 3, Bad request.
    let response = http.get(format!("{base}?EIO=4&transport=websocket")).send().await.expect("response");
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.expect("JSON")["code"], 3);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_key_or_namespace_gets_connect_error_and_the_socket_may_try_again() {
    let server = start_default().await;
    let mut client = Rtx::open(&server, "EIO=4&transport=websocket&api_key=nope").await;
    client.send("40").await;
    assert_eq!(client.next_text().await, r#"44{"data":{"code":4001},"message":"Invalid API key"}"#);
    client.send("40/admin,").await;
    assert_eq!(client.next_text().await, r#"44/admin,{"message":"Invalid namespace"}"#);
    // The key in the query is wrong for good; a socket without one may still name it.
    let mut keyless = Rtx::open(&server, "EIO=4&transport=websocket").await;
    keyless.send("40").await;
    assert!(keyless.next_text().await.starts_with("44"));
    keyless.send(&format!(r#"40{{"api_key":"{KEY}"}}"#)).await;
    assert!(keyless.next_text().await.starts_with(r#"40{"sid""#));
    keyless.assert_alive().await;
    let metrics = reqwest::get(format!("http://{}/metrics", server.local_addr())).await.expect("metrics");
    assert!(metrics.text().await.expect("text").contains("switchboard_realtimex_connect_errors_total 3"));
    server.shutdown().await;
}

#[tokio::test]
async fn packets_the_protocol_forbids_close_that_socket_only() {
    let server = start_default().await;
    let mut bystander = Rtx::connect(&server).await;
    bystander.subscribe("news", None).await;
    let cases: [(&str, &[&str]); 7] = [
        ("an event before CONNECT", &[r#"42["realtimex:ping",{}]"#]),
        ("an unknown Engine.IO type", &["40", "9"]),
        ("an unreadable Socket.IO packet", &["40", "42[oops"]),
        ("an event without a name", &["40", "42[]"]),
        ("an ack without an id", &["40", "43[]"]),
        ("placeholders that do not match the count", &["40", r#"452-["up",{"_placeholder":true,"num":0}]"#]),
        ("text while attachments are due", &["40", r#"451-["up",{"_placeholder":true,"num":0}]"#, "42[\"x\"]"]),
    ];
    for (what, frames) in cases {
        let mut client = Rtx::open(&server, &format!("EIO=4&transport=websocket&api_key={KEY}")).await;
        for frame in frames {
            client.send(frame).await;
        }
        let (code, _) = client.expect_close().await;
        assert_eq!(code, Some(1002), "{what}");
    }
    // A binary frame nobody announced.
    let mut client = Rtx::connect(&server).await;
    client.ws.send(Message::binary(vec![1u8, 2, 3])).await.expect("send");
    assert_eq!(client.expect_close().await.0, Some(1002));
    // A frame over Engine.IO's maxPayload is cut off at the transport.
    let mut client = Rtx::connect(&server).await;
    client.send(&format!("42[\"x\",\"{}\"]", "a".repeat(1_000_001))).await;
    assert_eq!(client.expect_close().await.0, Some(1009));
    bystander.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_events_get_realtimex_error_and_the_socket_lives_on() {
    let server = start_default().await;
    let mut client = Rtx::connect(&server).await;
    client.emit(Some(1), "dance", json!({})).await;
    let error = client.expect_event("realtimex:error").await;
    assert_eq!(error["code"], 4300);
    assert!(error["message"].as_str().expect("message").contains("realtimex:subscribe"), "{error}");
    assert_eq!(client.expect_ack(1).await["ok"], false);
    client.emit(None, "realtimex:subscribe", json!({ "no": "channel" })).await;
    assert_eq!(client.expect_event("realtimex:error").await["code"], 4300);
    // A binary event (two attachments) is read whole, refused, and the stream stays in step.
    client.send(r#"452-1["upload",{"a":{"_placeholder":true,"num":0},"b":[{"_placeholder":true,"num":1}]}]"#).await;
    client.ws.send(Message::binary(vec![0u8; 16])).await.expect("send");
    client.ws.send(Message::binary(vec![1u8; 16])).await.expect("send");
    let error = client.expect_event("realtimex:error").await;
    assert!(error["message"].as_str().expect("message").contains("Binary events"), "{error}");
    assert_eq!(client.expect_ack(1).await["code"], 4300);
    // An ack for nothing, Engine.IO noop and a client ping are fine.
    client.send("431[]").await;
    client.send("6").await;
    client.send("2").await;
    assert_eq!(client.next_text().await, "3");
    // A message over the app's max_message_size is refused, not relayed.
    client
        .emit(
            Some(2),
            "client-event",
            json!({ "channel": "private-x", "event": "client-x", "data": "a".repeat(10_001) }),
        )
        .await;
    let error = client.expect_event("realtimex:error").await;
    assert!(error["message"].as_str().expect("message").contains("exceeds the limit"), "{error}");
    assert_eq!(client.expect_ack(2).await["ok"], false);
    client.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn publishes_reach_pusher_and_realtimex_subscribers_alike() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut pusher = Client::connect(&server).await;
    pusher.subscribe("news").await;
    let mut rtx = Rtx::connect(&server).await;
    let confirmed = rtx.subscribe("news", None).await;
    assert_eq!(confirmed["socket_id"], rtx.sid());
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("news").subscription_count, 2);
    let (status, _) =
        api.post("/apps/1000/events", json!({ "name": "headline", "channels": ["news"], "data": "{\"id\":7}" })).await;
    assert_eq!(status, 200);
    let body = rtx.expect_server_event("headline").await;
    assert_eq!((body["channel"].clone(), body["data"].clone()), (json!("news"), json!({ "id": 7 })));
    assert_eq!(pusher.expect("headline").await.data.as_text(), Some("{\"id\":7}"));
    // socket_id exclusion works with the RealtimeX socket's id.
    let (status, _) = api
        .post(
            "/apps/1000/events",
            json!({ "name": "second", "channels": ["news"], "data": "plain", "socket_id": rtx.sid() }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(pusher.expect("second").await.data.as_text(), Some("plain"));
    rtx.assert_alive().await; // the pong comes first: "second" was not sent to it
    // Unsubscribe leaves the channel.
    rtx.emit(Some(5), "realtimex:unsubscribe", json!({ "channel": "news" })).await;
    assert_eq!(rtx.expect_ack(5).await["ok"], true);
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("news").subscription_count, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn private_channels_check_the_signature_over_the_socket_id() {
    let server = start_default().await;
    let mut client = Rtx::connect(&server).await;
    let wrong = sign_channel(KEY, SECRET, "1.1", "private-orders", None); // another socket's
    client.emit(Some(3), "realtimex:subscribe", json!({ "channel": "private-orders", "auth": wrong })).await;
    let error = client.expect_event("realtimex_internal:subscription_error").await;
    assert_eq!((error["type"].clone(), error["status"].clone()), (json!("AuthError"), json!(401)));
    assert!(error["error"].as_str().expect("error").contains(&client.sid()), "{error}");
    assert_eq!(client.expect_ack(3).await["ok"], false);
    client.emit(None, "realtimex:subscribe", json!({ "channel": "private-encrypted-x", "auth": "k:s" })).await;
    assert_eq!(client.expect_event("realtimex_internal:subscription_error").await["type"], "InvalidChannel");
    client.emit(None, "realtimex:subscribe", json!({ "channel": "bad name!" })).await;
    assert_eq!(client.expect_event("realtimex_internal:subscription_error").await["status"], 400);
    let confirmed = client.subscribe("private-orders", None).await;
    assert_eq!(confirmed["channel"], "private-orders");
    server.shutdown().await;
}

#[tokio::test]
async fn presence_is_one_roster_for_pusher_and_realtimex_members() {
    let server = start_default().await;
    let mut ada = Client::connect(&server).await;
    ada.join("presence-room", "ada", json!({ "name": "Ada" })).await;
    let mut bob = Rtx::connect(&server).await;
    let confirmed = bob.subscribe("presence-room", Some(("bob", json!({ "name": "Bob" })))).await;
    assert_eq!(confirmed["presence"]["count"], 2);
    assert_eq!(confirmed["presence"]["ids"], json!(["ada", "bob"]));
    assert_eq!(confirmed["presence"]["hash"]["ada"], json!({ "name": "Ada" }));
    let added = ada.expect("pusher_internal:member_added").await;
    assert!(added.data.as_text().expect("data").contains("\"bob\""));
    // A Pusher member joining: the canonical event, then the seed README's mirror.
    let mut cy = Client::connect(&server).await;
    cy.join("presence-room", "cy", json!(null)).await;
    ada.expect("pusher_internal:member_added").await;
    let canonical = bob.expect_server_event("realtimex_internal:member_added").await;
    assert_eq!(canonical["data"], json!({ "user_id": "cy", "user_info": null }));
    bob.expect_server_event("presence:member_added").await;
    let api = Api::new(&server);
    let (_, users) = api.get("/apps/1000/channels/presence-room/users", &[]).await;
    assert_eq!(users["users"].as_array().map(Vec::len), Some(3));
    // The RealtimeX member leaves with its socket: both kinds of member see it.
    drop(bob);
    let removed = ada.expect("pusher_internal:member_removed").await;
    assert!(removed.data.as_text().expect("data").contains("\"bob\""));
    cy.expect("pusher_internal:member_removed").await;
    drop(cy);
    ada.expect("pusher_internal:member_removed").await;
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_cross_protocols_under_the_pusher_rules() {
    let server = start_default().await;
    let mut pusher = Client::connect(&server).await;
    pusher.join("presence-room", "ada", json!({})).await;
    let mut rtx = Rtx::connect(&server).await;
    rtx.subscribe("presence-room", Some(("bob", json!({})))).await;
    pusher.expect("pusher_internal:member_added").await;
    rtx.emit(
        Some(1),
        "client-event",
        json!({ "channel": "presence-room", "event": "client-typing", "data": { "on": true } }),
    )
    .await;
    assert_eq!(rtx.expect_ack(1).await, json!({ "ok": true }));
    let relayed = pusher.expect("client-typing").await;
    assert_eq!(relayed.user_id.as_deref(), Some("bob"));
    assert_eq!(relayed.data.as_text(), Some(r#"{"on":true}"#));
    pusher.send_json(json!({ "event": "client-wave", "channel": "presence-room", "data": { "hand": "left" } })).await;
    let body = rtx.expect_server_event("client-wave").await;
    assert_eq!((body["data"].clone(), body["user_id"].clone()), (json!({ "hand": "left" }), json!("ada")));
    // Refusals: not client-, a public channel, a channel it is not on, the rate limit.
    for (event, channel, code) in
        [("typing", "presence-room", 4301), ("client-x", "news", 4301), ("client-x", "private-other", 4009)]
    {
        rtx.emit(Some(2), "client-event", json!({ "channel": channel, "event": event, "data": {} })).await;
        let error = rtx.expect_event("realtimex:error").await;
        assert_eq!(
            (error["code"].clone(), error["channel"].clone()),
            (json!(code), json!(channel)),
            "{event} on {channel}"
        );
        assert_eq!(rtx.expect_ack(2).await["code"], code);
    }
    let mut refused = 0;
    for i in 0..12 {
        rtx.emit(Some(10 + i), "client-event", json!({ "channel": "presence-room", "event": "client-n", "data": i }))
            .await;
    }
    for i in 0..12 {
        let text = rtx.next_text().await;
        if text.starts_with("42") {
            assert!(text.contains("rate limit"), "{text}");
            refused += 1;
            assert_eq!(rtx.expect_ack(10 + i).await["code"], 4301);
        } else {
            assert!(text.starts_with(&format!("43{}", 10 + i)), "{text}");
        }
    }
    assert!(refused >= 1, "at most 10 per second go through");
    server.shutdown().await;
}

#[tokio::test]
async fn the_server_pings_and_closes_a_socket_that_stops_answering() {
    let server = start(fast_heartbeat(150, 200)).await;
    let mut live = Rtx::connect(&server).await;
    assert_eq!((live.open["pingInterval"].as_u64(), live.open["pingTimeout"].as_u64()), (Some(150), Some(200)));
    // One that reads pings but never answers is closed after interval + timeout, while one
    // that answers stays.
    let mut mute = Rtx::connect(&server).await;
    let mute_closed = async {
        let started = tokio::time::Instant::now();
        let closed = mute.expect_close().await;
        (closed, started.elapsed())
    };
    let (pings, ((code, texts), after)) = tokio::join!(live.answer_pings_for(800), mute_closed);
    assert!(pings >= 3, "{pings} pings in 800 ms");
    assert_eq!(code, Some(1001));
    assert_eq!(texts, ["2"], "one ping, then the close");
    assert!(after >= Duration::from_millis(350), "not before interval + timeout ({after:?})");
    live.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_socket_that_never_connects_the_namespace_is_closed() {
    let config = ServerConfig { realtimex_connect_timeout_ms: 200, ..config_with(app()) };
    let server = start(config).await;
    let mut idle = Rtx::open(&server, &format!("EIO=4&transport=websocket&api_key={KEY}")).await;
    assert_eq!(idle.expect_close().await.0, Some(1008));
    assert_eq!(server.app(APP_ID).expect("app").connection_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn terminate_sends_a_server_disconnect_and_shutdown_a_plain_close() {
    let server = start_default().await;
    let mut kicked = Rtx::connect(&server).await;
    kicked.subscribe("presence-room", Some(("42", json!({})))).await;
    let mut stays = Rtx::connect(&server).await;
    stays.subscribe("news", None).await;
    let (status, _) = Api::new(&server).post("/apps/1000/users/42/terminate_connections", json!({})).await;
    assert_eq!(status, 200);
    let (code, texts) = kicked.expect_close().await;
    assert_eq!(texts, ["41"], "a Socket.IO server disconnect, so clients stay away");
    assert_eq!(code, Some(1000));
    let handle = tokio::spawn(async move { server.shutdown().await });
    let (code, texts) = stays.expect_close().await;
    assert!(texts.is_empty(), "no 41 at shutdown: clients reconnect ({texts:?})");
    assert_eq!(code, Some(1001));
    handle.await.expect("shutdown");
}

#[tokio::test]
async fn quotas_and_cache_channels_apply_to_realtimex_sockets() {
    let config = config_with(AppConfig { max_connections: 1, ..app() });
    let server = start(config).await;
    let mut first = Rtx::connect(&server).await;
    let mut second = Rtx::open(&server, &format!("EIO=4&transport=websocket&api_key={KEY}")).await;
    second.send("40").await;
    assert!(second.next_text().await.contains("\"code\":4004"));
    // A cache channel replays its last event to a RealtimeX subscriber.
    first.emit(None, "realtimex:subscribe", json!({ "channel": "cache-scores" })).await;
    first.expect_event("realtimex_internal:subscription_succeeded").await;
    first.expect_server_event("realtimex_internal:subscription_succeeded").await;
    first.expect_server_event("realtimex_internal:cache_miss").await;
    let (status, _) = Api::new(&server)
        .post("/apps/1000/events", json!({ "name": "score", "channels": ["cache-scores"], "data": "3" }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(first.expect_server_event("score").await["data"], 3);
    first.emit(None, "realtimex:unsubscribe", json!({ "channel": "cache-scores" })).await;
    first.emit(None, "realtimex:subscribe", json!({ "channel": "cache-scores" })).await;
    first.expect_event("realtimex_internal:subscription_succeeded").await;
    first.expect_server_event("realtimex_internal:subscription_succeeded").await;
    assert_eq!(first.expect_server_event("score").await["data"], 3);
    // Leaving the namespace (41) gives the slot back.
    first.send("41").await;
    eventually(|| server.app(APP_ID).is_some_and(|a| a.connection_count() == 0)).await;
    second.send("40").await;
    assert!(second.next_text().await.starts_with(r#"40{"sid""#));
    server.shutdown().await;
}

#[tokio::test]
async fn engine_io_packets_may_come_between_a_binary_packet_and_its_attachments() {
    let server = start_default().await;
    let mut client = Rtx::connect(&server).await;
    client.send(r#"451-["upload",{"_placeholder":true,"num":0}]"#).await;
    client.send("3").await; // a pong python-socketio's reader thread slipped in
    client.send("6").await;
    client.ws.send(Message::binary(vec![7u8; 8])).await.expect("send");
    assert!(client.expect_event("realtimex:error").await["message"].as_str().expect("message").contains("Binary"));
    // An oversized binary packet is refused, and its attachments are read and dropped.
    let big = format!(r#"451-2["upload",{{"_placeholder":true,"num":0}},"{}"]"#, "x".repeat(10_001));
    client.send(&big).await;
    client.ws.send(Message::binary(vec![1u8; 8])).await.expect("send");
    assert!(client.expect_event("realtimex:error").await["message"].as_str().expect("message").contains("exceeds"));
    assert_eq!(client.expect_ack(2).await["ok"], false);
    client.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_socket_may_leave_the_namespace_and_connect_again() {
    let config = ServerConfig { realtimex_connect_timeout_ms: 200, ..config_with(app()) };
    let server = start(config).await;
    let mut client = Rtx::connect(&server).await;
    client.subscribe("news", None).await;
    client.answer_pings_for(300).await; // past the first connect deadline
    client.send("41").await;
    eventually(|| server.app(APP_ID).is_some_and(|a| a.channel_counts("news").subscription_count == 0)).await;
    client.send("40").await;
    assert_eq!(client.next_text().await, format!(r#"40{{"sid":"{}"}}"#, client.sid()));
    client.assert_alive().await;
    // A wrong key in the query, then the right one in the CONNECT payload.
    let mut retrying = Rtx::open(&server, "EIO=4&transport=websocket&api_key=stale").await;
    retrying.send("40").await;
    assert!(retrying.next_text().await.starts_with("44"));
    retrying.send(&format!(r#"40{{"api_key":"{KEY}"}}"#)).await;
    assert!(retrying.next_text().await.starts_with(r#"40{"sid""#));
    server.shutdown().await;
}

#[tokio::test]
async fn unasked_pongs_keep_a_socket_that_does_not_read_alive() {
    // Pongs every 250 ms, slower than the 150 ms pong timeout, from a client that reads
    // nothing (its consumer is slow): each one counts, so the server never gives up.
    let server = start(fast_heartbeat(300, 150)).await;
    let mut client = Rtx::connect(&server).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        client.send("3").await;
    }
    client.assert_alive().await;
    server.shutdown().await;
}
