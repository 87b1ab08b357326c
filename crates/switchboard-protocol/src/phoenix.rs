//! Phoenix Channels frames: serializer V2 (`vsn=2.0.0`, JSON arrays and binary frames) and
//! V1 (JSON objects), as `phoenix/assets/js/phoenix/serializer.js` and the Elixir
//! `V1/V2.JSONSerializer` define them.
//!
//! V2 text: `[join_ref, ref, topic, event, payload]`. V1: `{"topic","event","payload","ref"}`
//! plus an optional `join_ref` from clients; servers never send `join_ref` in V1. Replies are
//! `phx_reply` with `{"status","response"}` — classify by the event, never by null refs.
//!
//! ```
//! use switchboard_protocol::phoenix::{Message, Vsn};
//! let join = Message::decode_text(r#"["1","1","room:lobby","phx_join",{"username":"ada"}]"#, Vsn::V2)?;
//! let reply = Message::reply(join.join_ref.clone(), join.reference.clone(), &join.topic, "ok", serde_json::json!({}));
//! assert_eq!(reply.encode_text(Vsn::V2), r#"["1","1","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#);
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::ProtocolError;

/// Which serializer a connection speaks.
///
/// ```
/// use switchboard_protocol::phoenix::{Message, Vsn};
/// let vsn = Vsn::from_query(Some("2.0.0")).ok_or("unsupported vsn")?;
/// let join = Message::decode_text(r#"["1","1","room:lobby","phx_join",{}]"#, vsn)?;
/// assert!(join.encode_text(Vsn::V2).starts_with('['), "V2 frames are arrays");
/// assert!(join.encode_text(Vsn::V1).starts_with('{'), "V1 frames are objects");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    /// `vsn=1.0.0`, or no `vsn` at all (the server default): JSON objects.
    V1,
    /// `vsn=2.0.0`: JSON arrays, plus binary frames.
    V2,
}

impl Vsn {
    /// The serializer for a `vsn` query value (`None` when absent → V1, as Phoenix does).
    ///
    /// ```
    /// use switchboard_protocol::phoenix::Vsn;
    /// assert_eq!(Vsn::from_query(None), Some(Vsn::V1));
    /// assert_eq!(Vsn::from_query(Some("2.0.0")), Some(Vsn::V2));
    /// assert_eq!(Vsn::from_query(Some("3.0.0")), None);
    /// ```
    pub fn from_query(vsn: Option<&str>) -> Option<Vsn> {
        match vsn {
            None => Some(Vsn::V1),
            Some(v) if v.starts_with("1.") => Some(Vsn::V1),
            Some(v) if v.starts_with("2.") => Some(Vsn::V2),
            Some(_) => None,
        }
    }
}

/// The payload of a message: JSON, or bytes from a V2 binary frame.
///
/// ```
/// use switchboard_protocol::phoenix::{Message, Payload, Vsn};
/// let text = Message::decode_text(r#"[null,null,"room:lobby","shout",{"body":"hi"}]"#, Vsn::V2)?;
/// assert_eq!(text.payload, Payload::Json(serde_json::json!({"body": "hi"})));
/// // A V2 binary broadcast (kind 2): topic "top", event "ev", one payload byte.
/// let binary = Message::decode_binary(b"\x02\x03\x02topev\x01", true)?;
/// assert_eq!(binary.payload, Payload::Binary(vec![1]));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A JSON value (normally an object).
    Json(Value),
    /// Raw bytes (V2 binary frames).
    Binary(Vec<u8>),
    /// A binary reply: its status and raw response bytes.
    BinaryReply {
        /// `ok`, `error`, …
        status: String,
        /// The response bytes.
        response: Vec<u8>,
    },
}

/// One Phoenix message.
///
/// ```
/// use serde_json::json;
/// use switchboard_protocol::phoenix::{Message, Payload, Vsn};
/// let shout = Message {
///     join_ref: Some("1".into()),
///     reference: Some("3".into()),
///     topic: "room:lobby".into(),
///     event: "shout".into(),
///     payload: Payload::Json(json!({"body": "hi"})),
/// };
/// let text = shout.encode_client_text(Vsn::V2);
/// assert_eq!(text, r#"["1","3","room:lobby","shout",{"body":"hi"}]"#);
/// assert_eq!(Message::decode_text(&text, Vsn::V2)?, shout);
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The ref of the join this message belongs to.
    pub join_ref: Option<String>,
    /// The message ref, echoed by the reply.
    pub reference: Option<String>,
    /// The topic, e.g. `room:lobby`.
    pub topic: String,
    /// The event, e.g. `phx_join`, `shout`, `phx_reply`.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

fn ref_of(v: &Value) -> Result<Option<String>, ProtocolError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(ProtocolError::InvalidFrame("refs must be strings, numbers or null".into())),
    }
}

fn ref_json(r: &Option<String>) -> Value {
    r.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

impl Message {
    /// A reply: `phx_reply` with `{"status", "response"}`.
    ///
    /// ```
    /// use serde_json::json;
    /// use switchboard_protocol::phoenix::{Message, Payload};
    /// let reply = Message::reply(Some("1".into()), Some("2".into()), "room:lobby", "ok", json!({"id": 7}));
    /// assert_eq!(reply.event, "phx_reply");
    /// assert_eq!(reply.payload, Payload::Json(json!({"status": "ok", "response": {"id": 7}})));
    /// ```
    pub fn reply(
        join_ref: Option<String>,
        reference: Option<String>,
        topic: &str,
        status: &str,
        response: Value,
    ) -> Message {
        Message {
            join_ref,
            reference,
            topic: topic.to_owned(),
            event: "phx_reply".into(),
            payload: Payload::Json(serde_json::json!({ "status": status, "response": response })),
        }
    }

    /// Decode a text frame.
    ///
    /// ```
    /// use switchboard_protocol::phoenix::{Message, Payload, Vsn};
    /// let m = Message::decode_text(r#"["1","2","room:lobby","phx_join",{"username":"ada"}]"#, Vsn::V2)?;
    /// assert_eq!((m.join_ref.as_deref(), m.reference.as_deref(), m.event.as_str()), (Some("1"), Some("2"), "phx_join"));
    /// let v1 = Message::decode_text(r#"{"topic":"room:lobby","event":"shout","payload":{},"ref":null}"#, Vsn::V1)?;
    /// assert_eq!(v1.reference, None);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode_text(text: &str, vsn: Vsn) -> Result<Message, ProtocolError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
        let field_str = |v: &Value, name: &str| -> Result<String, ProtocolError> {
            v.as_str().map(str::to_owned).ok_or_else(|| ProtocolError::InvalidFrame(format!("{name} must be a string")))
        };
        match vsn {
            Vsn::V2 => {
                let Value::Array(items) = value else {
                    return Err(ProtocolError::InvalidFrame(
                        "V2 frames are [join_ref, ref, topic, event, payload]".into(),
                    ));
                };
                if items.len() < 5 {
                    return Err(ProtocolError::InvalidFrame("V2 frames have five elements".into()));
                }
                // Extra elements are ignored, as the Elixir serializer does.
                let mut items = items.into_iter();
                let mut next = || items.next().unwrap_or(Value::Null);
                let (join_ref, reference, topic, event, payload) = (next(), next(), next(), next(), next());
                Ok(Message {
                    join_ref: ref_of(&join_ref)?,
                    reference: ref_of(&reference)?,
                    topic: field_str(&topic, "topic")?,
                    event: field_str(&event, "event")?,
                    payload: Payload::Json(payload),
                })
            }
            Vsn::V1 => {
                let Value::Object(mut map) = value else {
                    return Err(ProtocolError::InvalidFrame("V1 frames are objects".into()));
                };
                for key in ["topic", "event", "payload", "ref"] {
                    if !map.contains_key(key) {
                        return Err(ProtocolError::InvalidFrame(format!("V1 frames need {key:?} (ref may be null)")));
                    }
                }
                Ok(Message {
                    join_ref: ref_of(map.get("join_ref").unwrap_or(&Value::Null))?,
                    reference: ref_of(&map["ref"])?,
                    topic: field_str(&map["topic"], "topic")?,
                    event: field_str(&map["event"], "event")?,
                    payload: Payload::Json(map.remove("payload").unwrap_or(Value::Null)),
                })
            }
        }
    }

    /// Encode as a server→client text frame (V1 never carries `join_ref`). Binary payloads
    /// need [`Message::encode_binary_push`] (client) or [`Message::encode_binary_server`].
    ///
    /// ```
    /// use switchboard_protocol::phoenix::{Message, Vsn};
    /// let reply = Message::reply(Some("1".into()), Some("2".into()), "room:lobby", "ok", serde_json::json!({}));
    /// assert_eq!(reply.encode_text(Vsn::V2), r#"["1","2","room:lobby","phx_reply",{"response":{},"status":"ok"}]"#);
    /// assert_eq!(reply.encode_text(Vsn::V1), r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"2","topic":"room:lobby"}"#);
    /// ```
    pub fn encode_text(&self, vsn: Vsn) -> String {
        let payload = match &self.payload {
            Payload::Json(v) => v.clone(),
            Payload::Binary(_) | Payload::BinaryReply { .. } => Value::Null,
        };
        let value = match vsn {
            Vsn::V2 => Value::Array(vec![
                ref_json(&self.join_ref),
                ref_json(&self.reference),
                Value::String(self.topic.clone()),
                Value::String(self.event.clone()),
                payload,
            ]),
            Vsn::V1 => serde_json::json!({
                "topic": self.topic, "event": self.event, "payload": payload, "ref": ref_json(&self.reference),
            }),
        };
        value.to_string()
    }

    /// Encode a client→server text frame (V1 includes `join_ref`).
    ///
    /// ```
    /// use serde_json::json;
    /// use switchboard_protocol::phoenix::{Message, Payload, Vsn};
    /// let join = Message {
    ///     join_ref: Some("1".into()),
    ///     reference: Some("1".into()),
    ///     topic: "room:lobby".into(),
    ///     event: "phx_join".into(),
    ///     payload: Payload::Json(json!({"username": "ada"})),
    /// };
    /// // Client frames keep join_ref in V1; server frames (`encode_text`) drop it.
    /// assert_eq!(Message::decode_text(&join.encode_client_text(Vsn::V1), Vsn::V1)?, join);
    /// assert_eq!(Message::decode_text(&join.encode_text(Vsn::V1), Vsn::V1)?.join_ref, None);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn encode_client_text(&self, vsn: Vsn) -> String {
        match vsn {
            Vsn::V2 => self.encode_text(Vsn::V2),
            Vsn::V1 => {
                let payload = match &self.payload {
                    Payload::Json(v) => v.clone(),
                    Payload::Binary(_) | Payload::BinaryReply { .. } => Value::Null,
                };
                serde_json::json!({
                    "topic": self.topic, "event": self.event, "payload": payload,
                    "ref": ref_json(&self.reference), "join_ref": ref_json(&self.join_ref),
                })
                .to_string()
            }
        }
    }

    /// Decode a V2 binary frame: a client push (kind 0, four lengths), a server push (kind 0
    /// with `from_server`, three lengths, no ref), a reply (kind 1) or a broadcast (kind 2).
    ///
    /// ```
    /// use switchboard_protocol::phoenix::{Message, Payload};
    /// // From phoenix.js serializer_test.js: a reply.
    /// let m = Message::decode_binary(b"\x01\x03\x02\x03\x0210012topok\x01\x01", true)?;
    /// assert_eq!((m.join_ref.as_deref(), m.reference.as_deref(), m.topic.as_str()), (Some("100"), Some("12"), "top"));
    /// assert_eq!(m.event, "phx_reply");
    /// assert_eq!(m.payload, Payload::BinaryReply { status: "ok".into(), response: vec![1, 1] });
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode_binary(bytes: &[u8], from_server: bool) -> Result<Message, ProtocolError> {
        let short = || ProtocolError::InvalidFrame("binary frame too short".into());
        let kind = *bytes.first().ok_or_else(short)?;
        let lengths = match (kind, from_server) {
            (0, false) => 4,
            (0, true) => 3,
            (1, _) => 4,
            (2, _) => 2,
            _ => return Err(ProtocolError::InvalidFrame(format!("unknown binary frame kind {kind}"))),
        };
        let sizes: Vec<usize> = bytes.get(1..1 + lengths).ok_or_else(short)?.iter().map(|&b| b as usize).collect();
        let mut offset = 1 + lengths;
        let mut fields = Vec::with_capacity(lengths);
        for size in sizes {
            let field = bytes.get(offset..offset + size).ok_or_else(short)?;
            fields.push(
                String::from_utf8(field.to_vec())
                    .map_err(|_| ProtocolError::InvalidFrame("binary header is not UTF-8".into()))?,
            );
            offset += size;
        }
        let payload = Payload::Binary(bytes[offset..].to_vec());
        let mut f = fields.into_iter();
        let mut next = || f.next().unwrap_or_default();
        Ok(match (kind, from_server) {
            (0, false) => {
                Message { join_ref: Some(next()), reference: Some(next()), topic: next(), event: next(), payload }
            }
            (0, true) => Message { join_ref: Some(next()), reference: None, topic: next(), event: next(), payload },
            (1, _) => {
                let (join_ref, reference, topic, status) = (next(), next(), next(), next());
                Message {
                    join_ref: Some(join_ref),
                    reference: Some(reference),
                    topic,
                    event: "phx_reply".into(),
                    payload: Payload::BinaryReply { status, response: bytes[offset..].to_vec() },
                }
            }
            _ => Message { join_ref: None, reference: None, topic: next(), event: next(), payload },
        })
    }

    /// Encode a server→client binary frame: a reply (`phx_reply` with a
    /// [`Payload::BinaryReply`], kind 1), a broadcast (no refs, kind 2) or a push (kind 0 with
    /// three lengths, no ref).
    ///
    /// ```
    /// use switchboard_protocol::phoenix::{Message, Payload};
    /// let reply = Message { join_ref: Some("100".into()), reference: Some("12".into()), topic: "top".into(),
    ///     event: "phx_reply".into(), payload: Payload::BinaryReply { status: "ok".into(), response: vec![1, 1] } };
    /// let bytes = reply.encode_binary_server()?;
    /// assert_eq!(bytes, b"\x01\x03\x02\x03\x0210012topok\x01\x01".to_vec());
    /// assert_eq!(Message::decode_binary(&bytes, true)?, reply);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn encode_binary_server(&self) -> Result<Vec<u8>, ProtocolError> {
        let join_ref = self.join_ref.as_deref().unwrap_or("");
        let reference = self.reference.as_deref().unwrap_or("");
        let (kind, fields, payload): (u8, Vec<&str>, &[u8]) = match &self.payload {
            Payload::BinaryReply { status, response } => (1, vec![join_ref, reference, &self.topic, status], response),
            Payload::Binary(bytes) if self.join_ref.is_none() && self.reference.is_none() => {
                (2, vec![&self.topic, &self.event], bytes)
            }
            Payload::Binary(bytes) => (0, vec![join_ref, &self.topic, &self.event], bytes),
            Payload::Json(_) => return Err(ProtocolError::InvalidFrame("binary frames carry a binary payload".into())),
        };
        let mut out = vec![kind];
        for field in &fields {
            out.push(
                u8::try_from(field.len())
                    .map_err(|_| ProtocolError::InvalidFrame("binary header fields are at most 255 bytes".into()))?,
            );
        }
        for field in &fields {
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(payload);
        Ok(out)
    }

    /// Encode a client push with a binary payload (kind 0, four lengths, each ≤255 bytes).
    ///
    /// ```
    /// use switchboard_protocol::phoenix::{Message, Payload};
    /// // From phoenix.js serializer_test.js.
    /// let m = Message { join_ref: Some("10".into()), reference: Some("1".into()), topic: "top".into(),
    ///     event: "ev".into(), payload: Payload::Binary(vec![1]) };
    /// assert_eq!(m.encode_binary_push()?, b"\x00\x02\x01\x03\x02101topev\x01".to_vec());
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn encode_binary_push(&self) -> Result<Vec<u8>, ProtocolError> {
        let Payload::Binary(payload) = &self.payload else {
            return Err(ProtocolError::InvalidFrame("binary frames carry a binary payload".into()));
        };
        let join_ref = self.join_ref.as_deref().unwrap_or("");
        let reference = self.reference.as_deref().unwrap_or("");
        let fields = [join_ref, reference, self.topic.as_str(), self.event.as_str()];
        let mut out = vec![0u8];
        for field in fields {
            out.push(
                u8::try_from(field.len())
                    .map_err(|_| ProtocolError::InvalidFrame("binary header fields are at most 255 bytes".into()))?,
            );
        }
        for field in fields {
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(payload);
        Ok(out)
    }
}

/// A decoded text frame whose payload is left as raw JSON: the receive hot path, which
/// hands the payload on as text without building a value tree.
///
/// ```
/// use switchboard_protocol::phoenix::{RawMessage, Vsn};
/// let text = r#"{"topic":"room:lobby","event":"shout","payload":{"body":"hi"},"ref":"4"}"#;
/// let message = RawMessage::decode(text, Vsn::V1)?;
/// assert_eq!((&*message.topic, message.reference.as_deref()), ("room:lobby", Some("4")));
/// assert_eq!(message.payload, r#"{"body":"hi"}"#); // borrowed from `text`, not re-encoded
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage<'a> {
    /// The ref of the join this message belongs to.
    pub join_ref: Option<String>,
    /// The message ref.
    pub reference: Option<String>,
    /// The topic: borrowed from the frame unless it had escapes.
    pub topic: Cow<'a, str>,
    /// The event: borrowed from the frame unless it had escapes.
    pub event: Cow<'a, str>,
    /// The payload, as the JSON text it arrived as (validated).
    pub payload: &'a str,
}

#[derive(Deserialize)]
struct V1Raw<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(rename = "ref", borrow)]
    reference: Option<&'a RawValue>,
    #[serde(default, borrow)]
    join_ref: Option<&'a RawValue>,
}

/// A V2 frame, `[join_ref, ref, topic, event, payload]`, read element by element: no
/// vector of elements, and strings borrowed from the frame (the receive hot path).
struct V2Raw<'a> {
    join_ref: &'a RawValue,
    reference: &'a RawValue,
    topic: Cow<'a, str>,
    event: Cow<'a, str>,
    payload: &'a RawValue,
}

impl<'de> Deserialize<'de> for V2Raw<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = V2Raw<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a V2 frame: [join_ref, ref, topic, event, payload]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<V2Raw<'de>, A::Error> {
                use serde::de::Error;
                let short = || A::Error::custom("V2 frames have five elements");
                let join_ref = seq.next_element()?.ok_or_else(short)?;
                let reference = seq.next_element()?.ok_or_else(short)?;
                // Read raw, then as strings: a syntax error must stay a syntax error.
                let topic: &'de RawValue = seq.next_element()?.ok_or_else(short)?;
                let event: &'de RawValue = seq.next_element()?.ok_or_else(short)?;
                let topic = string_of(topic).ok_or_else(|| A::Error::custom("topic must be a string"))?;
                let event = string_of(event).ok_or_else(|| A::Error::custom("event must be a string"))?;
                let payload = seq.next_element()?.ok_or_else(short)?;
                // Elements past the fifth are ignored, as before.
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(V2Raw { join_ref, reference, topic, event, payload })
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

/// A JSON string's text, borrowed from the input when it has no escapes.
fn string_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<BorrowedStr<'_>>(raw.get()).ok().map(|s| s.0)
}

/// A JSON string, borrowed from the input when it has no escapes.
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<BorrowedStr<'de>, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<BorrowedStr<'de>, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<BorrowedStr<'de>, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The text of a valid JSON string literal without escapes; `None` for anything else.
fn plain_string(literal: &str) -> Option<&str> {
    literal.strip_prefix('"')?.strip_suffix('"').filter(|inner| !inner.contains('\\'))
}

/// A ref from valid JSON text: `null` or a plain string here, anything else through serde_json
/// (`None` if it is not a ref, for the caller to fall back).
fn plain_ref(literal: &str) -> Option<Option<String>> {
    match literal {
        "null" => Some(None),
        _ => match plain_string(literal) {
            Some(text) => Some(Some(text.to_owned())),
            None => ref_of(&serde_json::from_str(literal).ok()?).ok(),
        },
    }
}

fn raw_ref(raw: Option<&RawValue>) -> Result<Option<String>, ProtocolError> {
    match raw.map(RawValue::get) {
        // Broadcasts carry no refs: no parse for them.
        None | Some("null") => Ok(None),
        Some(text) => ref_of(&serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?),
    }
}

impl<'a> RawMessage<'a> {
    /// Decode a text frame, keeping the payload raw.
    ///
    /// ```
    /// use switchboard_protocol::phoenix::{RawMessage, Vsn};
    /// let m = RawMessage::decode(r#"[null,null,"room:lobby","shout",{"body":"hi"}]"#, Vsn::V2)?;
    /// assert_eq!((&*m.event, m.payload), ("shout", r#"{"body":"hi"}"#));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode(text: &'a str, vsn: Vsn) -> Result<RawMessage<'a>, ProtocolError> {
        match vsn {
            Vsn::V2 => match Self::decode_v2_plain(text) {
                Some(message) => Ok(message),
                // Anything the scanner is not sure of: serde_json decides, and words the error.
                None => Self::decode_v2_serde(text),
            },
            Vsn::V1 => {
                let m: V1Raw<'a> =
                    serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
                Ok(RawMessage {
                    join_ref: raw_ref(m.join_ref)?,
                    reference: raw_ref(m.reference)?,
                    topic: m.topic,
                    event: m.event,
                    payload: m.payload.get(),
                })
            }
        }
    }

    /// The V2 path for everything: serde_json, with its errors.
    pub(crate) fn decode_v2_serde(text: &'a str) -> Result<RawMessage<'a>, ProtocolError> {
        let m: V2Raw<'a> = serde_json::from_str(text).map_err(|e| {
            // Shape errors (too few elements, a non-string topic) read as before.
            if e.is_data() {
                let text = e.to_string();
                let what = text.split(" at line").next().unwrap_or(&text);
                ProtocolError::InvalidFrame(what.to_owned())
            } else {
                ProtocolError::MalformedJson(e.to_string())
            }
        })?;
        Ok(RawMessage {
            join_ref: raw_ref(Some(m.join_ref))?,
            reference: raw_ref(Some(m.reference))?,
            topic: m.topic,
            event: m.event,
            payload: m.payload.get(),
        })
    }

    /// The V2 hot path: the frame's five values found by [`json_scan`](crate::json_scan)
    /// (validated, about twice as fast as serde_json's walk over a long payload), topic and
    /// event borrowed. `None` when the scanner is not sure (an escape, a bad frame), for
    /// serde_json to decide.
    pub(crate) fn decode_v2_plain(text: &'a str) -> Option<RawMessage<'a>> {
        let [join_ref, reference, topic, event, payload] = crate::json_scan::array_elements::<5>(text)?;
        Some(RawMessage {
            join_ref: plain_ref(join_ref)?,
            reference: plain_ref(reference)?,
            topic: Cow::Borrowed(plain_string(topic)?),
            event: Cow::Borrowed(plain_string(event)?),
            payload,
        })
    }

    /// The payload parsed into a value (for replies and presence, off the hot path).
    ///
    /// ```
    /// use switchboard_protocol::phoenix::{RawMessage, Vsn};
    /// let message = RawMessage::decode(r#"["1","2","room:lobby","ping",{"n":1}]"#, Vsn::V2)?;
    /// assert_eq!(message.payload_value(), serde_json::json!({"n": 1}));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn payload_value(&self) -> Value {
        serde_json::from_str(self.payload).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_v2_borrows_plain_strings_and_unescapes_others() {
        let m = RawMessage::decode(r#"[null,null,"room:lobby","shout",{"body":"hi"}]"#, Vsn::V2).expect("decodes");
        assert!(matches!(m.topic, Cow::Borrowed("room:lobby")) && matches!(m.event, Cow::Borrowed("shout")));
        assert_eq!((m.join_ref, m.reference), (None, None));
        let m = RawMessage::decode(r#"["1",2,"room:\u00e9\"x","a\nb",[1]]"#, Vsn::V2).expect("decodes");
        assert_eq!((&*m.topic, &*m.event, m.payload), ("room:é\"x", "a\nb", "[1]"));
        assert_eq!((m.join_ref.as_deref(), m.reference.as_deref()), (Some("1"), Some("2")));
        // Elements past the fifth are ignored.
        let m = RawMessage::decode(r#"[null,null,"t","e",{},"extra",{"x":[1]}]"#, Vsn::V2).expect("decodes");
        assert_eq!(m.payload, "{}");
    }

    #[test]
    fn raw_v2_refuses_bad_shapes_with_a_clear_error() {
        for (text, expected) in [
            (r#"[null,null,"t","e"]"#, "V2 frames have five elements"),
            ("[]", "V2 frames have five elements"),
            (r#"[null,null,5,"e",{}]"#, "topic must be a string"),
            (r#"[null,null,"t",null,{}]"#, "event must be a string"),
            (r#"[null,{},"t","e",{}]"#, "refs must be strings, numbers or null"),
        ] {
            match RawMessage::decode(text, Vsn::V2) {
                Err(ProtocolError::InvalidFrame(message)) => assert_eq!(message, expected, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // Valid JSON that is not an array: not a frame.
        for text in ["{}", "\"x\"", "7"] {
            match RawMessage::decode(text, Vsn::V2) {
                Err(ProtocolError::InvalidFrame(message)) => {
                    assert!(message.contains("expected a V2 frame"), "{message}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in ["", "[null,null,\"t\",\"e\",{}", "[null,null,\"t\",\"e\",{}]x", "[null,null,\"t\" \"e\",{}]"] {
            assert!(matches!(RawMessage::decode(text, Vsn::V2), Err(ProtocolError::MalformedJson(_))), "{text}");
        }
    }
}
