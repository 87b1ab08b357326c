//! The Phoenix client against the Phoenix endpoint of `switchboard serve`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchboard::ErrorKind;
use switchboard::phoenix::{Socket, SocketOptions, Vsn};
use switchboard_server::Server;

use crate::common::*;

fn options(addr: std::net::SocketAddr) -> SocketOptions {
    SocketOptions::new(format!("ws://{addr}/socket"))
        .timeout(Duration::from_secs(3))
        .reconnect_after(|_| Duration::from_millis(50))
        .rejoin_after(|_| Duration::from_millis(100))
}

#[tokio::test]
async fn join_presence_typing_shout_between_v2_and_v1_clients() {
    let server = server().await;
    let ada = Socket::connect(options(server.local_addr())).await.expect("ada connects");
    let bob = Socket::connect(options(server.local_addr()).vsn(Vsn::V1)).await.expect("bob connects (V1)");
    let room_a = ada.channel("room:lobby", json!({"username": "ada"}));
    let joins = Arc::new(Mutex::new(Vec::new()));
    let log = joins.clone();
    room_a.presence().on_join(move |key, _, _| log.lock().expect("lock").push(key.to_owned()));
    let mut a_events = room_a.events();
    room_a.join().await.expect("ada joins");
    let room_b = bob.channel("room:lobby", json!({"username": "bob"}));
    let mut b_events = room_b.events();
    room_b.join().await.expect("bob joins");

    eventually(WAIT, || room_a.presence().list().contains_key("bob") && room_b.presence().list().contains_key("ada"))
        .await;
    // Handlers run on the application's runtime, after the roster changed on the I/O thread.
    eventually(WAIT, || joins.lock().expect("lock").contains(&"bob".to_string())).await;

    let reply = room_b.push("user:typing", json!({"username": "bob", "typing": true})).await.expect("typing ok");
    assert_eq!(reply, json!({}));
    eventually(WAIT, || room_a.presence().list()["bob"]["metas"][0]["typing"] == true).await;
    assert_eq!(
        room_a.presence().list()["bob"]["metas"].as_array().map(Vec::len),
        Some(1),
        "an update replaces the meta"
    );

    room_a
        .push("shout", json!({"body": "hi", "name": "ada", "channel": "lobby"}))
        .await
        .expect_err("shout has no reply: times out");
    let shout = next_named(&mut b_events, "shout").await;
    assert_eq!(shout.json::<serde_json::Value>().expect("json")["body"], "hi");
    next_named(&mut a_events, "shout").await; // the sender hears it too

    let pong = room_a.push("ping", json!({"n": 7})).await.expect("ping replies");
    assert_eq!(pong, json!({"n": 7}));
    room_b.leave().await.expect("leave");
    eventually(WAIT, || !room_a.presence().list().contains_key("bob")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn refused_and_unmatched_joins() {
    let server = server().await;
    let socket = Socket::connect(options(server.local_addr())).await.expect("connects");
    let nowhere = socket.channel("nope:1", json!({"username": "x"}));
    let err = nowhere.join().await.expect_err("unmatched topic");
    assert!(err.to_string().contains("unmatched topic"), "{err}");
    let anonymous = socket.channel("room:x", json!({}));
    let err = anonymous.join().await.expect_err("needs a username");
    assert_eq!(err.kind(), ErrorKind::Subscription);
    assert!(err.to_string().contains("username"), "{err}");
    anonymous.leave().await.expect("leave stops the rejoins");
    server.shutdown().await;
}

#[tokio::test]
async fn pushes_before_the_join_are_sent_after_it() {
    let server = server().await;
    let socket = Socket::connect(options(server.local_addr())).await.expect("connects");
    let room = socket.channel("room:buffered", json!({"username": "early"}));
    // The push is made while the join is in flight: it waits for the join, then goes out.
    let (joined, early) = tokio::join!(room.join(), room.push("ping", json!({"early": true})));
    joined.expect("joins");
    assert_eq!(early.expect("the buffered push got its reply"), json!({"early": true}));
    let stray = socket.channel("room:never-joined", json!({"username": "x"}));
    assert_eq!(stray.push("ping", json!({})).await.expect_err("not joined").kind(), ErrorKind::InvalidRequest);
    server.shutdown().await;
}

#[tokio::test]
async fn server_restart_rejoins_and_rebuilds_presence() {
    let first = Server::start(config(0, app())).await.expect("server");
    let port = first.local_addr().port();
    let socket = Socket::connect(options(first.local_addr())).await.expect("connects");
    let room = socket.channel("room:restart", json!({"username": "ada"}));
    room.join().await.expect("joins");
    eventually(WAIT, || room.presence().list().contains_key("ada")).await;
    first.shutdown().await;
    let second = Server::start(config(port, app())).await.expect("restarted");
    let rooms = second.phoenix_rooms();
    eventually(Duration::from_secs(10), || rooms.usernames("room:restart") == vec!["ada"]).await;
    eventually(WAIT, || room.presence().list().contains_key("ada")).await;
    assert_eq!(room.push("ping", json!({"after": "restart"})).await.expect("works again"), json!({"after": "restart"}));
    second.shutdown().await;
}

#[tokio::test]
async fn a_frozen_server_is_noticed_by_the_heartbeat() {
    let server = server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let socket = Socket::connect(options(proxy.addr).heartbeat(Duration::from_millis(500))).await.expect("connects");
    let room = socket.channel("room:hb", json!({"username": "ada"}));
    room.join().await.expect("joins");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(socket.state(), switchboard::ConnectionState::Connected { .. }), "heartbeats keep it up");
    proxy.freeze(true);
    eventually(Duration::from_secs(3), || !matches!(socket.state(), switchboard::ConnectionState::Connected { .. }))
        .await;
    proxy.freeze(false);
    eventually(Duration::from_secs(10), || matches!(socket.state(), switchboard::ConnectionState::Connected { .. }))
        .await;
    assert_eq!(room.push("ping", json!({"n": 1})).await.expect("rejoined"), json!({"n": 1}));
    server.shutdown().await;
}

#[tokio::test]
async fn the_official_phoenix_client_and_ours_share_a_room() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    assert!(
        std::path::Path::new(&format!("{root}/interop/node_modules/phoenix")).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let server = server().await;
    let socket = Socket::connect(options(server.local_addr())).await.expect("connects");
    let room = socket.channel("room:lobby", json!({"username": "rust"}));
    let mut events = room.events();
    let mut presence_events = room.events();
    room.join().await.expect("joins");
    let addr = server.local_addr();
    let node = tokio::process::Command::new("node")
        .arg("interop/phoenix-peer.mjs")
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    eventually(WAIT, || room.presence().list().contains_key("js")).await;
    room.push("user:typing", json!({"username": "rust", "typing": true})).await.expect("typing ok");
    let _ = room.push("shout", json!({"body": "hi from rust", "channel": "lobby", "name": "rust"})).await;
    loop {
        let event = next_named(&mut events, "shout").await;
        if event.json::<serde_json::Value>().expect("json")["name"] == "js" {
            break;
        }
    }
    // js's typing shows in our presence (it may have left again by now: look at the events).
    loop {
        let event = next_named(&mut presence_events, "presence:join").await;
        let data: serde_json::Value = event.json().expect("json");
        if data["key"] == "js" && data["joined"]["metas"][0]["typing"] == true {
            break;
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(20), node.wait_with_output())
        .await
        .expect("node ends")
        .expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "phoenix peer failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("OK: members") && stdout.contains("\"rust\""), "{stdout}");
    server.shutdown().await;
}

#[tokio::test]
async fn binary_frames_both_ways() {
    let server = server().await;
    let a = Socket::connect(options(server.local_addr())).await.expect("a connects");
    let b = Socket::connect(options(server.local_addr())).await.expect("b connects");
    let room_a = a.channel("room:bin", json!({"username": "a"}));
    let room_b = b.channel("room:bin", json!({"username": "b"}));
    room_a.join().await.expect("a joins");
    room_b.join().await.expect("b joins");
    let mut b_events = room_b.events();
    // A binary ping gets a binary reply (V2 binary reply frame).
    assert_eq!(room_a.push_binary("ping", vec![0, 1, 2, 255]).await.expect("binary reply"), vec![0, 1, 2, 255]);
    // A binary shout reaches the room as a binary broadcast.
    let _ = room_a.push_binary("shout", b"raw bytes".to_vec()).await;
    let shout = next_named(&mut b_events, "shout").await;
    assert_eq!((shout.data(), shout.binary().map(|b| &b[..])), (None, Some(&b"raw bytes"[..])));
    // V1 sockets cannot carry binary frames.
    let v1 = Socket::connect(options(server.local_addr()).vsn(Vsn::V1)).await.expect("v1 connects");
    let room_v1 = v1.channel("room:bin", json!({"username": "c"}));
    room_v1.join().await.expect("joins");
    assert_eq!(room_v1.push_binary("ping", vec![1]).await.expect_err("needs V2").kind(), ErrorKind::InvalidRequest);
    server.shutdown().await;
}

#[tokio::test]
async fn the_auth_token_subprotocol_is_accepted() {
    let server = server().await;
    let socket = Socket::connect(
        options(server.local_addr()).auth_token("secret token").params_fn(|| vec![("v".into(), "1".into())]),
    )
    .await
    .expect("the server answers the phoenix subprotocol");
    let room = socket.channel("room:tok", json!({"username": "t"}));
    room.join().await.expect("joins");
    server.shutdown().await;
}

#[tokio::test]
async fn a_crashed_channel_is_rejoined_with_a_new_join_ref_and_fresh_presence() {
    let server = server().await;
    let socket = Socket::connect(options(server.local_addr())).await.expect("connects");
    let room = socket.channel("room:crash", json!({"username": "ada"}));
    let mut events = room.events();
    room.join().await.expect("joins");
    eventually(WAIT, || room.presence().list().contains_key("ada")).await;
    // An event the room has no handler for crashes it on the server (as Hub's does).
    let _ = room.push("no-such-event", json!({})).await;
    let error = next_named(&mut events, "phx_error").await;
    assert_eq!(error.json::<serde_json::Value>().expect("json")["reason"], "channel_crash");
    // The client rejoins on its own and the server tracks it again.
    let rooms = server.phoenix_rooms();
    eventually(WAIT, || rooms.usernames("room:crash") == vec!["ada"]).await;
    assert_eq!(room.push("ping", json!({"back": true})).await.expect("rejoined"), json!({"back": true}));
    eventually(WAIT, || room.presence().list().contains_key("ada")).await;
    server.shutdown().await;
}

/// A minimal V2 peer for the one behaviour our server never produces: a message carrying a
/// `join_ref` that is not the current one must be dropped by the client.
#[tokio::test]
async fn messages_for_an_earlier_join_are_dropped() {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (_, mut ws) = tokio_websockets::ServerBuilder::new().accept(stream).await.expect("upgrade");
        while let Some(Ok(frame)) = ws.next().await {
            let Some(text) = frame.as_text() else { continue };
            let join: serde_json::Value = serde_json::from_str(text).expect("json");
            if join[3] == "phx_join" {
                let (jr, topic) = (join[0].clone(), join[2].clone());
                for frame in [
                    json!([jr, join[1], topic, "phx_reply", {"status": "ok", "response": {}}]),
                    json!(["999", null, topic, "shout", {"which": "stale"}]),
                    json!([jr, null, topic, "shout", {"which": "current"}]),
                    json!([null, null, topic, "shout", {"which": "broadcast"}]),
                ] {
                    ws.send(tokio_websockets::Message::text(frame.to_string())).await.expect("send");
                }
            }
        }
    });
    let socket = Socket::connect(options(addr)).await.expect("connects");
    let room = socket.channel("room:refs", json!({}));
    let mut events = room.events();
    room.join().await.expect("joins");
    let first = next_named(&mut events, "shout").await;
    let second = next_named(&mut events, "shout").await;
    let which = |e: &switchboard::Event| e.json::<serde_json::Value>().expect("json")["which"].clone();
    assert_eq!((which(&first), which(&second)), (json!("current"), json!("broadcast")), "the stale one was dropped");
    socket.disconnect().await;
}

#[tokio::test]
async fn a_message_over_max_message_size_reconnects_and_rejoins() {
    let mut config = config(0, app());
    config.phoenix_max_payload = 200_000;
    let server = Server::start(config).await.expect("server");
    let ada = Socket::connect(options(server.local_addr()).max_message_size(16 * 1024)).await.expect("ada");
    // Every state ada goes through, from here on.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut states = ada.state_changes();
    let log = seen.clone();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            log.lock().expect("lock").push(state);
        }
    });
    let bob = Socket::connect(options(server.local_addr())).await.expect("bob");
    let room_a = ada.channel("room:big", json!({"username": "ada"}));
    let mut a_events = room_a.events();
    room_a.join().await.expect("ada joins");
    let room_b = bob.channel("room:big", json!({"username": "bob"}));
    let mut b_events = room_b.events();
    room_b.join().await.expect("bob joins");
    let _ = room_b.push("shout", json!({"body": "x".repeat(40_000)})).await; // no reply: times out
    next_named(&mut b_events, "shout").await; // bob takes it
    // Ada's socket refused it (1009), reconnected and rejoined; then the room goes on.
    let reconnected = |states: &[switchboard::ConnectionState]| {
        let dropped = states.iter().position(|s| !matches!(s, switchboard::ConnectionState::Connected { .. }));
        dropped
            .is_some_and(|at| states[at..].iter().any(|s| matches!(s, switchboard::ConnectionState::Connected { .. })))
    };
    eventually(WAIT, || reconnected(&seen.lock().expect("lock"))).await;
    next_named(&mut a_events, "presence_state").await; // the first join's
    next_named(&mut a_events, "presence_state").await; // the rejoin's
    let _ = room_b.push("shout", json!({"body": "after"})).await;
    let after = next_named(&mut a_events, "shout").await;
    assert_eq!(after.json::<serde_json::Value>().expect("json")["body"], "after");
    server.shutdown().await;
}
