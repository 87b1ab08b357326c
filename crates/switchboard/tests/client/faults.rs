//! Faults: a server restart mid-stream, a frozen server, stale auth, races, giving up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use switchboard::{Client, ConnectionState, ErrorKind, GAP_EVENT, PresenceUser};
use switchboard_server::Server;

use crate::common::*;

#[tokio::test]
async fn server_restart_resubscribes_keeps_handlers_and_signals_a_gap() {
    let first = Server::start(config(0, app())).await.expect("server");
    let port = first.local_addr().port();
    let client = connect(&first).await;
    let old_socket = client.socket_id().expect("socket");
    let news = client.subscribe("news").await.expect("news");
    let private = client.subscribe("private-feed").await.expect("private");
    let room = client.subscribe_presence("presence-r", PresenceUser::new("me", json!({}))).await.expect("presence");
    client.subscribe("left-while-offline").await.expect("subscribed");
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    news.bind("update", move |_| {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let mut news_events = news.events();
    let mut private_events = private.events();
    let mut room_events = room.events();

    first.shutdown().await; // every socket gets 4200: reconnect at once
    eventually(WAIT, || !matches!(client.state(), ConnectionState::Connected { .. })).await;
    client.unsubscribe("left-while-offline").await;
    let second = Server::start(config(port, app())).await.expect("restarted on the same port");
    let new_socket = tokio::time::timeout(WAIT, client.connected()).await.expect("reconnects").expect("connected");
    assert_ne!(new_socket, old_socket, "a new socket id");

    next_named(&mut news_events, GAP_EVENT).await;
    next_named(&mut private_events, GAP_EVENT).await;
    next_named(&mut room_events, GAP_EVENT).await;
    assert!(news.is_subscribed() && private.is_subscribed());
    let publisher = publisher(&second);
    publisher.trigger(&["news"], "update", &"after restart", None).await.expect("trigger");
    publisher.trigger(&["private-feed"], "update", &"private after restart", None).await.expect("trigger");
    assert_eq!(next_named(&mut news_events, "update").await.data(), Some("after restart"));
    assert_eq!(next_named(&mut private_events, "update").await.data(), Some("private after restart"));
    eventually(WAIT, || handled.load(Ordering::SeqCst) == 1).await;
    let app = second.app(APP_ID).expect("app");
    assert_eq!(app.channel_counts("news").subscription_count, 1, "no duplicate subscription");
    assert_eq!(app.channel_counts("left-while-offline").subscription_count, 0, "stays unsubscribed");
    assert_eq!(room.members().me().expect("me").id, "me");
    second.shutdown().await;
}

#[tokio::test]
async fn a_frozen_server_is_detected_within_activity_plus_pong_timeout() {
    let mut quick = app();
    quick.activity_timeout = 1; // the client pings after min(its own, the server's) = 1 s
    let server = Server::start(config(0, quick)).await.expect("server");
    let proxy = Proxy::start(server.local_addr()).await;
    let options = options_for(proxy.addr)
        .secret(SECRET)
        .pong_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("options");
    let client = Client::connect(options).await.expect("connects through the proxy");
    let channel = client.subscribe("news").await.expect("subscribed");
    let mut events = channel.events();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(client.state(), ConnectionState::Connected { .. }), "pings keep a healthy link up");
    let frozen_at = tokio::time::Instant::now();
    proxy.freeze(true);
    eventually(Duration::from_secs(5), || !matches!(client.state(), ConnectionState::Connected { .. })).await;
    let detected = frozen_at.elapsed();
    assert!(detected <= Duration::from_secs(4), "detected after {detected:?}");
    proxy.freeze(false);
    tokio::time::timeout(Duration::from_secs(10), client.connected()).await.expect("reconnects").expect("connected");
    next_named(&mut events, GAP_EVENT).await;
    publisher(&server).trigger(&["news"], "back", &"1", None).await.expect("trigger");
    next_named(&mut events, "back").await;
    server.shutdown().await;
}

#[tokio::test]
async fn auth_for_an_old_socket_is_dropped_not_sent() {
    let first = Server::start(config(0, app())).await.expect("server");
    let port = first.local_addr().port();
    // The first answer is slow: by the time it comes, the socket has changed.
    let (auth, calls) = counting_signer(0, Duration::from_millis(1500));
    let options = options_for(first.local_addr()).authorizer(auth).build().expect("options");
    let client = Client::connect(options).await.expect("connects");
    let mut global = client.events();
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.subscribe("private-slow").await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.shutdown().await;
    let second = Server::start(config(port, app())).await.expect("restarted");
    pending.await.expect("task").expect("subscribed with auth for the new socket");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "authorized again for the new socket id");
    tokio::time::sleep(Duration::from_millis(1500)).await; // the stale answer arrives and is dropped
    none_named(&mut global, "pusher:subscription_error", 200).await;
    assert_eq!(second.app(APP_ID).expect("app").channel_counts("private-slow").subscription_count, 1);
    second.shutdown().await;
}

#[tokio::test]
async fn subscribe_unsubscribe_subscribe_races_end_subscribed_once() {
    let server = server().await;
    let client = connect(&server).await;
    let app = server.app(APP_ID).expect("app");
    for round in 0..20 {
        let name = format!("race-{round}");
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
        let expected = 1;
        eventually(WAIT, || app.channel_counts(&name).subscription_count == expected).await;
        client.unsubscribe(&name).await;
        eventually(WAIT, || app.channel_counts(&name).subscription_count == 0).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn max_retries_gives_up_with_failed() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let options =
        options_for(dead).max_retries(2).connect_timeout(Duration::from_millis(300)).build().expect("options");
    let client = Client::new(options);
    let err = tokio::time::timeout(WAIT, client.connected()).await.expect("gives up in time").expect_err("fails");
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.to_string().contains("gave up after 3 attempts"), "{err}");
    assert!(matches!(client.state(), ConnectionState::Failed { .. }));
}

#[tokio::test]
async fn subscribe_while_offline_completes_when_the_server_comes() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let client = Client::new(options_for(addr).build().expect("options"));
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.subscribe("early").await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = Server::start(config(port, app())).await.expect("server");
    pending.await.expect("task").expect("subscribed once connected");
    server.shutdown().await;
}

#[tokio::test]
async fn a_late_answer_to_a_cancelled_subscribe_does_not_confirm_the_new_one() {
    let server = server().await;
    // The second subscribe's auth is slow: the first subscribe's success arrives first.
    let (auth, calls) = counting_signer(1, Duration::from_millis(300));
    let client = Client::connect(options_for(server.local_addr()).authorizer(auth).build().expect("options"))
        .await
        .expect("connects");
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.subscribe("private-late").await.map(|_| ()) })
    };
    // Let the first subscribe go out, then cancel it and subscribe again at once.
    eventually(WAIT, || calls.load(Ordering::SeqCst) == 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.unsubscribe("private-late").await;
    let channel = client.subscribe("private-late").await.expect("the new subscribe is confirmed by its own answer");
    let _ = first.await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let app = server.app(APP_ID).expect("app");
    eventually(WAIT, || app.channel_counts("private-late").subscription_count == 1).await;
    let mut events = channel.events();
    publisher(&server).trigger(&["private-late"], "ping", &"1", None).await.expect("trigger");
    next_named(&mut events, "ping").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_timed_out_subscribe_stays_pending_and_completes_later() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let options = options_for(addr).subscribe_timeout(Duration::from_millis(200)).build().expect("options");
    let client = Client::new(options);
    let err = client.subscribe("patient").await.expect_err("no server yet");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let server = Server::start(config(port, app())).await.expect("server");
    let app = server.app(APP_ID).expect("app");
    eventually(Duration::from_secs(10), || app.channel_counts("patient").subscription_count == 1).await;
    assert!(client.channel("patient").expect("known").is_subscribed());
    server.shutdown().await;
}

/// A server that confirms the subscription, sends one event, then ends the connection for
/// good with `code` (as `terminate_connections` does with 4009), after the handshake.
async fn final_close_server(code: u16) -> std::net::SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    raw_pusher_server(listener, 120, move |mut ws| async move {
        if !await_subscribe(&mut ws).await {
            return;
        }
        let error = format!(r#"{{"event":"pusher:error","data":{{"code":{code},"message":"bye"}}}}"#);
        let ok = r#"{"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"}"#;
        send_frames(&mut ws, &[ok, r#"{"event":"tick","channel":"news","data":"{}"}"#, &error]).await;
        let close = tokio_websockets::CloseCode::try_from(code).expect("a close code");
        let _ = ws.send(tokio_websockets::Message::close(Some(close), "bye")).await;
        while ws.next().await.is_some() {}
    });
    addr
}

// A final close after the handshake (4009 terminated, 4001, 4004) ends the client for good,
// and its streams end after what they hold, so a `while let Some(..)` loop returns.
#[tokio::test]
async fn streams_end_when_the_server_ends_the_connection_for_good() {
    for code in [4009, 4001, 4004] {
        let addr = final_close_server(code).await;
        let client = Client::connect(options_for(addr).build().expect("options")).await.expect("connect");
        let channel = client.subscribe("news").await.expect("subscribed");
        let mut events = channel.events();
        let mut global = client.events();
        let mut names = Vec::new();
        let drained = tokio::time::timeout(WAIT, async {
            while let Some(event) = events.recv().await {
                names.push(event.name().to_owned());
            }
        })
        .await;
        assert!(drained.is_ok(), "the channel stream ended ({code})");
        assert!(names.contains(&"tick".to_owned()), "what it held came first: {names:?}");
        assert!(tokio::time::timeout(WAIT, async { while global.recv().await.is_some() {} }).await.is_ok());
        assert!(
            matches!(client.state(), ConnectionState::Failed { code: Some(c), .. } if c == code),
            "{:?}",
            client.state()
        );
        // A stream asked for afterwards ends at once.
        assert!(tokio::time::timeout(WAIT, channel.events().recv()).await.expect("in time").is_none());
    }
}

#[tokio::test]
async fn streams_end_after_disconnect() {
    let server = server().await;
    let client = connect(&server).await;
    let mut events = client.subscribe("news").await.expect("subscribed").events();
    client.disconnect().await;
    assert!(tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} }).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn phoenix_streams_end_after_disconnect() {
    let server = server().await;
    let url = format!("ws://{}/socket", server.local_addr());
    let socket =
        switchboard::phoenix::Socket::connect(switchboard::phoenix::SocketOptions::new(url)).await.expect("connect");
    let room = socket.channel("room:lobby", json!({"username": "ada"}));
    let mut events = room.events();
    room.join().await.expect("joined");
    socket.disconnect().await;
    assert!(tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} }).await.is_ok());
    server.shutdown().await;
}

// A server that stops reading (a 4 KiB receive buffer it never drains, after confirming the
// subscription) while it keeps sending pings. The client's writes (client events here, the
// quickest way to fill its send buffer; pongs take the same path) stall; a write that does
// not complete within the pong timeout is a dead connection, so the client reconnects
// instead of hanging for ever.
#[tokio::test]
async fn a_server_that_stops_reading_is_treated_as_dead() {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let listener = socket.listen(16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    raw_pusher_server(listener, 120, move |mut ws| {
        accepted.fetch_add(1, Ordering::SeqCst);
        async move {
            if !await_subscribe(&mut ws).await {
                return;
            }
            send_frames(
                &mut ws,
                &[r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-room","data":"{}"}"#],
            )
            .await;
            // From here on: pings, and never a read.
            for _ in 0..60_000 {
                use futures_util::SinkExt;
                if ws.send(tokio_websockets::Message::text(r#"{"event":"pusher:ping","data":{}}"#)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let options = options_for(addr)
        .secret(SECRET)
        .pong_timeout(Duration::from_secs(1))
        .client_event_rate(100_000)
        .build()
        .expect("options");
    let client = Client::connect(options).await.expect("connect");
    let room = client.subscribe("private-room").await.expect("subscribed");
    let pad = "x".repeat(8_000);
    let writer = tokio::spawn(async move {
        let mut failed = None;
        for _ in 0..2_000 {
            if let Err(e) = room.trigger("fill", &json!({ "pad": pad })).await {
                failed = Some(e);
                break;
            }
        }
        failed
    });
    eventually(Duration::from_secs(20), || connections.load(Ordering::SeqCst) >= 2).await;
    assert!(!client.state().is_final(), "it reconnects: {:?}", client.state());
    let failed = tokio::time::timeout(WAIT, writer).await.expect("the stalled trigger returns").expect("task");
    assert!(
        failed.is_some_and(|e| e.kind() == ErrorKind::Connection),
        "the stalled write failed as a connection error"
    );
}

// A flood of pings in one write is answered with a pong per read burst, not one per ping.
#[tokio::test]
async fn a_ping_flood_gets_one_pong_per_burst() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    raw_pusher_server(listener, 120, move |ws| {
        let tx = tx.lock().expect("lock").take();
        async move {
            let Some(tx) = tx else { return };
            let mut raw = ws.into_inner();
            // 1,000 pings in one write (unmasked server frames).
            let ping = br#"{"event":"pusher:ping","data":{}}"#;
            let mut frames = Vec::new();
            for _ in 0..1_000 {
                frames.push(0x81);
                frames.push(ping.len() as u8);
                frames.extend_from_slice(ping);
            }
            let _ = raw.write_all(&frames).await;
            // Count the pongs that come back within a second (masked client frames: the
            // masking key differs per frame, so count frames of the pong's length instead).
            let mut seen = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = raw.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&chunk[..n]);
                }
            })
            .await;
            let pong_len = br#"{"event":"pusher:pong","data":{}}"#.len();
            let (mut at, mut pongs) = (0, 0);
            while at + 6 <= seen.len() {
                let len = usize::from(seen[at + 1] & 0x7f);
                if len == pong_len {
                    pongs += 1;
                }
                at += 6 + len;
            }
            let _ = tx.send(pongs);
        }
    });
    let client = Client::connect(options_for(addr).build().expect("options")).await.expect("connect");
    let pongs = tokio::time::timeout(WAIT, rx).await.expect("in time").expect("counted");
    assert!((1..100).contains(&pongs), "{pongs} pongs for 1,000 pings");
    drop(client);
}

/// Collect the retry delays the client announces (`Unavailable { retry_in }`), `count` of them.
async fn announced_delays(mut states: tokio::sync::watch::Receiver<ConnectionState>, count: usize) -> Vec<Duration> {
    let mut delays = Vec::new();
    let collect = async {
        while delays.len() < count {
            if states.changed().await.is_err() {
                break;
            }
            if let ConnectionState::Unavailable { retry_in, .. } = &*states.borrow_and_update() {
                delays.push(*retry_in);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect).await.expect("reconnects announced");
    delays
}

// A server that accepts, then sheds the connection at once with 4200 ("reconnect now"): the
// first retry is immediate, the following ones back off, instead of thousands of
// reconnects a second.
#[tokio::test]
async fn a_flapping_server_gets_a_growing_backoff() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    raw_pusher_server(listener, 120, |mut ws| async move {
        use futures_util::SinkExt;
        send_frames(&mut ws, &[r#"{"event":"pusher:error","data":{"code":4200,"message":"shedding"}}"#]).await;
        let close = tokio_websockets::CloseCode::try_from(4200).ok();
        let _ = ws.send(tokio_websockets::Message::close(close, "shedding")).await;
    });
    let options = options_for(addr).reconnect_delay(Duration::from_millis(20), Duration::from_millis(200));
    let client = Client::new(options.build().expect("options"));
    let delays = announced_delays(client.state_changes(), 6).await;
    assert_eq!(delays[0], Duration::ZERO, "4200: the first retry is at once: {delays:?}");
    assert!(delays[1..].iter().all(|d| *d >= Duration::from_millis(20)), "then it backs off: {delays:?}");
    client.disconnect().await;
}

#[tokio::test]
async fn phoenix_a_flapping_server_is_retried_further_along_the_table() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Accept the upgrade, then drop the socket at once.
                let _ = tokio_websockets::ServerBuilder::new().accept(stream).await;
            });
        }
    });
    let options = switchboard::phoenix::SocketOptions::new(format!("ws://{addr}/socket"));
    let socket = switchboard::phoenix::Socket::new(options);
    let delays = announced_delays(socket.state_changes(), 4).await;
    let table: Vec<Duration> = (1..=4).map(switchboard::phoenix::reconnect_after).collect();
    assert_eq!(delays, table, "10, 50, 100, 150 ms, not 10 ms every time");
    socket.disconnect().await;
}

// With an activity timeout (1 s, announced by the server) shorter than the pong timeout
// (30 s), a good pong is followed by the next ping an activity timeout later, so a dead link
// is noticed within activity + pong timeout, not pong timeout + pong timeout.
#[tokio::test]
async fn after_a_good_pong_the_next_ping_comes_an_activity_timeout_later() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (pings_tx, mut pings) = tokio::sync::mpsc::unbounded_channel();
    raw_pusher_server(listener, 1, move |mut ws| {
        let pings_tx = pings_tx.clone();
        async move {
            use futures_util::StreamExt;
            while let Some(Ok(message)) = ws.next().await {
                if message.as_text().is_some_and(|t| t.contains("pusher:ping")) {
                    let _ = pings_tx.send(());
                    send_frames(&mut ws, &[r#"{"event":"pusher:pong","data":{}}"#]).await;
                }
            }
        }
    });
    let options = options_for(addr).pong_timeout(Duration::from_secs(30)).build().expect("options");
    let _client = Client::connect(options).await.expect("connect");
    for n in 1..=3 {
        // Each within 10 s: well after an activity timeout of 1 s, well before 30 s.
        let ping = tokio::time::timeout(Duration::from_secs(10), pings.recv()).await;
        assert!(ping.is_ok_and(|p| p.is_some()), "ping #{n} came within 10 s");
    }
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_then_the_client_reconnects_and_reports_the_gap() {
    use futures_util::StreamExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (close_tx, mut close_rx) = tokio::sync::mpsc::unbounded_channel::<Option<u16>>();
    tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok((stream, _)) = listener.accept().await {
            accepted += 1;
            let first = accepted == 1;
            let close_tx = close_tx.clone();
            tokio::spawn(async move {
                // 64 KiB frames: the message is over the client's limit only once assembled.
                let config = tokio_websockets::Config::default().frame_size(64 * 1024);
                let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().config(config).accept(stream).await else {
                    return;
                };
                if !send_hello(&mut ws, 120).await || !await_subscribe(&mut ws).await {
                    return;
                }
                send_frames(
                    &mut ws,
                    &[r#"{"event":"pusher_internal:subscription_succeeded","channel":"big","data":"{}"}"#],
                )
                .await;
                if first {
                    // Written from its own task: the client stops reading halfway, so the write
                    // may not finish, and the close it sends must still be read here.
                    use futures_util::SinkExt;
                    let huge = format!(r#"{{"event":"blob","channel":"big","data":"{}"}}"#, "x".repeat(2 << 20));
                    let (mut sink, mut ws) = ws.split();
                    tokio::spawn(async move { sink.send(tokio_websockets::Message::text(huge)).await });
                    let code = loop {
                        match ws.next().await {
                            Some(Ok(m)) if m.is_close() => break m.as_close().map(|(code, _)| u16::from(code)),
                            Some(Ok(_)) => {}
                            _ => break None,
                        }
                    };
                    let _ = close_tx.send(code);
                } else {
                    send_frames(&mut ws, &[r#"{"event":"after","channel":"big","data":"{}"}"#]).await;
                    while ws.next().await.is_some() {}
                }
            });
        }
    });
    let options = options_for(addr).max_message_size(1 << 20).build().expect("options");
    let client = tokio::time::timeout(WAIT, Client::connect(options)).await.expect("in time").expect("connects");
    let channel = client.subscribe("big").await.expect("subscribed");
    let mut events = channel.events();
    let code = tokio::time::timeout(WAIT, close_rx.recv()).await.expect("the client closed in time");
    assert_eq!(code, Some(Some(1009)), "the client says why");
    // It reconnects, the channel is told what it missed, and events flow again.
    next_named(&mut events, GAP_EVENT).await;
    next_named(&mut events, "after").await;
    client.disconnect().await;
}
