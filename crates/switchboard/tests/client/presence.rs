//! Presence: members, me, member_added / member_removed, one member per user.

use serde_json::json;
use switchboard::{Client, PresenceUser};

use crate::common::*;

#[tokio::test]
async fn members_me_and_membership_events() {
    let server = server().await;
    let a = connect(&server).await;
    let b1 = connect(&server).await;
    let b2 = connect(&server).await;
    let room_a =
        a.subscribe_presence("presence-room", PresenceUser::new("ada", json!({"name": "Ada"}))).await.expect("a joins");
    let mut a_events = room_a.events();
    assert_eq!(room_a.members().count(), 1);
    assert_eq!(room_a.members().me().expect("me").id, "ada");

    let room_b = b1
        .subscribe_presence("presence-room", PresenceUser::new("bob", json!({"name": "Bob"})))
        .await
        .expect("b joins");
    let members = room_b.members();
    assert_eq!(members.count(), 2);
    assert_eq!(members.get("ada").expect("ada").info["name"], "Ada");
    assert_eq!(members.me().expect("me").id, "bob");
    let added = next_named(&mut a_events, "pusher:member_added").await;
    assert_eq!(added.json::<serde_json::Value>().expect("json")["user_id"], "bob");
    assert_eq!(room_a.members().count(), 2);

    // bob's second connection is the same member
    b2.subscribe_presence("presence-room", PresenceUser::new("bob", json!({"name": "Bob"}))).await.expect("b2 joins");
    none_named(&mut a_events, "pusher:member_added", 200).await;
    b1.disconnect().await;
    none_named(&mut a_events, "pusher:member_removed", 200).await;
    b2.unsubscribe("presence-room").await;
    let removed = next_named(&mut a_events, "pusher:member_removed").await;
    assert_eq!(removed.json::<serde_json::Value>().expect("json")["user_id"], "bob");
    assert_eq!(room_a.members().count(), 1);
    assert!(room_a.members().get("bob").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn presence_client_events_carry_the_sender() {
    let server = server().await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    let ra = a.subscribe_presence("presence-chat", PresenceUser::new("1", json!({}))).await.expect("a");
    let rb = b.subscribe_presence("presence-chat", PresenceUser::new("2", json!({}))).await.expect("b");
    let mut inbox = rb.events();
    ra.trigger("message", &json!({"text": "hello"})).await.expect("sent");
    let got = next_named(&mut inbox, "client-message").await;
    assert_eq!(got.user_id(), Some("1"));
    server.shutdown().await;
}

#[tokio::test]
async fn presence_without_an_identity_is_a_clear_error() {
    let server = server().await;
    let client = connect(&server).await;
    let err = client.subscribe("presence-anon").await.expect_err("needs a user");
    assert!(err.to_string().contains("PresenceUser"), "{err}");
    // With a default user on the signer it works.
    let signer =
        switchboard::SecretAuthorizer::new(KEY, SECRET).with_user(PresenceUser::new("svc", json!({"bot": true})));
    let options = options_for(server.local_addr()).authorizer(signer).build().expect("options");
    let bot = Client::connect(options).await.expect("connect");
    let room = bot.subscribe("presence-anon").await.expect("joined");
    assert_eq!(room.members().me().expect("me").info["bot"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn a_roster_past_max_presence_members_keeps_the_first_and_says_so_once() {
    let server = server().await;
    let mut others = Vec::new();
    for id in ["1", "2", "3"] {
        let c = connect(&server).await;
        c.subscribe_presence("presence-big", PresenceUser::new(id, json!({}))).await.expect("joins");
        others.push(c);
    }
    let options = options_for(server.local_addr()).secret(SECRET).max_presence_members(2).build().expect("options");
    let me = Client::connect(options).await.expect("connects");
    let room = me.subscribe_presence("presence-big", PresenceUser::new("me", json!({}))).await.expect("joins");
    let mut events = room.events();
    let capped = next_named(&mut events, switchboard::MEMBERS_CAPPED_EVENT).await;
    assert_eq!(capped.json::<serde_json::Value>().expect("json"), json!({"limit": 2}));
    // The first two, and this client itself, which is always kept.
    assert_eq!((room.members().count(), room.members().is_complete()), (3, false));
    assert_eq!(room.members().me().map(|m| m.id).as_deref(), Some("me"));
    // A later member is not tracked and not reported again.
    let late = connect(&server).await;
    late.subscribe_presence("presence-big", PresenceUser::new("5", json!({}))).await.expect("joins");
    none_named(&mut events, switchboard::MEMBERS_CAPPED_EVENT, 300).await;
    assert_eq!(room.members().count(), 3);
    drop((others, late));
}
