//! RealtimeX's side of a shared channel: how a frame published on a Pusher channel (always
//! encoded the Pusher way first, so the HTTP API, client events and the adapter deal in one
//! form) is spoken to a RealtimeX socket, and how the server's own RealtimeX packets are
//! framed. Each WebSocket frame is one Engine.IO `message` holding one Socket.IO packet.
//!
//! ```
//! // Crate-internal; the mapping, for reference:
//! let pusher = r#"{"event":"headline","channel":"news","data":"{\"t\":1}"}"#;
//! let realtimex = r#"42["server-event",{"channel":"news","data":{"t":1},"event":"headline"}]"#;
//! assert!(pusher.contains("headline") && realtimex.starts_with("42"));
//! ```

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_protocol::realtimex::{embedded_data, member_events, server_event};
use switchboard_protocol::socketio::Packet;
use switchboard_protocol::{Data, Frame};

/// A Socket.IO packet as the text of one WebSocket frame: the Engine.IO `4` and the packet.
pub(crate) fn message_frame(packet: &Packet) -> String {
    let encoded = packet.encode();
    let mut out = String::with_capacity(encoded.len() + 1);
    out.push('4');
    out.push_str(&encoded);
    out
}

/// The RealtimeX frames for one Pusher-encoded channel frame: a `server-event`, or for the
/// presence member events the canonical `realtimex_internal:member_*` (and the seed SDK's
/// `presence:member_*` mirror when `mirrors`). A frame that cannot be read gives none (it
/// was made by this server, so that is a bug, logged).
pub(crate) fn from_pusher_frame(pusher: &[u8], mirrors: bool) -> Vec<Bytes> {
    let frame = match std::str::from_utf8(pusher)
        .map_err(|e| e.to_string())
        .and_then(|text| Frame::decode(text).map_err(|e| e.to_string()))
    {
        Ok(frame) => frame,
        Err(e) => {
            tracing::error!("a channel frame the RealtimeX side cannot read: {e}");
            return Vec::new();
        }
    };
    let Some(channel) = frame.channel.as_deref() else {
        return Vec::new();
    };
    let data = match &frame.data {
        // A client event's string stays a string unless it holds a JSON object or array
        // (the Pusher side's rule for relayed data), so `"42"` sent over Socket.IO arrives as
        // `"42"`; a published string is parsed whenever it is JSON, as pusher-js reads it.
        Data::String(text) if frame.event.starts_with("client-") => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                embedded_data(text)
            } else {
                Value::String(text.clone())
            }
        }
        Data::String(text) => embedded_data(text),
        Data::Json(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
        Data::Absent => Value::Null,
    };
    let packets = match frame.event.as_str() {
        "pusher_internal:member_added" => {
            let user_id = data.get("user_id").map(user_id_text).unwrap_or_default();
            let info = data.get("user_info").cloned().unwrap_or(Value::Null);
            member_events(channel, &user_id, Some(&info), mirrors)
        }
        "pusher_internal:member_removed" => {
            let user_id = data.get("user_id").map(user_id_text).unwrap_or_default();
            member_events(channel, &user_id, None, mirrors)
        }
        "pusher:cache_miss" => vec![server_event(channel, CACHE_MISS, json!({}), None)],
        event => vec![server_event(channel, event, data, frame.user_id.as_deref())],
    };
    packets.iter().map(|packet| Bytes::from(message_frame(packet))).collect()
}

/// A cache channel had nothing to replay (the Pusher side's `pusher:cache_miss`).
pub(crate) const CACHE_MISS: &str = "realtimex_internal:cache_miss";

fn user_id_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: Vec<Bytes>) -> Vec<String> {
        frames.into_iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()
    }

    #[test]
    fn a_published_event_becomes_a_server_event_with_its_data_parsed() {
        let pusher = br#"{"event":"headline","channel":"news","data":"{\"t\":1}"}"#;
        assert_eq!(
            texts(from_pusher_frame(pusher, true)),
            [r#"42["server-event",{"channel":"news","data":{"t":1},"event":"headline"}]"#]
        );
        let plain = br#"{"event":"x","channel":"news","data":"not json"}"#;
        assert_eq!(
            texts(from_pusher_frame(plain, true)),
            [r#"42["server-event",{"channel":"news","data":"not json","event":"x"}]"#]
        );
    }

    #[test]
    fn a_relayed_client_event_keeps_its_json_and_sender() {
        let pusher = br#"{"event":"client-typing","channel":"presence-room","data":{"on":true},"user_id":"7"}"#;
        assert_eq!(
            texts(from_pusher_frame(pusher, false)),
            [
                r#"42["server-event",{"channel":"presence-room","data":{"on":true},"event":"client-typing","user_id":"7"}]"#
            ]
        );
    }

    #[test]
    fn a_client_events_string_stays_a_string_unless_it_holds_an_object_or_array() {
        let number = br#"{"event":"client-n","channel":"private-a","data":"42"}"#;
        assert!(texts(from_pusher_frame(number, true))[0].contains(r#""data":"42""#));
        let object = br#"{"event":"client-o","channel":"private-a","data":"{\"a\":1}"}"#;
        assert!(texts(from_pusher_frame(object, true))[0].contains(r#""data":{"a":1}"#));
        // A published string is parsed whenever it is JSON.
        let published = br#"{"event":"n","channel":"news","data":"42"}"#;
        assert!(texts(from_pusher_frame(published, true))[0].contains(r#""data":42"#));
    }

    #[test]
    fn member_events_get_the_canonical_name_and_the_mirror() {
        let added = br#"{"event":"pusher_internal:member_added","channel":"presence-room","data":"{\"user_id\":\"7\",\"user_info\":{\"name\":\"ada\"}}"}"#;
        let frames = texts(from_pusher_frame(added, true));
        assert_eq!(frames.len(), 2);
        assert!(
            frames[0].contains(r#""event":"realtimex_internal:member_added""#) && frames[0].contains(r#""name":"ada""#)
        );
        assert!(frames[1].contains(r#""event":"presence:member_added""#));
        let removed =
            br#"{"event":"pusher_internal:member_removed","channel":"presence-room","data":"{\"user_id\":\"7\"}"}"#;
        let frames = texts(from_pusher_frame(removed, false));
        assert_eq!(
            frames,
            [
                r#"42["server-event",{"channel":"presence-room","data":{"user_id":"7"},"event":"realtimex_internal:member_removed"}]"#
            ]
        );
    }

    #[test]
    fn an_unreadable_frame_gives_nothing_and_does_not_panic() {
        assert!(from_pusher_frame(b"\xff", true).is_empty());
        assert!(from_pusher_frame(b"{}", true).is_empty());
        assert!(from_pusher_frame(br#"{"event":"x"}"#, true).is_empty(), "no channel");
    }
}
