//! Connecting, state, subscribing, streams and handlers, client events, overflow and panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use switchboard::{Client, ConnectionState, ErrorKind, LAGGED_EVENT, SlowConsumer};

use crate::common::*;

#[tokio::test]
async fn connects_and_reports_state_with_socket_id() {
    let server = server().await;
    let options = options_for(server.local_addr()).build().expect("options");
    let client = Client::new(options);
    let socket_id = tokio::time::timeout(WAIT, client.connected()).await.expect("in time").expect("connected");
    let (a, b) = socket_id.split_once('.').expect("socket id has a dot");
    assert!(a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok());
    assert_eq!(client.state(), ConnectionState::Connected { socket_id: socket_id.clone() });
    assert_eq!(client.socket_id().as_deref(), Some(socket_id.as_str()));
    client.disconnect().await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    let err = client.subscribe("news").await.expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    server.shutdown().await;
}

#[tokio::test]
async fn state_changes_are_observable_as_callbacks() {
    let server = server().await;
    let client = Client::new(options_for(server.local_addr()).build().expect("options"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    client.on_state_change(move |_, current| log.lock().expect("lock").push(current.name()));
    client.connected().await.expect("connected");
    client.disconnect().await;
    eventually(WAIT, || seen.lock().expect("lock").last() == Some(&"disconnected")).await;
    let names = seen.lock().expect("lock").clone();
    assert!(names.contains(&"connected"), "{names:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_app_key_fails_with_4001_and_does_not_retry() {
    let server = server().await;
    let options = switchboard::ClientOptions::builder("no-such-key")
        .host("127.0.0.1")
        .port(server.local_addr().port())
        .tls(false)
        .build()
        .expect("options");
    let err = tokio::time::timeout(WAIT, Client::connect(options)).await.expect("in time").expect_err("refused");
    assert_eq!((err.kind(), err.code()), (ErrorKind::Connection, Some(4001)));
    assert!(err.to_string().contains("app key"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn public_channel_stream_bind_and_global() {
    let server = server().await;
    let client = connect(&server).await;
    let publisher = publisher(&server);
    let channel = client.subscribe("news").await.expect("subscribed");
    assert!(channel.is_subscribed());
    let mut stream = channel.events();
    let mut named = channel.events_named("headline");
    let mut global = client.events();
    let counted = Arc::new(AtomicUsize::new(0));
    let c = counted.clone();
    let id = channel.bind("headline", move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let star = Arc::new(AtomicUsize::new(0));
    let s = star.clone();
    channel.bind("*", move |_| {
        s.fetch_add(1, Ordering::SeqCst);
    });
    publisher.trigger(&["news"], "headline", &json!({"title": "hi"}), None).await.expect("trigger");
    let event = next_named(&mut stream, "headline").await;
    assert_eq!(event.channel(), Some("news"));
    assert_eq!(event.json::<serde_json::Value>().expect("json")["title"], "hi");
    assert_eq!(next_named(&mut named, "headline").await.name(), "headline");
    assert_eq!(next_named(&mut global, "headline").await.channel(), Some("news"));
    eventually(WAIT, || counted.load(Ordering::SeqCst) == 1 && star.load(Ordering::SeqCst) == 1).await;
    assert_eq!(channel.unbind("headline", Some(id)), 1);
    publisher.trigger(&["news"], "headline", &"plain text", None).await.expect("trigger");
    let event = next_named(&mut stream, "headline").await;
    assert_eq!(event.data(), Some("plain text"));
    eventually(WAIT, || star.load(Ordering::SeqCst) == 2).await;
    assert_eq!(counted.load(Ordering::SeqCst), 1, "unbound handler not called");
    // subscribing again is the same channel
    let again = client.subscribe("news").await.expect("idempotent");
    assert_eq!(again.name(), "news");
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("news").subscription_count, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn async_handlers_run_in_order_and_a_panicking_handler_is_contained() {
    let server = server().await;
    let client = connect(&server).await;
    let channel = client.subscribe("work").await.expect("subscribed");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    channel.bind("job", |_| panic!("handler bug"));
    let log = seen.clone();
    channel.bind_async("job", move |event| {
        let log = log.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            log.lock().expect("lock").push(event.data().unwrap_or_default().to_owned());
        }
    });
    let publisher = publisher(&server);
    for i in 0..5 {
        publisher.trigger(&["work"], "job", &i.to_string(), None).await.expect("trigger");
    }
    eventually(WAIT, || seen.lock().expect("lock").len() == 5).await;
    assert_eq!(*seen.lock().expect("lock"), vec!["0", "1", "2", "3", "4"]);
    assert!(matches!(client.state(), ConnectionState::Connected { .. }));
    server.shutdown().await;
}

#[tokio::test]
async fn with_drop_and_report_a_slow_stream_loses_events_and_is_told_how_many() {
    let server = server().await;
    let options = options_for(server.local_addr())
        .event_queue(4)
        .slow_consumer(SlowConsumer::DropAndReport)
        .build()
        .expect("options");
    let client = Client::connect(options).await.expect("connect");
    let channel = client.subscribe("firehose").await.expect("subscribed");
    let mut slow = channel.events_named("tick");
    let publisher = publisher(&server);
    for i in 0..10 {
        publisher.trigger(&["firehose"], "tick", &i.to_string(), None).await.expect("trigger");
    }
    for i in 0..4 {
        assert_eq!(slow.recv().await.expect("event").data(), Some(i.to_string().as_str()));
    }
    publisher.trigger(&["firehose"], "tick", &"10", None).await.expect("trigger");
    let lagged = tokio::time::timeout(WAIT, slow.recv()).await.expect("in time").expect("event");
    assert_eq!(lagged.name(), LAGGED_EVENT);
    assert_eq!(lagged.json::<serde_json::Value>().expect("json")["dropped"], 6);
    assert_eq!(slow.recv().await.expect("event").data(), Some("10"));
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_get_the_prefix_once_and_respect_the_rate() {
    let server = server().await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    let ca = a.subscribe("private-room").await.expect("a subscribed");
    let cb = b.subscribe("private-room").await.expect("b subscribed");
    let mut inbox = cb.events();
    let mut errors = a.events();
    ca.trigger("typing", &json!({"on": true})).await.expect("sent");
    let got = next_named(&mut inbox, "client-typing").await;
    assert_eq!(got.json::<serde_json::Value>().expect("json"), json!({"on": true}));
    ca.trigger("client-typing", &json!({"on": false})).await.expect("sent");
    assert_eq!(next_named(&mut inbox, "client-typing").await.json::<serde_json::Value>().expect("json")["on"], false);
    // 25 events at once: the client paces them at 10/s, so the server never says 4301.
    let started = tokio::time::Instant::now();
    let sends: Vec<_> = (0..25)
        .map(|i| {
            let ca = ca.clone();
            tokio::spawn(async move { ca.trigger("n", &json!({"i": i})).await })
        })
        .collect();
    for send in sends {
        send.await.expect("task").expect("sent");
    }
    assert!(started.elapsed() >= Duration::from_millis(1500), "paced over at least two windows");
    for _ in 0..25 {
        next_named(&mut inbox, "client-n").await;
    }
    none_named(&mut errors, "pusher:error", 300).await;
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_are_refused_before_sending_where_they_cannot_work() {
    let server = server().await;
    let client = connect(&server).await;
    let public = client.subscribe("lobby").await.expect("subscribed");
    let err = public.trigger("x", &json!({})).await.expect_err("public refused");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let signer = switchboard::SecretAuthorizer::new(KEY, SECRET)
        .with_encryption_master_key("CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=")
        .expect("key");
    let e2e = Client::connect(options_for(server.local_addr()).authorizer(signer).build().expect("options"))
        .await
        .expect("connect");
    let encrypted = e2e.subscribe("private-encrypted-vault").await.expect("subscribed");
    let err = encrypted.trigger("x", &json!({})).await.expect_err("encrypted refused");
    assert!(err.to_string().contains("encrypted"), "{err}");
    let private = client.subscribe("private-p").await.expect("subscribed");
    let err = private.trigger("x", &"not an object").await.expect_err("object required");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let err = client.subscribe("bad name").await.expect_err("invalid name");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    server.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_channels_on_one_connection() {
    let server = server().await;
    let client = connect(&server).await;
    let subscribes: Vec<_> = (0..10_000)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.subscribe(&format!("ch-{i}")).await.map(|_| ()) })
        })
        .collect();
    for s in subscribes {
        s.await.expect("task").expect("subscribed");
    }
    let app = server.app(APP_ID).expect("app");
    assert_eq!(app.occupied_channels("ch-").len(), 10_000);
    let channel = client.channel("ch-9999").expect("known");
    let mut events = channel.events();
    publisher(&server).trigger(&["ch-9999"], "last", &"x", None).await.expect("trigger");
    next_named(&mut events, "last").await;
    server.shutdown().await;
}

#[test]
fn options_from_url_and_env() {
    let opts = switchboard::ClientOptions::from_url("ws://127.0.0.1:6001/app/k").expect("url").build().expect("opts");
    assert_eq!(opts.url(), "ws://127.0.0.1:6001/app/k?protocol=7&client=switchboard-rust&version=0.1.0");
    assert!(switchboard::ClientOptions::from_url("http://x/nope").is_err());
    assert!(switchboard::ClientOptions::from_url("ftp://x/app/k").is_err());
    let vars = |name: &str| match name {
        "REVERB_APP_KEY" => Some("k".to_string()),
        "REVERB_APP_SECRET" => Some("s".to_string()),
        "REVERB_HOST" => Some("ws.example.com".to_string()),
        "REVERB_RECONNECT_DELAY_MIN" => Some("0.5".to_string()),
        "REVERB_RECONNECT_DELAY_MAX" => Some("10".to_string()),
        _ => None,
    };
    let opts = switchboard::ClientOptions::from_vars(vars).expect("vars").build().expect("opts");
    assert_eq!(opts.url(), "wss://ws.example.com:443/app/k?protocol=7&client=switchboard-rust&version=0.1.0");
    let err = switchboard::ClientOptions::from_vars(|_| None).err().expect("key required");
    assert!(err.to_string().contains("REVERB_APP_KEY"));
    let bad = |name: &str| match name {
        "REVERB_APP_KEY" => Some("k".to_string()),
        "REVERB_PORT" => Some("https".to_string()),
        _ => None,
    };
    assert!(switchboard::ClientOptions::from_vars(bad).err().expect("bad port").to_string().contains("REVERB_PORT"));
}

#[tokio::test]
async fn state_is_a_stream_too() {
    use futures_util::StreamExt;
    let server = server().await;
    let client = Client::new(options_for(server.local_addr()).build().expect("options"));
    let mut states = std::pin::pin!(client.state_stream());
    let mut names = Vec::new();
    while let Some(state) = tokio::time::timeout(WAIT, states.next()).await.expect("in time") {
        names.push(state.name());
        if state.name() == "connected" {
            break;
        }
    }
    assert_eq!(names.last(), Some(&"connected"));
    client.disconnect().await;
    let mut last = "";
    while let Some(state) = tokio::time::timeout(WAIT, states.next()).await.expect("in time") {
        last = state.name();
        if state.is_final() {
            break;
        }
    }
    assert_eq!(last, "disconnected");
    server.shutdown().await;
}

/// A server that floods: after the client subscribes to `go`, it writes `events` pre-framed
/// `tick` events on `flood` (data `{"n":N}`) as fast as the socket takes them.
async fn flood_server(listener: tokio::net::TcpListener, events: usize) {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_websockets::Message;
    let Ok((stream, _)) = listener.accept().await else { return };
    let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(stream).await else { return };
    let hello =
        r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":120}"}"#;
    if ws.send(Message::text(hello)).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = ws.next().await {
        let Some(frame) = message.as_text().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) else {
            continue;
        };
        if frame["event"] == "pusher:subscribe" {
            let channel = frame["data"]["channel"].as_str().unwrap_or_default().to_owned();
            let ok =
                format!(r#"{{"event":"pusher_internal:subscription_succeeded","channel":"{channel}","data":"{{}}"}}"#);
            if ws.send(Message::text(ok)).await.is_err() {
                return;
            }
            if channel == "go" {
                break;
            }
        }
    }
    let mut socket = ws.into_inner();
    let mut block = Vec::with_capacity(70_000);
    for n in 0..events {
        let payload = format!(r#"{{"event":"tick","channel":"flood","data":"{{\"n\":{n}}}"}}"#);
        block.push(0x81); // final text frame, unmasked (server to client)
        block.push(u8::try_from(payload.len()).expect("short frame"));
        block.extend_from_slice(payload.as_bytes());
        if block.len() > 64 * 1024 || n + 1 == events {
            if socket.write_all(&block).await.is_err() {
                return;
            }
            block.clear();
        }
    }
    let mut sink = [0u8; 1024];
    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// Twenty times a stream's queue arrives at once, faster than any consumer, to a consumer
/// that keeps up but runs on the socket reader's own thread (a current-thread runtime): it
/// only runs when the reader yields. Every event arrives, in order, none reported lost:
/// the reader yields whenever a queue passes half full.
#[test]
fn a_flood_reaches_a_consumer_on_the_readers_thread_without_loss() {
    const EVENTS: usize = 20_480;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(flood_server(listener, EVENTS));
        // The default queue: 1,024 events per stream.
        let options = switchboard::ClientOptions::builder("flood").host("127.0.0.1").port(port).tls(false);
        let client = Client::connect(options.build().expect("options")).await.expect("connects");
        let mut ticks = client.subscribe("flood").await.expect("subscribed").events_named("tick");
        let consumer = tokio::spawn(async move {
            for expected in 0..EVENTS {
                let event = ticks.recv().await.expect("an event");
                assert_ne!(event.name(), LAGGED_EVENT, "events were dropped: {:?}", event.data());
                let n = event.json::<serde_json::Value>().expect("json")["n"].as_u64();
                assert_eq!(n, Some(expected as u64), "in order, none missing");
            }
        });
        client.subscribe("go").await.expect("the flood starts");
        tokio::time::timeout(Duration::from_secs(60), consumer).await.expect("in time").expect("consumer ok");
        client.disconnect().await;
    });
}
