//! The WebSocket protocol: handshake, heartbeat, channels of every kind, presence, cache,
//! client events, sign-in, and malformed input.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_protocol::signature::{sign_channel, sign_user};
use switchboard_server::{ClientEventPolicy, ServerConfig};
use tokio_websockets::Message;

use crate::common::*;

#[tokio::test]
async fn handshake_has_socket_id_and_activity_timeout() {
    let server = start_default().await;
    let mut ws = connect_raw(&ws_url(&server, KEY)).await;
    let text = futures_util::StreamExt::next(&mut ws).await.expect("frame").expect("ok");
    let raw: Value = serde_json::from_str(text.as_text().expect("text")).expect("json");
    assert_eq!(raw["event"], "pusher:connection_established");
    // data is a JSON-encoded string, as pusher-js expects
    let data: Value = serde_json::from_str(raw["data"].as_str().expect("data is a string")).expect("json");
    let socket_id = data["socket_id"].as_str().expect("socket_id");
    let (a, b) = socket_id.split_once('.').expect("dot");
    assert!(
        a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
            && !a.is_empty()
            && !b.is_empty()
    );
    assert_eq!(data["activity_timeout"], 30);
    server.shutdown().await;
}

#[tokio::test]
async fn socket_ids_are_unique() {
    let server = start_default().await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let c = Client::connect(&server).await;
        assert!(ids.insert(c.socket_id.clone()));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn json_ping_gets_pong() {
    let server = start_default().await;
    let mut c = Client::connect(&server).await;
    c.assert_alive().await;
    // Java's ping has no data at all; Pysher's has an empty string.
    c.send_text(r#"{"event":"pusher:ping"}"#).await;
    c.expect("pusher:pong").await;
    c.send_text(r#"{"event":"pusher:ping","data":""}"#).await;
    c.expect("pusher:pong").await;
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_control_ping_gets_pong() {
    let server = start_default().await;
    let mut c = Client::connect(&server).await;
    futures_util::SinkExt::send(&mut c.ws, Message::ping(bytes::Bytes::from_static(b"hi"))).await.expect("send ping");
    let reply = c.next_message().await.expect("reply");
    assert!(reply.is_pong(), "expected a pong control frame");
    assert_eq!(&**reply.as_payload(), b"hi");
    server.shutdown().await;
}

fn fast_heartbeat() -> ServerConfig {
    let mut cfg = config_with(app());
    cfg.apps[0].ping_interval = 1;
    cfg.apps[0].pong_timeout = 1;
    cfg
}

#[tokio::test]
async fn idle_client_is_pinged_then_closed_with_4201() {
    let server = start(fast_heartbeat()).await;
    let mut c = Client::connect(&server).await;
    c.expect("pusher:ping").await;
    let (code, message) = c.expect_error().await;
    assert_eq!(code, 4201, "{message}");
    assert_eq!(c.expect_close().await, Some(4201));
    server.shutdown().await;
}

#[tokio::test]
async fn client_that_answers_pings_stays_connected() {
    let server = start(fast_heartbeat()).await;
    let mut c = Client::connect(&server).await;
    for _ in 0..3 {
        c.expect("pusher:ping").await;
        c.send_json(json!({"event":"pusher:pong","data":{}})).await;
    }
    c.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn public_subscribe_and_unsubscribe() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    let ok = c.subscribe("news").await;
    assert_eq!(ok.channel.as_deref(), Some("news"));
    assert_eq!(ok.data.as_text(), Some("{}"));
    let (status, _) = api.post("/apps/1000/events", json!({"name":"hello","channel":"news","data":"{\"n\":1}"})).await;
    assert_eq!(status, 200);
    let event = c.expect("hello").await;
    assert_eq!(event.data.as_text(), Some("{\"n\":1}"));
    c.send_json(json!({"event":"pusher:unsubscribe","data":{"channel":"news"}})).await;
    c.assert_alive().await; // the unsubscribe is processed before the ping
    api.post("/apps/1000/events", json!({"name":"hello","channel":"news","data":"x"})).await;
    c.expect_silence(200).await;
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("news").subscription_count, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn subscribe_data_as_json_string_is_accepted() {
    // Reverb accepts data given as a JSON string too.
    let server = start_default().await;
    let mut c = Client::connect(&server).await;
    c.send_text(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"news\"}"}"#).await;
    c.expect("pusher_internal:subscription_succeeded").await;
    server.shutdown().await;
}

#[tokio::test]
async fn subscribe_before_reading_handshake_is_served_in_order() {
    let server = start_default().await;
    let mut ws = connect_raw(&ws_url(&server, KEY)).await;
    futures_util::SinkExt::send(&mut ws, Message::text(r#"{"event":"pusher:subscribe","data":{"channel":"early"}}"#))
        .await
        .expect("send");
    let mut c = Client { ws, socket_id: String::new() };
    c.expect("pusher:connection_established").await;
    c.expect("pusher_internal:subscription_succeeded").await;
    server.shutdown().await;
}

#[tokio::test]
async fn private_channel_needs_a_valid_signature() {
    let server = start_default().await;
    let mut c = Client::connect(&server).await;
    c.subscribe("private-orders.1").await;
    for auth in [
        String::new(),
        "nonsense".to_owned(),
        sign_channel(KEY, "wrong-secret", &c.socket_id, "private-x", None),
        sign_channel(KEY, SECRET, "1.1", "private-x", None), // another socket's signature
        sign_channel("other-key", SECRET, &c.socket_id, "private-x", None),
    ] {
        c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":auth}})).await;
        let err = c.expect("pusher:subscription_error").await;
        assert_eq!(err.channel.as_deref(), Some("private-x"));
        let data: Value = err.data.parse().expect("json");
        assert_eq!(data["type"], "AuthError");
        assert_eq!(data["status"], 401);
        assert!(data["error"].as_str().expect("error").contains(&c.socket_id), "message names the string to sign");
    }
    c.assert_alive().await;
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("private-x").subscription_count, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn encrypted_channel_is_private() {
    let server = start_default().await;
    let mut c = Client::connect(&server).await;
    let auth = sign_channel(KEY, SECRET, &c.socket_id, "private-encrypted-vault", None);
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"private-encrypted-vault","auth":auth}})).await;
    c.expect("pusher_internal:subscription_succeeded").await;
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"private-encrypted-other","auth":""}})).await;
    c.expect("pusher:subscription_error").await;
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_channel_names_are_refused() {
    let server = start_default().await;
    let mut c = Client::connect(&server).await;
    for name in ["has space", "#server-to-nobody", "ü", &"x".repeat(201)] {
        c.send_json(json!({"event":"pusher:subscribe","data":{"channel":name}})).await;
        let err = c.expect("pusher:subscription_error").await;
        let data: Value = err.data.parse().expect("json");
        assert_eq!(data["type"], "InvalidChannel");
    }
    c.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn presence_members_are_keyed_by_user_id() {
    let server = start_default().await;
    let mut a = Client::connect(&server).await;
    let ok = a.join("presence-room", "1", json!({"name":"Ada"})).await;
    let data: Value = ok.data.parse().expect("json");
    assert_eq!(data, json!({"presence":{"ids":["1"],"hash":{"1":{"name":"Ada"}},"count":1}}));

    let mut b1 = Client::connect(&server).await;
    let ok = b1.join("presence-room", "2", json!({"name":"Bob"})).await;
    let data: Value = ok.data.parse().expect("json");
    assert_eq!(data["presence"]["count"], 2);
    assert_eq!(data["presence"]["ids"], json!(["1", "2"]));
    let added = a.expect("pusher_internal:member_added").await;
    assert_eq!(added.data.parse::<Value>().expect("json"), json!({"user_id":"2","user_info":{"name":"Bob"}}));

    // A second connection of user 2 is the same member: nobody hears about it.
    let mut b2 = Client::connect(&server).await;
    b2.join("presence-room", "2", json!({"name":"Bob"})).await;
    a.expect_silence(200).await;
    b1.expect_silence(50).await;
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("presence-room").user_count, Some(2));

    // Leaving: only the last connection of user 2 removes the member, exactly once.
    drop(b1);
    a.expect_silence(300).await;
    b2.send_json(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}})).await;
    let removed = a.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data.parse::<Value>().expect("json"), json!({"user_id":"2"}));
    a.expect_silence(200).await;
    server.shutdown().await;
}

#[tokio::test]
async fn presence_integer_user_ids_become_strings() {
    let server = start_default().await;
    let mut a = Client::connect(&server).await;
    let channel_data = r#"{"user_id":42,"user_info":{"name":"Laravel"}}"#;
    let auth = sign_channel(KEY, SECRET, &a.socket_id, "presence-int", Some(channel_data));
    a.send_json(
        json!({"event":"pusher:subscribe","data":{"channel":"presence-int","auth":auth,"channel_data":channel_data}}),
    )
    .await;
    let ok = a.expect("pusher_internal:subscription_succeeded").await;
    let data: Value = ok.data.parse().expect("json");
    assert_eq!(data["presence"]["ids"], json!(["42"]));
    server.shutdown().await;
}

#[tokio::test]
async fn presence_refuses_bad_channel_data() {
    let server = start_default().await;
    let mut c = Client::connect(&server).await;
    // signed, but no user_id: accepted as an anonymous subscriber (see the RevPy test)
    let channel_data = r#"{"user_info":{}}"#;
    let auth = sign_channel(KEY, SECRET, &c.socket_id, "presence-anon", Some(channel_data));
    c.send_json(
        json!({"event":"pusher:subscribe","data":{"channel":"presence-anon","auth":auth,"channel_data":channel_data}}),
    )
    .await;
    c.expect("pusher_internal:subscription_succeeded").await;
    // a user_id that is there but unusable is refused, not taken as anonymous
    for channel_data in [r#"{"user_id":null}"#, r#"{"user_id":""}"#, r#"{"user_id":{"id":1}}"#] {
        let auth = sign_channel(KEY, SECRET, &c.socket_id, "presence-x", Some(channel_data));
        c.send_json(
            json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth,"channel_data":channel_data}}),
        )
        .await;
        let refused = c.expect("pusher:subscription_error").await;
        assert!(refused.data.as_text().is_some_and(|t| t.contains("unusable user_id")), "{channel_data}: {refused:?}");
    }
    // no channel_data at all
    let auth = sign_channel(KEY, SECRET, &c.socket_id, "presence-x", None);
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth}})).await;
    c.expect("pusher:subscription_error").await;
    // channel_data re-serialised after signing
    let signed = r#"{"user_id":"1"}"#;
    let auth = sign_channel(KEY, SECRET, &c.socket_id, "presence-x", Some(signed));
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth,"channel_data":"{\"user_id\": \"1\"}"}})).await;
    c.expect("pusher:subscription_error").await;
    c.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn presence_member_limit_and_info_size() {
    let mut app = app();
    app.max_presence_members = 2;
    app.max_presence_member_size = 64;
    let server = start(config_with(app)).await;
    let mut a = Client::connect(&server).await;
    a.join("presence-full", "1", json!({})).await;
    let mut b = Client::connect(&server).await;
    b.join("presence-full", "2", json!({})).await;
    let mut c = Client::connect(&server).await;
    c.send_join("presence-full", "3", json!({})).await;
    let err = c.expect("pusher:subscription_error").await;
    let data: Value = err.data.parse().expect("json");
    assert_eq!((data["type"].as_str(), data["status"].as_u64()), (Some("LimitReached"), Some(4100)));
    // An existing member may still open another connection.
    c.join("presence-full", "2", json!({})).await;
    let mut d = Client::connect(&server).await;
    d.send_join("presence-big", "9", json!({"bio": "x".repeat(100)})).await;
    let err = d.expect("pusher:subscription_error").await;
    assert_eq!(err.data.parse::<Value>().expect("json")["type"], "LimitReached");
    d.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn cache_channel_replays_last_event_or_reports_miss() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    c.subscribe("cache-prices").await;
    c.expect("pusher:cache_miss").await;
    api.post("/apps/1000/events", json!({"name":"price","channel":"cache-prices","data":"1"})).await;
    c.expect("price").await;
    api.post("/apps/1000/events", json!({"name":"price","channel":"cache-prices","data":"2"})).await;
    c.expect("price").await;
    let mut late = Client::connect(&server).await;
    late.subscribe("cache-prices").await;
    let replay = late.expect("price").await;
    assert_eq!(replay.data.as_text(), Some("2"));
    // Published while nobody listened: still cached.
    api.post("/apps/1000/events", json!({"name":"quote","channel":"private-cache-q","data":"7"})).await;
    let mut p = Client::connect(&server).await;
    p.subscribe("private-cache-q").await;
    assert_eq!(p.expect("quote").await.data.as_text(), Some("7"));
    server.shutdown().await;
}

async fn pair_on(server: &switchboard_server::RunningServer, channel: &str) -> (Client, Client) {
    let mut a = Client::connect(server).await;
    let mut b = Client::connect(server).await;
    a.subscribe(channel).await;
    b.subscribe(channel).await;
    (a, b)
}

#[tokio::test]
async fn client_events_reach_members_but_not_the_sender() {
    let server = start_default().await;
    let (mut a, mut b) = pair_on(&server, "private-chat").await;
    a.send_json(json!({"event":"client-typing","channel":"private-chat","data":{"on":true}})).await;
    let got = b.expect("client-typing").await;
    assert_eq!(
        got.data,
        switchboard_protocol::Data::Json(r#"{"on":true}"#.into()),
        "object data is relayed as an object"
    );
    assert_eq!(got.user_id, None);
    a.expect_silence(200).await;
    server.shutdown().await;
}

#[tokio::test]
async fn presence_client_events_carry_user_id() {
    let server = start_default().await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.join("presence-chat", "7", json!({})).await;
    b.join("presence-chat", "8", json!({})).await;
    a.expect("pusher_internal:member_added").await;
    a.send_json(json!({"event":"client-msg","channel":"presence-chat","data":{"text":"hi"}})).await;
    let got = b.expect("client-msg").await;
    assert_eq!(got.user_id.as_deref(), Some("7"));
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_policy_members_refuses_public_and_non_members() {
    let server = start_default().await;
    let (mut a, mut b) = pair_on(&server, "open").await;
    a.send_json(json!({"event":"client-x","channel":"open","data":{}})).await;
    assert_eq!(a.expect_error().await.0, 4301);
    a.send_json(json!({"event":"client-x","channel":"private-elsewhere","data":{}})).await;
    assert_eq!(a.expect_error().await.0, 4009);
    a.send_json(json!({"event":"client-x","data":{}})).await;
    assert_eq!(a.expect_error().await.0, 4301);
    b.expect_silence(200).await;
    a.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_policy_off_and_all() {
    let mut off = app();
    off.client_events = ClientEventPolicy::Off;
    let server = start(config_with(off)).await;
    let (mut a, mut b) = pair_on(&server, "private-room").await;
    a.send_json(json!({"event":"client-x","channel":"private-room","data":{}})).await;
    assert_eq!(a.expect_error().await.0, 4301);
    b.expect_silence(100).await;
    server.shutdown().await;

    let mut all = app();
    all.client_events = ClientEventPolicy::All;
    let server = start(config_with(all)).await;
    let (mut a, mut b) = pair_on(&server, "public-room").await;
    a.send_json(json!({"event":"client-x","channel":"public-room","data":{"k":1}})).await;
    b.expect("client-x").await;
    // Even under "all", a connection that is not subscribed cannot speak on a channel: not
    // on a public one, and above all not on a private one it was never authorized for.
    let (mut p1, mut p2) = pair_on(&server, "private-room").await;
    let mut outsider = Client::connect(&server).await;
    for channel in ["public-room", "private-room"] {
        outsider.send_json(json!({"event":"client-y","channel":channel,"data":{}})).await;
        assert_eq!(outsider.expect_error().await.0, 4009, "{channel}");
    }
    for member in [&mut a, &mut b, &mut p1, &mut p2] {
        member.expect_silence(100).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn client_event_flood_is_limited_to_ten_per_second_and_connection_survives() {
    let server = start_default().await;
    let (mut a, mut b) = pair_on(&server, "private-flood").await;
    for i in 0..25 {
        a.send_json(json!({"event":"client-n","channel":"private-flood","data":{"i":i}})).await;
    }
    let mut rejected = 0;
    for _ in 0..15 {
        let (code, _) = a.expect_error().await;
        assert_eq!(code, 4301);
        rejected += 1;
    }
    assert_eq!(rejected, 15);
    for i in 0..10 {
        let got = b.expect("client-n").await;
        assert_eq!(got.data.parse::<Value>().expect("json")["i"], i);
    }
    b.expect_silence(200).await;
    a.assert_alive().await;
    // After the window passes, events flow again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.send_json(json!({"event":"client-n","channel":"private-flood","data":{"i":99}})).await;
    assert_eq!(b.expect("client-n").await.data.parse::<Value>().expect("json")["i"], 99);
    server.shutdown().await;
}

#[tokio::test]
async fn signin_then_server_to_user_events() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    // Not signed in: the user channel is refused.
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"#server-to-user-42"}})).await;
    c.expect("pusher:subscription_error").await;
    let user_data = r#"{"id":"42","user_info":{"name":"Ada"}}"#;
    c.send_json(json!({"event":"pusher:signin","data":{"auth": sign_user(KEY, SECRET, "1.1", user_data), "user_data": user_data}})).await;
    assert_eq!(c.expect_error().await.0, 4009, "a signature for another socket is refused");
    c.send_json(json!({"event":"pusher:signin","data":{"auth": sign_user(KEY, SECRET, &c.socket_id, user_data), "user_data": user_data}})).await;
    let ok = c.expect("pusher:signin_success").await;
    let data: Value = ok.data.parse().expect("json");
    assert_eq!(data["user_data"], user_data);
    c.subscribe("#server-to-user-42").await;
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"#server-to-user-43"}})).await;
    c.expect("pusher:subscription_error").await;
    let (status, _) =
        api.post("/apps/1000/events", json!({"name":"notice","channel":"#server-to-user-42","data":"{}"})).await;
    assert_eq!(status, 200);
    c.expect("notice").await;
    server.shutdown().await;
}

#[tokio::test]
async fn terminate_user_closes_its_connections_with_4009() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut signed = Client::connect(&server).await;
    let user_data = r#"{"id":"u1"}"#;
    signed.send_json(json!({"event":"pusher:signin","data":{"auth": sign_user(KEY, SECRET, &signed.socket_id, user_data), "user_data": user_data}})).await;
    signed.expect("pusher:signin_success").await;
    let mut member = Client::connect(&server).await;
    member.join("presence-t", "u1", json!({})).await;
    let mut bystander = Client::connect(&server).await;
    bystander.join("presence-t", "u2", json!({})).await;
    member.expect("pusher_internal:member_added").await;
    let (status, body) = api.post("/apps/1000/users/u1/terminate_connections", json!({})).await;
    assert_eq!((status, body), (200, json!({})));
    for c in [&mut signed, &mut member] {
        assert_eq!(c.expect_error().await.0, 4009);
        assert_eq!(c.expect_close().await, Some(4009));
    }
    let removed = bystander.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data.parse::<Value>().expect("json")["user_id"], "u1");
    bystander.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_input_gets_an_error_and_the_socket_lives() {
    let server = start_default().await;
    let mut other = Client::connect(&server).await;
    other.subscribe("news").await;
    let mut c = Client::connect(&server).await;
    for bad in [
        "not json",
        "[1,2,3]",
        "{}",
        r#"{"event":42}"#,
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":{"nochannel":true}}"#,
        r#"{"event":"pusher:unsubscribe","data":5}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
        r#"{"event":"pusher:bogus","data":{}}"#,
        r#"{"event":"pusher_internal:member_added","data":{}}"#,
        r#"{"event":"my-event","channel":"news","data":{}}"#,
        "\u{0}\u{1}",
    ] {
        c.send_text(bad).await;
        let (code, message) = c.expect_error().await;
        assert_eq!(code, 4300, "{bad:?} → {message}");
        assert!(!message.is_empty());
    }
    futures_util::SinkExt::send(&mut c.ws, Message::binary(bytes::Bytes::from_static(b"\x00\x01")))
        .await
        .expect("send");
    assert_eq!(c.expect_error().await.0, 4300);
    c.assert_alive().await;
    other.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_subscriptions_on_one_connection() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    for i in 0..10_000 {
        c.send_text(&format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"ch-{i}"}}}}"#)).await;
    }
    for i in 0..10_000 {
        let ok = c.expect("pusher_internal:subscription_succeeded").await;
        assert_eq!(ok.channel, Some(format!("ch-{i}")));
    }
    let app = server.app(APP_ID).expect("app");
    assert_eq!(app.occupied_channels("ch-").len(), 10_000);
    api.post("/apps/1000/events", json!({"name":"last","channel":"ch-9999","data":"x"})).await;
    c.expect("last").await;
    drop(c);
    eventually(|| app.occupied_channels("ch-").is_empty()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn path_prefix_serves_websocket_and_api() {
    let mut cfg = config_with(app());
    cfg.path = "/ws".into();
    let server = start(cfg).await;
    let url = format!("ws://{}/ws/app/{KEY}", server.local_addr());
    let mut c = Client::connect_url(&url).await;
    c.subscribe("news").await;
    let api = Api::new(&server);
    let body = json!({"name":"e","channel":"news","data":"1"}).to_string();
    let signed = api.url("POST", "/apps/1000/events", &[], Some(body.as_bytes()), now()).replace("/apps/", "/ws/apps/");
    let (status, _) = api.send(api.raw().post(signed).body(body)).await;
    assert_eq!(status, 200);
    c.expect("e").await;
    let (status, _) = api.send(api.raw().get(format!("{}/app/{KEY}", api.base()))).await;
    assert_eq!(status, 404, "routes live only under the prefix");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_4200() {
    let server = start_default().await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    b.subscribe("news").await;
    let stopping = tokio::spawn(server.shutdown());
    for c in [&mut a, &mut b] {
        let (code, _) = c.expect_error().await;
        assert_eq!(code, 4200);
        assert_eq!(c.expect_close().await, Some(4200));
    }
    tokio::time::timeout(WAIT, stopping).await.expect("shutdown finishes").expect("no panic");
}

#[tokio::test]
async fn client_events_never_write_the_cache_nor_reach_user_or_encrypted_channels() {
    let mut all = app();
    all.client_events = ClientEventPolicy::All;
    let server = start(config_with(all)).await;
    let mut a = Client::connect(&server).await;
    a.subscribe("cache-board").await;
    a.expect("pusher:cache_miss").await;
    a.send_json(json!({"event":"client-x","channel":"cache-board","data":{"forged":true}})).await;
    a.assert_alive().await;
    let mut late = Client::connect(&server).await;
    late.subscribe("cache-board").await;
    late.expect("pusher:cache_miss").await;
    for channel in ["#server-to-user-u1", "private-encrypted-vault"] {
        a.send_json(json!({"event":"client-x","channel":channel,"data":{}})).await;
        assert_eq!(a.expect_error().await.0, 4301, "{channel}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn signing_in_as_another_user_leaves_the_old_users_channel() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    for (id, subscribe) in [("a", true), ("b", false)] {
        let user_data = format!(r#"{{"id":"{id}"}}"#);
        c.send_json(json!({"event":"pusher:signin","data":{"auth": sign_user(KEY, SECRET, &c.socket_id, &user_data), "user_data": user_data}})).await;
        c.expect("pusher:signin_success").await;
        if subscribe {
            c.subscribe("#server-to-user-a").await;
        }
    }
    api.post("/apps/1000/events", json!({"name":"for-a","channel":"#server-to-user-a","data":"1"})).await;
    c.expect_silence(200).await;
    assert_eq!(server.app(APP_ID).expect("app").channel_counts("#server-to-user-a").subscription_count, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_presence_subscription_without_user_id_joins_anonymously_as_reverb_accepts_it() {
    let server = start_default().await;
    let mut member = Client::connect(&server).await;
    member.join("presence-lobby", "7", json!({"name": "ada"})).await;
    // RevPy's channel_data: {"key": APP_KEY}, signed, no user_id.
    let mut revpy = Client::connect(&server).await;
    let channel_data = json!({"key": "base64:secret-app-key"}).to_string();
    let auth = sign_channel(KEY, SECRET, &revpy.socket_id, "presence-lobby", Some(&channel_data));
    revpy
        .send_json(json!({"event":"pusher:subscribe","data":{"channel":"presence-lobby","auth":auth,"channel_data":channel_data}}))
        .await;
    let ok = revpy.expect("pusher_internal:subscription_succeeded").await;
    let data: Value = serde_json::from_str(ok.data.as_text().expect("string data")).expect("json");
    assert_eq!(data["presence"]["ids"], json!(["7"]), "it sees the roster: {data}");
    // It is no member: nobody is told it joined, and its channel_data (the key) is never shown.
    member.expect_silence(200).await;
    let (_, users) = Api::new(&server).get("/apps/1000/channels/presence-lobby/users", &[]).await;
    assert_eq!(users, json!({"users": [{"id": "7"}]}));
    // It receives the channel's events, and its client events carry no user_id.
    member.send_json(json!({"event":"client-hi","channel":"presence-lobby","data":{"n":1}})).await;
    assert_eq!(revpy.expect("client-hi").await.user_id.as_deref(), Some("7"));
    revpy.send_json(json!({"event":"client-hi","channel":"presence-lobby","data":{"n":2}})).await;
    assert_eq!(member.expect("client-hi").await.user_id, None);
    // Leaving announces nothing either.
    drop(revpy);
    member.expect_silence(300).await;
    // Signed channel_data that is not a JSON object is still refused.
    let mut bad = Client::connect(&server).await;
    let auth = sign_channel(KEY, SECRET, &bad.socket_id, "presence-lobby", Some("[1]"));
    bad.send_json(
        json!({"event":"pusher:subscribe","data":{"channel":"presence-lobby","auth":auth,"channel_data":"[1]"}}),
    )
    .await;
    let refused = bad.expect("pusher:subscription_error").await;
    assert!(refused.data.as_text().is_some_and(|t| t.contains("must be a JSON object")), "{refused:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn client_event_data_sent_as_a_json_string_is_relayed_as_json_as_reverb_does() {
    let server = start_default().await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe("private-chat").await;
    b.subscribe("private-chat").await;
    // python-reverb's way: data is the JSON text of an object.
    a.send_json(json!({"event":"client-msg","channel":"private-chat","data":"{\"text\":\"hi\"}"})).await;
    let raw = b.next_message().await.expect("a frame");
    let relayed: Value = serde_json::from_str(raw.as_text().expect("text")).expect("json");
    assert_eq!(relayed["data"], json!({"text": "hi"}), "{relayed}");
    // A string that is not a JSON object or array stays a string.
    for plain in ["just text", "42", "{not json"] {
        a.send_json(json!({"event":"client-msg","channel":"private-chat","data": plain})).await;
        let raw = b.next_message().await.expect("a frame");
        let relayed: Value = serde_json::from_str(raw.as_text().expect("text")).expect("json");
        assert_eq!(relayed["data"], plain, "{relayed}");
    }
    server.shutdown().await;
}
