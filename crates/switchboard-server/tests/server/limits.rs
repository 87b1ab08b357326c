//! Limits and refusals: message size, connection quotas, unknown keys — each with its
//! code, and the server keeps serving everyone else.

use serde_json::json;
use switchboard_server::ServerConfig;

use crate::common::*;

#[tokio::test]
async fn unknown_app_key_gets_4001() {
    let server = start_default().await;
    let mut ws = Client {
        ws: connect_raw(&ws_url(&server, "no-such-key")).await,
        socket_id: String::new(),
    };
    let (code, message) = ws.expect_error().await;
    assert_eq!(code, 4001, "{message}");
    assert_eq!(ws.expect_close().await, Some(4001));
    Client::connect(&server).await.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_message_gets_an_error_and_the_socket_lives() {
    let server = start_default().await;
    let (mut a, mut b) = (
        Client::connect(&server).await,
        Client::connect(&server).await,
    );
    a.subscribe("private-big").await;
    b.subscribe("private-big").await;
    let big = "x".repeat(10_001);
    a.send_json(json!({"event":"client-big","channel":"private-big","data":{"blob": big}}))
        .await;
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
    let huge = format!(
        r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
        "y".repeat(1024 * 1024)
    );
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
    let mut third = Client {
        ws: connect_raw(&ws_url(&server, KEY)).await,
        socket_id: String::new(),
    };
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
    let cfg = ServerConfig {
        max_connections: 1,
        ..config_with(app())
    };
    let server = start(cfg).await;
    let mut a = Client::connect(&server).await;
    let mut second = Client {
        ws: connect_raw(&ws_url(&server, KEY)).await,
        socket_id: String::new(),
    };
    assert_eq!(second.expect_error().await.0, 4100);
    assert_eq!(second.expect_close().await, Some(4100));
    a.assert_alive().await;
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_to_the_websocket_path_is_a_clear_400() {
    let server = start_default().await;
    let api = Api::new(&server);
    let (status, body) = api
        .send(api.raw().get(format!("{}/app/{KEY}", api.base())))
        .await;
    assert_eq!(status, 400);
    assert!(
        body.as_str().unwrap_or_default().contains("WebSocket"),
        "{body}"
    );
    server.shutdown().await;
}
