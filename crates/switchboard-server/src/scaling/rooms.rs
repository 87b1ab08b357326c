//! Phoenix rooms across nodes. Redis holds each room's members (meta, username, join order)
//! and each node's share of them (its `sock` hash, for reaping); every join, leave, meta
//! update and shout is one script that also numbers and publishes the broadcast on the
//! Phoenix space's bus, so every node delivers a room's diffs in one order and a member is
//! announced once, however many nodes hold the room. A joiner's `presence_state` is read in
//! the same script as its join, so state plus the diffs after it is exact. A member is keyed
//! `node:conn`, so a reaper removes a dead node's members with the same leave script, and
//! the leave diff is built from what Redis holds.
//!
//! ```
//! // Crate-internal. A room broadcast on the bus is its V2 frame, e.g. a leave diff:
//! let frame = r#"[null,null,"room:lobby","presence_diff",{"joins":{},"leaves":{"ada":{"metas":[{}]}}}]"#;
//! assert!(frame.starts_with("[null,null,"));
//! ```

use std::collections::HashMap;

use serde_json::Value;
use switchboard_protocol::phoenix::{Message, Payload, Vsn};

use super::bus::Header;
use super::keys::Keys;
use super::{CACHE_TTL_MS, Inner, as_array, as_i64, as_string, scripts, unavailable};
use crate::adapter::AdapterError;
use crate::phoenix::{RoomMember, Rooms};

/// A diff's V2 frame up to its payload: `[null,null,"topic","presence_diff",`.
fn diff_prefix(topic: &str) -> String {
    format!("[null,null,{},\"presence_diff\",", Value::from(topic))
}

fn member_key(node: &str, conn: u64) -> String {
    format!("{node}:{conn}")
}

fn sock_field(conn: u64, topic: &str) -> String {
    format!("{conn}|{topic}")
}

fn tail(topic: &str, node: &str) -> String {
    Header { c: Some(topic.into()), ..Header::new("r", node) }.tail()
}

/// A room message as the bus carries it: the V2 encoding (JSON text, or a binary broadcast).
fn encode_body(message: &Message) -> Vec<u8> {
    match &message.payload {
        Payload::Json(_) => message.encode_text(Vsn::V2).into_bytes(),
        // As one node does: a topic too long for a binary header sends an empty frame.
        _ => message.encode_binary_server().unwrap_or_default(),
    }
}

/// Decode a room message off the bus; `None` if malformed.
pub(super) fn decode_body(body: &[u8]) -> Option<Message> {
    if body.first() == Some(&b'[') {
        Message::decode_text(std::str::from_utf8(body).ok()?, Vsn::V2).ok()
    } else {
        Message::decode_binary(body, true).ok()
    }
}

fn not_started() -> AdapterError {
    AdapterError::Unavailable("the cluster adapter has not started".into())
}

/// Track `member` cluster-wide; the Presence state before it, or `None` if the room is full.
pub(super) async fn join(
    inner: &Inner,
    rooms: &Rooms,
    topic: &str,
    member: RoomMember,
    max_members: usize,
) -> Result<Option<Value>, AdapterError> {
    let space = inner.phoenix_space().ok_or_else(not_started)?;
    inner.bus_ready().await?;
    let keys = &space.keys;
    let node = inner.node_id();
    let conn = member.conn();
    let meta = member.meta().to_string();
    let name = Value::from(member.username()).to_string();
    // Local first, so the bus messages ordered after the join find the member.
    rooms.add_pending(topic, member);
    let mut redis = inner.conn();
    let reply: Result<redis::Value, _> = scripts::ROOM_JOIN
        .key(keys.node(&node))
        .key(keys.sock(&node))
        .key(keys.room_metas(topic))
        .key(keys.room_names(topic))
        .key(keys.room_order(topic))
        .key(keys.seq())
        .arg(member_key(&node, conn))
        .arg(sock_field(conn, topic))
        .arg(meta)
        .arg(name)
        .arg(max_members)
        .arg(keys.bus())
        .arg(tail(topic, &node))
        .arg(diff_prefix(topic))
        .invoke_async(&mut redis)
        .await;
    let refuse = |error: AdapterError| {
        rooms.remove_local(topic, conn);
        error
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            // The script may have run: a fence once Redis answers clears what it left.
            inner.dirty.store(true, std::sync::atomic::Ordering::Release);
            return Err(refuse(unavailable(e)));
        }
    };
    let items = as_array(&reply);
    match items.first().and_then(as_string).as_deref() {
        Some("ok") => {}
        Some("full") => {
            rooms.remove_local(topic, conn);
            return Ok(None);
        }
        Some("fenced") => {
            inner.dirty.store(true, std::sync::atomic::Ordering::Release);
            return Err(refuse(AdapterError::Fenced));
        }
        _ => return Err(refuse(AdapterError::Unavailable(format!("unexpected room join reply {reply:?}")))),
    }
    if inner.node_id() != node {
        // Fenced while the script ran: its sockets were closed before this member was here,
        // and the old id's members are the reaper's. Refuse, so no member is left untracked.
        return Err(refuse(AdapterError::Fenced));
    }
    let seq = items.get(1).map_or(0, as_i64).max(1) as u64;
    let order: Vec<String> = items.get(2).map(as_array).unwrap_or_default().iter().filter_map(as_string).collect();
    let pairs = |at: usize| -> HashMap<String, String> {
        let flat: Vec<String> = items.get(at).map(as_array).unwrap_or_default().iter().filter_map(as_string).collect();
        flat.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect()
    };
    let (metas, names) = (pairs(3), pairs(4));
    let before = Rooms::state_from(order.iter().filter_map(|key| {
        let name: String = serde_json::from_str(names.get(key)?).ok()?;
        let meta: Value = serde_json::from_str(metas.get(key)?).ok()?;
        Some((name, meta))
    }));
    // Its own join diff is numbered `seq`: it gets that one and everything after.
    rooms.go_live(topic, conn, seq - 1);
    Ok(Some(before))
}

/// Untrack connection `conn`'s member of `topic` cluster-wide.
pub(super) async fn leave(inner: &Inner, rooms: &Rooms, topic: &str, conn: u64) -> Result<(), AdapterError> {
    if rooms.remove_local(topic, conn).is_none() {
        return Ok(()); // not a member here (or already closed by a fence)
    }
    let space = inner.phoenix_space().ok_or_else(not_started)?;
    let node = inner.node_id();
    if let Err(e) = leave_script(inner, &space.keys, &node, &sock_field(conn, topic), topic).await {
        inner.dirty.store(true, std::sync::atomic::Ordering::Release);
        return Err(unavailable(e));
    }
    Ok(())
}

/// Run the room leave script for one member of `node` (`field` is its `conn|topic`).
pub(super) async fn leave_script(
    inner: &Inner,
    keys: &Keys,
    node: &str,
    field: &str,
    topic: &str,
) -> Result<(), redis::RedisError> {
    let mut redis = inner.conn();
    let _: i64 = scripts::ROOM_LEAVE
        .key(keys.sock(node))
        .key(keys.room_metas(topic))
        .key(keys.room_names(topic))
        .key(keys.room_order(topic))
        .key(keys.seq())
        .arg(field)
        .arg(keys.bus())
        .arg(tail(topic, node))
        .arg(diff_prefix(topic))
        .invoke_async(&mut redis)
        .await?;
    Ok(())
}

/// Replace `conn`'s meta with `typing` set, cluster-wide.
pub(super) async fn update_typing(
    inner: &Inner,
    rooms: &Rooms,
    topic: &str,
    conn: u64,
    typing: bool,
) -> Result<(), AdapterError> {
    let Some((username, old, new)) = rooms.retype_local(topic, conn, typing) else { return Ok(()) };
    let space = inner.phoenix_space().ok_or_else(not_started)?;
    let keys = &space.keys;
    let node = inner.node_id();
    let meta = new.to_string();
    let body = encode_body(&Rooms::typing_diff(topic, &username, old, new));
    let mut redis = inner.conn();
    let updated: Result<i64, _> = scripts::ROOM_UPDATE
        .key(keys.sock(&node))
        .key(keys.room_metas(topic))
        .key(keys.seq())
        .arg(sock_field(conn, topic))
        .arg(member_key(&node, conn))
        .arg(meta)
        .arg(keys.bus())
        .arg(tail(topic, &node))
        .arg(body)
        .invoke_async(&mut redis)
        .await;
    if let Err(e) = updated {
        // This node's meta changed and the cluster's may not have: rejoin once Redis is back.
        inner.dirty.store(true, std::sync::atomic::Ordering::Release);
        return Err(unavailable(e));
    }
    Ok(())
}

/// Broadcast a `shout` to every member of `topic` on every node.
pub(super) async fn shout(inner: &Inner, topic: &str, payload: Payload) -> Result<(), AdapterError> {
    let space = inner.phoenix_space().ok_or_else(not_started)?;
    let keys = &space.keys;
    let node = inner.node_id();
    let body = encode_body(&Rooms::shout_message(topic, payload));
    let mut redis = inner.conn();
    let _: u64 = scripts::PUBLISH
        .key(keys.seq())
        .key(keys.cache(""))
        .arg(keys.bus())
        .arg(tail(topic, &node))
        .arg(body)
        .arg("0")
        .arg(CACHE_TTL_MS)
        .invoke_async(&mut redis)
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn room_bodies_round_trip_in_both_encodings() {
        let diff = Rooms::diff("room:\"q\"", json!({"ada": {"metas": [{"typing": false}]}}), json!({}));
        assert_eq!(decode_body(&encode_body(&diff)), Some(diff));
        let shout = Rooms::shout_message("room:a", Payload::Binary(vec![0, 1, 2]));
        assert_eq!(decode_body(&encode_body(&shout)), Some(shout));
        assert_eq!(decode_body(b"[not json"), None);
        assert_eq!(decode_body(b"\x09"), None);
    }

    #[test]
    fn the_scripts_diff_prefix_completes_to_the_frame_one_node_sends() {
        // What ROOM_LEAVE appends to the prefix, for a name and meta as stored.
        let name = Value::from("a\"da").to_string();
        let meta = json!({"typing": false, "username": "a\"da", "phx_ref": "F1"}).to_string();
        let frame =
            format!("{}{{\"joins\":{{}},\"leaves\":{{{name}:{{\"metas\":[{meta}]}}}}}}]", diff_prefix("room:\"x\""));
        let one_node = Rooms::diff(
            "room:\"x\"",
            json!({}),
            json!({"a\"da": {"metas": [serde_json::from_str::<Value>(&meta).unwrap()]}}),
        );
        assert_eq!(decode_body(frame.as_bytes()), Some(one_node));
    }
}
