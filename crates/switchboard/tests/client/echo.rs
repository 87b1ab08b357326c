//! Echo helpers: prefixes, namespaced listen, whisper, here / joining / leaving.

use std::sync::{Arc, Mutex};

use serde_json::json;
use switchboard::{Echo, PresenceUser};

use crate::common::*;

#[tokio::test]
async fn echo_channels_listen_whisper_and_presence_callbacks() {
    let server = server().await;
    let (a, b) = (Echo::new(connect(&server).await), Echo::new(connect(&server).await));
    let orders = a.private("orders.1").await.expect("private");
    assert_eq!(orders.channel().name(), "private-orders.1");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    orders.listen("OrderShipped", move |e| log.lock().expect("lock").push(e.name().to_owned()));
    let log = seen.clone();
    orders.listen(".order.updated", move |e| log.lock().expect("lock").push(e.name().to_owned()));
    let publisher = publisher(&server);
    publisher.trigger(&["private-orders.1"], "App\\Events\\OrderShipped", &json!({}), None).await.expect("trigger");
    publisher.trigger(&["private-orders.1"], "order.updated", &json!({}), None).await.expect("trigger");
    eventually(WAIT, || seen.lock().expect("lock").len() == 2).await;
    assert_eq!(*seen.lock().expect("lock"), vec!["App\\Events\\OrderShipped".to_string(), "order.updated".to_string()]);

    let room_a = a.join_as("chat", PresenceUser::new("1", json!({"name": "Ada"}))).await.expect("join");
    let here = Arc::new(Mutex::new(Vec::new()));
    let log = here.clone();
    room_a.here(move |members| log.lock().expect("lock").push(members.len()));
    let joined = Arc::new(Mutex::new(Vec::new()));
    let log = joined.clone();
    room_a.joining(move |m| log.lock().expect("lock").push(format!("+{}", m.info["name"].as_str().unwrap_or("?"))));
    let log = joined.clone();
    room_a.leaving(move |m| log.lock().expect("lock").push(format!("-{}", m.info["name"].as_str().unwrap_or("?"))));
    let whispers = Arc::new(Mutex::new(Vec::new()));
    let log = whispers.clone();
    room_a.listen_for_whisper("typing", move |e| log.lock().expect("lock").push(e.user_id().map(str::to_owned)));

    let room_b = b.join_as("chat", PresenceUser::new("2", json!({"name": "Bob"}))).await.expect("join");
    room_b.whisper("typing", &json!({"typing": true})).await.expect("whisper");
    eventually(WAIT, || whispers.lock().expect("lock").len() == 1).await;
    assert_eq!(whispers.lock().expect("lock")[0].as_deref(), Some("2"));
    b.leave("chat").await;
    eventually(WAIT, || joined.lock().expect("lock").len() == 2).await;
    assert_eq!(*joined.lock().expect("lock"), vec!["+Bob", "-Bob"]);
    assert_eq!(*here.lock().expect("lock"), vec![1]);
    server.shutdown().await;
}
