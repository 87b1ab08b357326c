//! The gateway endpoint `/apps/{id}` and its admin API, with raw WebSocket and HTTP clients:
//! tokens, the welcome, topics, publish and message with acks, presence for backends,
//! binary (compressed) deliveries, replies, every refusal's close code and reason, limits,
//! liveness, and the admin calls.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::gateway::jwt::{self, Algorithm};
use switchboard_server::{AppConfig, RunningServer};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

use crate::common::{APP_ID, SECRET, WAIT, app, config_with, start, start_default};

pub(crate) const ALL: &str = "realtime:publisher:write:topic:*";

pub(crate) fn token(claims: Value) -> String {
    jwt::sign(&claims, SECRET.as_bytes(), Algorithm::Hs256)
}

pub(crate) fn url(server: &RunningServer, token: &str) -> String {
    format!("ws://{}/apps/{APP_ID}?access_token={token}", server.local_addr())
}

pub(crate) struct Gw {
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) id: String,
}

impl Gw {
    /// Connect with `claims` and read the welcome.
    pub(crate) async fn connect(server: &RunningServer, claims: Value) -> Gw {
        let builder = ClientBuilder::new().uri(&url(server, &token(claims))).expect("uri");
        let (ws, _) = tokio::time::timeout(WAIT, builder.connect()).await.expect("in time").expect("connects");
        let mut gw = Gw { ws, id: String::new() };
        let welcome = gw.next().await;
        assert_eq!((welcome["topic"].as_str(), welcome["messageType"].as_str()), (Some("main"), Some("welcome")));
        gw.id = welcome["data"]["connection"]["id"].as_str().expect("id").to_owned();
        gw
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).await.expect("send");
    }

    pub(crate) async fn subscribe(&mut self, topic: &str) {
        self.send(json!({"type": "subscribe", "data": {"topic": topic}})).await;
    }

    /// The next text or binary frame as JSON, with whether it was binary.
    pub(crate) async fn next_frame(&mut self) -> (Value, bool) {
        loop {
            let message =
                tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame in time").expect("open").expect("ok");
            if message.is_text() || message.is_binary() {
                let value = serde_json::from_slice(message.as_payload()).expect("JSON");
                return (value, message.is_binary());
            }
            assert!(!message.is_close(), "closed: {:?}", message.as_close());
        }
    }

    pub(crate) async fn next(&mut self) -> Value {
        self.next_frame().await.0
    }

    /// Read until the close; its code and reason.
    pub(crate) async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("a close in time") {
                Some(Ok(m)) if m.is_close() => {
                    let (code, reason) = m.as_close().expect("close frame");
                    return (u16::from(code), reason.to_owned());
                }
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    }

    pub(crate) async fn expect_silence(&mut self, ms: u64) {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(ms), self.ws.next()).await {
            assert!(
                !(m.is_text() || m.is_binary()),
                "expected silence, got {:?}",
                String::from_utf8_lossy(m.as_payload())
            );
        }
    }
}

pub(crate) async fn status_of(server: &RunningServer, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{}/apps/{APP_ID}?access_token={token}", server.local_addr()))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("answer");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_reason_before_the_upgrade() {
    let server = start_default().await;
    let now = crate::common::now();
    let unsigned = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.", b64.encode(r#"{"alg":"none"}"#), b64.encode(r#"{"sub":"x"}"#))
    };
    for (token, reason) in [
        (String::new(), "access_token is missing"),
        ("not-a-jwt".to_owned(), "malformed token"),
        (jwt::sign(&json!({"sub": "x"}), b"wrong-key", Algorithm::Hs256), "invalid token signature"),
        (token(json!({"exp": now - 120})), "token expired"),
        (token(json!({"nbf": now + 600})), "not valid before"),
        (unsigned, "unsupported token algorithm \"none\""),
    ] {
        let (status, body) = status_of(&server, &token).await;
        assert_eq!(status, 401, "{token}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(reason)), "{body} should say {reason}");
    }
    let response = reqwest::get(format!("http://{}/apps/999?access_token={}", server.local_addr(), token(json!({}))))
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 404);
    // A valid token still works after all that, and the refusals were counted.
    let mut ok = Gw::connect(&server, json!({"sub": "ada"})).await;
    ok.expect_silence(50).await;
    assert!(server.metrics().render().contains("switchboard_gateway_refused_tokens_total 6"));
    server.shutdown().await;
}

#[tokio::test]
async fn welcome_first_then_main_and_priv_without_subscribing() {
    let server = start_default().await;
    let builder = ClientBuilder::new().uri(&url(&server, &token(json!({"sub": "ada"})))).expect("uri");
    let (mut ws, _) = builder.connect().await.expect("connects");
    let first = ws.next().await.expect("frame").expect("ok");
    let welcome: Value = serde_json::from_slice(first.as_payload()).expect("json");
    let connection = &welcome["data"]["connection"];
    let id = connection["id"].as_str().expect("id");
    assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!((connection["appId"].as_str(), connection["remoteAddress"].as_str()), (Some(APP_ID), Some("127.0.0.1")));
    let mut me = Gw { ws, id: id.to_owned() };
    // Another connection publishes to main and to my private topic.
    let mut other = Gw::connect(&server, json!({"sub": "bob", "permissions": [ALL]})).await;
    other.send(json!({"type": "publish", "data": {"topic": "main", "payload": "hello"}})).await;
    let on_main = me.next().await;
    assert_eq!((on_main["topic"].as_str(), on_main["messageType"].as_str()), (Some("main"), Some("broadcast")));
    assert_eq!(on_main["data"]["payload"], "hello");
    assert_eq!(
        on_main["data"]["client"],
        json!({"connectionId": other.id, "subject": "bob"}),
        "no grants on public topics"
    );
    let topic = format!("priv/{}", me.id);
    other.send(json!({"type": "publish", "data": {"topic": topic, "messageType": "response", "payload": {"data": 1, "status": "ok", "id": "q1"}}})).await;
    let reply = me.next().await;
    assert_eq!((reply["topic"].as_str(), reply["data"]["payload"]["id"].as_str()), (Some(topic.as_str()), Some("q1")));
    server.shutdown().await;
}

#[tokio::test]
async fn publish_echoes_to_the_sender_then_acks() {
    let server = start_default().await;
    let mut publisher = Gw::connect(&server, json!({"sub": "ada", "permissions": [ALL]})).await;
    let mut reader = Gw::connect(&server, json!({})).await;
    publisher.subscribe("chat").await;
    reader.subscribe("chat").await;
    // Subscribes have no answer; a publish from the reader's side cannot be used (no grant),
    // so give the server a moment by round-tripping a publish of the publisher's own.
    publisher.send(json!({"type": "publish", "data": {"topic": "chat", "messageType": "text", "payload": {"n": 1}, "id": "m1"}})).await;
    let echo = publisher.next().await;
    assert_eq!(
        (echo["topic"].as_str(), echo["messageType"].as_str(), echo["data"]["id"].as_str()),
        (Some("chat"), Some("text"), Some("m1"))
    );
    assert_eq!(echo["data"]["subProtocol"], 1);
    let ack = publisher.next().await;
    assert_eq!(ack, json!({"topic": "priv/acks", "messageType": "ack", "data": {"data": "m1"}}));
    assert_eq!(reader.next().await["data"]["payload"], json!({"n": 1}));
    // No id, no ack.
    publisher.send(json!({"type": "publish", "data": {"topic": "chat", "payload": 2}})).await;
    assert_eq!(publisher.next().await["data"]["payload"], 2);
    assert_eq!(reader.next().await["data"]["payload"], 2);
    publisher.expect_silence(100).await;
    // Unsubscribed: no more deliveries.
    reader.send(json!({"type": "unsubscribe", "data": {"topic": "chat"}})).await;
    reader.expect_silence(100).await;
    publisher.send(json!({"type": "publish", "data": {"topic": "chat", "payload": 3, "id": "m3"}})).await;
    assert_eq!(publisher.next().await["data"]["payload"], 3);
    reader.expect_silence(100).await;
    server.shutdown().await;
}

#[tokio::test]
async fn acks_follow_the_app_setting() {
    let server = start(config_with(AppConfig { gateway_inbound_ack: false, ..app() })).await;
    let mut publisher = Gw::connect(&server, json!({"permissions": [ALL]})).await;
    publisher.subscribe("t").await;
    publisher.send(json!({"type": "publish", "data": {"topic": "t", "payload": 1, "id": "m1"}})).await;
    assert_eq!(publisher.next().await["data"]["payload"], 1);
    publisher.expect_silence(150).await;
    server.shutdown().await;
}

#[tokio::test]
async fn messages_and_presence_reach_backends_on_secure_inbound_with_grants() {
    let server = start_default().await;
    let backend_claims = json!({"sub": "backend", "permissions": ["realtime:subscriber:read:topic:secure/inbound", "realtime:publisher:write:topic:priv/*"]});
    let mut backend = Gw::connect(&server, backend_claims).await;
    backend.subscribe("secure/inbound").await;
    backend.expect_silence(50).await;
    let mut device = Gw::connect(&server, json!({"sub": "device-1", "scope": "realtime:x realtime:y"})).await;
    let came = backend.next().await;
    assert_eq!((came["topic"].as_str(), came["messageType"].as_str()), (Some("secure/inbound"), Some("presence")));
    assert_eq!(came["data"]["payload"], json!({"code": 0, "status": "connected"}));
    assert_eq!(
        came["data"]["client"],
        json!({"connectionId": device.id, "subject": "device-1", "permissions": ["realtime:x", "realtime:y"]})
    );
    // `message` needs no grant; the backend sees the sender's grants.
    device
        .send(json!({"type": "message", "data": {"messageType": "gettime", "payload": {"tz": "UTC"}, "id": "q1"}}))
        .await;
    let request = backend.next().await;
    assert_eq!((request["messageType"].as_str(), request["data"]["id"].as_str()), (Some("gettime"), Some("q1")));
    assert_eq!(request["data"]["client"]["permissions"], json!(["realtime:x", "realtime:y"]));
    assert_eq!(device.next().await["messageType"], "ack");
    // The backend replies on the device's private topic (the SDKs' reply).
    let reply_to = format!("priv/{}", request["data"]["client"]["connectionId"].as_str().expect("sender"));
    backend.send(json!({"type": "publish", "data": {"topic": reply_to, "messageType": "response", "payload": {"data": "12:00", "status": "ok", "id": "q1"}, "id": "r1"}})).await;
    let reply = device.next().await;
    assert_eq!(
        (reply["messageType"].as_str(), reply["data"]["payload"]["data"].as_str()),
        (Some("response"), Some("12:00"))
    );
    // The device leaves: a disconnected event with its close code.
    device.ws.send(Message::close(Some(tokio_websockets::CloseCode::NORMAL_CLOSURE), "bye")).await.expect("close");
    let mut gone = backend.next().await;
    while gone["messageType"] != "presence" {
        gone = backend.next().await; // the ack of r1
    }
    assert_eq!(gone["data"]["payload"], json!({"code": 1000, "status": "disconnected"}));
    server.shutdown().await;
}

#[tokio::test]
async fn compressed_messages_arrive_as_binary_frames() {
    let server = start_default().await;
    let mut gw = Gw::connect(&server, json!({"permissions": [ALL]})).await;
    gw.subscribe("t").await;
    gw.send(json!({"type": "publish", "data": {"topic": "t", "compress": true, "payload": {"big": "x"}, "id": "c1"}}))
        .await;
    let (delivery, binary) = gw.next_frame().await;
    assert!(binary, "compress: true is delivered as a binary frame");
    assert_eq!(delivery["data"]["payload"], json!({"big": "x"}));
    let (ack, binary) = gw.next_frame().await;
    assert!(!binary && ack["messageType"] == "ack");
    // Binary frames from clients are read as UTF-8 JSON.
    let frame = json!({"type": "publish", "data": {"topic": "t", "payload": 9}}).to_string();
    gw.ws.send(Message::binary(frame.into_bytes())).await.expect("send");
    assert_eq!(
        gw.next_frame().await,
        (
            json!({"topic": "t", "messageType": "broadcast", "data": {"client": {"connectionId": gw.id}, "payload": 9, "subProtocol": 1}}),
            false
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_close_with_the_rule_they_broke_and_others_keep_being_served() {
    let server = start(config_with(AppConfig { gateway_max_message_size: 4096, gateway_max_topics: 2, ..app() })).await;
    let mut bystander = Gw::connect(&server, json!({"permissions": [ALL]})).await;
    bystander.subscribe("still").await;
    let cases: Vec<(Value, Vec<Message>, u16, &str)> = vec![
        (
            json!({}),
            vec![Message::text(r#"{"type":"subscribe","data":{"topic":"secure/tasks"}}"#)],
            1008,
            "Subscription to secure topic is forbidden!",
        ),
        (
            json!({}),
            vec![Message::text(r#"{"type":"subscribe","data":{"topic":"priv/000000000000"}}"#)],
            1008,
            "private topic is forbidden",
        ),
        (
            json!({}),
            vec![Message::text(r#"{"type":"publish","data":{"topic":"chat","payload":1}}"#)],
            1008,
            "Publishing to topic is forbidden!",
        ),
        (json!({}), (vec![Message::text("not json")]), 1007, "Invalid frame: malformed JSON"),
        (json!({}), vec![Message::text(r#"{"type":"subscribe","data":{"topic":7}}"#)], 1007, "Invalid frame"),
        (json!({}), vec![Message::text(r#"{"type":"dance","data":{}}"#)], 1003, "Unknown frame type \"dance\""),
        (json!({}), (vec![Message::binary(vec![0xff, 0xfe])]), 1007, "UTF-8"),
        (
            json!({}),
            vec![Message::text(format!(r#"{{"type":"message","data":{{"payload":"{}"}}}}"#, "x".repeat(5000)))],
            1009,
            "",
        ),
        (
            json!({}),
            ["a", "b", "c"]
                .iter()
                .map(|t| Message::text(format!(r#"{{"type":"subscribe","data":{{"topic":"{t}"}}}}"#)))
                .collect(),
            1008,
            "Too many topics: at most 2 per connection",
        ),
    ];
    for (claims, frames, code, reason) in cases {
        let mut gw = Gw::connect(&server, claims).await;
        for frame in frames {
            gw.ws.send(frame).await.expect("send");
        }
        let (got_code, got_reason) = gw.expect_close().await;
        assert_eq!(got_code, code, "{reason}: {got_reason}");
        assert!(got_reason.contains(reason), "{got_reason:?} should contain {reason:?}");
        // The server keeps serving everyone else.
        bystander.send(json!({"type": "publish", "data": {"topic": "still", "payload": reason}})).await;
        assert_eq!(bystander.next().await["data"]["payload"], reason);
    }
    assert!(server.metrics().render().contains("switchboard_gateway_policy_closes_total 9"));
    server.shutdown().await;
}

#[tokio::test]
async fn more_messages_a_second_than_the_rate_closes_with_1008() {
    let server = start(config_with(AppConfig { gateway_message_rate: 5, ..app() })).await;
    let mut gw = Gw::connect(&server, json!({"permissions": [ALL]})).await;
    for _ in 0..6 {
        gw.send(json!({"type": "message", "data": {"payload": 1}})).await;
    }
    assert_eq!(gw.expect_close().await, (1008, "Rate limit exceeded: at most 5 messages per second".into()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_socket_is_pinged_and_one_that_never_answers_is_closed_as_dead() {
    let server = start(config_with(AppConfig { gateway_ping_interval: 1, ..app() })).await;
    let mut backend =
        Gw::connect(&server, json!({"permissions": ["realtime:subscriber:read:topic:secure/inbound"]})).await;
    backend.subscribe("secure/inbound").await;
    backend.expect_silence(50).await;
    // A client that reads (and so answers pings, as tokio-websockets does) stays.
    let mut alive = Gw::connect(&server, json!({"sub": "alive"})).await;
    assert_eq!(backend.next().await["data"]["client"]["subject"], "alive");
    let (pinged_tx, mut pinged) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = alive.ws.next().await {
            if m.is_ping() {
                let _ = pinged_tx.send(());
            }
        }
    });
    tokio::time::timeout(WAIT, pinged.recv()).await.expect("pinged after a second of silence");
    // A client that stops reading never answers: closed after twice the interval.
    let frozen = Gw::connect(&server, json!({"sub": "frozen"})).await;
    assert_eq!(backend.next().await["data"]["client"]["subject"], "frozen");
    let gone = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let event = backend.next().await;
            if event["data"]["client"]["subject"] == "frozen" {
                return event;
            }
        }
    })
    .await
    .expect("the frozen socket is dropped");
    assert_eq!(gone["data"]["payload"]["status"], "disconnected");
    drop(frozen);
    // The reading one is still there, and was pinged again meanwhile.
    assert!(pinged.try_recv().is_ok());
    assert_eq!(server.app(APP_ID).expect("app").gateway.connection_count(), 2);
    reader.abort();
    server.shutdown().await;
}

pub(crate) async fn admin(
    server: &RunningServer,
    method: reqwest::Method,
    path: &str,
    claims: Value,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{}{path}", server.local_addr()))
        .bearer_auth(token(claims));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answer");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_publishes_unsubscribes_and_closes() {
    let server = start_default().await;
    let mut a = Gw::connect(&server, json!({"sub": "ada"})).await;
    let mut b = Gw::connect(&server, json!({"sub": "bob"})).await;
    for gw in [&mut a, &mut b] {
        gw.subscribe("news/1").await;
        gw.subscribe("sports").await;
    }
    a.expect_silence(50).await;
    let publish = format!("/api/topics/{APP_ID}/publish");
    let (status, _) =
        admin(&server, reqwest::Method::POST, &publish, json!({}), Some(json!({"topic": "news/1", "message": 1})))
            .await;
    assert_eq!(status, 403, "no publish grant");
    let (status, body) = admin(
        &server,
        reqwest::Method::POST,
        &publish,
        json!({"sub": "cms", "permissions": ["realtime:publisher:write:topic:news/*"]}),
        Some(json!({"topic": "news/1", "message": {"title": "hi"}, "compress": true})),
    )
    .await;
    assert_eq!((status, body["delivered"].as_u64()), (200, Some(2)));
    let (delivery, binary) = a.next_frame().await;
    assert!(binary);
    assert_eq!(
        (delivery["messageType"].as_str(), &delivery["data"]["payload"]),
        (Some("broadcast"), &json!({"title": "hi"}))
    );
    assert_eq!(delivery["data"]["client"], json!({"subject": "cms"}));
    b.next().await;
    // Unsubscribe ada from news/*: she no longer gets it, bob does.
    let unsubscribe = format!("/api/topics/{APP_ID}/unsubscribe");
    let manage =
        json!({"permissions": ["realtime:admin:manage:subscribers", "realtime:admin:manage:connections", ALL]});
    let (status, body) = admin(
        &server,
        reqwest::Method::POST,
        &unsubscribe,
        manage.clone(),
        Some(json!({"topicPatterns": ["news/*"], "subject": "ada"})),
    )
    .await;
    assert_eq!((status, body["unsubscribed"].as_u64()), (200, Some(1)));
    let (status, _) = admin(
        &server,
        reqwest::Method::POST,
        &unsubscribe,
        manage.clone(),
        Some(json!({"topicPatterns": [], "subject": "ada"})),
    )
    .await;
    assert_eq!(status, 400);
    admin(&server, reqwest::Method::POST, &publish, manage.clone(), Some(json!({"topic": "news/1", "message": 2})))
        .await;
    assert_eq!(b.next().await["data"]["payload"], 2);
    a.expect_silence(100).await;
    // Close one connection, then all.
    let (status, _) =
        admin(&server, reqwest::Method::DELETE, &format!("/api/connections/{APP_ID}/{}", a.id), json!({}), None).await;
    assert_eq!(status, 403, "no manage:connections grant");
    let (status, body) =
        admin(&server, reqwest::Method::DELETE, &format!("/api/connections/{APP_ID}/{}", a.id), manage.clone(), None)
            .await;
    assert_eq!((status, body["closed"].as_u64()), (200, Some(1)));
    assert_eq!(a.expect_close().await, (1008, "Connection terminated".into()));
    let (status, body) =
        admin(&server, reqwest::Method::DELETE, &format!("/api/connections/{APP_ID}"), manage.clone(), None).await;
    assert_eq!((status, body["closed"].as_u64()), (200, Some(1)));
    assert_eq!(b.expect_close().await.0, 1008);
    // Bad admin tokens and apps.
    let response = reqwest::Client::new()
        .delete(format!("http://{}/api/connections/{APP_ID}", server.local_addr()))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 401);
    let (status, _) = admin(&server, reqwest::Method::DELETE, "/api/connections/999", manage, None).await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn a_separate_client_key_signs_client_tokens() {
    let server = start(config_with(AppConfig { gateway_client_key: Some("client-key".into()), ..app() })).await;
    let (status, _) = status_of(&server, &token(json!({}))).await;
    assert_eq!(status, 401, "the app secret no longer verifies client tokens");
    let good = jwt::sign(&json!({"sub": "k"}), b"client-key", Algorithm::Hs384);
    let builder = ClientBuilder::new().uri(&url(&server, &good)).expect("uri");
    let (mut ws, _) = builder.connect().await.expect("connects with the client key");
    let welcome = ws.next().await.expect("frame").expect("ok");
    assert!(welcome.as_text().is_some_and(|t| t.contains("welcome")));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_gateway_sockets_with_1012() {
    let server = start_default().await;
    let mut gw = Gw::connect(&server, json!({})).await;
    let stopping = tokio::spawn(async move { server.shutdown().await });
    assert_eq!(gw.expect_close().await.0, 1012);
    stopping.await.expect("shutdown");
}

#[tokio::test]
async fn a_subject_over_its_connection_limit_gets_429_and_a_slot_comes_back_when_one_leaves() {
    let server = start(config_with(AppConfig { gateway_max_connections_per_subject: 2, ..app() })).await;
    let first = Gw::connect(&server, json!({"sub": "ada"})).await;
    let _second = Gw::connect(&server, json!({"sub": "ada"})).await;
    let (status, body) = status_of(&server, &token(json!({"sub": "ada"}))).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("2 connections")), "{body}");
    let _bob = Gw::connect(&server, json!({"sub": "bob"})).await;
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = status_of(&server, &token(json!({"sub": "ada"}))).await;
        if status != 429 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_refusal_is_named_in_an_error_frame_on_the_connections_own_topic_before_the_close() {
    let server = start_default().await;
    let mut gw = Gw::connect(&server, json!({"permissions": []})).await;
    gw.subscribe("secure/tasks").await;
    let error = gw.next().await;
    assert_eq!(
        error,
        json!({"topic": format!("priv/{}", gw.id), "messageType": "error",
               "data": {"code": 1008, "reason": "Subscription to secure topic is forbidden!", "topic": "secure/tasks"}})
    );
    assert_eq!(gw.expect_close().await, (1008, "Subscription to secure topic is forbidden!".into()));
    let mut gw = Gw::connect(&server, json!({})).await;
    gw.send(json!({"type": "publish", "data": {"topic": "chat", "payload": 1, "id": "m9"}})).await;
    assert_eq!(
        gw.next().await["data"],
        json!({"code": 1008, "reason": "Publishing to topic is forbidden!", "id": "m9"})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_close_is_answered_and_its_code_reaches_backends() {
    let server = start_default().await;
    let mut backend =
        Gw::connect(&server, json!({"permissions": ["realtime:subscriber:read:topic:secure/inbound"]})).await;
    backend.subscribe("secure/inbound").await;
    backend.expect_silence(50).await;
    let mut device = Gw::connect(&server, json!({"sub": "d"})).await;
    backend.next().await; // connected
    device.ws.send(Message::close(Some(tokio_websockets::CloseCode::GOING_AWAY), "bye")).await.expect("close");
    // The server echoes the close (a clean handshake, not a dropped socket).
    let echoed = tokio::time::timeout(WAIT, async {
        loop {
            match device.ws.next().await {
                Some(Ok(m)) if m.is_close() => return true,
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    });
    assert_eq!(echoed.await, Ok(true), "no close echo");
    assert_eq!(backend.next().await["data"]["payload"], json!({"code": 1001, "status": "disconnected"}));
    server.shutdown().await;
}
