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
    /// The origin node (for logs).
    pub(crate) n: &'a str,
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
        _ => return None,
    };
    Some(Message { seq: header.s, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_prefixed_header_round_trips() {
        let header = Header { s: 0, k: "e", c: Some("news".into()), x: Some("1.2".into()), u: None, n: "ab" };
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
        let header = Header { s: 0, k: "t", c: None, x: None, u: Some("u\"1".into()), n: "ab" };
        let payload = format!("{{\"s\":1,{}\n", header.tail());
        assert!(
            matches!(decode(payload.as_bytes()), Some(Message { seq: 1, kind: Kind::Terminate { user } }) if user == "u\"1")
        );
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
        ] {
            assert!(decode(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
