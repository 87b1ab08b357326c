//! Fuzz entry points: one per decoder that reads bytes from the network, each checking the
//! properties that decoder must keep, not only that it does not panic.
//!
//! The same functions run in two places: the `cargo fuzz` targets in `fuzz/` (coverage
//! guided, on nightly, `scripts/fuzz`), and the test suite, which replays every file of
//! `fuzz/corpus/<target>/` and seeded mutations of them on stable
//! (`tests/fuzz_corpus.rs`). A crash the fuzzer finds becomes a corpus file, so the suite
//! keeps it fixed.
//!
//! ```
//! // Any bytes at all: a decoder refuses them or decodes them, and never panics.
//! switchboard_protocol::fuzz::pusher_frame(br#"{"event":"tick","channel":"c","data":"{}"}"#);
//! switchboard_protocol::fuzz::pusher_frame(&[0xff, b'{', 0]);
//! ```

use crate::http_auth::{MAX_QUERY_PARAMS, RequestToVerify, parse_query, verify_request};
use crate::packed::PackedFrame;
use crate::phoenix::{Message, RawMessage, Vsn};
use crate::{ChannelName, Frame};

/// A Pusher frame: the one-pass decoder (the client's) and the serde decoder (the
/// server's) accept and refuse the same texts, and agree on what they decode.
///
/// ```
/// switchboard_protocol::fuzz::pusher_frame(br#"{"event":"pusher:ping","data":{}}"#);
/// ```
pub fn pusher_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let packed = PackedFrame::decode(text);
    let frame = Frame::decode(text);
    assert_eq!(packed.is_ok(), frame.is_ok(), "the decoders disagree on {text:?}");
    if let (Ok(packed), Ok(frame)) = (packed, frame) {
        assert_eq!(packed.event(), frame.event);
        assert_eq!(packed.channel(), frame.channel.as_deref());
        let _ = ChannelName::parse(packed.channel().unwrap_or(""));
    }
}

/// A Phoenix text frame, V1 and V2: what [`Message::decode_text`] accepts encodes back to
/// a frame that decodes to the same message (V1 as a server writes it, without the join
/// ref, as Phoenix's V1 serializer does); [`RawMessage::decode`] never panics, and its V2
/// fast path (the hand-written scanner) accepts only what serde_json accepts, decoding it
/// alike.
///
/// ```
/// switchboard_protocol::fuzz::phoenix_text(br#"[null,"1","room:a","shout",{"b":1}]"#);
/// ```
pub fn phoenix_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(plain) = RawMessage::decode_v2_plain(text) {
        assert_eq!(RawMessage::decode_v2_serde(text).ok(), Some(plain), "the V2 decoders disagree on {text:?}");
    }
    for vsn in [Vsn::V1, Vsn::V2] {
        let _ = RawMessage::decode(text, vsn);
        if let Ok(mut message) = Message::decode_text(text, vsn) {
            let again = Message::decode_text(&message.encode_text(vsn), vsn);
            if vsn == Vsn::V1 {
                message.join_ref = None;
            }
            assert_eq!(again.as_ref().ok(), Some(&message), "{vsn:?} round trip of {text:?}");
        }
    }
}

/// A Phoenix V2 binary frame, as a server or a client sends it: decoded or refused.
///
/// ```
/// switchboard_protocol::fuzz::phoenix_binary(&[0, 1, 1, 1, b'1', b'r', b'e', 0xff]);
/// ```
pub fn phoenix_binary(data: &[u8]) {
    for from_server in [true, false] {
        let _ = Message::decode_binary(data, from_server);
    }
}

/// An HTTP API query string and its signature check: at most [`MAX_QUERY_PARAMS`]
/// parameters come out, and verifying them never panics (any timestamp, any signature).
///
/// ```
/// switchboard_protocol::fuzz::http_query(b"auth_key=k&auth_timestamp=1&auth_version=1.0&auth_signature=00");
/// ```
pub fn http_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let Ok(params) = parse_query(query) else { return };
    assert!(params.len() <= MAX_QUERY_PARAMS);
    for (method, body) in [("GET", &b""[..]), ("POST", &b"{}"[..])] {
        let request = RequestToVerify { method, path: "/apps/1/events", params: &params, body };
        let _ = verify_request(&request, "k", "s", 1_000, 600);
    }
}

/// A gateway frame, either direction, and an access token: what [`ClientFrame::decode`]
/// accepts encodes back to a frame that decodes alike; a server frame's accessors and
/// [`jwt::verify`] refuse or accept, never panic.
///
/// ```
/// switchboard_protocol::fuzz::gateway_frame(br#"{"type":"publish","data":{"topic":"t","payload":[1]}}"#);
/// ```
///
/// [`ClientFrame::decode`]: crate::gateway::ClientFrame::decode
/// [`jwt::verify`]: crate::gateway::jwt::verify
pub fn gateway_frame(data: &[u8]) {
    use crate::gateway::{ClientFrame, ServerFrame, event_matches, glob_matches, jwt};
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(frame) = ClientFrame::decode(text) {
        let encoded = frame.encode();
        assert_eq!(ClientFrame::decode(&encoded).ok(), Some(frame), "round trip of {text:?}");
    }
    if let Ok(frame) = ServerFrame::decode(text) {
        let _ = (frame.event_name(), frame.connection_info(), frame.ack_id(), frame.delivery());
        let _ = (frame.response(), frame.presence());
    }
    let _ = jwt::verify(text, b"key", 0);
    // Patterns and names from the input's halves: bounded work, no panic.
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle -= 1;
    }
    let (left, right) = text.split_at(middle);
    let _ = (event_matches(left, right), glob_matches(left, right));
}

/// An Engine.IO text frame carrying a Socket.IO packet: both decoders refuse or accept and
/// never panic, and what the Socket.IO decoder accepts encodes back to a packet that decodes
/// alike.
///
/// ```
/// switchboard_protocol::fuzz::socketio_packet(br#"42/admin,7["e",{"x":1}]"#);
/// ```
pub fn socketio_packet(data: &[u8]) {
    use crate::{engineio, socketio};
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(engineio::Packet::Message(inner)) = engineio::Packet::decode_text(text) {
        check_socketio(inner);
    }
    let _ = engineio::OpenInfo::decode(text);
    check_socketio(text);
    // The client's hot-path scanner: whatever it accepts, the general decoder reads the same.
    if let Some(spans) = crate::realtimex::ServerEventSpans::scan(text) {
        let packet = text.get(1..).and_then(|inner| socketio::Packet::decode(inner).ok());
        let packet = packet.unwrap_or_else(|| panic!("scanned but not a packet: {text:?}"));
        let body = packet.args().first().cloned().unwrap_or_default();
        let raw = |span: Option<&str>| span.map(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        assert_eq!(crate::realtimex::json_str(spans.channel).as_deref(), body["channel"].as_str(), "{text:?}");
        assert_eq!(crate::realtimex::json_str(spans.event).as_deref(), body["event"].as_str(), "{text:?}");
        assert_eq!(raw(spans.data), body.get("data").cloned().map(Some), "{text:?}");
        assert_eq!(raw(spans.user_id), body.get("user_id").cloned().map(Some), "{text:?}");
    }

    fn check_socketio(text: &str) {
        if let Ok(packet) = socketio::Packet::decode(text) {
            let again = socketio::Packet::decode(&packet.encode());
            assert_eq!(again.as_ref().ok(), Some(&packet), "round trip of {text:?}");
        }
    }
}
