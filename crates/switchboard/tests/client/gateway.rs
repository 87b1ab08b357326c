//! The gateway client against `switchboard serve`'s gateway endpoint: sessions, topics,
//! acks and replies (and their races), wildcards, compressed frames, the offline queue,
//! and the faults: a server restart, a frozen server, a forbidden topic, a missing ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::gateway::{GatewayClient, GatewayOptions, Incoming, PublishOptions, SUBSCRIPTION_ERROR_EVENT};
use switchboard::{Backoff, ConnectionState, ErrorKind, Event, EventStream};
use switchboard_protocol::gateway::jwt::{self, Algorithm};
use switchboard_server::{AppConfig, RunningServer, Server};

use crate::common::{APP_ID, Proxy, SECRET, WAIT, app, config, eventually};

const ALL: &str = "realtime:publisher:write:topic:*";
const INBOUND: &str = "realtime:subscriber:read:topic:secure/inbound";

fn token(claims: &Value) -> String {
    jwt::sign(claims, SECRET.as_bytes(), Algorithm::Hs256)
}

fn options(addr: std::net::SocketAddr, claims: Value) -> GatewayOptions {
    GatewayOptions::with_sync_url_provider(move || {
        Ok(format!("ws://{addr}/apps/{APP_ID}?access_token={}", token(&claims)))
    })
    .backoff(Backoff::new(Duration::from_millis(50), Duration::from_millis(300)))
}

async fn connect(server: &RunningServer, claims: Value) -> GatewayClient {
    GatewayClient::connect(options(server.local_addr(), claims)).await.expect("gateway session")
}

async fn next(stream: &mut EventStream) -> Event {
    tokio::time::timeout(WAIT, stream.recv()).await.expect("an event in time").expect("stream open")
}

/// The next event whose name is not `ack` (acks reach listeners too, as in the SDKs).
async fn next_message(stream: &mut EventStream) -> Incoming {
    loop {
        let event = next(stream).await;
        if event.name() != "ack" {
            return Incoming::from_event(&event).expect("a delivery");
        }
    }
}

/// Give the server time to apply subscribes (the protocol confirms none).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn session_topics_publish_ack_and_wildcards() {
    let server = Server::start(config(0, app())).await.expect("server");
    let publisher = connect(&server, json!({"sub": "ada", "permissions": [ALL]})).await;
    let reader = connect(&server, json!({"sub": "bob"})).await;
    let info = publisher.connection_info().expect("info");
    assert!(info.id.len() == 12 && info.app_id == APP_ID, "{info:?}");
    let mut on_reader = reader.events("chat.*");
    let mut echo = publisher.events("chat.**");
    publisher.subscribe("chat").expect("subscribe");
    reader.subscribe("chat").expect("subscribe");
    settle().await;
    let mut pending =
        publisher.publish("chat", &json!({"text": "hi"}), PublishOptions::new().message_type("text")).expect("publish");
    pending.ack().await.expect("acked");
    let got = next_message(&mut on_reader).await;
    assert_eq!((got.topic.as_str(), got.message_type.as_str(), got.subject.as_deref()), ("chat", "text", Some("ada")));
    assert_eq!(
        (got.payload.clone(), got.id.as_deref(), got.compressed),
        (json!({"text": "hi"}), Some(pending.id()), false)
    );
    assert_eq!(got.connection_id.as_deref(), Some(info.id.as_str()));
    assert_eq!(next_message(&mut echo).await.payload, json!({"text": "hi"}), "the sender gets its own message");
    // Compressed: a binary frame, flagged.
    publisher.publish("chat", &json!(1), PublishOptions::new().compress(true)).expect("publish");
    let zipped = next_message(&mut on_reader).await;
    assert!(zipped.compressed && zipped.message_type == "broadcast");
    // Unsubscribed: nothing more.
    reader.unsubscribe("chat").expect("unsubscribe");
    settle().await;
    publisher.publish("chat", &json!(2), PublishOptions::new()).expect("publish").ack().await.expect("acked");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), on_reader.recv()).await.is_err(),
        "nothing after unsubscribe"
    );
    publisher.disconnect().await;
    reader.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn request_and_reply_between_two_clients_and_answers_that_come_before_the_await() {
    let server = Server::start(config(0, app())).await.expect("server");
    let backend =
        connect(&server, json!({"sub": "backend", "permissions": [INBOUND, "realtime:publisher:write:topic:priv/*"]}))
            .await;
    backend.subscribe("secure/inbound").expect("subscribe");
    settle().await;
    let replier = backend.clone();
    backend.on("secure/inbound.gettime", move |event| {
        let incoming = Incoming::from_event(event).expect("delivery");
        replier.reply(&incoming, &json!({"time": "12:00", "asked": incoming.payload}), "ok").expect("reply");
    });
    let caller = connect(&server, json!({"sub": "caller"})).await;
    let mut pending =
        caller.request(&json!({"tz": "UTC"}), PublishOptions::new().message_type("gettime")).expect("request");
    // The ack and the reply both arrive before either is awaited: the waiters were
    // registered before the frame went out, so neither is lost.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pending.ack().await.expect("acked");
    let answer = pending.reply().await.expect("replied");
    assert_eq!((answer.status.as_str(), answer.data.clone()), ("ok", json!({"time": "12:00", "asked": {"tz": "UTC"}})));
    // A reply to a wildcard listener: `*.response` sees it too.
    let mut responses = caller.events("*.response");
    caller
        .request(&json!({}), PublishOptions::new().message_type("gettime"))
        .expect("request")
        .reply()
        .await
        .expect("reply");
    let seen = Incoming::from_event(&next(&mut responses).await).expect("delivery");
    assert_eq!(seen.topic, format!("priv/{}", caller.connection_info().expect("info").id));
    caller.disconnect().await;
    backend.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_ack_times_out_naming_the_setting_and_dropping_a_pending_cancels_it() {
    let server = Server::start(config(0, AppConfig { gateway_inbound_ack: false, ..app() })).await.expect("server");
    let client = GatewayClient::connect(
        options(server.local_addr(), json!({"permissions": [ALL]})).ack_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("session");
    let error =
        client.publish("t", &json!(1), PublishOptions::new()).expect("publish").ack().await.expect_err("no ack");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.to_string().contains("gateway_inbound_ack"), "{error}");
    // Fire and forget: dropping the Pending at once is fine, and many of them leave nothing.
    for n in 0..100 {
        drop(client.publish("t", &json!(n), PublishOptions::new()).expect("publish"));
    }
    let error = client.send(&json!(1), PublishOptions::new()).expect("send").reply().await.expect_err("no reply asked");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    client.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_restart_reruns_the_url_provider_resubscribes_fails_waiters_and_sends_what_waited() {
    let first = Server::start(config(0, app())).await.expect("server");
    let addr = first.local_addr();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let options = GatewayOptions::with_url_provider(move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let claims = json!({"sub": format!("attempt-{n}"), "permissions": [ALL]});
            Ok(format!("ws://{addr}/apps/{APP_ID}?access_token={}", token(&claims)))
        }
    })
    .backoff(Backoff::new(Duration::from_millis(50), Duration::from_millis(200)));
    let client = GatewayClient::connect(options).await.expect("session");
    // Listeners see what arrives once they exist: the first session started before this one.
    let mut started = client.events("session.started");
    let old_id = client.connection_info().expect("info").id;
    client.subscribe("news").expect("subscribe");
    let mut news = client.events("news.*");
    settle().await;
    first.shutdown().await;
    eventually(WAIT, || !matches!(client.state(), ConnectionState::Connected { .. })).await;
    // Published while offline: kept, and sent after the next welcome.
    let mut offline = client.publish("news", &json!("while offline"), PublishOptions::new()).expect("queued");
    let second = Server::start(config(addr.port(), app())).await.expect("restarted on the same port");
    // The first session's own `session.started` may still be held for the first listener
    // (a loaded machine delivers it late); the restart's comes after it, with a new id.
    let mut info: Value = Value::Null;
    for _ in 0..2 {
        let event = next(&mut started).await;
        info = serde_json::from_str(event.data().expect("data")).expect("info");
        if info["id"].as_str() != Some(old_id.as_str()) {
            break;
        }
    }
    assert_ne!(info["id"].as_str(), Some(old_id.as_str()), "a new connection id");
    assert!(calls.load(Ordering::SeqCst) >= 2, "the URL provider ran again");
    offline.ack().await.expect("the queued publish went out after the welcome, and was acked");
    // `news` was resubscribed without asking: the queued publish came back to us.
    let got = next_message(&mut news).await;
    assert_eq!(got.payload, json!("while offline"));
    assert!(got.subject.as_deref().is_some_and(|s| s != "attempt-0"), "a fresh token: {:?}", got.subject);
    client.disconnect().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_frozen_server_is_detected_and_waiters_fail_instead_of_hanging() {
    let server = Server::start(config(0, app())).await.expect("server");
    let proxy = Proxy::start(server.local_addr()).await;
    let options = options(proxy.addr, json!({"permissions": [ALL]}))
        .ping_interval(Duration::from_millis(300))
        .pong_timeout(Duration::from_millis(300))
        .ack_timeout(Duration::from_secs(30));
    let client = GatewayClient::connect(options).await.expect("session");
    proxy.freeze(true);
    tokio::time::sleep(Duration::from_millis(50)).await; // the proxy's reads in flight end
    let mut pending = client.publish("t", &json!(1), PublishOptions::new()).expect("publish");
    let error =
        tokio::time::timeout(WAIT, pending.ack()).await.expect("fails well before the ack timeout").expect_err("lost");
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert!(error.to_string().contains("not re-sent"), "{error}");
    eventually(WAIT, || matches!(client.state(), ConnectionState::Unavailable { .. } | ConnectionState::Connecting))
        .await;
    proxy.freeze(false);
    eventually(Duration::from_secs(10), || matches!(client.state(), ConnectionState::Connected { .. })).await;
    client.publish("t", &json!(2), PublishOptions::new()).expect("publish").ack().await.expect("acked after the thaw");
    client.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_topic_is_reported_on_it_dropped_and_the_rest_survives() {
    let server = Server::start(config(0, app())).await.expect("server");
    let client = connect(&server, json!({"sub": "x", "permissions": [ALL]})).await;
    client.subscribe("open").expect("subscribe");
    let mut open = client.events("open.*");
    let mut refused = client.events(&format!("secure/tasks.{SUBSCRIPTION_ERROR_EVENT}"));
    let mut started = client.events("session.started");
    client.subscribe("secure/tasks").expect("subscribe");
    let report = next(&mut refused).await;
    let data: Value = serde_json::from_str(report.data().expect("data")).expect("json");
    assert_eq!(
        (data["code"].as_u64(), data["reason"].as_str()),
        (Some(1008), Some("Subscription to secure topic is forbidden!"))
    );
    next(&mut started).await; // reconnected, without the forbidden topic (else it would loop)
    settle().await;
    client.publish("open", &json!("still here"), PublishOptions::new()).expect("publish");
    assert_eq!(next_message(&mut open).await.payload, json!("still here"));
    assert!(tokio::time::timeout(Duration::from_millis(300), refused.recv()).await.is_err(), "reported once");
    client.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_offline_queue_is_bounded_and_disconnect_stays_disconnected() {
    // Nothing listens: the client never gets a session.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let client = GatewayClient::new(options(addr, json!({})).max_offline(2));
    let mut first = client.send(&json!(1), PublishOptions::new()).expect("queued");
    let _second = client.send(&json!(2), PublishOptions::new()).expect("queued");
    eventually(WAIT, || client.send(&json!(3), PublishOptions::new()).is_err()).await;
    client.disconnect().await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert_eq!(first.ack().await.expect_err("closed").kind(), ErrorKind::Closed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.state(), ConnectionState::Disconnected, "no reconnect after disconnect()");
    assert!(client.subscribe("x").is_err());
}

#[tokio::test]
async fn a_burst_to_a_slow_stream_arrives_whole_and_in_order() {
    let server = Server::start(config(0, AppConfig { gateway_message_rate: 100_000, ..app() })).await.expect("server");
    let publisher = connect(&server, json!({"permissions": [ALL]})).await;
    let reader =
        GatewayClient::connect(options(server.local_addr(), json!({})).event_queue(64)).await.expect("session");
    reader.subscribe("burst").expect("subscribe");
    settle().await;
    let mut stream = reader.events("burst.*");
    const N: u64 = 5_000;
    for n in 0..N {
        drop(publisher.publish("burst", &json!(n), PublishOptions::new()).expect("publish"));
    }
    for n in 0..N {
        let got = next_message(&mut stream).await;
        assert_eq!(got.payload, json!(n), "in order, none lost");
        if n % 1_000 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    publisher.disconnect().await;
    reader.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn each_refused_subscribe_is_blamed_on_its_own_topic() {
    let server = Server::start(config(0, app())).await.expect("server");
    // May read secure/ok only; asks for secure/no first and secure/ok right after.
    let claims = json!({"permissions": [ALL, "realtime:subscriber:read:topic:secure/ok"]});
    let client = connect(&server, claims).await;
    let mut refused = client.events(&format!("**.{SUBSCRIPTION_ERROR_EVENT}"));
    let mut ok = client.events("secure/ok.*");
    let mut started = client.events("session.started");
    client.subscribe("secure/no").expect("subscribe");
    client.subscribe("secure/ok").expect("subscribe");
    client.subscribe("priv/000000000000").expect("subscribe"); // another connection's
    let first = next(&mut refused).await;
    assert_eq!(first.channel(), Some("secure/no"), "the refused one, not the last one sent");
    next(&mut started).await;
    let second = next(&mut refused).await;
    assert_eq!(second.channel(), Some("priv/000000000000"));
    next(&mut started).await;
    // secure/ok survived both reconnects: it is still subscribed.
    settle().await;
    client.publish("secure/ok", &json!("fine"), PublishOptions::new()).expect("publish");
    assert_eq!(next_message(&mut ok).await.payload, json!("fine"));
    assert!(tokio::time::timeout(Duration::from_millis(300), refused.recv()).await.is_err(), "no more refusals");
    client.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_offline_message_whose_ack_is_awaited_times_out_unsent_and_ids_must_be_unique() {
    let first = Server::start(config(0, app())).await.expect("server");
    let addr = first.local_addr();
    let client =
        GatewayClient::connect(options(addr, json!({"permissions": [ALL]})).ack_timeout(Duration::from_millis(300)))
            .await
            .expect("session");
    client.subscribe("t").expect("subscribe");
    let mut events = client.events("t.*");
    settle().await;
    client.publish("t", &json!(1), PublishOptions::new()).expect("publish").ack().await.expect("acked");
    assert_eq!(next_message(&mut events).await.payload, json!(1));
    first.shutdown().await;
    eventually(WAIT, || !matches!(client.state(), ConnectionState::Connected { .. })).await;
    let mut awaited = client.publish("t", &json!("awaited"), PublishOptions::new()).expect("queued");
    // Ids chosen by the caller must be unique while their answers are awaited.
    let _same = client.publish("t", &json!("same"), PublishOptions::new().id("same")).expect("queued");
    let mut again = client.publish("t", &json!("again"), PublishOptions::new().id("same")).expect("queued");
    assert_eq!(again.ack().await.expect_err("duplicate").kind(), ErrorKind::InvalidRequest);
    drop(client.publish("t", &json!("fire and forget"), PublishOptions::new()).expect("queued"));
    let error = tokio::time::timeout(WAIT, awaited.ack()).await.expect("in time").expect_err("offline too long");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.to_string().contains("will not be sent"), "{error}");
    // Back online: only the fire-and-forget one is sent (the other was reported failed).
    let second = Server::start(config(addr.port(), app())).await.expect("restarted");
    assert_eq!(next_message(&mut events).await.payload, json!("fire and forget"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.recv()).await.is_err(),
        "the failed one is not sent"
    );
    client.disconnect().await;
    second.shutdown().await;
}

#[tokio::test]
async fn huge_timeouts_mean_never_and_do_not_overflow() {
    let server = Server::start(config(0, app())).await.expect("server");
    let options = options(server.local_addr(), json!({"permissions": [ALL]}))
        .ack_timeout(Duration::MAX)
        .reply_timeout(Duration::MAX)
        .ping_interval(Duration::MAX)
        .pong_timeout(Duration::MAX);
    let client = GatewayClient::connect(options).await.expect("session");
    client.publish("t", &json!(1), PublishOptions::new()).expect("publish").ack().await.expect("acked");
    client.disconnect().await;
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_every_handle_stops_the_connection() {
    let server = Server::start(config(0, app())).await.expect("server");
    let client = connect(&server, json!({"sub": "ephemeral"})).await;
    let app = server.app(APP_ID).expect("app");
    assert_eq!(app.gateway.connection_count(), 1);
    drop(client);
    eventually(WAIT, || app.gateway.connection_count() == 0).await;
    server.shutdown().await;
}

/// A stand-in gateway that sends what a real one never would: every connection gets a
/// welcome, then `frames` (text, or binary when prefixed with `b:`), then stays open.
fn bad_gateway(listener: tokio::net::TcpListener, frames: Vec<String>) {
    use futures_util::{SinkExt, StreamExt};
    let frames = Arc::new(frames);
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (frames, n) = (frames.clone(), connections.fetch_add(1, Ordering::SeqCst));
            tokio::spawn(async move {
                let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(stream).await else { return };
                let welcome = format!(
                    r#"{{"topic":"main","messageType":"welcome","data":{{"connection":{{"id":"00000000000{n}","appId":"1","remoteAddress":""}}}}}}"#
                );
                let _ = ws.send(tokio_websockets::Message::text(welcome)).await;
                for frame in frames.iter() {
                    let message = match frame.strip_prefix("b:") {
                        Some(bytes) => tokio_websockets::Message::binary(bytes.as_bytes().to_vec()),
                        None => tokio_websockets::Message::text(frame.clone()),
                    };
                    let _ = ws.send(message).await;
                }
                // Bounded: read until the client goes (or a minute passes).
                let _ =
                    tokio::time::timeout(Duration::from_secs(60), async { while ws.next().await.is_some() {} }).await;
            });
        }
    });
}

#[tokio::test]
async fn bad_frames_from_a_server_are_skipped_and_the_good_ones_around_them_delivered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let good = |n: u32| format!(r#"{{"topic":"t","messageType":"m","data":{{"payload":{n}}}}}"#);
    bad_gateway(
        listener,
        vec![
            good(1),
            "not json".into(),
            r#"{"messageType":"m"}"#.into(),     // no topic
            "b:\u{ff}\u{fe}".into(),             // binary, not JSON
            r#"{"topic":"t","data":{}}"#.into(), // no messageType: not for listeners
            format!("b:{}", good(2)),
            good(3),
        ],
    );
    let client = GatewayClient::new(GatewayOptions::new(format!("ws://{addr}/apps/1")));
    let mut events = client.events("t.*");
    let mut got = Vec::new();
    for _ in 0..3 {
        let incoming = next_message(&mut events).await;
        got.push((incoming.payload, incoming.compressed));
    }
    assert_eq!(got, vec![(json!(1), false), (json!(2), true), (json!(3), false)]);
    assert!(matches!(client.state(), ConnectionState::Connected { .. }), "the socket was kept");
    client.disconnect().await;
}

#[tokio::test]
async fn a_message_over_max_message_size_closes_with_1009_and_reconnects() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let big = format!(r#"{{"topic":"t","messageType":"m","data":{{"payload":"{}"}}}}"#, "x".repeat(4096));
    bad_gateway(listener, vec![big]);
    let options = GatewayOptions::new(format!("ws://{addr}/apps/1"))
        .max_message_size(1024)
        .backoff(Backoff::new(Duration::from_millis(50), Duration::from_millis(100)));
    let client = GatewayClient::new(options);
    let mut started = client.events("session.started");
    // A later session: the oversized message ended the first (whose start this stream may
    // or may not have seen).
    loop {
        let session = next(&mut started).await;
        if !session.data().is_some_and(|d| d.contains("000000000000")) {
            break;
        }
    }
    let lost = client.state_changes().borrow().clone();
    assert!(matches!(lost, ConnectionState::Connected { .. } | ConnectionState::Unavailable { .. }), "{lost:?}");
    client.disconnect().await;
}
