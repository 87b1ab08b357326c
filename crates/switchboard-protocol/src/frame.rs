//! One Pusher frame: `{"event", "channel"?, "data"?, "user_id"?}` as a UTF-8 JSON text.
//!
//! Servers disagree on the type of `data`: usually a JSON-encoded string, sometimes an
//! object (Soketi and Sockudo `pusher:error`), sometimes absent (`pusher:pong`). Clients
//! send an object. [`Frame::decode`] accepts all three and keeps the payload as text, so a
//! relay never re-parses it. Encoders produce what each direction expects.
//!
//! ```
//! use switchboard_protocol::Frame;
//! use switchboard_protocol::frame::encode_server_frame;
//! let text = encode_server_frame("shipped", Some("orders"), Some(r#"{"id":7}"#), None);
//! let back = Frame::decode(&text)?;
//! assert_eq!(back.data.as_text(), Some(r#"{"id":7}"#));
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::fmt::Write as _;

use crate::ProtocolError;

/// The `data` member of a frame, as it arrived.
///
/// ```
/// use switchboard_protocol::{Data, Frame};
/// assert!(matches!(Frame::decode(r#"{"event":"e","data":"text"}"#)?.data, Data::String(_)));
/// assert!(matches!(Frame::decode(r#"{"event":"e","data":{"a":1}}"#)?.data, Data::Json(_)));
/// assert_eq!(Frame::decode(r#"{"event":"pusher:pong"}"#)?.data, Data::Absent);
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Data {
    /// No `data` member, or `null`.
    #[default]
    Absent,
    /// A JSON string; holds the decoded string (which is itself usually JSON text).
    String(String),
    /// Any other JSON value (object, array, number, bool), kept as its raw JSON text.
    Json(String),
}

impl Data {
    /// The payload as JSON text: the content of a string, or the raw JSON of an object.
    ///
    /// ```
    /// use switchboard_protocol::Frame;
    /// let a = Frame::decode(r#"{"event":"e","data":"{\"x\":1}"}"#)?;
    /// let b = Frame::decode(r#"{"event":"e","data":{"x":1}}"#)?;
    /// assert_eq!(a.data.as_text(), Some(r#"{"x":1}"#));
    /// assert_eq!(b.data.as_text(), Some(r#"{"x":1}"#));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Absent => None,
            Data::String(s) | Data::Json(s) => Some(s),
        }
    }

    /// The payload as owned JSON text, without copying.
    ///
    /// ```
    /// use switchboard_protocol::Frame;
    /// let frame = Frame::decode(r#"{"event":"e","data":"{\"id\":7}"}"#)?;
    /// assert_eq!(frame.data.into_text().as_deref(), Some(r#"{"id":7}"#));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn into_text(self) -> Option<String> {
        match self {
            Data::Absent => None,
            Data::String(s) | Data::Json(s) => Some(s),
        }
    }

    /// Parse the payload into `T`, whichever form it came in.
    ///
    /// ```
    /// use switchboard_protocol::Frame;
    /// #[derive(serde::Deserialize)]
    /// struct Order {
    ///     id: u64,
    /// }
    /// let frame = Frame::decode(r#"{"event":"shipped","data":"{\"id\":7}"}"#)?;
    /// assert_eq!(frame.data.parse::<Order>()?.id, 7);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ProtocolError> {
        let text = self.as_text().ok_or_else(|| ProtocolError::InvalidFrame("missing data".into()))?;
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidFrame(format!("data: {e}")))
    }

    /// True if the payload was sent as a JSON object (not a string).
    ///
    /// ```
    /// use switchboard_protocol::Frame;
    /// // Clients send data as an object; servers send it as a string.
    /// assert!(Frame::decode(r#"{"event":"client-x","data":{}}"#)?.data.is_object());
    /// assert!(!Frame::decode(r#"{"event":"x","data":"{}"}"#)?.data.is_object());
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn is_object(&self) -> bool {
        matches!(self, Data::Json(s) if s.starts_with('{'))
    }
}

/// A decoded frame.
///
/// ```
/// use switchboard_protocol::Frame;
/// let frame = Frame::decode(r#"{"event":"client-typing","channel":"presence-room","data":{},"user_id":7}"#)?;
/// assert_eq!((frame.event.as_str(), frame.channel.as_deref(), frame.user_id.as_deref()), ("client-typing", Some("presence-room"), Some("7")));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The event name, e.g. `pusher:subscribe` or `client-typing`.
    pub event: String,
    /// The channel the event belongs to, if any.
    pub channel: Option<String>,
    /// The payload.
    pub data: Data,
    /// The sender's presence user id on client events (numbers are turned into strings).
    pub user_id: Option<String>,
}

#[derive(Deserialize)]
struct WireFrame<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
}

impl Frame {
    /// Decode one text frame. Unknown members are ignored.
    ///
    /// ```
    /// use switchboard_protocol::{Data, Frame};
    /// let f = Frame::decode(r#"{"event":"pusher:pong"}"#)?;
    /// assert_eq!(f.data, Data::Absent);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode(text: &str) -> Result<Frame, ProtocolError> {
        // One pass for well-formed frames; anything unusual, and errors, through serde_json.
        let mut buffer = String::with_capacity(text.len());
        match crate::packed::scan(text, &mut buffer) {
            Some((spans, data_is_json)) => {
                let own = |span: Option<crate::packed::Span>| span.and_then(|s| s.get(&buffer)).map(str::to_owned);
                let data = match own(spans.data) {
                    None => Data::Absent,
                    Some(json) if data_is_json => Data::Json(json),
                    Some(text) => Data::String(text),
                };
                Ok(Frame {
                    event: own(Some(spans.event)).unwrap_or_default(),
                    channel: own(spans.channel),
                    data,
                    user_id: own(spans.user_id),
                })
            }
            None => decode_with_serde(text),
        }
    }
}

/// The general decoder: any member types, and the error messages.
pub(crate) fn decode_with_serde(text: &str) -> Result<Frame, ProtocolError> {
    let wire: WireFrame<'_> = serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
    let event = match wire.event.map(string_of) {
        Some(Some(event)) if !event.is_empty() => event,
        Some(_) => {
            return Err(ProtocolError::InvalidFrame("event must be a non-empty string".into()));
        }
        None => return Err(ProtocolError::InvalidFrame("missing event".into())),
    };
    let channel = match wire.channel {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => {
            Some(string_of(raw).ok_or_else(|| ProtocolError::InvalidFrame("channel must be a string".into()))?)
        }
    };
    let data = match wire.data {
        None => Data::Absent,
        Some(raw) => match raw.get() {
            "null" => Data::Absent,
            text if text.starts_with('"') => Data::String(crate::packed::json_string(text)?),
            text => Data::Json(text.to_owned()),
        },
    };
    let user_id = wire.user_id.and_then(id_of);
    Ok(Frame { event, channel, data, user_id })
}

fn string_of(raw: &RawValue) -> Option<String> {
    crate::packed::json_string(raw.get()).ok()
}

/// A user id as a string: JSON strings as they are, numbers in their JSON spelling.
pub(crate) fn id_of(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    if text.starts_with('"') {
        string_of(raw)
    } else if text.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'e' || b == b'E' || b == b'+')
    {
        Some(text.to_owned())
    } else {
        None
    }
}

/// Encode a server→client frame. `data` is JSON text (or any text) sent as a JSON string,
/// which is what pusher-js and every Pusher server produce.
///
/// ```
/// use switchboard_protocol::frame::encode_server_frame;
/// let text = encode_server_frame("greet", Some("news"), Some(r#"{"hi":1}"#), None);
/// assert_eq!(text, r#"{"event":"greet","channel":"news","data":"{\"hi\":1}"}"#);
/// ```
pub fn encode_server_frame(event: &str, channel: Option<&str>, data: Option<&str>, user_id: Option<&str>) -> String {
    let mut out = String::with_capacity(
        32 + event.len() + channel.map_or(0, str::len) + data.map_or(0, |d| d.len() + d.len() / 8),
    );
    out.push_str("{\"event\":");
    push_json_string(&mut out, event);
    if let Some(channel) = channel {
        out.push_str(",\"channel\":");
        push_json_string(&mut out, channel);
    }
    if let Some(data) = data {
        out.push_str(",\"data\":");
        push_json_string(&mut out, data);
    }
    if let Some(user_id) = user_id {
        out.push_str(",\"user_id\":");
        push_json_string(&mut out, user_id);
    }
    out.push('}');
    out
}

/// Encode a client→server frame. `data_json` must be JSON text (normally an object); it is
/// embedded as it is, since servers expect an object from clients.
///
/// ```
/// use switchboard_protocol::frame::encode_client_frame;
/// let text = encode_client_frame("client-typing", Some("private-room"), Some(r#"{"on":true}"#));
/// assert_eq!(text, r#"{"event":"client-typing","channel":"private-room","data":{"on":true}}"#);
/// ```
pub fn encode_client_frame(event: &str, channel: Option<&str>, data_json: Option<&str>) -> String {
    encode_json_data_frame(event, channel, data_json, None)
}

/// Encode a frame whose `data` is embedded as raw JSON (an object stays an object), with an
/// optional top-level `user_id`. Servers use it to relay client events as they were sent.
///
/// ```
/// use switchboard_protocol::frame::encode_json_data_frame;
/// let text = encode_json_data_frame("client-x", Some("presence-a"), Some("{}"), Some("7"));
/// assert_eq!(text, r#"{"event":"client-x","channel":"presence-a","data":{},"user_id":"7"}"#);
/// ```
pub fn encode_json_data_frame(
    event: &str,
    channel: Option<&str>,
    data_json: Option<&str>,
    user_id: Option<&str>,
) -> String {
    let mut out = String::with_capacity(48 + event.len() + data_json.map_or(0, str::len));
    out.push_str("{\"event\":");
    push_json_string(&mut out, event);
    if let Some(channel) = channel {
        out.push_str(",\"channel\":");
        push_json_string(&mut out, channel);
    }
    if let Some(data) = data_json {
        out.push_str(",\"data\":");
        out.push_str(data);
    }
    if let Some(user_id) = user_id {
        out.push_str(",\"user_id\":");
        push_json_string(&mut out, user_id);
    }
    out.push('}');
    out
}

/// Append `s` as a JSON string literal. Hand-rolled because it is the broadcast hot path and
/// serde_json would allocate an intermediate `String`.
///
/// ```
/// let mut out = String::from("{\"name\":");
/// switchboard_protocol::frame::push_json_string(&mut out, "say \"hi\"\n");
/// out.push('}');
/// assert_eq!(out, r#"{"name":"say \"hi\"\n"}"#);
/// assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["name"], "say \"hi\"\n");
/// ```
pub fn push_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_forms() {
        let s = Frame::decode(r#"{"event":"e","data":"{\"a\":1}"}"#).unwrap();
        assert_eq!(s.data, Data::String(r#"{"a":1}"#.into()));
        let o = Frame::decode(r#"{"event":"e","data":{"a":1}}"#).unwrap();
        assert_eq!(o.data, Data::Json(r#"{"a":1}"#.into()));
        assert!(o.data.is_object());
        let n = Frame::decode(r#"{"event":"e","data":null}"#).unwrap();
        assert_eq!(n.data, Data::Absent);
        let plain = Frame::decode(r#"{"event":"e","data":"hello"}"#).unwrap();
        assert_eq!(plain.data.as_text(), Some("hello"));
    }

    #[test]
    fn user_id_numbers_become_strings() {
        let f = Frame::decode(r#"{"event":"client-x","channel":"presence-a","data":{},"user_id":42}"#).unwrap();
        assert_eq!(f.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(matches!(Frame::decode("[1,2]"), Err(ProtocolError::MalformedJson(_))));
        assert!(matches!(Frame::decode("{}"), Err(ProtocolError::InvalidFrame(_))));
        assert!(matches!(Frame::decode(r#"{"event":5}"#), Err(ProtocolError::InvalidFrame(_))));
        assert!(matches!(Frame::decode(r#"{"event":"e","channel":7}"#), Err(ProtocolError::InvalidFrame(_))));
        assert!(matches!(Frame::decode(r#"{"event":"e""#), Err(ProtocolError::MalformedJson(_))));
    }

    #[test]
    fn encoding_round_trips_through_serde() {
        let tricky = "quote\" backslash\\ newline\n tab\t ctl\u{1} unicode é 😀";
        let text = encode_server_frame("ev", Some("ch"), Some(tricky), Some("u1"));
        let back = Frame::decode(&text).unwrap();
        assert_eq!(back.data.as_text(), Some(tricky));
        assert_eq!(back.user_id.as_deref(), Some("u1"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"], tricky);
    }
}
