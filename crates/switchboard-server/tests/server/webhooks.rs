//! Webhooks: signed, batched, retried; received by a real HTTP endpoint on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use switchboard_protocol::signature::verify_webhook;
use switchboard_server::WebhookConfig;
use tokio::sync::mpsc;

use crate::common::*;

struct Receiver {
    calls: AtomicUsize,
    fail_first: usize,
    tx: mpsc::UnboundedSender<(HeaderMap, bytes::Bytes)>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: bytes::Bytes) -> StatusCode {
    let n = r.calls.fetch_add(1, Ordering::SeqCst);
    if n < r.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let _ = r.tx.send((headers, body));
    StatusCode::OK
}

async fn start_receiver(
    fail_first: usize,
) -> (String, Arc<Receiver>, mpsc::UnboundedReceiver<(HeaderMap, bytes::Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let receiver = Arc::new(Receiver { calls: AtomicUsize::new(0), fail_first, tx });
    let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, receiver, rx)
}

/// Collect webhook events until `want` names have been seen (bounded by WAIT).
async fn collect(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, bytes::Bytes)>, want: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < want {
        let (headers, body) = tokio::time::timeout(WAIT, rx.recv()).await.expect("webhook in time").expect("open");
        let key = headers["x-pusher-key"].to_str().expect("key");
        let signature = headers["x-pusher-signature"].to_str().expect("sig");
        assert!(verify_webhook(KEY, SECRET, key, signature, &body), "webhook signature verifies");
        assert_eq!(headers["content-type"], "application/json");
        let batch: Value = serde_json::from_slice(&body).expect("json");
        assert!(batch["time_ms"].as_u64().is_some());
        events.extend(batch["events"].as_array().expect("events").iter().cloned());
    }
    events
}

#[tokio::test]
async fn lifecycle_member_and_client_event_webhooks() {
    let (url, _, mut rx) = start_receiver(0).await;
    let mut app = app();
    app.webhooks = vec![WebhookConfig { url, events: vec![] }];
    let server = start(config_with(app)).await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.join("presence-hooks", "1", json!({})).await;
    b.join("presence-hooks", "2", json!({})).await;
    a.expect("pusher_internal:member_added").await;
    b.send_json(json!({"event":"client-hi","channel":"presence-hooks","data":{"x":1}})).await;
    a.expect("client-hi").await;
    drop(a);
    drop(b);
    let events = collect(&mut rx, 6).await;
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().expect("name")).collect();
    assert_eq!(names[0], "channel_occupied");
    assert_eq!(names.iter().filter(|n| **n == "member_added").count(), 2);
    assert_eq!(names.iter().filter(|n| **n == "member_removed").count(), 2);
    let client = events.iter().find(|e| e["name"] == "client_event").expect("client_event");
    assert_eq!(client["event"], "client-hi");
    assert_eq!(client["user_id"], "2");
    assert_eq!(client["data"], r#"{"x":1}"#);
    assert_eq!(client["channel"], "presence-hooks");
    let rest = collect(&mut rx, usize::from(!names.contains(&"channel_vacated"))).await;
    assert!(names.contains(&"channel_vacated") || rest.iter().any(|e| e["name"] == "channel_vacated"));
    server.shutdown().await;
}

#[tokio::test]
async fn webhooks_are_retried_and_filtered() {
    let (url, receiver, mut rx) = start_receiver(2).await;
    let mut app = app();
    app.webhooks = vec![WebhookConfig { url, events: vec!["channel_occupied".into()] }];
    let server = start(config_with(app)).await;
    let mut a = Client::connect(&server).await;
    a.subscribe("retry-me").await;
    a.send_json(json!({"event":"pusher:unsubscribe","data":{"channel":"retry-me"}})).await;
    let events = collect(&mut rx, 1).await;
    assert_eq!(events, vec![json!({"name":"channel_occupied","channel":"retry-me"})]);
    assert_eq!(receiver.calls.load(Ordering::SeqCst), 3, "two failures, then delivered");
    // channel_vacated was filtered out: nothing else arrives.
    assert!(tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv()).await.is_err());
    eventually(|| server.metrics().webhooks_sent.get() == 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_dead_endpoint_does_not_hold_up_a_live_one_and_shutdown_flushes() {
    let (live, _, mut rx) = start_receiver(0).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", l.local_addr().expect("addr"))
    };
    let mut app = app();
    app.webhooks = vec![WebhookConfig { url: dead, events: vec![] }, WebhookConfig { url: live, events: vec![] }];
    let server = start(config_with(app)).await;
    let mut a = Client::connect(&server).await;
    a.join("presence-flush", "1", json!({})).await;
    let first = collect(&mut rx, 2).await;
    assert_eq!(first[0]["name"], "channel_occupied");
    assert_eq!(first[1]["name"], "member_added");
    // The socket is still open: shutdown closes it, and the webhooks it causes still go out.
    server.shutdown().await;
    let last = collect(&mut rx, 2).await;
    let names: Vec<&str> = last.iter().map(|e| e["name"].as_str().expect("name")).collect();
    assert_eq!(names, vec!["member_removed", "channel_vacated"]);
}
