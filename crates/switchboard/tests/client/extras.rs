//! Encrypted channels, user sign-in, cache channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use serde_json::json;
use switchboard::{
    ChannelAuth, Client, ConnectionState, DECRYPTION_ERROR_EVENT, ErrorKind, FnAuthorizer, PresenceUser,
    SecretAuthorizer,
};
use switchboard_protocol::signature::{encrypted_channel_secret, sign_channel};
use switchboard_server::Server;

use crate::common::*;

const MASTER: [u8; 32] = [9; 32];

fn master_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(MASTER)
}

#[tokio::test]
async fn encrypted_channel_events_are_decrypted() {
    let server = server().await;
    let signer = SecretAuthorizer::new(KEY, SECRET).with_encryption_master_key(&master_b64()).expect("key");
    let client = Client::connect(options_for(server.local_addr()).authorizer(signer).build().expect("options"))
        .await
        .expect("connect");
    let vault = client.subscribe("private-encrypted-vault").await.expect("subscribed");
    let mut events = vault.events();
    let publisher = publisher(&server).with_encryption_master_key(&master_b64()).expect("key");
    publisher.trigger(&["private-encrypted-vault"], "secret", &json!({"code": 1234}), None).await.expect("trigger");
    let event = next_named(&mut events, "secret").await;
    assert_eq!(event.json::<serde_json::Value>().expect("json"), json!({"code": 1234}));
    // The server only ever saw ciphertext.
    let err =
        publisher.trigger(&["private-encrypted-vault", "other"], "x", &json!({}), None).await.expect_err("one channel");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_undecryptable_events_are_reported() {
    let server = server().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let auth = FnAuthorizer::new(move |req| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            // The first key is stale (as after a master key rotation); later ones are right.
            let key = if n == 0 { [1u8; 32] } else { encrypted_channel_secret(&req.channel, &MASTER) };
            Ok(ChannelAuth {
                auth: sign_channel(KEY, SECRET, &req.socket_id, &req.channel, None),
                channel_data: None,
                shared_secret: Some(base64::engine::general_purpose::STANDARD.encode(key)),
            })
        }
    });
    let client = Client::connect(options_for(server.local_addr()).authorizer(auth).build().expect("options"))
        .await
        .expect("connect");
    let vault = client.subscribe("private-encrypted-rotating").await.expect("subscribed");
    let mut events = vault.events();
    let publisher = publisher(&server).with_encryption_master_key(&master_b64()).expect("key");
    publisher.trigger(&["private-encrypted-rotating"], "m", &"first", None).await.expect("trigger");
    assert_eq!(next_named(&mut events, "m").await.json::<String>().expect("json"), "first");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one re-authorization");
    // An event sealed with a key nobody has is dropped and reported.
    let wrong = crate::common::publisher(&server)
        .with_encryption_master_key(&base64::engine::general_purpose::STANDARD.encode([5u8; 32]))
        .expect("key");
    wrong.trigger(&["private-encrypted-rotating"], "m", &"garbage", None).await.expect("trigger");
    let reported = next_named(&mut events, DECRYPTION_ERROR_EVENT).await;
    assert_eq!(reported.json::<serde_json::Value>().expect("json")["event"], "m");
    publisher.trigger(&["private-encrypted-rotating"], "m", &"after", None).await.expect("trigger");
    assert_eq!(next_named(&mut events, "m").await.json::<String>().expect("json"), "after");
    server.shutdown().await;
}

#[tokio::test]
async fn encrypted_subscribe_without_a_shared_secret_is_refused_clearly() {
    let server = server().await;
    let client = connect(&server).await; // plain secret signer, no master key
    let err = client.subscribe("private-encrypted-x").await.expect_err("no key");
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(err.to_string().contains("shared_secret"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn signin_receives_user_events_and_signs_in_again_after_a_reconnect() {
    let first = Server::start(config(0, app())).await.expect("server");
    let port = first.local_addr().port();
    let signer = SecretAuthorizer::new(KEY, SECRET).with_user(PresenceUser::new("42", json!({"name": "Ada"})));
    let client = Client::connect(options_for(first.local_addr()).authorizer(signer).build().expect("options"))
        .await
        .expect("connect");
    let mut user_events = client.user_events();
    client.signin().await.expect("signed in");
    next_named(&mut user_events, "pusher:signin_success").await;
    publisher(&first).trigger(&["#server-to-user-42"], "notice", &json!({"n": 1}), None).await.expect("trigger");
    assert_eq!(next_named(&mut user_events, "notice").await.json::<serde_json::Value>().expect("json")["n"], 1);

    first.shutdown().await;
    eventually(WAIT, || !matches!(client.state(), ConnectionState::Connected { .. })).await;
    let second = Server::start(config(port, app())).await.expect("restarted");
    client.connected().await.expect("reconnected");
    next_named(&mut user_events, "pusher:signin_success").await;
    let app = second.app(APP_ID).expect("app");
    eventually(WAIT, || app.channel_counts("#server-to-user-42").subscription_count == 1).await;
    publisher(&second).trigger(&["#server-to-user-42"], "notice", &json!({"n": 2}), None).await.expect("trigger");
    assert_eq!(next_named(&mut user_events, "notice").await.json::<serde_json::Value>().expect("json")["n"], 2);
    second.shutdown().await;
}

#[tokio::test]
async fn signin_refused_is_an_authentication_error() {
    let server = server().await;
    let signer = SecretAuthorizer::new(KEY, "wrong").with_user(PresenceUser::new("1", json!(null)));
    let client = Client::connect(options_for(server.local_addr()).authorizer(signer).build().expect("options"))
        .await
        .expect("connect");
    let err = client.signin().await.expect_err("refused");
    assert_eq!((err.kind(), err.code()), (ErrorKind::Authentication, Some(4009)));
    let no_user = connect(&server).await;
    let err = no_user.signin().await.expect_err("no user configured");
    assert_eq!(err.kind(), ErrorKind::Authentication);
    server.shutdown().await;
}

#[tokio::test]
async fn cache_channels_report_a_miss_or_replay() {
    let server = server().await;
    let client = connect(&server).await;
    let mut global = client.events();
    client.subscribe("cache-prices").await.expect("subscribed");
    next_named(&mut global, "pusher:cache_miss").await;
    publisher(&server).trigger(&["cache-quotes"], "quote", &"7", None).await.expect("trigger");
    let late = client.subscribe("cache-quotes").await.expect("subscribed");
    assert!(late.is_subscribed());
    // The replay can arrive before a channel stream exists; the global stream sees it.
    let replay = next_named(&mut global, "quote").await;
    assert_eq!((replay.channel(), replay.data()), (Some("cache-quotes"), Some("7")));
    server.shutdown().await;
}
