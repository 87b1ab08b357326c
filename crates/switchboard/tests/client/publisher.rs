//! The HTTP API client: triggers, batches, queries, terminate, webhooks.

use serde_json::json;
use switchboard::pusher::publisher::BatchEvent;
use switchboard::{ConnectionState, ErrorKind, PresenceUser, Publisher};

use crate::common::*;

#[tokio::test]
async fn trigger_batch_and_exclusion() {
    let server = server().await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    let ca = a.subscribe("orders").await.expect("a");
    let cb = b.subscribe("orders").await.expect("b");
    let (mut ea, mut eb) = (ca.events(), cb.events());
    let publisher = publisher(&server);
    let socket_a = a.socket_id().expect("socket");
    publisher.trigger(&["orders"], "created", &json!({"id": 1}), Some(&socket_a)).await.expect("trigger");
    assert_eq!(next_named(&mut eb, "created").await.json::<serde_json::Value>().expect("json")["id"], 1);
    none_named(&mut ea, "created", 200).await;
    let batch: Vec<BatchEvent> = (0..3)
        .map(|i| BatchEvent { channel: "orders".into(), name: format!("e{i}"), data: i.to_string(), socket_id: None })
        .collect();
    publisher.trigger_batch(&batch).await.expect("batch");
    for i in 0..3 {
        next_named(&mut ea, &format!("e{i}")).await;
    }
    let too_many: Vec<&str> = vec!["x"; 101];
    assert_eq!(
        publisher.trigger(&too_many, "e", &"d", None).await.expect_err("refused").kind(),
        ErrorKind::InvalidRequest
    );
    server.shutdown().await;
}

#[tokio::test]
async fn queries_and_terminate() {
    let server = server().await;
    let a = connect(&server).await;
    a.subscribe_presence("presence-q", PresenceUser::new("u1", json!({}))).await.expect("join");
    let publisher = publisher(&server);
    let channels = publisher.channels(Some("presence-"), Some("user_count")).await.expect("channels");
    assert_eq!(channels, json!({"channels": {"presence-q": {"user_count": 1}}}));
    let channel = publisher.channel("presence-q", Some("subscription_count")).await.expect("channel");
    assert_eq!(channel, json!({"occupied": true, "subscription_count": 1}));
    assert_eq!(publisher.users("presence-q").await.expect("users"), vec!["u1"]);
    publisher.terminate_user_connections("u1").await.expect("terminate");
    eventually(WAIT, || matches!(a.state(), ConnectionState::Failed { code: Some(4009), .. })).await;
    let wrong = Publisher::new(&format!("http://{}", server.local_addr()), APP_ID, KEY, "wrong").expect("publisher");
    let err = wrong.channels(None, None).await.expect_err("bad signature");
    assert_eq!((err.kind(), err.status()), (ErrorKind::Authentication, Some(401)));
    assert!(publisher.verify_webhook(KEY, &switchboard_protocol::signature::sign_webhook(SECRET, b"{}"), b"{}"));
    assert!(!publisher.verify_webhook(KEY, "00", b"{}"));
    server.shutdown().await;
}
