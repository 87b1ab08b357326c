//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][JSON]`, each sent as
//! one Engine.IO message (so on the wire `42["event",…]`). Types: 0 CONNECT, 1 DISCONNECT,
//! 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT, 6 BINARY_ACK. A binary packet is followed
//! by exactly its number of binary frames, which replace the `{"_placeholder":true,"num":k}`
//! objects in its data ([`Assembler`]).
//!
//! Decoding validates what the official test suite expects a server to refuse: an unknown
//! type, an EVENT whose data is not a non-empty array starting with a string, an ACK without
//! an id or with non-array data, attachments on a non-binary packet, placeholders that do
//! not match the attachments (`socket.io-protocol` `Readme.md`; socketioxide `parser-common`).
//!
//! ```
//! use switchboard_protocol::socketio::{Packet, PacketType};
//! let p = Packet::decode(r#"2/admin,456["project:delete",123]"#)?;
//! assert_eq!((p.kind, p.namespace.as_str(), p.ack_id), (PacketType::Event, "/admin", Some(456)));
//! assert_eq!(p.event_name(), Some("project:delete"));
//! assert_eq!(p.encode(), r#"2/admin,456["project:delete",123]"#);
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use serde_json::Value;

use crate::ProtocolError;

/// The most attachments one packet may announce (a bound on what a peer can make us wait
/// for and hold).
pub const MAX_ATTACHMENTS: usize = 64;

/// A Socket.IO packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// 0: connect to a namespace (client), or its confirmation `{"sid"}` (server).
    Connect,
    /// 1: leave a namespace (a server's: do not reconnect).
    Disconnect,
    /// 2: an event, `["name", args…]`.
    Event,
    /// 3: the answer to an event that carried an ack id.
    Ack,
    /// 4: a refused connect, `{"message"[, "data"]}`.
    ConnectError,
    /// 5: an event with binary attachments.
    BinaryEvent,
    /// 6: an ack with binary attachments.
    BinaryAck,
}

impl PacketType {
    fn digit(self) -> char {
        match self {
            PacketType::Connect => '0',
            PacketType::Disconnect => '1',
            PacketType::Event => '2',
            PacketType::Ack => '3',
            PacketType::ConnectError => '4',
            PacketType::BinaryEvent => '5',
            PacketType::BinaryAck => '6',
        }
    }

    fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// A decoded Socket.IO packet. Binary data stays as placeholders in `data` until the
/// [`Assembler`] has the attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The namespace (`/` when absent on the wire).
    pub namespace: String,
    /// The ack id, if the sender wants an answer.
    pub ack_id: Option<u64>,
    /// The JSON payload, if any.
    pub data: Option<Value>,
    /// Binary frames that follow (binary types only).
    pub attachments: usize,
}

fn invalid(what: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidFrame(what.into())
}

impl Packet {
    /// An EVENT on `namespace`: `["name", args…]`.
    ///
    /// ```
    /// use switchboard_protocol::socketio::Packet;
    /// let p = Packet::event("/", "realtimex:subscribe", vec![serde_json::json!({"channel": "news"})], None);
    /// assert_eq!(p.encode(), r#"2["realtimex:subscribe",{"channel":"news"}]"#);
    /// ```
    pub fn event(namespace: &str, name: &str, args: Vec<Value>, ack_id: Option<u64>) -> Packet {
        let mut data = vec![Value::String(name.to_owned())];
        data.extend(args);
        Packet {
            kind: PacketType::Event,
            namespace: namespace.to_owned(),
            ack_id,
            data: Some(Value::Array(data)),
            attachments: 0,
        }
    }

    /// An ACK answering `ack_id` with `args`.
    ///
    /// ```
    /// use switchboard_protocol::socketio::Packet;
    /// assert_eq!(Packet::ack("/", 12, vec![serde_json::json!("ok")]).encode(), r#"312["ok"]"#);
    /// ```
    pub fn ack(namespace: &str, ack_id: u64, args: Vec<Value>) -> Packet {
        Packet {
            kind: PacketType::Ack,
            namespace: namespace.to_owned(),
            ack_id: Some(ack_id),
            data: Some(Value::Array(args)),
            attachments: 0,
        }
    }

    /// A packet of `kind` with optional `data` and no ack id (CONNECT, DISCONNECT, CONNECT_ERROR).
    ///
    /// ```
    /// use switchboard_protocol::socketio::{Packet, PacketType};
    /// assert_eq!(Packet::new(PacketType::Connect, "/", Some(serde_json::json!({"sid": "1.2"}))).encode(), r#"0{"sid":"1.2"}"#);
    /// assert_eq!(Packet::new(PacketType::Disconnect, "/admin", None).encode(), "1/admin,");
    /// ```
    pub fn new(kind: PacketType, namespace: &str, data: Option<Value>) -> Packet {
        Packet { kind, namespace: namespace.to_owned(), ack_id: None, data, attachments: 0 }
    }

    /// The event name, for an EVENT or BINARY_EVENT.
    pub fn event_name(&self) -> Option<&str> {
        match (self.kind, &self.data) {
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(items))) => items.first()?.as_str(),
            _ => None,
        }
    }

    /// The event's arguments (after the name), or an ack's.
    pub fn args(&self) -> &[Value] {
        match (&self.data, self.event_name().is_some()) {
            (Some(Value::Array(items)), true) => &items[1..],
            (Some(Value::Array(items)), false) => items,
            _ => &[],
        }
    }

    /// Decode one packet (the payload of an Engine.IO message).
    ///
    /// ```
    /// use switchboard_protocol::socketio::Packet;
    /// assert!(Packet::decode(r#"2[]"#).is_err(), "an event needs a name");
    /// assert!(Packet::decode(r#"3["x"]"#).is_err(), "an ack needs an id");
    /// assert!(Packet::decode("9").is_err());
    /// ```
    pub fn decode(text: &str) -> Result<Packet, ProtocolError> {
        let bytes = text.as_bytes();
        let kind = match bytes.first() {
            Some(b'0') => PacketType::Connect,
            Some(b'1') => PacketType::Disconnect,
            Some(b'2') => PacketType::Event,
            Some(b'3') => PacketType::Ack,
            Some(b'4') => PacketType::ConnectError,
            Some(b'5') => PacketType::BinaryEvent,
            Some(b'6') => PacketType::BinaryAck,
            Some(_) => {
                return Err(ProtocolError::UnknownFrameType(text.chars().next().map(String::from).unwrap_or_default()));
            }
            None => return Err(invalid("an empty Socket.IO packet")),
        };
        let mut i = 1;
        let digits_end = |from: usize| from + bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut attachments = 0;
        if kind.is_binary() {
            let end = digits_end(i);
            if end == i || bytes.get(end) != Some(&b'-') {
                return Err(invalid("a binary packet starts with its attachment count and '-'"));
            }
            attachments = text[i..end].parse().map_err(|_| invalid("attachment count out of range"))?;
            if attachments == 0 || attachments > MAX_ATTACHMENTS {
                return Err(invalid(format!("a binary packet carries 1 to {MAX_ATTACHMENTS} attachments")));
            }
            i = end + 1;
        }
        let mut namespace = "/".to_owned();
        if bytes.get(i) == Some(&b'/') {
            // Up to the comma; a packet that ends with the namespace may omit it.
            let end = text[i..].find(',').map_or(text.len(), |at| i + at);
            namespace = text[i..end].to_owned();
            i = (end + 1).min(text.len());
        }
        let end = digits_end(i);
        let ack_id =
            if end > i { Some(text[i..end].parse::<u64>().map_err(|_| invalid("ack id out of range"))?) } else { None };
        i = end;
        let data = if i < text.len() {
            Some(serde_json::from_str::<Value>(&text[i..]).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?)
        } else {
            None
        };
        let packet = Packet { kind, namespace, ack_id, data, attachments };
        packet.validate()?;
        Ok(packet)
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        match self.kind {
            PacketType::Connect => {
                if self.ack_id.is_some() || self.data.as_ref().is_some_and(|d| !d.is_object()) {
                    return Err(invalid("CONNECT data must be an object"));
                }
            }
            PacketType::Disconnect => {
                if self.ack_id.is_some() || self.data.is_some() {
                    return Err(invalid("DISCONNECT carries no data"));
                }
            }
            PacketType::ConnectError => {
                if self.ack_id.is_some() || !self.data.as_ref().is_some_and(|d| d.is_object() || d.is_string()) {
                    return Err(invalid("CONNECT_ERROR data must be an object"));
                }
            }
            PacketType::Event | PacketType::BinaryEvent => match &self.data {
                Some(Value::Array(items)) if items.first().is_some_and(Value::is_string) => {}
                _ => return Err(invalid("EVENT data must be an array starting with the event name")),
            },
            PacketType::Ack | PacketType::BinaryAck => {
                if self.ack_id.is_none() || !matches!(self.data, Some(Value::Array(_))) {
                    return Err(invalid("ACK needs an id and an array"));
                }
            }
        }
        if self.kind.is_binary() {
            let mut seen = vec![false; self.attachments];
            let data = self.data.as_ref().ok_or_else(|| invalid("a binary packet without data"))?;
            check_placeholders(data, &mut seen, 0)?;
            if seen.iter().any(|s| !s) {
                return Err(invalid("a binary packet's placeholders do not match its attachment count"));
            }
        }
        Ok(())
    }

    /// Encode (without the Engine.IO `4`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        out.push(self.kind.digit());
        if self.kind.is_binary() {
            out.push_str(&self.attachments.to_string());
            out.push('-');
        }
        if self.namespace != "/" && !self.namespace.is_empty() {
            out.push_str(&self.namespace);
            out.push(',');
        }
        if let Some(id) = self.ack_id {
            out.push_str(&id.to_string());
        }
        if let Some(data) = &self.data {
            out.push_str(&data.to_string());
        }
        out
    }
}

/// A placeholder object: `{"_placeholder":true,"num":k}`.
fn placeholder_num(value: &Value) -> Option<Option<usize>> {
    let object = value.as_object()?;
    if object.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    Some(object.get("num").and_then(Value::as_u64).map(|n| n as usize))
}

fn check_placeholders(value: &Value, seen: &mut [bool], depth: usize) -> Result<(), ProtocolError> {
    if depth > 32 {
        return Err(invalid("binary data nested too deep"));
    }
    if let Some(num) = placeholder_num(value) {
        let slot =
            num.and_then(|n| seen.get_mut(n)).ok_or_else(|| invalid("a placeholder points past the attachments"))?;
        *slot = true;
        return Ok(());
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_placeholders(v, seen, depth + 1)),
        Value::Object(map) => map.values().try_for_each(|v| check_placeholders(v, seen, depth + 1)),
        _ => Ok(()),
    }
}

/// Collects a binary packet's attachments (the binary frames after it), in order.
///
/// ```
/// use switchboard_protocol::socketio::{Assembler, Packet};
/// let packet = Packet::decode(r#"51-["baz",{"_placeholder":true,"num":0}]"#)?;
/// let mut assembler = Assembler::new(packet);
/// let (packet, attachments) = assembler.push(vec![1, 2, 3]).expect("complete");
/// assert_eq!((packet.event_name(), attachments), (Some("baz"), vec![vec![1, 2, 3]]));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct Assembler {
    packet: Packet,
    attachments: Vec<Vec<u8>>,
}

impl Assembler {
    /// Start collecting for `packet` (a BINARY_EVENT or BINARY_ACK).
    pub fn new(packet: Packet) -> Self {
        let expected = packet.attachments;
        Self { packet, attachments: Vec::with_capacity(expected) }
    }

    /// Add the next binary frame; the packet and its attachments once all have come.
    pub fn push(&mut self, frame: Vec<u8>) -> Option<(Packet, Vec<Vec<u8>>)> {
        self.attachments.push(frame);
        (self.attachments.len() >= self.packet.attachments)
            .then(|| (self.packet.clone(), std::mem::take(&mut self.attachments)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_example_of_the_protocol_readme() {
        // socket.io-protocol Readme.md, "Packet encoding" and the sample session.
        for (text, kind, namespace, ack_id, data, attachments) in [
            ("0", PacketType::Connect, "/", None, None, 0),
            (r#"0{"token":"123"}"#, PacketType::Connect, "/", None, Some(json!({"token": "123"})), 0),
            (r#"0/admin,{"token":"123"}"#, PacketType::Connect, "/admin", None, Some(json!({"token": "123"})), 0),
            (
                r#"0{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
                PacketType::Connect,
                "/",
                None,
                Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"})),
                0,
            ),
            (
                r#"4{"message":"Not authorized"}"#,
                PacketType::ConnectError,
                "/",
                None,
                Some(json!({"message": "Not authorized"})),
                0,
            ),
            ("1/admin,", PacketType::Disconnect, "/admin", None, None, 0),
            (r#"2["foo"]"#, PacketType::Event, "/", None, Some(json!(["foo"])), 0),
            (r#"2/admin,["bar"]"#, PacketType::Event, "/admin", None, Some(json!(["bar"])), 0),
            (
                r#"2/admin,456["project:delete",123]"#,
                PacketType::Event,
                "/admin",
                Some(456),
                Some(json!(["project:delete", 123])),
                0,
            ),
            (r#"3/admin,456[]"#, PacketType::Ack, "/admin", Some(456), Some(json!([])), 0),
            (
                r#"51-["baz",{"_placeholder":true,"num":0}]"#,
                PacketType::BinaryEvent,
                "/",
                None,
                Some(json!(["baz", {"_placeholder": true, "num": 0}])),
                1,
            ),
            (
                r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
                PacketType::BinaryEvent,
                "/admin",
                None,
                Some(json!(["baz", {"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 1}])),
                2,
            ),
            (
                r#"61-/admin,456[{"_placeholder":true,"num":0}]"#,
                PacketType::BinaryAck,
                "/admin",
                Some(456),
                Some(json!([{"_placeholder": true, "num": 0}])),
                1,
            ),
        ] {
            let packet = Packet::decode(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(packet, Packet { kind, namespace: namespace.into(), ack_id, data, attachments }, "{text}");
            assert_eq!(packet.encode(), text, "encodes back");
        }
    }

    #[test]
    fn edge_cases_accepted_as_socketioxide_does() {
        // A namespace with no trailing comma at the end of the packet.
        assert_eq!(Packet::decode("1/custom").expect("ok").namespace, "/custom");
        // A CONNECT to a namespace with nothing after the comma.
        assert_eq!(Packet::decode("0/admin,").expect("ok").namespace, "/admin");
        // Placeholders at any depth.
        let deep = r#"51-["e",{"a":[{"b":{"_placeholder":true,"num":0}}]}]"#;
        assert_eq!(Packet::decode(deep).expect("ok").attachments, 1);
        // socket.io v2-style string CONNECT_ERROR data.
        assert!(Packet::decode(r#"4"Not authorized""#).is_ok());
        assert_eq!(Packet::decode(r#"2["a",{"x":1},[2],"y"]"#).expect("ok").args().len(), 3);
    }

    #[test]
    fn invalid_packets_are_refused() {
        for text in [
            "",
            "7",
            "x2[]",
            "2",
            r#"2[]"#,
            r#"2[1,"x"]"#,
            r#"2{"a":1}"#,
            r#"2"foo""#,
            r#"2["foo""#,
            r#"3["x"]"#,
            r#"312{"a":1}"#,
            r#"0["x"]"#,
            r#"012{}"#,
            r#"1["x"]"#,
            "4",
            r#"5["e",{"_placeholder":true,"num":0}]"#,
            r#"50-["e"]"#,
            r#"51-["e"]"#,
            r#"51-["e",{"_placeholder":true,"num":1}]"#,
            r#"52-["e",{"_placeholder":true,"num":0}]"#,
            r#"5999-["e"]"#,
            r#"2/admin,99999999999999999999999["e"]"#,
        ] {
            assert!(Packet::decode(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn the_assembler_waits_for_every_attachment() {
        let packet =
            Packet::decode(r#"52-["e",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#).expect("ok");
        let mut assembler = Assembler::new(packet);
        assert!(assembler.push(vec![1]).is_none());
        let (packet, attachments) = assembler.push(vec![2]).expect("complete");
        assert_eq!((packet.attachments, attachments), (2, vec![vec![1], vec![2]]));
    }
}
