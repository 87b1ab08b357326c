//! Limits and refusals: message size, connection quotas, unknown keys — each with its
//! code, and the server keeps serving everyone else.

use std::time::Duration;

use serde_json::json;
use switchboard_server::ServerConfig;

use crate::common::*;

#[tokio::test]
async fn unknown_app_key_gets_4001() {
    let server = start_default().await;
    let mut ws = Client { ws: connect_raw(&ws_url(&server, "no-such-key")).await, socket_id: String::new() };
    let (code, message) = ws.expect_error().await;
    assert_eq!(code, 4001, "{message}");
    assert_eq!(ws.expect_close().await, Some(4001));
    Client::connect(&server).await.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_message_gets_an_error_and_the_socket_lives() {
    let server = start_default().await;
    let (mut a, mut b) = (Client::connect(&server).await, Client::connect(&server).await);
    a.subscribe("private-big").await;
    b.subscribe("private-big").await;
    let big = "x".repeat(10_001);
    a.send_json(json!({"event":"client-big","channel":"private-big","data":{"blob": big}})).await;
    let (code, message) = a.expect_error().await;
    assert_eq!(code, 4300);
    assert!(message.contains("10000"), "{message}");
    b.expect_silence(200).await;
    a.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn huge_frame_is_cut_at_the_transport_and_others_are_unaffected() {
    let server = start_default().await;
    let mut bystander = Client::connect(&server).await;
    let mut c = Client::connect(&server).await;
    let huge = format!(r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#, "y".repeat(1024 * 1024));
    c.send_text(&huge).await;
    assert_eq!(c.expect_close().await, Some(1009));
    bystander.assert_alive().await;
    eventually(|| server.app(APP_ID).expect("app").connection_count() == 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn app_connection_quota_gives_4004() {
    let mut app = app();
    app.max_connections = 2;
    let server = start(config_with(app)).await;
    let mut a = Client::connect(&server).await;
    let _b = Client::connect(&server).await;
    let mut third = Client { ws: connect_raw(&ws_url(&server, KEY)).await, socket_id: String::new() };
    assert_eq!(third.expect_error().await.0, 4004);
    assert_eq!(third.expect_close().await, Some(4004));
    a.assert_alive().await;
    // A slot frees up when a socket leaves.
    drop(a);
    let app = server.app(APP_ID).expect("app");
    eventually(|| app.connection_count() == 1).await;
    Client::connect(&server).await.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn server_capacity_gives_4100() {
    let cfg = ServerConfig { max_connections: 1, ..config_with(app()) };
    let server = start(cfg).await;
    let mut a = Client::connect(&server).await;
    let mut second = Client { ws: connect_raw(&ws_url(&server, KEY)).await, socket_id: String::new() };
    assert_eq!(second.expect_error().await.0, 4100);
    assert_eq!(second.expect_close().await, Some(4100));
    a.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_to_the_websocket_path_is_a_clear_400() {
    let server = start_default().await;
    let api = Api::new(&server);
    let (status, body) = api.send(api.raw().get(format!("{}/app/{KEY}", api.base()))).await;
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap_or_default().contains("WebSocket"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn apps_are_isolated() {
    let other = switchboard_server::AppConfig {
        id: "2000".into(),
        key: "other-key".into(),
        secret: "other-secret".into(),
        ..app()
    };
    let cfg = ServerConfig { apps: vec![app(), other], ..config_with(app()) };
    let server = start(cfg).await;
    let mut mine = Client::connect(&server).await;
    let mut theirs = Client::connect_url(&ws_url(&server, "other-key")).await;
    mine.subscribe("shared-name").await;
    theirs.subscribe("shared-name").await;
    let api = Api::new(&server);
    api.post("/apps/1000/events", json!({"name":"e","channel":"shared-name","data":"1"})).await;
    mine.expect("e").await;
    theirs.expect_silence(200).await;
    // The first app's credentials do not sign for the second app.
    let (status, _) = api.post("/apps/2000/events", json!({"name":"e","channel":"shared-name","data":"1"})).await;
    assert_eq!(status, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_others_keep_receiving() {
    let cfg = ServerConfig { max_queued_messages: 16, ..config_with(app()) };
    let server = start(cfg).await;
    let api = Api::new(&server);
    let app = server.app(APP_ID).expect("app");
    let mut reader = Client::connect(&server).await;
    reader.subscribe("firehose").await;
    let mut stalled = Client::connect(&server).await;
    stalled.subscribe("firehose").await;
    // ~9 KB events until the stalled socket's kernel buffers and its queue are full.
    let data = "z".repeat(9_000);
    let mut sent = 0;
    while app.connection_count() == 2 {
        assert!(sent < 20_000, "the stalled client was never disconnected");
        let batch: Vec<serde_json::Value> =
            (0..10).map(|_| json!({"name":"big","channel":"firehose","data":data})).collect();
        assert_eq!(api.post("/apps/1000/batch_events", json!({ "batch": batch })).await.0, 200);
        sent += 10;
        for _ in 0..10 {
            reader.expect("big").await;
        }
    }
    assert_eq!(server.metrics().slow_consumer_disconnects.get(), 1);
    assert_eq!(app.channel_counts("firehose").subscription_count, 1);
    reader.assert_alive().await;
    api.post("/apps/1000/events", json!({"name":"after","channel":"firehose","data":"1"})).await;
    reader.expect("after").await;
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test]
async fn channels_per_connection_are_capped() {
    let mut app = app();
    app.max_channels_per_connection = 3;
    let server = start(config_with(app)).await;
    let mut c = Client::connect(&server).await;
    for name in ["a", "b", "c"] {
        c.subscribe(name).await;
    }
    c.subscribe("a").await; // re-subscribing a held channel is fine
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"d"}})).await;
    let err = c.expect("pusher:subscription_error").await;
    let data: serde_json::Value = err.data.parse().expect("json");
    assert_eq!((data["type"].as_str(), data["status"].as_u64()), (Some("LimitReached"), Some(4301)));
    c.send_json(json!({"event":"pusher:unsubscribe","data":{"channel":"a"}})).await;
    c.subscribe("d").await;
    server.shutdown().await;
}

/// Read from `stream` until the server closes it (EOF or a reset); panics after WAIT.
async fn expect_closed_by_server(stream: &mut tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a response before the close (keep-alive)
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {WAIT:?}");
}

#[tokio::test]
async fn silent_trickling_and_idle_http_connections_are_reaped_and_capped() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let cfg = ServerConfig {
        http_header_timeout: 1,
        http_request_timeout: 1,
        max_pending_connections: 4,
        ..config_with(app())
    };
    let server = start(cfg).await;
    let addr = server.local_addr();
    // Four silent connections fill the cap; the fifth is closed at once, and counted.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    eventually(|| server.metrics().pending_connections.get() == 4).await;
    let mut fifth = TcpStream::connect(addr).await.expect("connect");
    expect_closed_by_server(&mut fifth, "a connection past max_pending_connections").await;
    assert_eq!(server.metrics().pending_connections_refused.get(), 1);
    // The silent ones never send a header: closed after the header timeout.
    for (i, stream) in silent.iter_mut().enumerate() {
        expect_closed_by_server(stream, &format!("silent connection {i}")).await;
    }
    eventually(|| server.metrics().pending_connections.get() == 0).await;
    // A client that trickles its headers a byte at a time never finishes them in time.
    let mut trickler = TcpStream::connect(addr).await.expect("connect");
    trickler.write_all(b"GET /up HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    let trickle = async {
        for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle().take(50) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if trickler.write_all(&[*byte]).await.is_err() {
                return true; // the server closed it
            }
        }
        false
    };
    assert!(tokio::time::timeout(WAIT * 2, trickle).await.unwrap_or(false), "the trickler was closed");
    // Complete headers, then a body trickled a byte at a time: 408 once the request timeout
    // passes (the header timer no longer runs).
    let mut slow_body = TcpStream::connect(addr).await.expect("connect");
    slow_body
        .write_all(b"POST /apps/1000/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .expect("write");
    let answer = async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                read = slow_body.read(&mut buf) => return match read {
                    Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n]).into_owned(),
                    _ => String::new(),
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    let _ = slow_body.write_all(b" ").await;
                }
            }
        }
    };
    let answer = tokio::time::timeout(WAIT, answer).await.expect("answered in time");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A kept-alive connection that goes idle after a request is closed too.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    expect_closed_by_server(&mut idle, "an idle kept-alive connection").await;
    // And the server serves as before.
    let (status, _) = Api::new(&server).get("/apps/1000/channels", &[]).await;
    assert_eq!(status, 200);
    Client::connect(&server).await.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_fragmented_message_over_the_transport_limit_gets_1009_on_both_endpoints() {
    let server = start_default().await;
    let mut bystander = Client::connect(&server).await;
    // Sent in 16 KiB frames, so no single frame is over the limit; the message is.
    let fragmenting = |url: &str| {
        tokio_websockets::ClientBuilder::new()
            .uri(url)
            .expect("uri")
            .config(tokio_websockets::Config::default().frame_size(16 * 1024))
    };
    let huge = format!(r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#, "y".repeat(300 * 1024));
    let (ws, _) = fragmenting(&ws_url(&server, KEY)).connect().await.expect("connect");
    let mut pusher = Client { ws, socket_id: String::new() };
    pusher.expect("pusher:connection_established").await;
    pusher.send_text(&huge).await;
    assert_eq!(pusher.expect_close().await, Some(1009));
    let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.local_addr());
    let (ws, _) = fragmenting(&url).connect().await.expect("connect");
    let mut phoenix = Client { ws, socket_id: String::new() };
    phoenix.send_text(&format!(r#"[null,"1","room:a","shout",{{"b":"{}"}}]"#, "y".repeat(300 * 1024))).await;
    assert_eq!(phoenix.expect_close().await, Some(1009));
    bystander.assert_alive().await;
    server.shutdown().await;
}
