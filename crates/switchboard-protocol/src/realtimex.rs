//! RealtimeX's events: Pusher-style channels spoken as Socket.IO events on the `/`
//! namespace (`gateway-and-realtimex.md` B.5). The client sends `realtimex:subscribe`
//! `{channel, auth?, channel_data?}` (signed exactly as Pusher's), `realtimex:unsubscribe`,
//! `client-event` `{channel, event, data}` and `realtimex:ping`; the server sends
//! `realtimex_internal:subscription_succeeded` / `…subscription_error` at the top level,
//! `server-event` `{channel, event, data[, user_id]}` for everything published on a channel
//! (members joining and leaving included), `realtimex:error` and `realtimex:pong`.
//!
//! ```
//! use switchboard_protocol::realtimex::ClientEvent;
//! use switchboard_protocol::socketio::Packet;
//! let packet = Packet::decode(r#"2["realtimex:subscribe",{"channel":"private-orders","auth":"key:abc"}]"#)?;
//! let ClientEvent::Subscribe(subscribe) = ClientEvent::from_packet(&packet)? else { unreachable!() };
//! assert_eq!((subscribe.channel.as_str(), subscribe.auth.as_deref()), ("private-orders", Some("key:abc")));
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ProtocolError;
use crate::socketio::Packet;

/// The client's subscribe.
pub const SUBSCRIBE: &str = "realtimex:subscribe";
/// The client's unsubscribe.
pub const UNSUBSCRIBE: &str = "realtimex:unsubscribe";
/// A client event, relayed to the channel's other subscribers.
pub const CLIENT_EVENT: &str = "client-event";
/// The client's application-level ping.
pub const PING: &str = "realtimex:ping";
/// The server's answer to [`PING`].
pub const PONG: &str = "realtimex:pong";
/// An event on a channel, from the server.
pub const SERVER_EVENT: &str = "server-event";
/// A subscription was confirmed.
pub const SUBSCRIPTION_SUCCEEDED: &str = "realtimex_internal:subscription_succeeded";
/// A subscription was refused.
pub const SUBSCRIPTION_ERROR: &str = "realtimex_internal:subscription_error";
/// A member joined a presence channel (inside a `server-event`).
pub const MEMBER_ADDED: &str = "realtimex_internal:member_added";
/// A member left a presence channel (inside a `server-event`).
pub const MEMBER_REMOVED: &str = "realtimex_internal:member_removed";
/// Something the client sent was refused (ours: `{code, message, channel?}`).
pub const ERROR: &str = "realtimex:error";

/// `realtimex:subscribe`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The channel.
    pub channel: String,
    /// `"<app key>:<hex signature>"` for private and presence channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Presence: the exact JSON string that was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
}

/// `client-event`'s data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEventData {
    /// The channel (private or presence).
    pub channel: String,
    /// The event name (`client-…`).
    pub event: String,
    /// The payload.
    #[serde(default)]
    pub data: Value,
}

/// What a RealtimeX client sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Subscribe to a channel.
    Subscribe(Subscribe),
    /// Unsubscribe from a channel.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Send a client event.
    ClientEvent(ClientEventData),
    /// Ask for a `realtimex:pong`.
    Ping,
}

impl ClientEvent {
    /// Read a client's EVENT packet. A name this protocol does not have is
    /// [`ProtocolError::UnknownFrameType`]; a known one with bad data is
    /// [`ProtocolError::InvalidFrame`] (the server answers both with `realtimex:error` 4300).
    ///
    /// ```
    /// use switchboard_protocol::{ProtocolError, realtimex::ClientEvent, socketio::Packet};
    /// let ping = Packet::decode(r#"2["realtimex:ping",{}]"#)?;
    /// assert_eq!(ClientEvent::from_packet(&ping)?, ClientEvent::Ping);
    /// let odd = Packet::decode(r#"2["dance"]"#)?;
    /// assert!(matches!(ClientEvent::from_packet(&odd), Err(ProtocolError::UnknownFrameType(_))));
    /// # Ok::<(), ProtocolError>(())
    /// ```
    pub fn from_packet(packet: &Packet) -> Result<ClientEvent, ProtocolError> {
        let name = packet.event_name().ok_or_else(|| ProtocolError::InvalidFrame("not an event".into()))?;
        let data = packet.args().first().cloned().unwrap_or(Value::Null);
        let invalid = |e: serde_json::Error| ProtocolError::InvalidFrame(format!("{name}: {e}"));
        Ok(match name {
            SUBSCRIBE => ClientEvent::Subscribe(serde_json::from_value(data).map_err(invalid)?),
            UNSUBSCRIBE => {
                #[derive(Deserialize)]
                struct Channel {
                    channel: String,
                }
                ClientEvent::Unsubscribe { channel: serde_json::from_value::<Channel>(data).map_err(invalid)?.channel }
            }
            CLIENT_EVENT => ClientEvent::ClientEvent(serde_json::from_value(data).map_err(invalid)?),
            PING => ClientEvent::Ping,
            other => return Err(ProtocolError::UnknownFrameType(other.chars().take(64).collect())),
        })
    }

    /// The EVENT packet for this (with `ack_id` if an answer is wanted).
    ///
    /// ```
    /// use switchboard_protocol::realtimex::{ClientEvent, Subscribe};
    /// let subscribe = ClientEvent::Subscribe(Subscribe { channel: "news".into(), auth: None, channel_data: None });
    /// assert_eq!(subscribe.to_packet(Some(1)).encode(), r#"21["realtimex:subscribe",{"channel":"news"}]"#);
    /// ```
    pub fn to_packet(&self, ack_id: Option<u64>) -> Packet {
        let (name, data) = match self {
            ClientEvent::Subscribe(subscribe) => (SUBSCRIBE, serde_json::to_value(subscribe).unwrap_or(Value::Null)),
            ClientEvent::Unsubscribe { channel } => (UNSUBSCRIBE, json!({ "channel": channel })),
            ClientEvent::ClientEvent(event) => (CLIENT_EVENT, serde_json::to_value(event).unwrap_or(Value::Null)),
            ClientEvent::Ping => (PING, json!({})),
        };
        Packet::event("/", name, vec![data], ack_id)
    }
}

/// `data` as the server embeds it in a `server-event`: the published string parsed as JSON
/// when it is JSON, else the string itself (what pusher-js users see).
///
/// ```
/// use switchboard_protocol::realtimex::embedded_data;
/// assert_eq!(embedded_data(r#"{"id":7}"#), serde_json::json!({"id": 7}));
/// assert_eq!(embedded_data("plain"), serde_json::json!("plain"));
/// ```
pub fn embedded_data(published: &str) -> Value {
    serde_json::from_str(published).unwrap_or_else(|_| Value::String(published.to_owned()))
}

/// A `server-event` packet: `{channel, event, data[, user_id]}`.
///
/// ```
/// use switchboard_protocol::realtimex::server_event;
/// let p = server_event("news", "headline", serde_json::json!({"t": 1}), None);
/// assert_eq!(p.encode(), r#"2["server-event",{"channel":"news","data":{"t":1},"event":"headline"}]"#);
/// ```
pub fn server_event(channel: &str, event: &str, data: Value, user_id: Option<&str>) -> Packet {
    let mut body = json!({ "channel": channel, "event": event, "data": data });
    if let Some(user_id) = user_id {
        body["user_id"] = json!(user_id);
    }
    Packet::event("/", SERVER_EVENT, vec![body], None)
}

/// A `server-event` frame's fields as spans of the frame's text, found without building
/// anything: the receive hot path of a RealtimeX client (`json_scan`, as the Phoenix V2
/// decoder uses). Each span is raw JSON (`channel` and `event` are JSON strings, quotes
/// included; read them with [`json_str`]).
///
/// ```
/// use switchboard_protocol::realtimex::{ServerEventSpans, json_str};
/// let frame = r#"42["server-event",{"channel":"news","event":"headline","data":{"id":7}}]"#;
/// let spans = ServerEventSpans::scan(frame).expect("a server-event");
/// assert_eq!(json_str(spans.channel).as_deref(), Some("news"));
/// assert_eq!((spans.data, spans.user_id), (Some(r#"{"id":7}"#), None));
/// assert!(ServerEventSpans::scan(r#"42["tick",{}]"#).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerEventSpans<'a> {
    /// The channel, a JSON string.
    pub channel: &'a str,
    /// The event name, a JSON string.
    pub event: &'a str,
    /// The data, any JSON (absent: `None`).
    pub data: Option<&'a str>,
    /// The sender's user id on relayed client events, a JSON string or number.
    pub user_id: Option<&'a str>,
}

impl<'a> ServerEventSpans<'a> {
    /// Scan a whole WebSocket text frame, `42["server-event",{…}]`. `None` when it is
    /// anything else, or not valid JSON, or unusual (an escaped key, a repeated field, a
    /// namespace or ack id): the caller then reads it the general way
    /// ([`crate::socketio::Packet::decode`]), so a frame is never read two ways.
    ///
    /// ```
    /// use switchboard_protocol::realtimex::ServerEventSpans;
    /// let relayed = r#"42["server-event",{"channel":"presence-r","event":"client-t","data":"hi","user_id":7}]"#;
    /// let spans = ServerEventSpans::scan(relayed).expect("scanned");
    /// assert_eq!((spans.data, spans.user_id), (Some(r#""hi""#), Some("7")));
    /// // A repeated field is left to the general decoder.
    /// assert!(ServerEventSpans::scan(r#"42["server-event",{"channel":"a","channel":"b","event":"x"}]"#).is_none());
    /// ```
    pub fn scan(frame: &'a str) -> Option<Self> {
        use crate::json_scan::{skip_ws, string_end, value_end};
        let bytes = frame.as_bytes();
        if !frame.starts_with("42[") {
            return None;
        }
        let mut i = skip_ws(bytes, 3);
        let name = br#""server-event""#;
        if !bytes[i..].starts_with(name) {
            return None;
        }
        i = skip_ws(bytes, i + name.len());
        if bytes.get(i) != Some(&b',') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        if bytes.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        let (mut channel, mut event, mut data, mut user_id) = (None, None, None, None);
        if bytes.get(i) != Some(&b'}') {
            loop {
                if bytes.get(i) != Some(&b'"') {
                    return None;
                }
                let (key_end, escaped) = string_end(bytes, i + 1)?;
                if escaped {
                    return None;
                }
                let key = &frame[i + 1..key_end - 1];
                i = skip_ws(bytes, key_end);
                if bytes.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(bytes, i + 1);
                let end = value_end(bytes, i, 2)?;
                let value = &frame[i..end];
                let slot = match key {
                    "channel" => &mut channel,
                    "event" => &mut event,
                    "data" => &mut data,
                    "user_id" => &mut user_id,
                    _ => &mut None,
                };
                if slot.replace(value).is_some() && matches!(key, "channel" | "event" | "data" | "user_id") {
                    return None; // repeated: leave it to serde_json's rules
                }
                i = skip_ws(bytes, end);
                match bytes.get(i)? {
                    b',' => i = skip_ws(bytes, i + 1),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        i = skip_ws(bytes, i + 1);
        if bytes.get(i) != Some(&b']') || skip_ws(bytes, i + 1) != bytes.len() {
            return None;
        }
        let (channel, event) = (channel?, event?);
        if !channel.starts_with('"') || !event.starts_with('"') {
            return None;
        }
        Some(ServerEventSpans { channel, event, data, user_id })
    }
}

/// The text of a JSON string span (quotes included), borrowed when it has no escapes.
///
/// ```
/// use switchboard_protocol::realtimex::json_str;
/// assert!(matches!(json_str(r#""news""#), Some(std::borrow::Cow::Borrowed("news"))));
/// assert_eq!(json_str(r#""caf\u00e9""#).as_deref(), Some("café"));
/// assert_eq!(json_str("7"), None);
/// ```
pub fn json_str(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(inner))
    }
}

/// A presence channel's members, as a subscription confirmation carries them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceSummary {
    /// How many members.
    pub count: usize,
    /// Their ids.
    pub ids: Vec<String>,
    /// Their `user_info`, by id.
    pub hash: serde_json::Map<String, Value>,
}

/// The confirmation of a subscription (top level), `{channel, socket_id[, presence]}`.
///
/// ```
/// use switchboard_protocol::realtimex::subscription_succeeded;
/// assert_eq!(subscription_succeeded("news", "1.2", None).encode(), r#"2["realtimex_internal:subscription_succeeded",{"channel":"news","socket_id":"1.2"}]"#);
/// ```
pub fn subscription_succeeded(channel: &str, socket_id: &str, presence: Option<&PresenceSummary>) -> Packet {
    let mut body = json!({ "channel": channel, "socket_id": socket_id });
    if let Some(presence) = presence {
        body["presence"] = serde_json::to_value(presence).unwrap_or(Value::Null);
    }
    Packet::event("/", SUBSCRIPTION_SUCCEEDED, vec![body], None)
}

/// A refused subscription (top level), in the Soketi shape the Pusher side uses:
/// `{channel, type, error, status}` with type `AuthError`, `InvalidChannel` or `LimitReached`.
///
/// ```
/// use switchboard_protocol::realtimex::subscription_error;
/// let p = subscription_error("private-x", "AuthError", "Invalid signature", 401);
/// assert!(p.encode().starts_with(r#"2["realtimex_internal:subscription_error",{"channel":"private-x""#));
/// ```
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Packet {
    Packet::event(
        "/",
        SUBSCRIPTION_ERROR,
        vec![json!({"channel": channel, "type": kind, "error": error, "status": status})],
        None,
    )
}

/// A `realtimex:error` `{code, message[, channel]}` (4300 bad input, 4301 refused client
/// event, 4009 not subscribed).
///
/// ```
/// use switchboard_protocol::realtimex::error_event;
/// assert_eq!(error_event(4300, "Unknown event", None).encode(), r#"2["realtimex:error",{"code":4300,"message":"Unknown event"}]"#);
/// ```
pub fn error_event(code: u16, message: &str, channel: Option<&str>) -> Packet {
    let mut body = json!({ "code": code, "message": message });
    if let Some(channel) = channel {
        body["channel"] = json!(channel);
    }
    Packet::event("/", ERROR, vec![body], None)
}

/// The member events of a presence change: the canonical `server-event` with
/// `realtimex_internal:member_added|removed`, then the `presence:member_added|removed`
/// mirror the seed SDK's README binds to (when `mirrors`).
///
/// ```
/// use switchboard_protocol::realtimex::member_events;
/// let added = member_events("presence-room", "7", Some(&serde_json::json!({"name": "ada"})), true);
/// assert_eq!(added.len(), 2);
/// assert!(added[1].encode().contains(r#""event":"presence:member_added""#));
/// assert_eq!(member_events("presence-room", "7", None, false).len(), 1);
/// ```
pub fn member_events(channel: &str, user_id: &str, user_info: Option<&Value>, mirrors: bool) -> Vec<Packet> {
    let (canonical, mirror, data) = match user_info {
        Some(info) => (MEMBER_ADDED, "presence:member_added", json!({"user_id": user_id, "user_info": info})),
        None => (MEMBER_REMOVED, "presence:member_removed", json!({"user_id": user_id})),
    };
    let mut events = vec![server_event(channel, canonical, data.clone(), None)];
    if mirrors {
        events.push(server_event(channel, mirror, data, None));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_events_read_and_write_back() {
        for text in [
            r#"2["realtimex:subscribe",{"channel":"presence-room","auth":"k:ab","channel_data":"{\"user_id\":\"7\"}"}]"#,
            r#"2["realtimex:unsubscribe",{"channel":"news"}]"#,
            r#"2["client-event",{"channel":"private-x","data":{"typing":true},"event":"client-typing"}]"#,
            r#"2["realtimex:ping",{}]"#,
        ] {
            let packet = Packet::decode(text).expect(text);
            let event = ClientEvent::from_packet(&packet).expect(text);
            assert_eq!(
                ClientEvent::from_packet(&Packet::decode(&event.to_packet(None).encode()).expect("again"))
                    .expect("again"),
                event
            );
        }
        // The seed's subscribe, which drops auth and channel_data: still a subscribe.
        let seed = Packet::decode(r#"2["realtimex:subscribe",{"channel":"private-x"}]"#).expect("ok");
        assert!(matches!(ClientEvent::from_packet(&seed), Ok(ClientEvent::Subscribe(Subscribe { auth: None, .. }))));
    }

    #[test]
    fn bad_client_events_say_why() {
        for (text, unknown) in [
            (r#"2["realtimex:subscribe"]"#, false),
            (r#"2["realtimex:subscribe",{"channel":5}]"#, false),
            (r#"2["realtimex:subscribe",{"channel":"x","auth":7}]"#, false),
            (r#"2["client-event",{"channel":"x"}]"#, false),
            (r#"2["realtimex:unsubscribe","news"]"#, false),
            (r#"2["server-event",{}]"#, true),
            (r#"2["connect"]"#, true),
        ] {
            let packet = Packet::decode(text).expect(text);
            let err = ClientEvent::from_packet(&packet).expect_err(text);
            assert_eq!(matches!(err, ProtocolError::UnknownFrameType(_)), unknown, "{text}: {err}");
        }
    }

    #[test]
    fn the_server_event_scanner_agrees_with_serde_json() {
        let cases = [
            r#"42["server-event",{"channel":"news","event":"headline","data":{"id":7,"t":"a\"b"}}]"#,
            r#"42["server-event",{"channel":"n","event":"x","data":"plain \u00e9","user_id":7}]"#,
            r#"42[ "server-event" , { "channel" : "n" , "event" : "x" , "extra" : [1,{"a":null}] } ] "#,
            r#"42["server-event",{"channel":"n","event":"x","user_id":"u1"}]"#,
            r#"42["server-event",{"channel":"c\u00e9","event":"e\n"}]"#,
        ];
        for frame in cases {
            let spans = ServerEventSpans::scan(frame).unwrap_or_else(|| panic!("{frame}"));
            let packet = Packet::decode(&frame[1..]).expect("valid");
            let body = &packet.args()[0];
            assert_eq!(json_str(spans.channel).as_deref(), body["channel"].as_str(), "{frame}");
            assert_eq!(json_str(spans.event).as_deref(), body["event"].as_str(), "{frame}");
            let parsed = |raw: Option<&str>| raw.map(|r| serde_json::from_str::<Value>(r).expect("raw JSON"));
            assert_eq!(parsed(spans.data), body.get("data").cloned(), "{frame}");
            assert_eq!(parsed(spans.user_id), body.get("user_id").cloned(), "{frame}");
        }
        for frame in [
            r#"42["server-event",{"channel":"n"}]"#,
            r#"42["server-event",{"channel":7,"event":"x"}]"#,
            r#"42["server-event",{"channel":"n","event":"x","event":"y"}]"#,
            r#"42["server-event",{"ch\u0061nnel":"n","event":"x"}]"#,
            r#"42["server-event",{"channel":"n","event":"x"}"#,
            r#"42["server-event",{"channel":"n","event":"x"}]]"#,
            r#"42["server-event",{"channel":"n","event":"x",}]"#,
            r#"421["server-event",{"channel":"n","event":"x"}]"#,
            r#"42/admin,["server-event",{"channel":"n","event":"x"}]"#,
            r#"42["tick",{"channel":"n","event":"x"}]"#,
            // What serde_json refuses to read as a value, the scanner refuses too.
            r#"42["server-event",{"channel":"n","event":"x","data":{"v":"\ud800"}}]"#,
            r#"42["server-event",{"channel":"n","event":"x","data":{"n":1e400}}]"#,
            "42[",
            "",
        ] {
            assert!(ServerEventSpans::scan(frame).is_none(), "{frame}");
        }
    }

    #[test]
    fn presence_confirmations_carry_the_roster() {
        let mut hash = serde_json::Map::new();
        hash.insert("7".into(), json!({"name": "ada"}));
        let summary = PresenceSummary { count: 1, ids: vec!["7".into()], hash };
        let text = subscription_succeeded("presence-room", "1.2", Some(&summary)).encode();
        let packet = Packet::decode(&text).expect("valid");
        assert_eq!(packet.args()[0]["presence"]["hash"]["7"]["name"], "ada");
        let removed = member_events("presence-room", "7", None, true);
        assert!(
            removed[0].encode().contains(MEMBER_REMOVED) && removed[1].encode().contains("presence:member_removed")
        );
        assert_eq!(server_event("c", "e", json!(1), Some("7")).args()[0]["user_id"], "7");
    }
}
