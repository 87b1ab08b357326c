//! RealtimeX on the wire, for the channel client: the Engine.IO / Socket.IO handshake, what
//! the server's packets mean in the Pusher channel model the connection task keeps, and the
//! packets the client sends. Only the framing lives here; subscriptions, presence, auth,
//! client-event pacing and delivery are the Pusher client's (`pusher/connection.rs`).
//!
//! ```
//! // Crate-internal. The mapping, for reference:
//! let server = r#"42["server-event",{"channel":"news","event":"headline","data":{"id":7}}]"#;
//! let as_pusher = r#"{"event":"headline","channel":"news","data":{"id":7}}"#;
//! assert!(server.contains("headline") && as_pusher.contains("headline"));
//! ```

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::engineio::{self, OpenInfo};
use switchboard_protocol::realtimex::{self as rtx, ServerEventSpans, json_str};
use switchboard_protocol::socketio::{Packet, PacketType};
use switchboard_protocol::{Data, Frame, PackedFrame};
use tokio_websockets::Message;

use crate::event::Event;
use crate::transport::ClientSocket;

/// What the handshake learnt.
pub(crate) struct Session {
    /// The namespace sid: the socket id signatures are made over.
    pub(crate) socket_id: String,
    /// The server pings this often…
    pub(crate) ping_interval: Duration,
    /// …and the connection is dead when no ping came for interval + this.
    pub(crate) ping_timeout: Duration,
}

/// A refused or failed handshake: the close code to classify it by (4001 unknown key, 4004
/// over quota, 4009 any other CONNECT_ERROR: none of them is retried), and why.
pub(crate) struct Refused {
    pub(crate) code: Option<u16>,
    pub(crate) reason: String,
}

fn failed(reason: impl Into<String>) -> Refused {
    Refused { code: None, reason: reason.into() }
}

/// Read the open packet, connect the `/` namespace (`40`), and read its answer: `40{"sid"}`
/// or `44{"message","data":{"code"}}`. Server pings in between are answered.
pub(crate) async fn handshake(ws: &mut ClientSocket) -> Result<Session, Refused> {
    let mut open: Option<OpenInfo> = None;
    loop {
        let message = match ws.next().await {
            None => return Err(failed("the server closed the connection during the Socket.IO handshake")),
            Some(Err(e)) => return Err(failed(format!("Socket.IO handshake failed: {e}"))),
            Some(Ok(message)) => message,
        };
        if let Some((code, reason)) = message.as_close() {
            return Err(Refused {
                code: Some(u16::from(code)),
                reason: format!("closed during the handshake: {reason}"),
            });
        }
        let Some(text) = message.as_text() else { continue };
        match engineio::Packet::decode_text(text) {
            Ok(engineio::Packet::Open(_)) if open.is_none() => {
                let info =
                    OpenInfo::decode(text).map_err(|e| failed(format!("malformed Engine.IO open packet: {e}")))?;
                ws.send(Message::text("40".to_owned())).await.map_err(|e| failed(format!("handshake write: {e}")))?;
                open = Some(info);
            }
            Ok(engineio::Packet::Ping(payload)) => {
                let pong = engineio::Packet::Pong(payload).encode();
                ws.send(Message::text(pong)).await.map_err(|e| failed(format!("handshake write: {e}")))?;
            }
            Ok(engineio::Packet::Message(body)) => {
                let Some(info) = &open else {
                    return Err(failed("a Socket.IO packet before the Engine.IO open packet"));
                };
                let packet = Packet::decode(body).map_err(|e| failed(format!("malformed CONNECT answer: {e}")))?;
                if packet.namespace != "/" {
                    continue;
                }
                match packet.kind {
                    PacketType::Connect => {
                        let sid = packet.data.as_ref().and_then(|d| d.get("sid")).and_then(Value::as_str);
                        let socket_id = sid.map_or_else(|| info.sid.clone(), str::to_owned);
                        return Ok(Session {
                            socket_id,
                            ping_interval: Duration::from_millis(info.ping_interval.max(1)),
                            ping_timeout: Duration::from_millis(info.ping_timeout.max(1)),
                        });
                    }
                    PacketType::ConnectError => return Err(connect_error(packet.data.as_ref())),
                    _ => {}
                }
            }
            Ok(engineio::Packet::Close) => return Err(failed("the server closed the Engine.IO session")),
            Ok(_) => {}
            Err(e) => return Err(failed(format!("malformed Engine.IO packet during the handshake: {e}"))),
        }
    }
}

/// A CONNECT_ERROR's message and code. A refusal is not retried: socket.io-client does not
/// reconnect after one either.
fn connect_error(data: Option<&Value>) -> Refused {
    let message = match data {
        Some(Value::String(text)) => text.clone(),
        Some(data) => data.get("message").and_then(Value::as_str).unwrap_or("refused").to_owned(),
        None => "refused".to_owned(),
    };
    let code = data.and_then(|d| d.get("data")).and_then(|d| d.get("code")).and_then(Value::as_u64);
    let code = code.and_then(|c| u16::try_from(c).ok()).filter(|c| (4000..4100).contains(c)).unwrap_or(4009);
    Refused { code: Some(code), reason: format!("the server refused the Socket.IO connection: {message}") }
}

/// A server packet, in the terms of the channel client.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Engine.IO ping: answer with a pong (this payload echoed).
    Ping(Option<String>),
    /// A channel event or a control frame, as the Pusher frame that means the same (and the
    /// ack id the server asked for, if any).
    Channel(Frame, Option<u64>),
    /// Any other Socket.IO event: for the global listeners (and acked if `ack_id`).
    Event { name: String, data: Option<String>, ack_id: Option<u64> },
    /// A binary event or ack whose attachments follow.
    Binary(Packet),
    /// The answer to one of our emits.
    Ack { id: u64, args: Vec<Value> },
    /// `41`: the server disconnected this client (terminate): do not reconnect.
    Disconnect,
    /// Engine.IO `1`: the session is over.
    Close,
    /// Nothing to do (pong, noop, mirrors of canonical events, another namespace).
    Ignored,
    /// Unreadable: logged and skipped.
    Invalid(String),
}

/// Read one text frame from the server.
pub(crate) fn decode(text: &str) -> Inbound {
    let body = match engineio::Packet::decode_text(text) {
        Ok(engineio::Packet::Message(body)) => body,
        Ok(engineio::Packet::Ping(payload)) => return Inbound::Ping(payload.map(str::to_owned)),
        Ok(engineio::Packet::Close) => return Inbound::Close,
        Ok(_) => return Inbound::Ignored,
        Err(e) => return Inbound::Invalid(e.to_string()),
    };
    let packet = match Packet::decode(body) {
        Ok(packet) => packet,
        Err(e) => return Inbound::Invalid(e.to_string()),
    };
    if packet.namespace != "/" {
        return Inbound::Ignored;
    }
    match packet.kind {
        PacketType::Event => event(packet),
        PacketType::BinaryEvent | PacketType::BinaryAck => Inbound::Binary(packet),
        PacketType::Ack => match (packet.ack_id, packet.data) {
            (Some(id), Some(Value::Array(args))) => Inbound::Ack { id, args },
            _ => Inbound::Invalid("an ACK without an id".into()),
        },
        PacketType::Disconnect => Inbound::Disconnect,
        PacketType::Connect | PacketType::ConnectError => Inbound::Ignored,
    }
}

/// A binary event or ack once its attachments came: each placeholder becomes its attachment
/// as a base64 string, and the packet is then read as a plain one (a binary `server-event`
/// reaches its channel).
pub(crate) fn binary_event(packet: Packet, attachments: &[Vec<u8>]) -> Inbound {
    let data = packet.data.map(|d| fill(d, attachments));
    if packet.kind == PacketType::BinaryAck {
        let Some(id) = packet.ack_id else { return Inbound::Invalid("a BINARY_ACK without an id".into()) };
        let args = match data {
            Some(Value::Array(args)) => args,
            _ => Vec::new(),
        };
        return Inbound::Ack { id, args };
    }
    event(Packet { kind: PacketType::Event, data, attachments: 0, ..packet })
}

/// Replace `{"_placeholder":true,"num":k}` with attachment k in base64.
fn fill(value: Value, attachments: &[Vec<u8>]) -> Value {
    match value {
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let bytes = map.get("num").and_then(Value::as_u64).and_then(|n| attachments.get(n as usize));
            bytes.map_or(Value::Null, |b| Value::String(base64::engine::general_purpose::STANDARD.encode(b)))
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, fill(v, attachments))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| fill(v, attachments)).collect()),
        other => other,
    }
}

/// An event's data as the client's listeners see it: a string as itself, any other JSON as
/// its text (what a Pusher event's `data` holds).
fn data_text(data: &Value) -> String {
    match data {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn frame(event: &str, channel: Option<&str>, data: Data) -> Frame {
    Frame { event: event.to_owned(), channel: channel.map(str::to_owned), data, user_id: None }
}

fn json_data(value: &Value) -> Data {
    match value {
        Value::Null => Data::Absent,
        Value::String(text) => Data::String(text.clone()),
        other => Data::Json(other.to_string()),
    }
}

fn event(packet: Packet) -> Inbound {
    let ack_id = packet.ack_id;
    // The name and first argument, moved out (no copy of the payload).
    let mut items = match packet.data {
        Some(Value::Array(items)) => items.into_iter(),
        _ => Vec::new().into_iter(),
    };
    let name = match items.next() {
        Some(Value::String(name)) => name,
        _ => return Inbound::Invalid("an EVENT without a name".into()),
    };
    let body = items.next().unwrap_or(Value::Null);
    let channel = body.get("channel").and_then(Value::as_str).map(str::to_owned);
    let frame = match name.as_str() {
        rtx::SERVER_EVENT => match server_event(&body) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Inbound::Ignored,
            Err(why) => return Inbound::Invalid(why),
        },
        rtx::SUBSCRIPTION_SUCCEEDED => {
            let Some(channel) = channel else {
                return Inbound::Invalid("a subscription_succeeded without a channel".into());
            };
            let data = match body.get("presence") {
                Some(presence) => json!({ "presence": presence }).to_string(),
                None => "{}".to_owned(),
            };
            frame("pusher_internal:subscription_succeeded", Some(&channel), Data::String(data))
        }
        rtx::SUBSCRIPTION_ERROR => {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("the server refused the subscription");
            match channel {
                Some(channel) => {
                    let data = json!({ "type": body.get("type"), "error": error, "status": body.get("status") });
                    frame("pusher:subscription_error", Some(&channel), Data::String(data.to_string()))
                }
                // Channel-less: the oldest pending subscribe's, as a Pusher 4009.
                None => {
                    frame("pusher:error", None, Data::String(json!({ "code": 4009, "message": error }).to_string()))
                }
            }
        }
        rtx::ERROR => {
            let data = json!({ "code": body.get("code"), "message": body.get("message") });
            frame("pusher:error", channel.as_deref(), Data::String(data.to_string()))
        }
        rtx::PONG => frame("pusher:pong", None, Data::Absent),
        _ => {
            let data = (!body.is_null()).then(|| data_text(&body));
            return Inbound::Event { name, data, ack_id };
        }
    };
    Inbound::Channel(frame, ack_id)
}

/// The hot path: a `server-event` carrying an app event (`42["server-event",{…}]`, as
/// `switchboard serve` and socket.io's `JSON.stringify` write it), read in one borrowing
/// pass straight into an [`Event`] whose buffer comes from the shared pool. `None` for
/// anything else (RealtimeX's own events inside a `server-event`, other packets), which
/// [`decode`] then reads the general way.
pub(crate) fn fast_server_event(text: &str) -> Option<Event> {
    let spans = ServerEventSpans::scan(text)?;
    let event = json_str(spans.event)?;
    if event.starts_with("realtimex_internal:") || event.starts_with("presence:") || event.starts_with("pusher") {
        return None;
    }
    let channel = json_str(spans.channel)?;
    let data = text_of(spans.data)?;
    let user_id = text_of(spans.user_id)?;
    let buffer = crate::buffers::take(text.len());
    let frame = PackedFrame::from_parts_into(buffer, &event, Some(&channel), data.as_deref(), user_id.as_deref());
    Some(Event::from_frame(frame))
}

/// A `server-event` `{channel, event, data[, user_id]}`; RealtimeX's own events inside it
/// become the Pusher control frames that mean the same, and the seed SDK's mirrors are
/// dropped (our client reads the canonical forms).
fn server_event(body: &Value) -> Result<Option<Frame>, String> {
    let (Some(channel), Some(event)) =
        (body.get("channel").and_then(Value::as_str), body.get("event").and_then(Value::as_str))
    else {
        return Err("a server-event without a channel or event".into());
    };
    let data = body.get("data").unwrap_or(&Value::Null);
    Ok(Some(match event {
        rtx::MEMBER_ADDED => frame("pusher_internal:member_added", Some(channel), Data::String(data.to_string())),
        rtx::MEMBER_REMOVED => frame("pusher_internal:member_removed", Some(channel), Data::String(data.to_string())),
        CACHE_MISS => frame("pusher:cache_miss", Some(channel), Data::Absent),
        rtx::SUBSCRIPTION_SUCCEEDED => return Ok(None),
        mirror if mirror.starts_with("presence:") => return Ok(None),
        other if other.starts_with("realtimex_internal:") => return Ok(None),
        event => {
            let user_id = body.get("user_id").map(|id| match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            Frame { event: event.to_owned(), channel: Some(channel.to_owned()), data: json_data(data), user_id }
        }
    }))
}

/// A cache channel had nothing to replay.
const CACHE_MISS: &str = "realtimex_internal:cache_miss";

/// A JSON span as an event's text: a string's content, any other JSON as sent, `null` or
/// absent as nothing. `None` if a string cannot be read.
fn text_of(raw: Option<&str>) -> Option<Option<Cow<'_, str>>> {
    match raw {
        None | Some("null") => Some(None),
        Some(raw) if raw.starts_with('"') => json_str(raw).map(Some),
        Some(raw) => Some(Some(Cow::Borrowed(raw))),
    }
}

/// One Socket.IO event as the text of a WebSocket frame (`42[id]["name",…]`).
pub(crate) fn emit(name: &str, args: Vec<Value>, ack_id: Option<u64>) -> String {
    format!("4{}", Packet::event("/", name, args, ack_id).encode())
}

/// Our answer to the server's ack request `id`.
pub(crate) fn ack(id: u64, args: Vec<Value>) -> String {
    format!("4{}", Packet::ack("/", id, args).encode())
}

/// `realtimex:subscribe` with the signature and `channel_data` exactly as signed.
pub(crate) fn subscribe(channel: &str, auth: &str, channel_data: Option<&str>) -> String {
    let mut data = json!({ "channel": channel });
    if !auth.is_empty() {
        data["auth"] = json!(auth);
    }
    if let Some(channel_data) = channel_data {
        data["channel_data"] = json!(channel_data);
    }
    emit(rtx::SUBSCRIBE, vec![data], None)
}

/// `realtimex:unsubscribe`.
pub(crate) fn unsubscribe(channel: &str) -> String {
    emit(rtx::UNSUBSCRIBE, vec![json!({ "channel": channel })], None)
}

/// `client-event` `{channel, event, data}`: `data` (JSON text, as the Pusher client keeps a
/// trigger's payload) embedded as JSON.
pub(crate) fn client_event(channel: &str, event: &str, data: &str) -> String {
    let data = serde_json::from_str::<Value>(data).unwrap_or_else(|_| Value::String(data.to_owned()));
    emit(rtx::CLIENT_EVENT, vec![json!({ "channel": channel, "event": event, "data": data })], None)
}

/// The Engine.IO pong (also sent unasked while the client is not reading, so the server
/// sees it alive: socket.io and our server take an unasked pong as liveness).
pub(crate) const PONG: &str = "3";
/// Leaving the namespace on a user's `disconnect()`.
pub(crate) const DISCONNECT: &str = "41";

#[cfg(test)]
mod tests {
    use super::*;

    fn channel_frame(text: &str) -> Frame {
        match decode(text) {
            Inbound::Channel(frame, _) => frame,
            other => panic!("not a channel frame: {other:?}"),
        }
    }

    #[test]
    fn server_events_become_channel_events_with_their_data_as_text() {
        let frame =
            channel_frame(r#"42["server-event",{"channel":"news","event":"headline","data":{"id":7},"user_id":7}]"#);
        assert_eq!((frame.event.as_str(), frame.channel.as_deref()), ("headline", Some("news")));
        assert_eq!(frame.data.as_text(), Some(r#"{"id":7}"#));
        assert_eq!(frame.user_id.as_deref(), Some("7"));
        let plain = channel_frame(r#"42["server-event",{"channel":"news","event":"x","data":"plain"}]"#);
        assert_eq!(plain.data, Data::String("plain".into()));
    }

    #[test]
    fn realtimex_control_events_map_to_the_pusher_ones_and_mirrors_are_dropped() {
        let ok = channel_frame(
            r#"42["realtimex_internal:subscription_succeeded",{"channel":"presence-r","socket_id":"1.2","presence":{"count":1,"ids":["a"],"hash":{"a":null}}}]"#,
        );
        assert_eq!(ok.event, "pusher_internal:subscription_succeeded");
        let data: Value = serde_json::from_str(ok.data.as_text().unwrap()).unwrap();
        assert_eq!(data["presence"]["ids"], json!(["a"]));
        let added = channel_frame(
            r#"42["server-event",{"channel":"presence-r","event":"realtimex_internal:member_added","data":{"user_id":"b","user_info":{}}}]"#,
        );
        assert_eq!(added.event, "pusher_internal:member_added");
        let refused = channel_frame(
            r#"42["realtimex_internal:subscription_error",{"channel":"private-x","type":"AuthError","error":"no","status":401}]"#,
        );
        assert_eq!(
            (refused.event.as_str(), refused.channel.as_deref()),
            ("pusher:subscription_error", Some("private-x"))
        );
        let channelless = channel_frame(r#"42["realtimex_internal:subscription_error",{"error":"no"}]"#);
        assert_eq!((channelless.event.as_str(), channelless.channel), ("pusher:error", None));
        for mirror in [
            r#"42["server-event",{"channel":"presence-r","event":"presence:member_added","data":{}}]"#,
            r#"42["server-event",{"channel":"presence-r","event":"realtimex_internal:subscription_succeeded","data":{}}]"#,
        ] {
            assert!(matches!(decode(mirror), Inbound::Ignored), "{mirror}");
        }
    }

    #[test]
    fn pings_acks_disconnects_and_other_events() {
        assert!(matches!(decode("2"), Inbound::Ping(None)));
        assert!(matches!(decode("41"), Inbound::Disconnect));
        assert!(matches!(decode("1"), Inbound::Close));
        assert!(matches!(decode(r#"437[{"ok":true}]"#), Inbound::Ack { id: 7, .. }));
        match decode(r#"425["tick",{"n":1}]"#) {
            Inbound::Event { name, data, ack_id } => {
                assert_eq!((name.as_str(), data.as_deref(), ack_id), ("tick", Some(r#"{"n":1}"#), Some(5)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode("42[oops"), Inbound::Invalid(_)));
        assert!(matches!(decode("9"), Inbound::Invalid(_)));
        assert!(matches!(decode(r#"42/admin,["x"]"#), Inbound::Ignored));
    }

    #[test]
    fn a_channel_event_that_asks_for_an_ack_keeps_its_id() {
        match decode(r#"427["server-event",{"channel":"news","event":"asked","data":{}}]"#) {
            Inbound::Channel(frame, ack_id) => assert_eq!((frame.event.as_str(), ack_id), ("asked", Some(7))),
            other => panic!("{other:?}"),
        }
        assert!(fast_server_event(r#"427["server-event",{"channel":"news","event":"asked"}]"#).is_none());
        let Inbound::Binary(packet) =
            decode(r#"451-["server-event",{"channel":"news","event":"blob","data":{"_placeholder":true,"num":0}}]"#)
        else {
            panic!("a binary packet")
        };
        match binary_event(packet, &[vec![1, 2, 3]]) {
            Inbound::Channel(frame, None) => {
                assert_eq!((frame.event.as_str(), frame.channel.as_deref()), ("blob", Some("news")));
                assert_eq!(frame.data, Data::String("AQID".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn binary_events_get_their_attachments_in_base64() {
        let Inbound::Binary(packet) = decode(r#"451-["file",{"name":"a","body":{"_placeholder":true,"num":0}}]"#)
        else {
            panic!("a binary packet")
        };
        match binary_event(packet, &[vec![1, 2, 3]]) {
            Inbound::Event { name, data, .. } => {
                assert_eq!(name, "file");
                assert_eq!(data.as_deref(), Some(r#"{"body":"AQID","name":"a"}"#));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_fast_path_reads_what_the_general_one_reads() {
        for text in [
            r#"42["server-event",{"channel":"news","event":"headline","data":{"id":7, "t":"a\"b"}}]"#,
            r#"42["server-event",{"channel":"news","event":"x","data":"plain \u00e9"}]"#,
            r#"42["server-event",{"channel":"p\u00e9","event":"client-t","data":{"on":true},"user_id":7}]"#,
            r#"42["server-event",{"channel":"news","event":"x","user_id":"u1"}]"#,
        ] {
            let fast = fast_server_event(text).expect("the fast path takes it");
            let Inbound::Channel(slow, _) = decode(text) else { panic!("{text}") };
            assert_eq!((fast.name(), fast.channel()), (slow.event.as_str(), slow.channel.as_deref()), "{text}");
            assert_eq!(fast.user_id(), slow.user_id.as_deref(), "{text}");
            // The slow path re-serializes JSON data; the fast one keeps it as sent.
            let as_json = |d: Option<&str>| d.map(|d| serde_json::from_str::<Value>(d).unwrap_or(json!(d)));
            assert_eq!(as_json(fast.data()), as_json(slow.data.as_text()), "{text}");
        }
        // RealtimeX's own events and anything unusual go the general way.
        for text in [
            r#"42["server-event",{"channel":"p","event":"realtimex_internal:member_added","data":{}}]"#,
            r#"42["server-event",{"channel":"p","event":"presence:member_added","data":{}}]"#,
            r#"42["server-event",{"event":"x"}]"#,
            r#"42["tick",{}]"#,
            "42[oops",
        ] {
            assert!(fast_server_event(text).is_none(), "{text}");
        }
    }

    #[test]
    fn outgoing_packets() {
        assert_eq!(subscribe("news", "", None), r#"42["realtimex:subscribe",{"channel":"news"}]"#);
        assert_eq!(
            subscribe("presence-r", "k:s", Some(r#"{"user_id":"1"}"#)),
            r#"42["realtimex:subscribe",{"auth":"k:s","channel":"presence-r","channel_data":"{\"user_id\":\"1\"}"}]"#
        );
        assert_eq!(
            client_event("private-x", "client-t", r#"{"on":true}"#),
            r#"42["client-event",{"channel":"private-x","data":{"on":true},"event":"client-t"}]"#
        );
        assert_eq!(ack(3, vec![json!({"ok": true})]), r#"433[{"ok":true}]"#);
        assert_eq!(emit("realtimex:ping", vec![json!({})], Some(9)), r#"429["realtimex:ping",{}]"#);
    }

    #[test]
    fn connect_errors_keep_their_code_or_become_4009() {
        assert_eq!(
            connect_error(Some(&json!({"message": "Invalid API key", "data": {"code": 4001}}))).code,
            Some(4001)
        );
        assert_eq!(connect_error(Some(&json!({"message": "not authorized"}))).code, Some(4009));
        assert!(connect_error(Some(&json!("plain"))).reason.contains("plain"));
    }
}
