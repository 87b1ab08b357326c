//! Engine.IO v4 packets over WebSocket (the transport under Socket.IO v5), written here for
//! the reasons in `gateway-and-realtimex.md` B.3. WebSocket only: one packet per frame; a
//! text frame is `<type digit>[payload]` (0 open, 1 close, 2 ping, 3 pong, 4 message,
//! 5 upgrade, 6 noop), and a binary frame is a `message` whose payload is the raw bytes.
//! The record separator, base64 `b` prefixes and the upgrade probe belong to long-polling,
//! which is not spoken here.
//!
//! ```
//! use switchboard_protocol::engineio::{Packet, OpenInfo};
//! assert_eq!(Packet::decode_text("4hello")?, Packet::Message("hello"));
//! assert_eq!(Packet::decode_text("2probe")?, Packet::Ping(Some("probe")));
//! let open = OpenInfo::new("123.456", 25_000, 20_000, 1_000_000);
//! assert_eq!(open.encode(), r#"0{"sid":"123.456","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#);
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// One Engine.IO text packet (a binary frame is always a message, see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{…}`: the handshake, server to client ([`OpenInfo`]).
    Open(&'a str),
    /// `1`: close the session.
    Close,
    /// `2[payload]`: the server's heartbeat (`2probe` is the polling upgrade probe).
    Ping(Option<&'a str>),
    /// `3[payload]`: the answer to a ping.
    Pong(Option<&'a str>),
    /// `4<text>`: a message (for Socket.IO, one Socket.IO packet).
    Message(&'a str),
    /// `5`: upgrade (polling only).
    Upgrade,
    /// `6`: nothing.
    Noop,
}

impl<'a> Packet<'a> {
    /// Decode a text frame.
    ///
    /// ```
    /// use switchboard_protocol::engineio::Packet;
    /// assert_eq!(Packet::decode_text("3")?, Packet::Pong(None));
    /// assert!(Packet::decode_text("").is_err() && Packet::decode_text("9").is_err());
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode_text(text: &'a str) -> Result<Packet<'a>, ProtocolError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or_else(|| ProtocolError::InvalidFrame("an empty Engine.IO packet".into()))?;
        let rest = chars.as_str();
        let optional = |rest: &'a str| (!rest.is_empty()).then_some(rest);
        Ok(match kind {
            '0' => Packet::Open(rest),
            '1' => Packet::Close,
            '2' => Packet::Ping(optional(rest)),
            '3' => Packet::Pong(optional(rest)),
            '4' => Packet::Message(rest),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            other => return Err(ProtocolError::UnknownFrameType(format!("Engine.IO packet type {other:?}"))),
        })
    }

    /// Encode as a text frame.
    ///
    /// ```
    /// use switchboard_protocol::engineio::Packet;
    /// assert_eq!(Packet::Message(r#"2["hi"]"#).encode(), r#"42["hi"]"#);
    /// assert_eq!(Packet::Pong(Some("probe")).encode(), "3probe");
    /// ```
    pub fn encode(&self) -> String {
        let (kind, payload) = match self {
            Packet::Open(info) => ('0', *info),
            Packet::Close => ('1', ""),
            Packet::Ping(p) => ('2', p.unwrap_or("")),
            Packet::Pong(p) => ('3', p.unwrap_or("")),
            Packet::Message(m) => ('4', *m),
            Packet::Upgrade => ('5', ""),
            Packet::Noop => ('6', ""),
        };
        let mut out = String::with_capacity(1 + payload.len());
        out.push(kind);
        out.push_str(payload);
        out
    }
}

/// The open packet's payload.
///
/// ```
/// use switchboard_protocol::engineio::OpenInfo;
/// let info = OpenInfo::decode(r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#)?;
/// assert_eq!((info.sid.as_str(), info.ping_interval, info.ping_timeout), ("lv_VI97HAXpY6yYWAAAC", 25_000, 5_000));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// The session id.
    pub sid: String,
    /// Transports the client may upgrade to (none: WebSocket from the start).
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong (the client: interval + timeout of silence).
    pub ping_timeout: u64,
    /// The largest payload the server accepts, in bytes.
    #[serde(default)]
    pub max_payload: u64,
}

impl OpenInfo {
    /// A WebSocket-only session's open info.
    pub fn new(sid: impl Into<String>, ping_interval: u64, ping_timeout: u64, max_payload: u64) -> Self {
        Self { sid: sid.into(), upgrades: Vec::new(), ping_interval, ping_timeout, max_payload }
    }

    /// The open packet, `0{…}`.
    pub fn encode(&self) -> String {
        let mut out = String::from("0");
        out.push_str(&serde_json::to_string(self).unwrap_or_default());
        out
    }

    /// Read an open packet (`0{…}`).
    pub fn decode(text: &str) -> Result<OpenInfo, ProtocolError> {
        match Packet::decode_text(text)? {
            Packet::Open(json) => {
                serde_json::from_str(json).map_err(|e| ProtocolError::InvalidFrame(format!("open packet: {e}")))
            }
            _ => Err(ProtocolError::InvalidFrame("the first packet is not an open packet".into())),
        }
    }
}

/// The Engine.IO HTTP error codes (`socketio/engine.io` `lib/server.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// 0: the transport is unknown (or not offered: `transport=polling` here).
    UnknownTransport,
    /// 1: the session id is unknown.
    UnknownSid,
    /// 2: bad handshake method.
    BadHandshakeMethod,
    /// 3: bad request.
    BadRequest,
    /// 4: forbidden.
    Forbidden,
    /// 5: the `EIO` version is not 4.
    UnsupportedProtocolVersion,
}

impl HandshakeError {
    /// The JSON body of the HTTP 400, as engine.io writes it.
    ///
    /// ```
    /// use switchboard_protocol::engineio::HandshakeError;
    /// assert_eq!(HandshakeError::UnsupportedProtocolVersion.body(), r#"{"code":5,"message":"Unsupported protocol version"}"#);
    /// assert_eq!(HandshakeError::UnknownTransport.body(), r#"{"code":0,"message":"Transport unknown"}"#);
    /// ```
    pub fn body(self) -> String {
        let (code, message) = match self {
            HandshakeError::UnknownTransport => (0, "Transport unknown"),
            HandshakeError::UnknownSid => (1, "Session ID unknown"),
            HandshakeError::BadHandshakeMethod => (2, "Bad handshake method"),
            HandshakeError::BadRequest => (3, "Bad request"),
            HandshakeError::Forbidden => (4, "Forbidden"),
            HandshakeError::UnsupportedProtocolVersion => (5, "Unsupported protocol version"),
        };
        format!(r#"{{"code":{code},"message":"{message}"}}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_packets_decode_and_encode_back() {
        // engine.io-protocol README, "Packet encoding" (WebSocket transport).
        for (text, packet) in [
            ("1", Packet::Close),
            ("2", Packet::Ping(None)),
            ("3", Packet::Pong(None)),
            ("2probe", Packet::Ping(Some("probe"))),
            ("3probe", Packet::Pong(Some("probe"))),
            ("4hello", Packet::Message("hello")),
            ("4", Packet::Message("")),
            ("4€ and ✓", Packet::Message("€ and ✓")),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
        ] {
            assert_eq!(Packet::decode_text(text), Ok(packet), "{text}");
            assert_eq!(packet.encode(), text);
        }
        let open = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#;
        let info = OpenInfo::decode(open).expect("open");
        assert_eq!(info.upgrades, ["websocket"]);
        assert_eq!(info.max_payload, 1_000_000);
    }

    #[test]
    fn bad_packets_are_refused() {
        for text in ["", "7", "x", "b4aGVsbG8=", "\u{1e}"] {
            assert!(Packet::decode_text(text).is_err(), "{text:?}");
        }
        assert!(OpenInfo::decode("4{}").is_err());
        assert!(OpenInfo::decode(r#"0{"sid":1}"#).is_err());
        assert!(OpenInfo::decode("0not json").is_err());
    }
}
