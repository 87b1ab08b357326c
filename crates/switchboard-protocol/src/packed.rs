//! A received frame decoded into one allocation: the receive hot path.
//!
//! A client receives far more frames than it sends, and nearly all of them have the same
//! shape: `{"event":"…","channel":"…","data":"…"}`, every member a string. [`PackedFrame`]
//! decodes that shape in one pass, unescaping each member into a single `String` sized for
//! the frame, and keeps where each member landed. One allocation per event instead of one
//! per member matters because events are allocated on the socket reader's thread and freed
//! on the consumer's, the slowest pattern for the system allocator.
//!
//! Other members (an object `data`, a number `user_id`) are measured by serde_json and kept
//! as raw JSON text. Anything unusual (an escaped key, a malformed frame) goes through the
//! serde_json path, so [`PackedFrame::decode`] and [`Frame::decode`] accept and refuse
//! exactly the same texts, with the same errors.
//!
//! ```
//! use switchboard_protocol::{Frame, PackedFrame};
//! let text = r#"{"event":"tick","channel":"bench","data":"{\"id\":7}"}"#;
//! let packed = PackedFrame::decode(text)?;
//! assert_eq!(Frame::from(packed), Frame::decode(text)?); // the two decoders agree
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use serde_json::value::RawValue;

use crate::ProtocolError;
use crate::frame::{Data, Frame};

/// Where a member's text lies in a packed buffer: byte offsets, kept as `u32` so that a
/// packed frame (and the client's event built on it) stays small to move around. Frames
/// are far below 4 GiB (WebSocket libraries cap messages at tens of MiB); a longer one is
/// refused by [`PackedFrame::decode`].
///
/// ```
/// use switchboard_protocol::packed::Span;
/// let span = Span::new(6, 11).expect("fits in u32");
/// assert_eq!(span.get("hello world"), Some("world"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `text[start..end]`, if both fit in `u32`.
    ///
    /// ```
    /// use switchboard_protocol::packed::Span;
    /// assert!(Span::new(0, 10).is_some());
    /// assert!(Span::new(0, u32::MAX as usize + 1).is_none());
    /// ```
    pub fn new(start: usize, end: usize) -> Option<Span> {
        Some(Span { start: u32::try_from(start).ok()?, end: u32::try_from(end).ok()? })
    }

    /// This span of `text` (`None` if it does not fall on `text`'s character boundaries).
    ///
    /// ```
    /// use switchboard_protocol::packed::Span;
    /// let span = Span::new(0, 1).expect("small");
    /// assert_eq!(span.get("é"), None); // inside a two-byte character
    /// assert_eq!(span.get("ab"), Some("a"));
    /// ```
    pub fn get<'a>(&self, text: &'a str) -> Option<&'a str> {
        text.get(self.start as usize..self.end as usize)
    }

    /// True if the span is empty.
    ///
    /// ```
    /// use switchboard_protocol::packed::Span;
    /// assert!(Span::default().is_empty());
    /// assert!(!Span::new(0, 1).expect("small").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A decoded frame whose members share one buffer.
///
/// ```
/// use switchboard_protocol::PackedFrame;
/// let f = PackedFrame::decode(r#"{"event":"shipped","channel":"orders","data":"{\"id\":7}"}"#)?;
/// assert_eq!((f.event(), f.channel(), f.data()), ("shipped", Some("orders"), Some(r#"{"id":7}"#)));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PackedFrame {
    text: String,
    spans: Spans,
    /// `data` was sent as a JSON object (or other non-string value), kept as raw JSON.
    data_is_json: bool,
}

/// The members' places in a [`PackedFrame`]'s buffer, for building other one-allocation
/// types on it (the client's `Event`).
///
/// ```
/// use switchboard_protocol::PackedFrame;
/// let (text, spans) = PackedFrame::decode(r#"{"event":"tick","channel":"bench","data":"7"}"#)?.into_parts();
/// assert_eq!(text, "tickbench7");
/// assert_eq!(spans.channel.and_then(|s| s.get(&text)), Some("bench"));
/// assert_eq!(spans.user_id, None);
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spans {
    /// The event name.
    pub event: Span,
    /// The channel, if any.
    pub channel: Option<Span>,
    /// The payload text, if any.
    pub data: Option<Span>,
    /// The presence user id on client events.
    pub user_id: Option<Span>,
}

impl PackedFrame {
    /// Decode one text frame; accepts and refuses what [`Frame::decode`] does.
    ///
    /// ```
    /// use switchboard_protocol::{PackedFrame, ProtocolError};
    /// let f = PackedFrame::decode(r#"{"event":"e","data":{"a":1},"user_id":42}"#)?;
    /// assert_eq!((f.data(), f.user_id()), (Some(r#"{"a":1}"#), Some("42")));
    /// assert!(matches!(PackedFrame::decode(r#"{"event":"e""#), Err(ProtocolError::MalformedJson(_))));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode(text: &str) -> Result<PackedFrame, ProtocolError> {
        Self::decode_into(text, String::new())
    }

    /// [`PackedFrame::decode`] into `buffer` (cleared first), for callers that recycle
    /// buffers instead of allocating one per frame.
    ///
    /// ```
    /// use switchboard_protocol::PackedFrame;
    /// let f = PackedFrame::decode_into(r#"{"event":"tick","data":"7"}"#, String::with_capacity(64))?;
    /// assert_eq!((f.event(), f.data()), ("tick", Some("7")));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn decode_into(text: &str, mut buffer: String) -> Result<PackedFrame, ProtocolError> {
        if u32::try_from(text.len()).is_err() {
            return Err(ProtocolError::InvalidFrame("a frame of 4 GiB or more".into()));
        }
        buffer.clear();
        buffer.reserve(text.len());
        if let Some((spans, data_is_json)) = scan(text, &mut buffer) {
            return Ok(PackedFrame { text: buffer, spans, data_is_json });
        }
        Ok(PackedFrame::from(Frame::decode(text)?))
    }

    /// A frame built from its members (`data` as text), packed into one buffer.
    ///
    /// ```
    /// use switchboard_protocol::PackedFrame;
    /// let f = PackedFrame::from_parts("client-typing", Some("presence-room"), Some("{}"), Some("7"));
    /// assert_eq!((f.event(), f.channel(), f.data(), f.user_id()), ("client-typing", Some("presence-room"), Some("{}"), Some("7")));
    /// ```
    pub fn from_parts(event: &str, channel: Option<&str>, data: Option<&str>, user_id: Option<&str>) -> PackedFrame {
        Self::from_parts_into(String::new(), event, channel, data, user_id)
    }

    /// [`PackedFrame::from_parts`] into `buffer` (cleared first), for callers that recycle
    /// buffers instead of allocating one per event.
    ///
    /// ```
    /// use switchboard_protocol::PackedFrame;
    /// let f = PackedFrame::from_parts_into(String::with_capacity(64), "tick", Some("room:a"), Some("{}"), None);
    /// assert_eq!((f.event(), f.channel(), f.data(), f.user_id()), ("tick", Some("room:a"), Some("{}"), None));
    /// ```
    pub fn from_parts_into(
        mut text: String,
        event: &str,
        channel: Option<&str>,
        data: Option<&str>,
        user_id: Option<&str>,
    ) -> PackedFrame {
        let parts = [Some(event), channel, data, user_id];
        text.clear();
        text.reserve(parts.iter().flatten().map(|p| p.len()).sum());
        // Members past 4 GiB get no span (reads of them give `None`); frames are far smaller.
        let mut push = |part: Option<&str>| {
            part.and_then(|p| {
                let start = text.len();
                text.push_str(p);
                Span::new(start, text.len())
            })
        };
        let event = push(parts[0]).unwrap_or_default();
        let spans = Spans { event, channel: push(parts[1]), data: push(parts[2]), user_id: push(parts[3]) };
        PackedFrame { text, spans, data_is_json: false }
    }

    /// The event name.
    ///
    /// ```
    /// assert_eq!(switchboard_protocol::PackedFrame::decode(r#"{"event":"App\\Events\\Shipped"}"#)?.event(), r"App\Events\Shipped");
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn event(&self) -> &str {
        self.slice(Some(self.spans.event)).unwrap_or_default()
    }

    /// The channel, if any.
    ///
    /// ```
    /// assert_eq!(switchboard_protocol::PackedFrame::decode(r#"{"event":"pusher:error","data":{}}"#)?.channel(), None);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn channel(&self) -> Option<&str> {
        self.slice(self.spans.channel)
    }

    /// The payload as text: the content of a string, or the raw JSON of an object.
    ///
    /// ```
    /// let f = switchboard_protocol::PackedFrame::decode(r#"{"event":"e","data":"line\nbreak"}"#)?;
    /// assert_eq!(f.data(), Some("line\nbreak"));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn data(&self) -> Option<&str> {
        self.slice(self.spans.data)
    }

    /// The sender's presence user id (numbers are turned into strings).
    ///
    /// ```
    /// let f = switchboard_protocol::PackedFrame::decode(r#"{"event":"client-x","data":{},"user_id":"u1"}"#)?;
    /// assert_eq!(f.user_id(), Some("u1"));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn user_id(&self) -> Option<&str> {
        self.slice(self.spans.user_id)
    }

    /// The buffer and where each member lies in it, without copying.
    ///
    /// ```
    /// let (text, spans) = switchboard_protocol::PackedFrame::decode(r#"{"event":"e","data":"x"}"#)?.into_parts();
    /// assert_eq!(spans.data.and_then(|s| s.get(&text)), Some("x"));
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn into_parts(self) -> (String, Spans) {
        (self.text, self.spans)
    }

    /// The whole buffer: the members side by side, in no promised order (to look at where
    /// it lies, e.g. to prefetch it, without reading it).
    ///
    /// ```
    /// let frame = switchboard_protocol::PackedFrame::decode(r#"{"event":"e","channel":"c","data":"x"}"#)?;
    /// assert_eq!(frame.buffer().len(), 3);
    /// # Ok::<(), switchboard_protocol::ProtocolError>(())
    /// ```
    pub fn buffer(&self) -> &str {
        &self.text
    }

    fn slice(&self, span: Option<Span>) -> Option<&str> {
        span.and_then(|span| span.get(&self.text))
    }
}

/// Equal when the members are, whatever order they had in the buffer.
impl PartialEq for PackedFrame {
    fn eq(&self, other: &Self) -> bool {
        (self.event(), self.channel(), self.data(), self.user_id(), self.data_is_json)
            == (other.event(), other.channel(), other.data(), other.user_id(), other.data_is_json)
    }
}

impl Eq for PackedFrame {}

impl From<Frame> for PackedFrame {
    fn from(frame: Frame) -> Self {
        let data_is_json = matches!(frame.data, Data::Json(_));
        let packed = PackedFrame::from_parts(
            &frame.event,
            frame.channel.as_deref(),
            frame.data.as_text(),
            frame.user_id.as_deref(),
        );
        PackedFrame { data_is_json, ..packed }
    }
}

impl From<PackedFrame> for Frame {
    fn from(packed: PackedFrame) -> Self {
        let own = |span: Option<Span>| packed.slice(span).map(str::to_owned);
        let data = match own(packed.spans.data) {
            None => Data::Absent,
            Some(text) if packed.data_is_json => Data::Json(text),
            Some(text) => Data::String(text),
        };
        Frame {
            event: packed.event().to_owned(),
            channel: own(packed.spans.channel),
            data,
            user_id: own(packed.spans.user_id),
        }
    }
}

/// The fast path: one pass over a flat object, string members unescaped into `out`, other
/// values (an object `data`, a number `user_id`) measured by serde_json and copied raw.
/// Returns the spans and whether `data` was raw JSON. `None` means "not valid, or not a
/// shape worth a fast path" (escaped keys): the caller takes the serde_json path, which
/// decides between a frame and an error and words the error.
pub(crate) fn scan(text: &str, out: &mut String) -> Option<(Spans, bool)> {
    const EVENT: u8 = 1;
    const CHANNEL: u8 = 2;
    const DATA: u8 = 4;
    const USER_ID: u8 = 8;
    let bytes = text.as_bytes();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(bytes, i + 1);
    let (mut spans, mut event, mut seen, mut data_is_json) = (Spans::default(), None, 0u8, false);
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        // Keys with escapes are legal JSON but never sent: leave them to serde_json.
        let key_len = bytes.get(i + 1..)?.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let member = match bytes.get(i + 1..i + 1 + key_len)? {
            b"event" => EVENT,
            b"channel" => CHANNEL,
            b"data" => DATA,
            b"user_id" => USER_ID,
            _ => 0,
        };
        if bytes.get(i + 1 + key_len) != Some(&b'"') || seen & member != 0 {
            return None; // a duplicate member is serde_json's error
        }
        seen |= member;
        i = skip_ws(bytes, i + 2 + key_len);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        let start = out.len();
        let kept = if bytes.get(i) == Some(&b'"') {
            i = unescape_into(text, i + 1, out)?;
            true
        } else {
            let mut values = serde_json::Deserializer::from_str(text.get(i..)?).into_iter::<&RawValue>();
            let raw = values.next()?.ok()?.get();
            i += values.byte_offset();
            let keep = match member {
                EVENT => return None,
                CHANNEL if raw != "null" => return None,
                DATA => raw != "null",
                // Numbers in their JSON spelling; other types are no user id.
                USER_ID => raw.bytes().all(|b| b.is_ascii_digit() || b"-.eE+".contains(&b)),
                _ => false,
            };
            if keep {
                out.push_str(raw);
                data_is_json |= member == DATA;
            }
            keep
        };
        let span = if kept { Some(Span::new(start, out.len())?) } else { None };
        match member {
            EVENT => event = span,
            CHANNEL => spans.channel = span,
            DATA => spans.data = span,
            USER_ID => spans.user_id = span,
            _ => out.truncate(start),
        }
        i = skip_ws(bytes, i);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    if skip_ws(bytes, i + 1) != bytes.len() {
        return None;
    }
    // A missing or empty event name is an error, worded by the slow path.
    spans.event = event.filter(|span: &Span| !span.is_empty())?;
    Some((spans, data_is_json))
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Unescape the string whose content starts at `from` (just after its opening quote) onto
/// `out`; returns the index just after its closing quote, or `None` if it is not a valid
/// JSON string (a raw control character, a bad escape, a lone surrogate, no end).
fn unescape_into(text: &str, from: usize, out: &mut String) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    loop {
        let run = memchr::memchr2(b'"', b'\\', bytes.get(i..)?)?;
        let plain = text.get(i..i + run)?;
        // A fold, not `any`: without the early exit it vectorizes.
        if plain.bytes().fold(false, |control, b| control | (b < 0x20)) {
            return None;
        }
        out.push_str(plain);
        i += run;
        if bytes[i] == b'"' {
            return Some(i + 1);
        }
        let c = match bytes.get(i + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let (c, len) = unicode_escape(&bytes[i..])?;
                out.push(c);
                i += len;
                continue;
            }
            _ => return None,
        };
        out.push(c);
        i += 2;
    }
}

/// Decode `\uXXXX` (or a surrogate pair `\uD83D\uDE00`) at the start of `bytes`: the char
/// and how many bytes it took. `None` for a lone surrogate or bad hex.
fn unicode_escape(bytes: &[u8]) -> Option<(char, usize)> {
    let hex4 = |at: usize| -> Option<u32> {
        let digits = bytes.get(at..at + 4)?;
        digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)?))
    };
    let high = hex4(2)?;
    match high {
        0xD800..=0xDBFF => {
            if bytes.get(6..8)? != b"\\u" {
                return None;
            }
            let low = hex4(8)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).map(|c| (c, 12))
        }
        0xDC00..=0xDFFF => None,
        _ => char::from_u32(high).map(|c| (c, 6)),
    }
}

/// The value of a JSON string literal (quotes included), or serde_json's error for it.
pub(crate) fn json_string(literal: &str) -> Result<String, ProtocolError> {
    let mut out = String::with_capacity(literal.len());
    match literal.strip_prefix('"').and_then(|_| unescape_into(literal, 1, &mut out)) {
        Some(end) if end == literal.len() => Ok(out),
        _ => serde_json::from_str::<String>(literal).map_err(|e| ProtocolError::MalformedJson(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both decoders, compared on one text.
    fn same(text: &str) -> bool {
        let slow = crate::frame::decode_with_serde(text);
        let fast = PackedFrame::decode(text).map(Frame::from);
        match (&slow, &fast) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(_), Err(_)) => {}
            _ => panic!("decoders disagree on {text}: {slow:?} vs {fast:?}"),
        }
        assert_eq!(Frame::decode(text).ok(), slow.as_ref().ok().cloned(), "{text}");
        slow.is_ok()
    }

    #[test]
    fn agrees_with_serde_json() {
        for text in [
            r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#,
            r#" { "event" : "e" , "data" : "x" , "user_id" : "7" } "#,
            "{\"event\":\"e\",\n\t\"data\":\"line\\nbreak\"}\r\n",
            r#"{"data":"\u00e9\u20ac\ud83d\ude00 \/ \b\f\r\t","event":"tick"}"#,
            r#"{"event":"e","other":"ignored","channel":"ch"}"#,
            r#"{"event":"e","data":{"a":1}}"#,
            r#"{"event":"e","data":null,"channel":null}"#,
            r#"{"event":"e","user_id":42}"#,
            r#"{"event":"é 😀","channel":"c"}"#,
            r#"{"\u0065vent":"escaped key"}"#,
            r#"{"event":"e","data":[1,{"b":"}"}],"user_id":-1.5e3,"x":{"y":[]}}"#,
            r#"{"event":"e","user_id":true,"data":7}"#,
            r#"{"event":"e","user_id":null,"data":"null"}"#,
            r#"{"event":"e","channel":7}"#,
            r#"{"event":5}"#,
            r#"{"event":null}"#,
            r#"{"event":"e","data":{"a":}}"#,
            r#"{"event":"e","data":null,"data":"x"}"#,
            r#"{"event":"e","data":1x}"#,
            // Errors.
            r#"{"event":"e","event":"twice"}"#,
            r#"{"event":""}"#,
            r#"{"channel":"c"}"#,
            r#"{}"#,
            r#"{"event":"e",}"#,
            r#"{"event":"e"} x"#,
            r#"{"event":"e""#,
            r#"{"event":"e","data":"lone \ud83d"}"#,
            r#"{"event":"e","data":"bad \x"}"#,
            r#"{"event":"e","data":"short \u12"}"#,
            "{\"event\":\"e\",\"data\":\"raw\tcontrol\"}",
            r#"{"event":"e","data":"unterminated}"#,
            r#"["event","e"]"#,
            "",
        ] {
            same(text);
        }
    }

    /// Seeded mutations of real frames (inserted, deleted and replaced characters drawn from
    /// JSON's syntax): both decoders must agree on every one, and neither may panic.
    #[test]
    fn mutated_frames_decode_alike() {
        let seeds = [
            r#"{"event":"App\\Events\\Shipped","channel":"private-orders.42","data":"{\"id\":7,\"note\":\"é\"}"}"#,
            r#"{"event":"client-x","channel":"presence-a","data":{"on":true},"user_id":42}"#,
            r#"{"event":"pusher:error","data":{"code":4009,"message":"bad"}}"#,
            r#"{"event":"tick","data":"\ud83d\ude00 \u00e9 \n"}"#,
        ];
        let alphabet: Vec<char> = r#"{}[]":,\ nu0e1-.x"#.chars().chain(['é', '\t', '\u{1}']).collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let mut decoded = 0;
        for round in 0..20_000 {
            let mut chars: Vec<char> = seeds[round % seeds.len()].chars().collect();
            for _ in 0..1 + next(3) {
                let at = next(chars.len() + 1);
                match next(3) {
                    0 => chars.insert(at, alphabet[next(alphabet.len())]),
                    1 if at < chars.len() => drop(chars.remove(at)),
                    _ if at < chars.len() => chars[at] = alphabet[next(alphabet.len())],
                    _ => {}
                }
            }
            decoded += usize::from(same(&chars.into_iter().collect::<String>()));
        }
        // The mutations must reach both answers, or the comparison proves little.
        assert!((1_000..19_000).contains(&decoded), "{decoded} of 20000 decoded");
    }

    #[test]
    fn equality_ignores_member_order() {
        let a = PackedFrame::decode(r#"{"event":"e","data":"x"}"#).unwrap();
        let b = PackedFrame::decode(r#"{"data":"x","event":"e"}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, PackedFrame::decode(r#"{"event":"e","data":{"x":1}}"#).unwrap());
    }

    #[test]
    fn one_buffer_holds_every_member() {
        let f =
            PackedFrame::decode(r#"{"event":"client-x","channel":"presence-a","data":"{}","user_id":"u1"}"#).unwrap();
        assert_eq!(
            (f.event(), f.channel(), f.data(), f.user_id()),
            ("client-x", Some("presence-a"), Some("{}"), Some("u1"))
        );
        let (text, spans) = f.into_parts();
        assert_eq!(text, "client-xpresence-a{}u1");
        assert_eq!(spans.data, Span::new(18, 20));
        // The serde path packs the same way, keeping an object's raw JSON.
        let o = PackedFrame::decode(r#"{"event":"e","data":{"a":1},"user_id":5}"#).unwrap();
        assert_eq!((o.data(), o.user_id()), (Some(r#"{"a":1}"#), Some("5")));
        assert_eq!(Frame::from(o).data, Data::Json(r#"{"a":1}"#.into()));
    }

    #[test]
    fn string_literals_match_serde_json() {
        for case in [r#""""#, r#""plain""#, r#""{\"a\":\"x\\y\"}""#, r#""\uD83D\uDE00""#] {
            assert_eq!(json_string(case).unwrap(), serde_json::from_str::<String>(case).unwrap(), "{case}");
        }
        for bad in [r#""lone \ud83d""#, r#""\ude00""#, r#""\ud83d\u0041""#, r#""\x""#, "\"a\" x", "\"a"] {
            assert!(matches!(json_string(bad), Err(ProtocolError::MalformedJson(_))), "{bad}");
        }
    }
}
