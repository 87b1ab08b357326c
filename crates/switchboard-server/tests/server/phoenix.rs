//! The Phoenix endpoint and its Hub-compatible `room:*` channel: V2 and V1 serializers,
//! presence state and diffs, typing updates, shouts, refs, and the official phoenix JS client.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::phoenix::{Message, Payload, Vsn};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, WebSocketStream};

use crate::common::*;

pub(crate) struct Phx {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    vsn: Vsn,
    next_ref: u64,
}

impl Phx {
    pub(crate) async fn connect(server: &switchboard_server::RunningServer, vsn: Vsn) -> Phx {
        let query = if vsn == Vsn::V2 { "?vsn=2.0.0" } else { "" };
        let url = format!("ws://{}/socket/websocket{query}", server.local_addr());
        let (ws, _) = ClientBuilder::new().uri(&url).expect("uri").connect().await.expect("connect");
        Phx { ws, vsn, next_ref: 0 }
    }

    /// Send; returns the ref used.
    pub(crate) async fn push(&mut self, join_ref: Option<&str>, topic: &str, event: &str, payload: Value) -> String {
        self.next_ref += 1;
        let reference = self.next_ref.to_string();
        let message = Message {
            join_ref: join_ref.map(str::to_owned),
            reference: Some(reference.clone()),
            topic: topic.into(),
            event: event.into(),
            payload: Payload::Json(payload),
        };
        self.ws.send(tokio_websockets::Message::text(message.encode_client_text(self.vsn))).await.expect("send");
        reference
    }

    pub(crate) async fn send_raw(&mut self, text: &str) {
        self.ws.send(tokio_websockets::Message::text(text.to_owned())).await.expect("send");
    }

    pub(crate) async fn next(&mut self) -> Message {
        loop {
            let m =
                tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame in time").expect("open").expect("ok");
            if let Some(text) = m.as_text() {
                return Message::decode_text(text, self.vsn).expect("valid frame");
            }
        }
    }

    pub(crate) async fn expect(&mut self, event: &str) -> Message {
        let m = self.next().await;
        assert_eq!(m.event, event, "unexpected {m:?}");
        m
    }

    /// The next `event`, skipping presence diffs (which every member receives).
    pub(crate) async fn expect_past_presence(&mut self, event: &str) -> Message {
        loop {
            let m = self.next().await;
            if m.event != "presence_diff" {
                assert_eq!(m.event, event, "unexpected {m:?}");
                return m;
            }
        }
    }

    /// The close code the server ends the socket with (frames before it are skipped).
    pub(crate) async fn expect_close(&mut self) -> Option<u16> {
        for _ in 0..10_000 {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("closed in time") {
                Some(Ok(m)) if m.is_close() => return m.as_close().map(|(code, _)| u16::from(code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
        panic!("no close after 10,000 frames");
    }

    pub(crate) async fn join(&mut self, topic: &str, username: &str) -> (String, Value) {
        let reference = self.push(None, topic, "phx_join", json!({ "username": username })).await;
        let reply = self.expect("phx_reply").await;
        assert_eq!(json_of(&reply)["status"], "ok", "{reply:?}");
        assert_eq!(reply.reference.as_deref(), Some(reference.as_str()));
        let state = self.expect("presence_state").await;
        (reference, json_of(&state))
    }
}

pub(crate) fn json_of(m: &Message) -> Value {
    match &m.payload {
        Payload::Json(v) => v.clone(),
        _ => Value::Null,
    }
}

#[tokio::test]
async fn v2_join_presence_typing_shout_and_leave() {
    let server = start_default().await;
    let mut ada = Phx::connect(&server, Vsn::V2).await;
    let (ada_jr, state) = ada.join("room:lobby", "ada").await;
    assert_eq!(state, json!({}), "the state pushed before tracking excludes the joiner");
    let diff = ada.expect("presence_diff").await;
    assert_eq!(diff.join_ref, None);
    assert_eq!(json_of(&diff)["joins"]["ada"]["metas"][0]["typing"], false);

    let mut bob = Phx::connect(&server, Vsn::V2).await;
    let (bob_jr, state) = bob.join("room:lobby", "bob").await;
    assert_eq!(state["ada"]["metas"][0]["username"], "ada");
    assert!(json_of(&ada.expect("presence_diff").await)["joins"]["bob"].is_object());
    bob.expect("presence_diff").await;

    let r = bob.push(Some(&bob_jr), "room:lobby", "user:typing", json!({"username":"bob","typing":true})).await;
    let reply = bob.expect("phx_reply").await;
    assert_eq!((reply.reference.as_deref(), json_of(&reply)["status"].as_str()), (Some(r.as_str()), Some("ok")));
    let diff = json_of(&ada.expect("presence_diff").await);
    let (new, old) = (&diff["joins"]["bob"]["metas"][0], &diff["leaves"]["bob"]["metas"][0]);
    assert_eq!((new["typing"].as_bool(), old["typing"].as_bool()), (Some(true), Some(false)));
    assert_eq!(new["phx_ref_prev"], old["phx_ref"]);

    ada.push(Some(&ada_jr), "room:lobby", "shout", json!({"body":"hey","channel":"lobby","name":"ada"})).await;
    for socket in [&mut ada, &mut bob] {
        let shout = socket.expect_past_presence("shout").await;
        assert_eq!(json_of(&shout), json!({"body":"hey","channel":"lobby","name":"ada"}), "verbatim, sender included");
    }
    assert_eq!(server.phoenix_rooms().usernames("room:lobby"), vec!["ada", "bob"]);
    assert_eq!(server.metrics().phoenix_connections.get(), 2);

    bob.push(Some(&bob_jr), "room:lobby", "phx_leave", json!({})).await;
    assert_eq!(json_of(&bob.expect_past_presence("phx_reply").await)["status"], "ok");
    let close = bob.expect("phx_close").await;
    assert_eq!((close.join_ref.as_deref(), close.reference.as_deref()), (Some(bob_jr.as_str()), Some(bob_jr.as_str())));
    assert!(json_of(&ada.expect("presence_diff").await)["leaves"]["bob"].is_object());
    drop(ada);
    eventually(|| server.phoenix_rooms().usernames("room:lobby").is_empty()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeat_unmatched_topics_stale_refs_and_bad_joins() {
    let server = start_default().await;
    let mut c = Phx::connect(&server, Vsn::V2).await;
    let r = c.push(None, "phoenix", "heartbeat", json!({})).await;
    let reply = c.expect("phx_reply").await;
    assert_eq!(
        (reply.topic.as_str(), reply.reference.as_deref(), reply.join_ref.as_deref()),
        ("phoenix", Some(r.as_str()), None)
    );
    c.push(None, "nope:1", "phx_join", json!({"username":"x"})).await;
    let reply = c.expect("phx_reply").await;
    assert_eq!(
        (json_of(&reply)["response"]["reason"].as_str(), reply.join_ref.as_deref()),
        (Some("unmatched topic"), None)
    );
    c.push(None, "room:lobby", "shout", json!({})).await;
    assert_eq!(json_of(&c.expect("phx_reply").await)["response"]["reason"], "unmatched topic");
    c.push(None, "room:lobby", "phx_join", json!({})).await;
    assert_eq!(json_of(&c.expect("phx_reply").await)["response"]["reason"], "username is required");
    let (first, _) = c.join("room:lobby", "ada").await;
    c.expect("presence_diff").await;
    // A second join of the same topic closes the first.
    let second = c.push(None, "room:lobby", "phx_join", json!({"username":"ada"})).await;
    let close = c.expect("phx_close").await;
    assert_eq!(close.join_ref.as_deref(), Some(first.as_str()));
    assert_eq!(json_of(&c.expect("phx_reply").await)["status"], "ok");
    c.expect("presence_state").await;
    // A message for the old join is ignored; the current one works.
    c.push(Some(&first), "room:lobby", "ping", json!({"n":1})).await;
    c.push(Some(&second), "room:lobby", "ping", json!({"n":2})).await;
    loop {
        let m = c.next().await;
        if m.event == "phx_reply" {
            assert_eq!(json_of(&m)["response"], json!({"n":2}), "the stale ping got no reply");
            break;
        }
    }
    c.send_raw("not json").await;
    c.send_raw(r#"["1"]"#).await;
    let r = c.push(None, "phoenix", "heartbeat", json!({})).await;
    loop {
        let m = c.next().await;
        if m.event == "phx_reply" && m.topic == "phoenix" {
            assert_eq!(m.reference.as_deref(), Some(r.as_str()), "bad frames are ignored, the socket lives");
            break;
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_v1_client_like_the_hub_seed() {
    let server = start_default().await;
    let mut web = Phx::connect(&server, Vsn::V2).await;
    let (web_jr, _) = web.join("room:lobby", "web").await;
    web.expect("presence_diff").await;
    let mut py = Phx::connect(&server, Vsn::V1).await;
    // The seed sends ref null and no join_ref.
    py.send_raw(r#"{"topic":"room:lobby","event":"phx_join","payload":{"username":"robin"},"ref":null}"#).await;
    let reply = py.expect("phx_reply").await;
    assert_eq!(json_of(&reply)["status"], "ok");
    let state = py.expect("presence_state").await;
    assert!(json_of(&state)["web"]["metas"][0]["phx_ref"].is_string());
    assert!(json_of(&web.expect("presence_diff").await)["joins"]["robin"].is_object());
    py.send_raw(r#"{"topic":"room:lobby","event":"shout","payload":{"body":"hey","channel":"lobby","name":"robin"},"ref":null}"#).await;
    assert_eq!(json_of(&web.expect("shout").await)["name"], "robin");
    // V1 frames from the server never carry join_ref.
    let mut raw = py.ws.next().await.expect("frame").expect("ok");
    while !raw.as_text().is_some_and(|t| t.contains("shout")) {
        raw = py.ws.next().await.expect("frame").expect("ok");
    }
    let v: Value = serde_json::from_str(raw.as_text().expect("text")).expect("json");
    assert!(v.get("join_ref").is_none(), "{v}");
    web.push(Some(&web_jr), "room:lobby", "shout", json!({"body":"hi robin","name":"web"})).await;
    assert_eq!(json_of(&py.expect("shout").await)["body"], "hi robin");
    server.shutdown().await;
}

#[tokio::test]
async fn the_official_phoenix_client_meets_ours_in_a_room() {
    let server = start_default().await;
    phoenix_js_meets_ours(&server, &server).await;
    server.shutdown().await;
}

/// Our raw client joins `room:lobby` on `rust_server`, phoenix.js (`interop/phoenix-peer.mjs`)
/// on `js_server`: each sees the other's join, typing update and shout, and phoenix.js's
/// Presence lists our member.
pub(crate) async fn phoenix_js_meets_ours(
    rust_server: &switchboard_server::RunningServer,
    js_server: &switchboard_server::RunningServer,
) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    assert!(
        std::path::Path::new(&format!("{root}/interop/node_modules/phoenix")).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let mut rust = Phx::connect(rust_server, Vsn::V2).await;
    let (jr, _) = rust.join("room:lobby", "rust").await;
    let addr = js_server.local_addr();
    let node = tokio::process::Command::new("node")
        .arg("interop/phoenix-peer.mjs")
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    // Wait until js has joined, then say we are typing and shout.
    loop {
        let m = rust.next().await;
        if m.event == "presence_diff" && json_of(&m)["joins"]["js"].is_object() {
            break;
        }
    }
    rust.push(Some(&jr), "room:lobby", "user:typing", json!({"username":"rust","typing":true})).await;
    rust.push(Some(&jr), "room:lobby", "shout", json!({"body":"hi from rust","channel":"lobby","name":"rust"})).await;
    let (mut js_shout, mut js_typing) = (false, false);
    while !(js_shout && js_typing) {
        let m = rust.next().await;
        let p = json_of(&m);
        js_shout |= m.event == "shout" && p["name"] == "js";
        js_typing |= m.event == "presence_diff" && p["joins"]["js"]["metas"][0]["typing"] == true;
    }
    let output = tokio::time::timeout(Duration::from_secs(20), node.wait_with_output())
        .await
        .expect("node ends")
        .expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "phoenix peer failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("typing acknowledged") && stdout.contains("OK: members"), "{stdout}");
    assert!(stdout.contains("\"rust\""), "{stdout}");
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_idle_timeout_and_heartbeats_keep_it() {
    let cfg = switchboard_server::ServerConfig { phoenix_idle_timeout: 1, ..config_with(app()) };
    let server = start(cfg).await;
    let mut talker = Phx::connect(&server, Vsn::V2).await;
    let mut silent = Phx::connect(&server, Vsn::V2).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        talker.push(None, "phoenix", "heartbeat", json!({})).await;
        talker.expect("phx_reply").await;
    }
    // The silent one was closed meanwhile; the talker is still served.
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match silent.ws.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(m)) if m.is_close() => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("closed in time");
    assert!(closed);
    talker.push(None, "phoenix", "heartbeat", json!({})).await;
    talker.expect("phx_reply").await;
    server.shutdown().await;
}

/// A config with the Phoenix limits given (the rest default).
fn phoenix_config(edit: impl FnOnce(&mut switchboard_server::ServerConfig)) -> switchboard_server::ServerConfig {
    let mut cfg = config_with(app());
    edit(&mut cfg);
    cfg
}

#[tokio::test]
async fn shouts_over_the_size_or_rate_limit_get_error_replies_and_are_not_broadcast() {
    let server = start(phoenix_config(|c| {
        c.phoenix_max_payload = 1_000;
        c.phoenix_message_rate = 5;
    }))
    .await;
    let mut a = Phx::connect(&server, Vsn::V2).await;
    let mut b = Phx::connect(&server, Vsn::V2).await;
    let (a_join, _) = a.join("room:limits", "ada").await;
    b.join("room:limits", "bob").await;
    // Too large: an error reply to the sender, nothing to the room.
    let big = a.push(Some(&a_join), "room:limits", "shout", json!({ "body": "x".repeat(1_500) })).await;
    let reply = a.expect_past_presence("phx_reply").await;
    assert_eq!(reply.reference.as_deref(), Some(big.as_str()));
    assert_eq!(json_of(&reply)["status"], "error");
    assert_eq!(json_of(&reply)["response"]["reason"], "message too large: at most 1000 bytes");
    // Twenty in a burst: past five per second each gets an error reply instead of a broadcast.
    for n in 0..20 {
        a.push(Some(&a_join), "room:limits", "shout", json!({ "n": n })).await;
    }
    let (mut delivered, mut refused) = (Vec::new(), 0);
    while delivered.len() + refused < 20 {
        let m = a.next().await;
        match m.event.as_str() {
            "presence_diff" => {}
            "shout" => delivered.push(json_of(&m)["n"].clone()),
            "phx_reply" => {
                assert_eq!(json_of(&m)["response"]["reason"], "too many messages: at most 5 per second", "{m:?}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {m:?}"),
        }
    }
    assert!(refused >= 1 && delivered.len() >= 5, "{refused} refused, {delivered:?}");
    // Bob got exactly the shouts that were admitted, in order, and not the big one.
    for n in &delivered {
        let m = b.expect_past_presence("shout").await;
        assert_eq!(&json_of(&m)["n"], n);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn joins_past_the_room_limit_or_with_long_names_get_error_replies() {
    let server = start(phoenix_config(|c| {
        c.phoenix_max_room_members = 2;
        c.phoenix_max_name_length = 20;
    }))
    .await;
    let mut a = Phx::connect(&server, Vsn::V2).await;
    let mut b = Phx::connect(&server, Vsn::V2).await;
    let mut c = Phx::connect(&server, Vsn::V2).await;
    let (a_join, _) = a.join("room:full", "ada").await;
    b.join("room:full", "bob").await;
    let refused = |m: &Message| json_of(m)["response"]["reason"].as_str().unwrap_or_default().to_owned();
    c.push(None, "room:full", "phx_join", json!({ "username": "cy" })).await;
    assert_eq!(refused(&c.expect("phx_reply").await), "room is full: at most 2 members");
    c.push(None, &format!("room:{}", "t".repeat(20)), "phx_join", json!({ "username": "cy" })).await;
    assert_eq!(refused(&c.expect("phx_reply").await), "topic and username are limited to 20 bytes");
    c.push(None, "room:other", "phx_join", json!({ "username": "c".repeat(21) })).await;
    assert_eq!(refused(&c.expect("phx_reply").await), "topic and username are limited to 20 bytes");
    assert_eq!(server.phoenix_rooms().usernames("room:full"), ["ada", "bob"]);
    // A member leaves: there is room again.
    a.push(Some(&a_join), "room:full", "phx_leave", json!({})).await;
    eventually(|| server.phoenix_rooms().usernames("room:full") == ["bob"]).await;
    c.join("room:full", "cy").await;
    assert_eq!(server.phoenix_rooms().usernames("room:full"), ["bob", "cy"]);
    server.shutdown().await;
}

#[tokio::test]
async fn phoenix_sockets_count_against_the_server_connection_limit() {
    let server = start(phoenix_config(|c| c.max_connections = 2)).await;
    let first = Phx::connect(&server, Vsn::V2).await;
    let _pusher = Client::connect(&server).await; // the limit is server-wide, across protocols
    let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.local_addr());
    let refused = ClientBuilder::new().uri(&url).expect("uri").connect().await;
    match refused {
        Err(tokio_websockets::Error::Upgrade(e)) => assert!(e.to_string().contains("503"), "{e}"),
        other => panic!("expected HTTP 503, got {:?}", other.map(|_| ())),
    }
    // A slot freed by a closing socket is reused.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if ClientBuilder::new().uri(&url).expect("uri").connect().await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_member_that_stops_reading_is_closed_and_counted_while_the_room_goes_on() {
    let server = start(phoenix_config(|c| {
        c.max_queued_messages = 8;
        c.phoenix_max_payload = 70_000;
        c.phoenix_message_rate = 100_000;
    }))
    .await;
    // The sleeper joins, then never reads again; a small receive buffer fills fast.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4_096).expect("rcvbuf");
    let stream = socket.connect(server.local_addr()).await.expect("connect");
    let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.local_addr());
    let (ws, _) =
        ClientBuilder::new().uri(&url).expect("uri").connect_on(MaybeTlsStream::Plain(stream)).await.expect("ws");
    let mut sleeper = Phx { ws, vsn: Vsn::V2, next_ref: 0 };
    sleeper.join("room:flood", "sleepy").await;
    let mut shouter = Phx::connect(&server, Vsn::V2).await;
    let (join_ref, _) = shouter.join("room:flood", "loud").await;
    // Shout 60 KB messages, reading each echo, until the server gives up on the sleeper.
    let body = "x".repeat(60_000);
    let mut sent = 0;
    while server.metrics().slow_consumer_disconnects.get() == 0 {
        assert!(sent < 2_000, "the sleeper was never closed");
        shouter.push(Some(&join_ref), "room:flood", "shout", json!({ "n": sent, "body": body })).await;
        let echo = shouter.expect_past_presence("shout").await;
        assert_eq!(json_of(&echo)["n"], sent, "the shouter gets every shout, in order");
        sent += 1;
    }
    // The sleeper left the room (its leave was broadcast), and the room goes on.
    eventually(|| server.phoenix_rooms().usernames("room:flood") == ["loud"]).await;
    shouter.push(Some(&join_ref), "room:flood", "shout", json!({ "n": sent, "body": "after" })).await;
    assert_eq!(json_of(&shouter.expect_past_presence("shout").await)["n"], sent);
    assert!(server.metrics().render().contains("switchboard_slow_consumer_disconnects_total 1"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_socket_joins_at_most_phoenix_max_channels_rooms() {
    let server = start(phoenix_config(|c| c.phoenix_max_channels = 2)).await;
    let mut a = Phx::connect(&server, Vsn::V2).await;
    a.join("room:one", "ada").await;
    a.expect("presence_diff").await; // its own join
    a.join("room:two", "ada").await;
    a.push(None, "room:three", "phx_join", json!({ "username": "ada" })).await;
    let reply = a.expect_past_presence("phx_reply").await;
    assert_eq!(json_of(&reply)["response"]["reason"], "too many channels joined");
    assert!(server.phoenix_rooms().usernames("room:three").is_empty());
    server.shutdown().await;
}
