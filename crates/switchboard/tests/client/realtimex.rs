//! The client speaking RealtimeX (Socket.IO) to `switchboard serve`: channels, presence,
//! client events with Pusher clients on the same channels, every authorizer, acks, and the
//! faults the Pusher client is tested with (restart, freeze, auth failures, races), plus the
//! RealtimeX close rules (a server `41` and a CONNECT_ERROR stop; `disconnect()` stays).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};
use switchboard::{
    ChannelAuth, Client, ClientOptionsBuilder, ConnectionState, ErrorKind, FnAuthorizer, GAP_EVENT, HttpAuthorizer,
    PresenceUser, Protocol, realtimex,
};
use switchboard_server::{AppConfig, RunningServer, Server, ServerConfig};

use crate::common::*;

fn rtx_options(addr: std::net::SocketAddr) -> ClientOptionsBuilder {
    realtimex::options(KEY)
        .host(addr.ip().to_string())
        .port(addr.port())
        .tls(false)
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(400))
        .subscribe_timeout(WAIT)
}

async fn rtx_connect(server: &RunningServer) -> Client {
    let options = rtx_options(server.local_addr()).secret(SECRET).build().expect("options");
    tokio::time::timeout(WAIT, Client::connect(options)).await.expect("connect in time").expect("connects")
}

fn heartbeat_config(port: u16, ping_ms: u64, timeout_ms: u64) -> ServerConfig {
    ServerConfig { realtimex_ping_interval_ms: ping_ms, realtimex_ping_timeout_ms: timeout_ms, ..config(port, app()) }
}

#[tokio::test]
async fn subscribe_before_connect_then_publishes_arrive_in_order() {
    let server = server().await;
    let client = Client::new(rtx_options(server.local_addr()).build().expect("options"));
    assert_eq!(client.options().protocol(), Protocol::RealtimeX);
    // Asked before the connection exists: queued, sent once connected.
    let news = tokio::time::timeout(WAIT, client.subscribe("news")).await.expect("in time").expect("subscribed");
    let mut events = news.events();
    let socket_id = client.socket_id().expect("connected");
    let (left, right) = socket_id.split_once('.').expect("a Pusher socket id");
    assert!(left.parse::<u64>().is_ok() && right.parse::<u64>().is_ok(), "{socket_id}");
    let publisher = publisher(&server);
    for n in 0..50 {
        publisher.trigger(&["news"], "tick", &json!({ "n": n }), None).await.expect("trigger");
    }
    for n in 0..50 {
        let event = next_named(&mut events, "tick").await;
        assert_eq!(event.channel(), Some("news"));
        assert_eq!(event.json::<Value>().expect("json")["n"], n, "in order");
    }
    publisher.trigger(&["news"], "plain", &"just text", None).await.expect("trigger");
    assert_eq!(next_named(&mut events, "plain").await.data(), Some("just text"));
    // An ack from the server, through the raw Socket.IO API.
    let answer = client.emit_with_ack("realtimex:ping", json!({})).await.expect("acked");
    assert_eq!(answer, json!({ "ok": true }));
    let refused = client.emit_with_ack("no-such-event", json!({})).await.expect("acked");
    assert_eq!((refused["ok"].clone(), refused["code"].clone()), (json!(false), json!(4300)));
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("news").subscription_count, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn presence_and_client_events_are_shared_with_pusher_clients() {
    let server = server().await;
    let pusher = connect(&server).await;
    let rtx = rtx_connect(&server).await;
    let ada_room = pusher
        .subscribe_presence("presence-room", PresenceUser::new("ada", json!({ "name": "Ada" })))
        .await
        .expect("ada");
    let mut ada_events = ada_room.events();
    let bob_room =
        rtx.subscribe_presence("presence-room", PresenceUser::new("bob", json!({ "name": "Bob" }))).await.expect("bob");
    let mut bob_events = bob_room.events();
    let members = bob_room.members();
    assert_eq!(members.count(), 2);
    assert_eq!(members.get("ada").expect("ada").info["name"], "Ada");
    assert_eq!(members.me().expect("me").id, "bob");
    let added = next_named(&mut ada_events, "pusher:member_added").await;
    assert_eq!(added.json::<Value>().expect("json")["user_id"], "bob");
    // Client events both ways, with the sender's user id.
    bob_room.trigger("typing", &json!({ "on": true })).await.expect("sent");
    let typing = next_named(&mut ada_events, "client-typing").await;
    assert_eq!((typing.user_id(), typing.data()), (Some("bob"), Some(r#"{"on":true}"#)));
    ada_room.trigger("wave", &json!({ "hand": "left" })).await.expect("sent");
    let wave = next_named(&mut bob_events, "client-wave").await;
    assert_eq!((wave.user_id(), wave.data()), (Some("ada"), Some(r#"{"hand":"left"}"#)));
    // A Pusher member joining and leaving reaches the RealtimeX roster.
    let cy = connect(&server).await;
    cy.subscribe_presence("presence-room", PresenceUser::new("cy", json!(null))).await.expect("cy");
    let added = next_named(&mut bob_events, "pusher:member_added").await;
    assert_eq!(added.json::<Value>().expect("json")["user_id"], "cy");
    assert_eq!(bob_room.members().count(), 3);
    assert_eq!(
        next_named(&mut ada_events, "pusher:member_added").await.json::<Value>().expect("json")["user_id"],
        "cy"
    );
    cy.disconnect().await;
    next_named(&mut bob_events, "pusher:member_removed").await;
    assert!(bob_room.members().get("cy").is_none());
    next_named(&mut ada_events, "pusher:member_removed").await;
    // The RealtimeX member leaves with disconnect(): Pusher members see it.
    rtx.disconnect().await;
    let removed = next_named(&mut ada_events, "pusher:member_removed").await;
    assert_eq!(removed.json::<Value>().expect("json")["user_id"], "bob");
    server.shutdown().await;
}

#[tokio::test]
async fn the_seed_style_json_auth_endpoint_signs_over_the_namespace_sid() {
    let server = server().await;
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen = bodies.clone();
    let router = axum::Router::new().route(
        "/auth",
        post(move |Json(body): Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body.clone());
                let socket_id = body["socket_id"].as_str().unwrap_or_default().to_owned();
                let channel = body["channel_name"].as_str().unwrap_or_default().to_owned();
                let channel_data = body.get("user_data").map(Value::to_string);
                let auth = switchboard_protocol::signature::sign_channel(
                    KEY,
                    SECRET,
                    &socket_id,
                    &channel,
                    channel_data.as_deref(),
                );
                Json(json!({ "auth": auth, "channel_data": channel_data }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let auth_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    let authorizer = HttpAuthorizer::new(format!("http://{auth_addr}/auth")).json_body();
    let client = Client::new(rtx_options(server.local_addr()).authorizer(authorizer).build().expect("options"));
    let private = client.subscribe("private-orders").await.expect("private");
    let room =
        client.subscribe_presence("presence-r", PresenceUser::new("7", json!({ "n": 1 }))).await.expect("presence");
    assert!(private.is_subscribed() && room.is_subscribed());
    assert_eq!(room.members().me().expect("me").id, "7");
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    let socket_id = client.socket_id().expect("socket");
    assert_eq!(bodies[0]["socket_id"], socket_id.as_str());
    assert_eq!(bodies[0]["channel_name"], "private-orders");
    assert!(bodies[0].get("user_data").is_none());
    assert_eq!(bodies[1]["user_data"], json!({ "user_id": "7", "user_info": { "n": 1 } }));
    server.shutdown().await;
}

#[tokio::test]
async fn auth_failures_fail_that_subscribe_and_nothing_else() {
    let server = server().await;
    // A closure that signs for another socket id: the server refuses it (401).
    let forger = FnAuthorizer::new(|req| async move {
        let auth = switchboard_protocol::signature::sign_channel(KEY, SECRET, "1.1", &req.channel, None);
        Ok(ChannelAuth { auth, channel_data: None, shared_secret: None })
    });
    let client = Client::new(rtx_options(server.local_addr()).authorizer(forger).build().expect("options"));
    let news = client.subscribe("news").await.expect("public needs no auth");
    let error = client.subscribe("private-x").await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::Subscription);
    assert_eq!(error.code(), Some(401));
    assert!(error.message().contains("Invalid signature"), "{error}");
    // A dead auth endpoint: a typed error, the connection and the other channel stay.
    let dead = HttpAuthorizer::new("http://127.0.0.1:9/auth").attempts(1).json_body();
    let other = Client::new(rtx_options(server.local_addr()).authorizer(dead).build().expect("options"));
    let error = other.subscribe("private-y").await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::Authentication);
    // Sign-in is a Pusher feature.
    assert_eq!(client.signin().await.expect_err("refused").kind(), ErrorKind::InvalidRequest);
    let mut events = news.events();
    publisher(&server).trigger(&["news"], "still", &"here", None).await.expect("trigger");
    next_named(&mut events, "still").await;
    assert!(matches!(client.state(), ConnectionState::Connected { .. }));
    server.shutdown().await;
}

#[tokio::test]
async fn a_restart_resubscribes_with_fresh_auth_and_signals_a_gap() {
    let first = Server::start(config(0, app())).await.expect("server");
    let port = first.local_addr().port();
    let (signer, calls) = counting_signer(usize::MAX, Duration::ZERO);
    let client = Client::new(rtx_options(first.local_addr()).authorizer(signer).build().expect("options"));
    let news = client.subscribe("news").await.expect("news");
    let private = client.subscribe("private-feed").await.expect("private");
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    news.bind("update", move |_| {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let mut news_events = news.events();
    let mut private_events = private.events();
    let old_socket = client.socket_id().expect("socket");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    first.shutdown().await; // a plain close: RealtimeX clients reconnect
    eventually(WAIT, || !matches!(client.state(), ConnectionState::Connected { .. })).await;
    let second = Server::start(config(port, app())).await.expect("restarted on the same port");
    let new_socket = tokio::time::timeout(WAIT, client.connected()).await.expect("reconnects").expect("connected");
    assert_ne!(new_socket, old_socket);
    next_named(&mut news_events, GAP_EVENT).await;
    next_named(&mut private_events, GAP_EVENT).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "signed again, for the new socket id");
    let publisher = publisher(&second);
    publisher.trigger(&["news"], "update", &"after", None).await.expect("trigger");
    publisher.trigger(&["private-feed"], "update", &"private after", None).await.expect("trigger");
    assert_eq!(next_named(&mut news_events, "update").await.data(), Some("after"));
    assert_eq!(next_named(&mut private_events, "update").await.data(), Some("private after"));
    eventually(WAIT, || handled.load(Ordering::SeqCst) == 1).await;
    assert_eq!(second.app(APP_ID).expect("app").channel_counts("news").subscription_count, 1, "no duplicate");
    second.shutdown().await;
}

#[tokio::test]
async fn a_frozen_server_is_detected_from_ping_interval_plus_timeout() {
    let server = Server::start(heartbeat_config(0, 200, 300)).await.expect("server");
    let proxy = Proxy::start(server.local_addr()).await;
    let options = rtx_options(proxy.addr).connect_timeout(Duration::from_secs(1)).build().expect("options");
    let client = Client::connect(options).await.expect("connects through the proxy");
    let channel = client.subscribe("news").await.expect("subscribed");
    let mut events = channel.events();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(matches!(client.state(), ConnectionState::Connected { .. }), "answered pings keep the link up");
    let frozen_at = tokio::time::Instant::now();
    proxy.freeze(true);
    eventually(Duration::from_secs(5), || !matches!(client.state(), ConnectionState::Connected { .. })).await;
    let detected = frozen_at.elapsed();
    assert!(detected >= Duration::from_millis(300), "not before the heartbeat allows ({detected:?})");
    proxy.freeze(false);
    tokio::time::timeout(Duration::from_secs(10), client.connected()).await.expect("reconnects").expect("connected");
    next_named(&mut events, GAP_EVENT).await;
    publisher(&server).trigger(&["news"], "back", &"1", None).await.expect("trigger");
    next_named(&mut events, "back").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_disconnect_stops_the_client_and_disconnect_stays_disconnected() {
    let server = server().await;
    let kicked = rtx_connect(&server).await;
    kicked.subscribe_presence("presence-r", PresenceUser::new("42", json!({}))).await.expect("joined");
    let mut states = kicked.state_changes();
    let (status, _) = signed_post(&server, "/apps/1000/users/42/terminate_connections").await;
    assert_eq!(status, 200);
    let state = tokio::time::timeout(WAIT, states.wait_for(ConnectionState::is_final)).await.expect("in time");
    let state = state.expect("state").clone();
    assert!(matches!(state, ConnectionState::Failed { code: Some(4009), .. }), "{state:?}");
    // It does not come back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app = server.app(APP_ID).expect("app");
    assert_eq!(app.connection_count(), 0);

    let leaving = rtx_connect(&server).await;
    leaving.subscribe("news").await.expect("news");
    assert_eq!(app.connection_count(), 1);
    leaving.disconnect().await;
    assert_eq!(leaving.state(), ConnectionState::Disconnected);
    eventually(WAIT, || app.connection_count() == 0 && app.channel_counts("news").subscription_count == 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.connection_count(), 0, "disconnect() does not reconnect (the seed's bug)");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_key_fails_at_once_with_4001() {
    let server = server().await;
    let options = realtimex::options("no-such-key")
        .host(server.local_addr().ip().to_string())
        .port(server.local_addr().port())
        .tls(false)
        .build()
        .expect("options");
    let client = Client::new(options);
    let error = tokio::time::timeout(WAIT, client.connected()).await.expect("in time").expect_err("refused");
    assert_eq!(error.code(), Some(4001), "{error}");
    assert!(matches!(client.state(), ConnectionState::Failed { code: Some(4001), .. }));
    server.shutdown().await;
}

#[tokio::test]
async fn bursts_reach_a_slow_consumer_whole_and_in_order() {
    let config = config(0, AppConfig { max_batch_size: 100, ..app() });
    let server = Server::start(config).await.expect("server");
    let client = rtx_connect(&server).await;
    let channel = client.subscribe("burst").await.expect("subscribed");
    let mut events = channel.events();
    let publisher = publisher(&server);
    const BATCHES: usize = 30;
    let sending = tokio::spawn(async move {
        for batch in 0..BATCHES {
            let events: Vec<switchboard::BatchEvent> = (0..100)
                .map(|i| switchboard::BatchEvent {
                    channel: "burst".into(),
                    name: "n".into(),
                    data: (batch * 100 + i).to_string(),
                    socket_id: None,
                })
                .collect();
            publisher.trigger_batch(&events).await.expect("batch");
        }
    });
    for expected in 0..BATCHES * 100 {
        let event = next_named(&mut events, "n").await;
        assert_eq!(event.json::<usize>().expect("number"), expected, "in order, none lost");
        if expected % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    sending.await.expect("sent");
    assert_eq!(client.dropped_events(), 0);
    server.shutdown().await;
}

/// A signed POST to the HTTP API of the test app.
async fn signed_post(server: &RunningServer, path: &str) -> (u16, Value) {
    let body = "{}";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let params =
        switchboard_protocol::http_auth::sign_request(KEY, SECRET, "POST", path, &[], Some(body.as_bytes()), now);
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!("http://{}{path}?{}", server.local_addr(), query.join("&"));
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("response");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn subscribe_unsubscribe_subscribe_races_end_subscribed_once() {
    let server = server().await;
    let client = rtx_connect(&server).await;
    let app = server.app(APP_ID).expect("app");
    for round in 0..20 {
        // Private too: its subscribe waits for the authorizer, a wider window for the race.
        let name = if round % 2 == 0 { format!("race-{round}") } else { format!("private-race-{round}") };
        let first = {
            let client = client.clone();
            let name = name.clone();
            tokio::spawn(async move { client.subscribe(&name).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        client.unsubscribe(&name).await;
        let channel = client.subscribe(&name).await.expect("second subscribe");
        let _ = first.await;
        assert!(channel.is_subscribed());
        eventually(WAIT, || app.channel_counts(&name).subscription_count == 1).await;
        client.unsubscribe(&name).await;
        eventually(WAIT, || app.channel_counts(&name).subscription_count == 0).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_ack_awaited_when_the_connection_drops_fails_and_is_not_resent() {
    // A server that takes the CONNECT and never answers anything else, then goes away.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        let mut round = 0;
        while let Ok((stream, _)) = listener.accept().await {
            round += 1;
            let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(stream).await else { continue };
            let open = r#"0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
            let _ = ws.send(tokio_websockets::Message::text(open)).await;
            while let Some(Ok(message)) = ws.next().await {
                let Some(text) = message.as_text() else { continue };
                if text == "40" {
                    let _ = ws.send(tokio_websockets::Message::text(r#"40{"sid":"n1"}"#)).await;
                } else if text.contains("will-not-answer") {
                    seen.fetch_add(1, Ordering::SeqCst);
                    if round == 1 {
                        break; // drop the connection with the ack outstanding
                    }
                }
            }
        }
    });
    let client = Client::new(rtx_options(addr).build().expect("options"));
    client.connected().await.expect("connected");
    let error = client.emit_with_ack("will-not-answer", json!({})).await.expect_err("no ack");
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    client.connected().await.expect("reconnected");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.load(Ordering::SeqCst), 1, "never re-sent after the reconnect");
    client.disconnect().await;
}

#[tokio::test]
async fn a_slow_consumer_holds_the_socket_without_the_server_giving_up() {
    // Heartbeat 300 / 200 ms: while the full stream keeps the reader from reading, the
    // server's pings wait unread; the client's unasked pongs keep the session alive.
    let server = Server::start(heartbeat_config(0, 300, 200)).await.expect("server");
    let options = rtx_options(server.local_addr()).event_queue(16).build().expect("options");
    let client = Client::connect(options).await.expect("connects");
    let socket_id = client.socket_id().expect("socket");
    let channel = client.subscribe("slow").await.expect("subscribed");
    let mut events = channel.events();
    let publisher = publisher(&server);
    for n in 0..200 {
        publisher.trigger(&["slow"], "n", &n, None).await.expect("trigger");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // five heartbeats, nothing read
    for expected in 0..200 {
        let event = next_named(&mut events, "n").await;
        assert_eq!(event.json::<u64>().expect("number"), expected, "in order, none lost");
    }
    none_named(&mut events, GAP_EVENT, 300).await;
    assert_eq!(client.socket_id().as_deref(), Some(socket_id.as_str()), "the same session all along");
    server.shutdown().await;
}
