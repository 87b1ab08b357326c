//! The bus message: one JSON header line (`{"s":seq,"k":kind,…}`), `\n`, then the frame as
//! it was encoded for Pusher subscribers (never re-escaped). Scripts prepend `"s"`; the
//! rest of the header is built here.
//!
//! ```
//! // Crate-internal. Kinds: `e` a channel frame, `t` terminate a user's connections, `r` a
//! // Phoenix room message (its frame is the V2 encoding: JSON text, or a binary broadcast).
//! let header = r#"{"s":3,"k":"e","c":"news","x":"1.2","n":"ab12"}"#;
//! let parsed: serde_json::Value = serde_json::from_str(header).unwrap();
//! assert_eq!(parsed["k"], "e");
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The header's fields after `"s"`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// The bus number (set by the script).
    #[serde(default, skip_serializing)]
    pub(crate) s: u64,
    /// `e`: a frame for a channel's subscribers; `t`: close a user's connections; `r`: a
    /// Phoenix room message.
    pub(crate) k: &'a str,
    /// The channel (`e`) or room topic (`r`).
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub(crate) c: Option<std::borrow::Cow<'a, str>>,
    /// The socket that must not receive it.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub(crate) x: Option<std::borrow::Cow<'a, str>>,
    /// The user (`t`).
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub(crate) u: Option<std::borrow::Cow<'a, str>>,
    /// Gateway (`g`): sent as a binary frame.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) b: bool,
    /// Gateway (`g`): the sender's connection (its handle id on the origin node), which the
    /// origin node sends the ack `a` to once the message is delivered (so it follows the echo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) h: Option<u64>,
    /// Gateway (`g`): the ack frame.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub(crate) a: Option<std::borrow::Cow<'a, str>>,
    /// The origin node.
    pub(crate) n: &'a str,
}

impl<'a> Header<'a> {
    /// A header of kind `k` from node `n`, every other field empty.
    pub(crate) fn new(k: &'a str, n: &'a str) -> Self {
        Self { s: 0, k, c: None, x: None, u: None, b: false, h: None, a: None, n }
    }
}

impl Header<'_> {
    /// The header without its opening brace, as the scripts append it to `{"s":N,`.
    pub(crate) fn tail(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        json.strip_prefix('{').map(str::to_owned).unwrap_or(json)
    }
}

/// A message read off the bus.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) seq: u64,
    /// The node that published it.
    pub(crate) origin: String,
    pub(crate) kind: Kind,
}

/// What a bus message asks of each node.
#[derive(Debug)]
pub(crate) enum Kind {
    /// Deliver `frame` to `channel`'s subscribers except `except`.
    Channel { channel: String, except: Option<String>, frame: Bytes },
    /// Close `user`'s connections with 4009.
    Terminate { user: String },
    /// Deliver a Phoenix room message (V2-encoded `body`) to `topic`'s members.
    Room { topic: String, body: Bytes },
    /// Gateway: deliver `frame` to `topic`'s subscribers; then, on the origin node, `ack`
    /// (handle id, frame) to the sender.
    Gateway { topic: String, binary: bool, ack: Option<(u64, String)>, frame: Bytes },
    /// Gateway: close one connection (by connection id) or all, with `code` and `reason`.
    GatewayClose { connection_id: Option<String>, code: u16, reason: String },
    /// Gateway: unsubscribe `subject`'s connections from topics matching `patterns`.
    GatewayUnsubscribe { subject: String, patterns: Vec<String> },
}

/// Decode a bus payload; `None` for anything malformed (counted, never delivered half).
pub(crate) fn decode(payload: &[u8]) -> Option<Message> {
    let split = payload.iter().position(|b| *b == b'\n')?;
    let header: Header<'_> = serde_json::from_slice(&payload[..split]).ok()?;
    let frame = Bytes::copy_from_slice(&payload[split + 1..]);
    let kind = match header.k {
        "e" => Kind::Channel { channel: header.c?.into_owned(), except: header.x.map(|x| x.into_owned()), frame },
        "t" => Kind::Terminate { user: header.u?.into_owned() },
        "r" => Kind::Room { topic: header.c?.into_owned(), body: frame },
        "g" => Kind::Gateway {
            topic: header.c?.into_owned(),
            binary: header.b,
            ack: header.h.zip(header.a.map(|a| a.into_owned())),
            frame,
        },
        "gx" => {
            #[derive(Deserialize)]
            struct Close {
                code: u16,
                reason: String,
            }
            let close: Close = serde_json::from_slice(&frame).ok()?;
            Kind::GatewayClose {
                connection_id: header.x.map(|x| x.into_owned()),
                code: close.code,
                reason: close.reason,
            }
        }
        "gu" => {
            Kind::GatewayUnsubscribe { subject: header.u?.into_owned(), patterns: serde_json::from_slice(&frame).ok()? }
        }
        _ => return None,
    };
    Some(Message { seq: header.s, origin: header.n.to_owned(), kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_prefixed_header_round_trips() {
        let header = Header { c: Some("news".into()), x: Some("1.2".into()), ..Header::new("e", "ab") };
        let payload = format!("{{\"s\":42,{}\n{{\"event\":\"a\\nb\"}}", header.tail());
        let message = decode(payload.as_bytes()).expect("decodes");
        assert_eq!(message.seq, 42);
        match message.kind {
            Kind::Channel { channel, except, frame } => {
                assert_eq!((channel.as_str(), except.as_deref()), ("news", Some("1.2")));
                assert_eq!(&frame[..], br#"{"event":"a\nb"}"#);
            }
            other => panic!("{other:?}"),
        }
        let header = Header { u: Some("u\"1".into()), ..Header::new("t", "ab") };
        let payload = format!("{{\"s\":1,{}\n", header.tail());
        assert!(
            matches!(decode(payload.as_bytes()), Some(Message { seq: 1, kind: Kind::Terminate { user }, .. }) if user == "u\"1")
        );
        // A gateway message with its ack, and a gateway close.
        let header = Header {
            c: Some("chat".into()),
            b: true,
            h: Some(7),
            a: Some("{\"ack\"}".into()),
            ..Header::new("g", "ab")
        };
        let payload = format!("{{\"s\":2,{}\n{{}}", header.tail());
        match decode(payload.as_bytes()).map(|m| (m.origin, m.kind)) {
            Some((origin, Kind::Gateway { topic, binary, ack, frame })) => {
                assert_eq!((origin.as_str(), topic.as_str(), binary), ("ab", "chat", true));
                assert_eq!(ack, Some((7, "{\"ack\"}".to_owned())));
                assert_eq!(&frame[..], b"{}");
            }
            other => panic!("{other:?}"),
        }
        let header = Header { x: Some("abc".into()), ..Header::new("gx", "ab") };
        let payload = format!("{{\"s\":3,{}\n{{\"code\":1008,\"reason\":\"bye\"}}", header.tail());
        assert!(matches!(
            decode(payload.as_bytes()).map(|m| m.kind),
            Some(Kind::GatewayClose { connection_id: Some(id), code: 1008, reason }) if id == "abc" && reason == "bye"
        ));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b"no newline"[..],
            b"{\"s\":1}\n",
            b"{\"s\":1,\"k\":\"e\",\"n\":\"a\"}\n",
            b"not json\n{}",
            b"{\"s\":1,\"k\":\"z\",\"n\":\"a\"}\n",
            b"{\"s\":1,\"k\":\"r\",\"n\":\"a\"}\n[]",
            b"{\"s\":1,\"k\":\"gx\",\"n\":\"a\"}\nnot json",
            b"{\"s\":1,\"k\":\"gu\",\"u\":\"ada\",\"n\":\"a\"}\n{}",
        ] {
            assert!(decode(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
