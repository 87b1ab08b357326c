//! The signed HTTP API, driven with our own signer (the official SDK drives it in the
//! interop test): publishing, queries, signature and timestamp checks, JSON errors.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn trigger_to_many_channels_with_exclusion_and_info() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe("c1").await;
    b.subscribe("c1").await;
    b.subscribe("c2").await;
    let (status, body) = api
        .post(
            "/apps/1000/events",
            json!({"name":"e","channels":["c1","c2"],"data":"d","socket_id": a.socket_id, "info":"subscription_count"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"channels":{"c1":{"subscription_count":2},"c2":{"subscription_count":1}}}));
    assert_eq!(b.expect("e").await.channel.as_deref(), Some("c1"));
    assert_eq!(b.expect("e").await.channel.as_deref(), Some("c2"));
    a.expect_silence(200).await;
    server.shutdown().await;
}

#[tokio::test]
async fn trigger_validation() {
    let server = start_default().await;
    let api = Api::new(&server);
    let channels: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let cases = [
        (json!({"name":"e","channels":channels,"data":"d"}), 400),
        (json!({"name":"e","channels":[],"data":"d"}), 400),
        (json!({"name":"e","data":"d"}), 400),
        (json!({"name":"","channel":"c","data":"d"}), 400),
        (json!({"name":"e","channel":"bad name","data":"d"}), 400),
        (json!({"name":"e","channel":"c","data":{"not":"a string"}}), 400),
        (json!({"name":"e","channel":"c","data":"x".repeat(10_001)}), 413),
        (json!({"name":"e","channel":"c","data":"d","socket_id":"abc"}), 400),
    ];
    for (body, expected) in cases {
        let (status, reply) = api.post("/apps/1000/events", body.clone()).await;
        assert_eq!(status, expected, "{body} → {reply}");
        assert_eq!(reply["code"], expected, "JSON error body: {reply}");
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let hundred: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    assert_eq!(api.post("/apps/1000/events", json!({"name":"e","channels":hundred,"data":"d"})).await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn batch_events_in_order_and_limited_to_ten() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    c.subscribe("b").await;
    let batch: Vec<Value> =
        (0..10).map(|i| json!({"name": format!("e{i}"), "channel":"b", "data": i.to_string()})).collect();
    let (status, body) = api.post("/apps/1000/batch_events", json!({ "batch": batch })).await;
    assert_eq!((status, body), (200, json!({})));
    for i in 0..10 {
        assert_eq!(c.expect(&format!("e{i}")).await.data.as_text(), Some(i.to_string().as_str()));
    }
    let eleven: Vec<Value> = (0..11).map(|i| json!({"name":"e","channel":"b","data": i.to_string()})).collect();
    assert_eq!(api.post("/apps/1000/batch_events", json!({ "batch": eleven })).await.0, 400);
    c.expect_silence(200).await;
    let (status, body) = api
        .post(
            "/apps/1000/batch_events",
            json!({"batch":[{"name":"x","channel":"b","data":"1","info":"subscription_count"}]}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"batch":[{"subscription_count":1}]})));
    server.shutdown().await;
}

#[tokio::test]
async fn channel_queries() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe("news").await;
    a.join("presence-lobby", "1", json!({"n":1})).await;
    b.join("presence-lobby", "2", json!({"n":2})).await;

    let (status, body) = api.get("/apps/1000/channels", &[]).await;
    assert_eq!((status, body), (200, json!({"channels":{"news":{},"presence-lobby":{}}})));
    let (_, body) = api.get("/apps/1000/channels", &[("filter_by_prefix", "presence-"), ("info", "user_count")]).await;
    assert_eq!(body, json!({"channels":{"presence-lobby":{"user_count":2}}}));
    assert_eq!(api.get("/apps/1000/channels", &[("info", "user_count")]).await.0, 400);

    let (_, body) = api.get("/apps/1000/channels/presence-lobby", &[("info", "user_count,subscription_count")]).await;
    assert_eq!(body, json!({"occupied":true,"user_count":2,"subscription_count":2}));
    let (_, body) = api.get("/apps/1000/channels/news", &[("info", "subscription_count")]).await;
    assert_eq!(body, json!({"occupied":true,"subscription_count":1}));
    assert_eq!(api.get("/apps/1000/channels/news", &[("info", "user_count")]).await.0, 400);
    let (status, body) = api.get("/apps/1000/channels/empty", &[]).await;
    assert_eq!((status, body), (200, json!({"occupied":false})));

    let (_, body) = api.get("/apps/1000/channels/presence-lobby/users", &[]).await;
    assert_eq!(body, json!({"users":[{"id":"1"},{"id":"2"}]}));
    assert_eq!(api.get("/apps/1000/channels/news/users", &[]).await.0, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn signature_failures_are_401_with_a_reason() {
    let server = start_default().await;
    let api = Api::new(&server);
    let body = json!({"name":"e","channel":"c","data":"d"}).to_string();
    let post = |url: String| api.raw().post(url).header("content-type", "application/json").body(body.clone());

    // expired and future timestamps
    for ts in [now() - 601, now() + 601] {
        let (status, reply) =
            api.send(post(api.url("POST", "/apps/1000/events", &[], Some(body.as_bytes()), ts))).await;
        assert_eq!(status, 401);
        assert!(reply["error"].as_str().expect("error").contains("auth_timestamp"), "{reply}");
    }
    // wrong secret
    let wrong = Api { secret: "nope".into(), ..Api::new(&server) };
    let (status, reply) =
        api.send(post(wrong.url("POST", "/apps/1000/events", &[], Some(body.as_bytes()), now()))).await;
    assert_eq!(status, 401);
    assert!(reply["error"].as_str().expect("error").contains("auth_signature"), "{reply}");
    // wrong key
    let wrong = Api { key: "other".into(), ..Api::new(&server) };
    assert_eq!(api.send(post(wrong.url("POST", "/apps/1000/events", &[], Some(body.as_bytes()), now()))).await.0, 401);
    // body changed after signing
    let url = api.url("POST", "/apps/1000/events", &[], Some(b"{}"), now());
    let (status, reply) = api.send(post(url)).await;
    assert_eq!(status, 401);
    assert!(reply["error"].as_str().expect("error").contains("body_md5"));
    // no signature at all
    let (status, _) = api.send(api.raw().get(format!("{}/apps/1000/channels", api.base()))).await;
    assert_eq!(status, 401);
    // a replayed request from long ago
    let old = api.url("GET", "/apps/1000/channels", &[], None, now() - 3600);
    assert_eq!(api.send(api.raw().get(old)).await.0, 401);
    // unknown app
    let (status, reply) = api.get("/apps/999/channels", &[]).await;
    assert_eq!((status, reply["code"].as_u64()), (404, Some(404)));
    server.shutdown().await;
}

#[tokio::test]
async fn python_sdk_style_get_with_empty_body_md5_is_accepted() {
    let server = start_default().await;
    let api = Api::new(&server);
    let empty_md5 = switchboard_protocol::http_auth::body_md5(b"");
    let url = api.url("GET", "/apps/1000/channels", &[("body_md5", &empty_md5)], None, now());
    let (status, body) = api.send(api.raw().get(url)).await;
    assert_eq!((status, body), (200, json!({"channels":{}})));
    server.shutdown().await;
}

#[tokio::test]
async fn channel_names_with_encoded_characters_verify() {
    // The SDK signs the decoded path; the URL carries it percent-encoded.
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    c.subscribe("a=b@c,d;e").await;
    let url = api
        .url("GET", "/apps/1000/channels/a=b@c,d;e", &[("info", "subscription_count")], None, now())
        .replace("a=b@c,d;e?", "a%3Db%40c%2Cd%3Be?");
    let (status, body) = api.send(api.raw().get(url)).await;
    assert_eq!((status, body), (200, json!({"occupied":true,"subscription_count":1})));
    server.shutdown().await;
}

#[tokio::test]
async fn up_and_metrics() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    c.subscribe("m").await;
    api.post("/apps/1000/events", json!({"name":"e","channel":"m","data":"d"})).await;
    c.expect("e").await;
    let (status, body) = api.send(api.raw().get(format!("{}/up", api.base()))).await;
    assert_eq!((status, body), (200, json!({"health":"OK"})));
    let response = api.raw().get(format!("{}/metrics", api.base())).send().await.expect("metrics");
    let text = response.text().await.expect("text");
    for line in [
        "switchboard_connections 1",
        "switchboard_subscriptions 1",
        "switchboard_connections_accepted_total 1",
        "switchboard_http_requests_total{endpoint=\"events\",status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("switchboard_ws_messages_received_total"));
    assert!(text.contains("switchboard_ws_messages_sent_total"));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let server = start_default().await;
    let api = Api::new(&server);
    let (status, body) = api.send(api.raw().get(format!("{}/nope", api.base()))).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(404)));
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_delivers_nothing() {
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    c.subscribe("news").await;
    let (status, _) =
        api.post("/apps/1000/events", json!({"name":"e","channel":"news","data":"1","info":"user_count"})).await;
    assert_eq!(status, 400);
    let (status, reply) = api
        .post(
            "/apps/1000/batch_events",
            json!({"batch":[{"name":"e","channel":"news","data":"1"},{"name":"e","channel":"bad name","data":"2"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().expect("error").starts_with("batch[1]"), "{reply}");
    c.expect_silence(300).await;
    server.shutdown().await;
}

#[tokio::test]
async fn php_style_array_parameters_verify() {
    // pusher-http-php signs info=a,b while the URL carries info[0]=a&info[1]=b.
    let server = start_default().await;
    let api = Api::new(&server);
    let mut c = Client::connect(&server).await;
    c.join("presence-php", "1", json!({})).await;
    let url =
        api.url("GET", "/apps/1000/channels/presence-php", &[("info", "user_count,subscription_count")], None, now());
    let url =
        url.replace("info=user_count%2Csubscription_count", "info%5B0%5D=user_count&info%5B1%5D=subscription_count");
    assert!(url.contains("info%5B0%5D"), "{url}");
    let (status, body) = api.send(api.raw().get(url)).await;
    assert_eq!((status, body), (200, json!({"occupied":true,"user_count":1,"subscription_count":1})));
    server.shutdown().await;
}

#[tokio::test]
async fn absurd_timestamps_are_401_not_a_crash() {
    let server = start_default().await;
    let api = Api::new(&server);
    let url = format!(
        "{}/apps/1000/channels?auth_key={KEY}&auth_timestamp=-9223372036854775808&auth_version=1.0&auth_signature=00",
        api.base()
    );
    assert_eq!(api.send(api.raw().get(url)).await.0, 401);
    assert_eq!(api.get("/apps/1000/channels", &[]).await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_query_with_too_many_parameters_is_refused_before_it_is_verified() {
    let server = start_default().await;
    let api = Api::new(&server);
    // Unsigned, 3,000 distinct array parameters (the old parse compared each with all before).
    let flood: Vec<String> = (0..3_000).map(|i| format!("k{i}%5B%5D=v")).collect();
    let url = format!("{}/apps/1000/channels?{}", api.base(), flood.join("&"));
    let (status, body) = api.send(api.raw().get(url)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "too many query parameters: at most 64");
    // At the cap, a signed request still verifies (60 parameters + the four auth_*).
    let extra: Vec<(String, String)> = (0..60).map(|i| (format!("x{i}"), "1".to_owned())).collect();
    let params: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, body) = api.get("/apps/1000/channels", &params).await;
    assert_eq!(status, 200, "{body}");
    server.shutdown().await;
}
