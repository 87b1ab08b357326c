//! The gateway's frames, both directions (`gateway-and-realtimex.md` A.2 and A.5).
//!
//! Client → server: `{"type": T, "data": D}` with T one of `subscribe`, `unsubscribe`,
//! `publish`, `message`. Server → client: `{"topic": T, "messageType": M, "data": D}`, where
//! D is the welcome's connection info, an ack, or a delivery envelope
//! `{client: {connectionId, subject[, permissions]}, id, payload, subProtocol: 1}`.
//! Payloads are kept as raw JSON text, so the server relays them without re-encoding.
//!
//! ```
//! use switchboard_protocol::gateway::{ClientFrame, ServerFrame, frames};
//! let sent = ClientFrame::decode(r#"{"type":"publish","data":{"topic":"chat","messageType":"text","payload":{"x":1},"id":"m1"}}"#)?;
//! let ClientFrame::Publish(publish) = sent else { unreachable!() };
//! let sender = frames::Sender { connection_id: Some("4389b2ed1a7e"), subject: Some("ada"), permissions: None };
//! let delivered = frames::delivery_frame(&publish.topic, publish.message_type(), &sender, publish.id.as_deref(), &publish.payload);
//! assert_eq!(delivered, r#"{"topic":"chat","messageType":"text","data":{"client":{"connectionId":"4389b2ed1a7e","subject":"ada"},"id":"m1","payload":{"x":1},"subProtocol":1}}"#);
//! let frame = ServerFrame::decode(&delivered)?;
//! assert_eq!(frame.delivery()?.payload.get(), r#"{"x":1}"#);
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::Permissions;
use crate::ProtocolError;

/// The messageType of a publish or message that names none (every SDK and demo agrees).
pub const DEFAULT_MESSAGE_TYPE: &str = "broadcast";
/// The topic acks arrive on.
pub const ACKS_TOPIC: &str = "priv/acks";
/// The topic every connection gets without subscribing, where the welcome arrives.
pub const MAIN_TOPIC: &str = "main";
/// Where `message` frames and presence events go, for backends.
pub const INBOUND_TOPIC: &str = "secure/inbound";
/// The `subProtocol` of every delivery.
pub const SUB_PROTOCOL: u32 = 1;

/// A connection's own topic, where replies to it go: `priv/<connection id>`.
///
/// ```
/// assert_eq!(switchboard_protocol::gateway::frames::private_topic("4389b2ed1a7e"), "priv/4389b2ed1a7e");
/// ```
pub fn private_topic(connection_id: &str) -> String {
    format!("priv/{connection_id}")
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// A `publish`: deliver `payload` to every subscriber of `topic`, the sender included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish {
    /// Where to.
    pub topic: String,
    /// The listeners' second key (`{topic}.{messageType}`); `broadcast` if absent.
    #[serde(rename = "messageType", default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// Deliver as a binary frame.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    /// The message, any JSON.
    #[serde(default = "null")]
    pub payload: Box<RawValue>,
    /// The sender's message id: acked, and echoed in deliveries (replies quote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A `message` (the SDKs' `send`): deliver `payload` to `secure/inbound`, for backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inbound {
    /// As for [`Publish`].
    #[serde(rename = "messageType", default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// As for [`Publish`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    /// As for [`Publish`].
    #[serde(default = "null")]
    pub payload: Box<RawValue>,
    /// As for [`Publish`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Publish {
    /// The messageType, `broadcast` if none was given.
    pub fn message_type(&self) -> &str {
        self.message_type.as_deref().unwrap_or(DEFAULT_MESSAGE_TYPE)
    }
}

impl Inbound {
    /// The messageType, `broadcast` if none was given.
    pub fn message_type(&self) -> &str {
        self.message_type.as_deref().unwrap_or(DEFAULT_MESSAGE_TYPE)
    }
}

/// A frame a client sends.
///
/// ```
/// use switchboard_protocol::gateway::ClientFrame;
/// let frame = ClientFrame::Subscribe { topic: "chat".into() };
/// assert_eq!(frame.encode(), r#"{"type":"subscribe","data":{"topic":"chat"}}"#);
/// assert_eq!(ClientFrame::decode(&frame.encode())?, frame);
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone)]
pub enum ClientFrame {
    /// Subscribe to a topic (no confirmation in this protocol).
    Subscribe {
        /// The topic.
        topic: String,
    },
    /// Unsubscribe from a topic.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
    /// Publish to a topic.
    Publish(Publish),
    /// Send to the backends (`secure/inbound`).
    Message(Inbound),
}

impl PartialEq for ClientFrame {
    fn eq(&self, other: &Self) -> bool {
        self.encode() == other.encode()
    }
}

#[derive(Deserialize)]
struct RawClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TopicData {
    topic: String,
}

impl ClientFrame {
    /// Decode a client frame. Not JSON → [`ProtocolError::MalformedJson`]; a `type` this
    /// protocol does not have → [`ProtocolError::UnknownFrameType`]; a known type with a bad
    /// `data` → [`ProtocolError::InvalidFrame`].
    ///
    /// ```
    /// use switchboard_protocol::{ProtocolError, gateway::ClientFrame};
    /// assert!(matches!(ClientFrame::decode("{"), Err(ProtocolError::MalformedJson(_))));
    /// assert!(matches!(ClientFrame::decode(r#"{"type":"dance","data":{}}"#), Err(ProtocolError::UnknownFrameType(t)) if t == "dance"));
    /// assert!(matches!(ClientFrame::decode(r#"{"type":"subscribe","data":{}}"#), Err(ProtocolError::InvalidFrame(_))));
    /// ```
    pub fn decode(text: &str) -> Result<ClientFrame, ProtocolError> {
        let raw: RawClientFrame<'_> =
            serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
        let kind = raw.kind.ok_or_else(|| ProtocolError::InvalidFrame("a frame needs a \"type\"".into()))?;
        let data = raw.data.map_or("null", RawValue::get);
        let invalid = |e: serde_json::Error| ProtocolError::InvalidFrame(format!("{kind}: {e}"));
        Ok(match &*kind {
            "subscribe" => {
                ClientFrame::Subscribe { topic: serde_json::from_str::<TopicData>(data).map_err(invalid)?.topic }
            }
            "unsubscribe" => {
                ClientFrame::Unsubscribe { topic: serde_json::from_str::<TopicData>(data).map_err(invalid)?.topic }
            }
            "publish" => ClientFrame::Publish(serde_json::from_str(data).map_err(invalid)?),
            "message" => ClientFrame::Message(serde_json::from_str(data).map_err(invalid)?),
            other => return Err(ProtocolError::UnknownFrameType(other.chars().take(64).collect())),
        })
    }

    /// Encode for the wire.
    pub fn encode(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a, D: Serialize> {
            #[serde(rename = "type")]
            kind: &'a str,
            data: D,
        }
        #[derive(Serialize)]
        struct Topic<'a> {
            topic: &'a str,
        }
        let encoded = match self {
            ClientFrame::Subscribe { topic } => {
                serde_json::to_string(&Out { kind: "subscribe", data: Topic { topic } })
            }
            ClientFrame::Unsubscribe { topic } => {
                serde_json::to_string(&Out { kind: "unsubscribe", data: Topic { topic } })
            }
            ClientFrame::Publish(publish) => serde_json::to_string(&Out { kind: "publish", data: publish }),
            ClientFrame::Message(message) => serde_json::to_string(&Out { kind: "message", data: message }),
        };
        // Strings, booleans and raw JSON always serialize.
        encoded.unwrap_or_default()
    }
}

/// Who sent a delivered message, as the envelope names them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sender<'a> {
    /// The sender's connection id (replies go to `priv/<it>`); none for an HTTP publish.
    #[serde(rename = "connectionId", skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<&'a str>,
    /// The token's `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    /// The sender's grants: shown on `secure/inbound` deliveries only (to backends).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "grants")]
    pub permissions: Option<&'a Permissions>,
}

fn grants<S: serde::Serializer>(permissions: &Option<&Permissions>, s: S) -> Result<S::Ok, S::Error> {
    match permissions {
        Some(p) => p.as_slice().serialize(s),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct Out<'a, D: Serialize> {
    topic: &'a str,
    #[serde(rename = "messageType")]
    message_type: &'a str,
    data: D,
}

fn encode<D: Serialize>(topic: &str, message_type: &str, data: D) -> String {
    serde_json::to_string(&Out { topic, message_type, data }).unwrap_or_default()
}

/// The connection info of the welcome, and of `session.started` in the SDKs.
///
/// ```
/// use switchboard_protocol::gateway::frames::{ConnectionInfo, welcome_frame};
/// let info = ConnectionInfo { id: "4389b2ed1a7e".into(), app_id: "app".into(), remote_address: "127.0.0.1".into() };
/// assert_eq!(welcome_frame(&info), r#"{"topic":"main","messageType":"welcome","data":{"connection":{"id":"4389b2ed1a7e","appId":"app","remoteAddress":"127.0.0.1"}}}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// The connection id (12 hex characters from our server).
    pub id: String,
    /// The app.
    #[serde(rename = "appId", default)]
    pub app_id: String,
    /// The client's address as the server saw it.
    #[serde(rename = "remoteAddress", default)]
    pub remote_address: String,
}

/// The first frame of every connection.
pub fn welcome_frame(info: &ConnectionInfo) -> String {
    #[derive(Serialize)]
    struct Welcome<'a> {
        connection: &'a ConnectionInfo,
    }
    encode(MAIN_TOPIC, "welcome", Welcome { connection: info })
}

/// The ack of message `id`.
///
/// ```
/// assert_eq!(switchboard_protocol::gateway::frames::ack_frame("m1"), r#"{"topic":"priv/acks","messageType":"ack","data":{"data":"m1"}}"#);
/// ```
pub fn ack_frame(id: &str) -> String {
    #[derive(Serialize)]
    struct Ack<'a> {
        data: &'a str,
    }
    encode(ACKS_TOPIC, "ack", Ack { data: id })
}

/// A published or sent message as subscribers of `topic` receive it.
pub fn delivery_frame(
    topic: &str,
    message_type: &str,
    sender: &Sender<'_>,
    id: Option<&str>,
    payload: &RawValue,
) -> String {
    #[derive(Serialize)]
    struct Delivery<'a> {
        client: &'a Sender<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        payload: &'a RawValue,
        #[serde(rename = "subProtocol")]
        sub_protocol: u32,
    }
    encode(topic, message_type, Delivery { client: sender, id, payload, sub_protocol: SUB_PROTOCOL })
}

/// A connection came (`connected`, code 0) or went (`disconnected`, its close code or -1),
/// for `secure/inbound` subscribers.
///
/// ```
/// use switchboard_protocol::gateway::{Permissions, frames::{Sender, presence_frame}};
/// let grants = Permissions::default();
/// let sender = Sender { connection_id: Some("4389b2ed1a7e"), subject: Some("user0@example.com"), permissions: Some(&grants) };
/// assert_eq!(presence_frame(&sender, None), r#"{"topic":"secure/inbound","messageType":"presence","data":{"client":{"connectionId":"4389b2ed1a7e","subject":"user0@example.com","permissions":[]},"subProtocol":1,"payload":{"code":0,"status":"connected"}}}"#);
/// assert!(presence_frame(&sender, Some(-1)).ends_with(r#""payload":{"code":-1,"status":"disconnected"}}}"#));
/// ```
pub fn presence_frame(client: &Sender<'_>, disconnected_with: Option<i64>) -> String {
    #[derive(Serialize)]
    struct Status {
        code: i64,
        status: &'static str,
    }
    #[derive(Serialize)]
    struct Presence<'a> {
        client: &'a Sender<'a>,
        #[serde(rename = "subProtocol")]
        sub_protocol: u32,
        payload: Status,
    }
    let payload = match disconnected_with {
        None => Status { code: 0, status: "connected" },
        Some(code) => Status { code, status: "disconnected" },
    };
    encode(INBOUND_TOPIC, "presence", Presence { client, sub_protocol: SUB_PROTOCOL, payload })
}

/// The payload of a reply (`messageType: "response"` on `priv/<id>`): `{data, status, id}`.
///
/// ```
/// use switchboard_protocol::gateway::frames::Response;
/// let r: Response = serde_json::from_str(r#"{"data":{"t":1},"status":"ok","id":"m1"}"#)?;
/// assert_eq!((r.status.as_str(), r.id.as_deref()), ("ok", Some("m1")));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The answer.
    #[serde(default)]
    pub data: Value,
    /// `ok` or an error status, as the responder chose.
    #[serde(default = "ok")]
    pub status: String,
    /// The id of the message this answers.
    #[serde(default)]
    pub id: Option<String>,
}

fn ok() -> String {
    "ok".into()
}

/// A reply's payload, `{"data", "status", "id"}` in the SDKs' key order.
///
/// ```
/// use switchboard_protocol::gateway::frames::response_payload;
/// assert_eq!(response_payload(&serde_json::json!(1), "ok", Some("m1")).get(), r#"{"data":1,"status":"ok","id":"m1"}"#);
/// ```
pub fn response_payload(data: &Value, status: &str, in_reply_to: Option<&str>) -> Box<RawValue> {
    #[derive(Serialize)]
    struct Answer<'a> {
        data: &'a Value,
        status: &'a str,
        id: Option<&'a str>,
    }
    serde_json::value::to_raw_value(&Answer { data, status, id: in_reply_to }).unwrap_or_else(|_| null())
}

/// The frame a responder sends to answer `incoming` (the SDKs' `reply`): a publish of
/// `{data, status, id: incoming id}` to `priv/<sender>`, with messageType `response`.
///
/// ```
/// use switchboard_protocol::gateway::ClientFrame;
/// use switchboard_protocol::gateway::frames::reply_frame;
/// let frame = reply_frame("4389b2ed1a7e", Some("m1"), &serde_json::json!({"t": 1}), "ok", false, "r1");
/// assert_eq!(frame.encode(), r#"{"type":"publish","data":{"topic":"priv/4389b2ed1a7e","messageType":"response","payload":{"data":{"t":1},"status":"ok","id":"m1"},"id":"r1"}}"#);
/// ```
pub fn reply_frame(
    to_connection: &str,
    in_reply_to: Option<&str>,
    data: &Value,
    status: &str,
    compress: bool,
    id: &str,
) -> ClientFrame {
    let payload = response_payload(data, status, in_reply_to);
    ClientFrame::Publish(Publish {
        topic: private_topic(to_connection),
        message_type: Some("response".into()),
        compress,
        payload,
        id: Some(id.to_owned()),
    })
}

/// A frame the server sent, decoded: `data` stays raw until a typed accessor reads it.
#[derive(Debug, Clone)]
pub struct ServerFrame {
    /// The topic.
    pub topic: String,
    /// The messageType; frames without one are ignored by every SDK.
    pub message_type: Option<String>,
    /// The data, as sent.
    pub data: Box<RawValue>,
}

#[derive(Deserialize)]
struct RawServerFrame {
    topic: String,
    #[serde(rename = "messageType", default)]
    message_type: Option<String>,
    #[serde(default = "null")]
    data: Box<RawValue>,
}

/// The envelope of a delivered message.
#[derive(Debug, Clone, Deserialize)]
pub struct Delivery {
    /// Who sent it (absent on HTTP publishes other than its subject).
    #[serde(default)]
    pub client: ClientInfo,
    /// The sender's message id.
    #[serde(default)]
    pub id: Option<String>,
    /// The message.
    #[serde(default = "null")]
    pub payload: Box<RawValue>,
}

/// `data.client` of a delivery or a presence event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ClientInfo {
    /// The sender's connection id.
    #[serde(rename = "connectionId", default)]
    pub connection_id: Option<String>,
    /// The sender's token subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// The sender's grants (on `secure/inbound` only).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
}

/// A `presence` event on `secure/inbound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    /// The connection that came or went.
    pub client: ClientInfo,
    /// True for `connected`, false for `disconnected`.
    pub connected: bool,
    /// 0 when connected; the close code or -1 when disconnected.
    pub code: i64,
}

impl ServerFrame {
    /// Decode a server frame (text, or a binary frame's bytes as UTF-8).
    ///
    /// ```
    /// use switchboard_protocol::gateway::ServerFrame;
    /// let f = ServerFrame::decode(r#"{"topic":"priv/acks","messageType":"ack","data":{"data":"m1"}}"#)?;
    /// assert_eq!(f.ack_id().as_deref(), Some("m1"));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode(text: &str) -> Result<ServerFrame, ProtocolError> {
        let raw: RawServerFrame = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                ProtocolError::InvalidFrame(e.to_string())
            } else {
                ProtocolError::MalformedJson(e.to_string())
            }
        })?;
        Ok(ServerFrame { topic: raw.topic, message_type: raw.message_type, data: raw.data })
    }

    /// The listener key, `"{topic}.{messageType}"`.
    ///
    /// ```
    /// # use switchboard_protocol::gateway::ServerFrame;
    /// assert_eq!(ServerFrame::decode(r#"{"topic":"chat","messageType":"text","data":{}}"#)?.event_name().as_deref(), Some("chat.text"));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn event_name(&self) -> Option<String> {
        self.message_type.as_ref().map(|m| format!("{}.{m}", self.topic))
    }

    /// The welcome's connection info.
    pub fn connection_info(&self) -> Result<ConnectionInfo, ProtocolError> {
        #[derive(Deserialize)]
        struct Welcome {
            connection: ConnectionInfo,
        }
        serde_json::from_str::<Welcome>(self.data.get())
            .map(|w| w.connection)
            .map_err(|e| ProtocolError::InvalidFrame(format!("welcome: {e}")))
    }

    /// The id an ack acknowledges (`data.data`), if this is an ack.
    pub fn ack_id(&self) -> Option<String> {
        if self.topic != ACKS_TOPIC || self.message_type.as_deref() != Some("ack") {
            return None;
        }
        #[derive(Deserialize)]
        struct Ack {
            data: Value,
        }
        match serde_json::from_str::<Ack>(self.data.get()).ok()?.data {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The delivery envelope. An HTTP publish from another server may put the message
    /// itself in `data`: then it is the payload, with no sender.
    pub fn delivery(&self) -> Result<Delivery, ProtocolError> {
        let envelope = serde_json::from_str::<Value>(self.data.get()).ok();
        if envelope.as_ref().is_some_and(|v| v.get("payload").is_some()) {
            return serde_json::from_str(self.data.get())
                .map_err(|e| ProtocolError::InvalidFrame(format!("delivery: {e}")));
        }
        Ok(Delivery { client: ClientInfo::default(), id: None, payload: self.data.clone() })
    }

    /// The reply, if this is a `response` on a `priv/` topic.
    pub fn response(&self) -> Option<Response> {
        if !self.topic.starts_with("priv/") || self.message_type.as_deref() != Some("response") {
            return None;
        }
        serde_json::from_str(self.delivery().ok()?.payload.get()).ok()
    }

    /// The presence event, if this is one.
    pub fn presence(&self) -> Option<PresenceEvent> {
        if self.message_type.as_deref() != Some("presence") {
            return None;
        }
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            code: i64,
            status: String,
        }
        #[derive(Deserialize)]
        struct Presence {
            #[serde(default)]
            client: ClientInfo,
            payload: Status,
        }
        let p: Presence = serde_json::from_str(self.data.get()).ok()?;
        let connected = match p.payload.status.as_str() {
            "connected" => true,
            "disconnected" => false,
            _ => return None,
        };
        Some(PresenceEvent { client: p.client, connected, code: p.payload.code })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_python_seeds_frames_verbatim() {
        // seed-clients.md §C, "Frames sent".
        let publish = ClientFrame::decode(r#"{"type": "publish", "data": {"topic": "chat", "messageType": "text", "compress": true, "payload": {"x": 1}, "id": "65244baa94c4f304fdc25bbe0e5eea4b"}}"#).expect("publish");
        let ClientFrame::Publish(p) = publish else { panic!("not a publish") };
        assert_eq!(
            (p.topic.as_str(), p.message_type(), p.compress, p.payload.get(), p.id.as_deref()),
            ("chat", "text", true, r#"{"x": 1}"#, Some("65244baa94c4f304fdc25bbe0e5eea4b"))
        );
        let send = ClientFrame::decode(r#"{"type": "message", "data": {"messageType": "broadcast", "compress": false, "payload": "hi", "id": "a1"}}"#).expect("message");
        let ClientFrame::Message(m) = send else { panic!("not a message") };
        assert_eq!((m.message_type(), m.payload.get()), ("broadcast", r#""hi""#));
        assert_eq!(
            ClientFrame::decode(r#"{"type": "unsubscribe", "data": {"topic": "chat"}}"#).expect("unsubscribe"),
            ClientFrame::Unsubscribe { topic: "chat".into() }
        );
        // Go omits messageType; a raw publisher omits the id (websocket-publisher.js).
        let ClientFrame::Message(m) =
            ClientFrame::decode(r#"{"type":"message","data":{"payload":{}}}"#).expect("bare message")
        else {
            panic!()
        };
        assert_eq!((m.message_type(), m.id.as_deref()), ("broadcast", None));
    }

    #[test]
    fn refuses_bad_client_frames_with_the_right_error() {
        for (text, kind) in [
            ("not json", "json"),
            (r#"["subscribe"]"#, "json"),
            (r#"{"data":{}}"#, "invalid"),
            (r#"{"type":7}"#, "json"),
            (r#"{"type":"subscribe"}"#, "invalid"),
            (r#"{"type":"subscribe","data":{"topic":5}}"#, "invalid"),
            (r#"{"type":"publish","data":{"payload":1}}"#, "invalid"),
            (r#"{"type":"publish","data":{"topic":"t","compress":"yes"}}"#, "invalid"),
            (r#"{"type":"ping","data":{}}"#, "unknown"),
        ] {
            let err = ClientFrame::decode(text).expect_err(text);
            let got = match err {
                ProtocolError::MalformedJson(_) => "json",
                ProtocolError::InvalidFrame(_) => "invalid",
                ProtocolError::UnknownFrameType(_) => "unknown",
                _ => "other",
            };
            assert_eq!(got, kind, "{text}: {err}");
        }
    }

    #[test]
    fn reads_the_server_frames_the_sdks_read() {
        // gateway-and-realtimex.md A.2: the balloons server's presence sample, verbatim.
        let presence = ServerFrame::decode(r#"{"topic":"secure/inbound","messageType":"presence","data":{"client":{"connectionId":"4389b2ed1a7e","subject":"user0@example.com","permissions":["realtime:subscriber:read:topic:*"]},"subProtocol":1,"payload":{"code":0,"status":"connected"}}}"#).expect("presence");
        let event = presence.presence().expect("a presence event");
        assert!(event.connected && event.code == 0);
        assert_eq!(event.client.subject.as_deref(), Some("user0@example.com"));
        let gone = ServerFrame::decode(r#"{"topic":"secure/inbound","messageType":"presence","data":{"client":{"connectionId":"x","subject":"s"},"payload":{"code":-1,"status":"disconnected"}}}"#).expect("presence");
        assert_eq!(gone.presence().map(|p| (p.connected, p.code)), Some((false, -1)));
        // The Go fixture's ack, with its extra "type".
        let ack =
            ServerFrame::decode(r#"{"type":"event","topic":"priv/acks","messageType":"ack","data":{"data":"m1"}}"#)
                .expect("ack");
        assert_eq!(ack.ack_id().as_deref(), Some("m1"));
        let welcome = ServerFrame::decode(r#"{"topic":"main","messageType":"welcome","data":{"connection":{"id":"4389b2ed1a7e","appId":"a","remoteAddress":"::1"}}}"#).expect("welcome");
        assert_eq!(welcome.connection_info().expect("info").id, "4389b2ed1a7e");
        // A reply, and an HTTP publish whose data is the message itself.
        let reply = ServerFrame::decode(r#"{"topic":"priv/abc","messageType":"response","data":{"client":{"connectionId":"b"},"id":"r1","payload":{"data":{"t":1},"status":"ok","id":"m1"}}}"#).expect("reply");
        assert_eq!(reply.response().map(|r| r.id), Some(Some("m1".into())));
        let http =
            ServerFrame::decode(r#"{"topic":"backend-clock","messageType":"broadcast","data":"12:00"}"#).expect("http");
        assert_eq!(http.delivery().expect("delivery").payload.get(), r#""12:00""#);
        // No messageType: decoded, but no listener key.
        assert_eq!(ServerFrame::decode(r#"{"topic":"t","data":{}}"#).expect("t").event_name(), None);
        assert!(matches!(ServerFrame::decode(r#"{"messageType":"x"}"#), Err(ProtocolError::InvalidFrame(_))));
    }

    #[test]
    fn deliveries_show_grants_only_when_asked() {
        let grants = Permissions::from_claims(&["realtime:publisher:write:topic:*".into()], None);
        let payload = RawValue::from_string("[1]".into()).expect("json");
        let public = Sender { connection_id: Some("c"), subject: None, permissions: None };
        assert_eq!(
            delivery_frame("t", "m", &public, None, &payload),
            r#"{"topic":"t","messageType":"m","data":{"client":{"connectionId":"c"},"payload":[1],"subProtocol":1}}"#
        );
        let inbound = Sender { connection_id: Some("c"), subject: Some("s"), permissions: Some(&grants) };
        assert!(
            delivery_frame(INBOUND_TOPIC, "m", &inbound, Some("i"), &payload)
                .contains(r#""permissions":["realtime:publisher:write:topic:*"]"#)
        );
    }
}
