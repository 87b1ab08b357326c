//! A validating JSON skipper for the receive hot paths: it finds where each value of a
//! frame starts and ends without building anything.
//!
//! Why not serde_json: to borrow a Phoenix payload as raw text, serde_json still walks it
//! byte by byte (`skip_to_escape`, eight bytes per step), which was a fifth of the Phoenix
//! client's reader thread at 1 KB events. Here string contents are scanned sixteen bytes per
//! step with SSE2 compares (x86_64; a plain loop elsewhere), about twice as fast.
//!
//! It only ever answers "valid, and here are the spans" or "not sure": callers fall back to
//! serde_json whenever it says no, so the errors users see stay serde_json's, and a text is
//! accepted only if serde_json accepts it too (the fuzz target `phoenix_text` checks that
//! the two agree). To keep that promise it accepts less than serde_json in corners: nesting
//! deeper than [`MAX_DEPTH`] is left to serde_json.
//!
//! ```
//! // The crate uses it through the decoders, e.g. the Phoenix V2 hot path:
//! use switchboard_protocol::phoenix::{RawMessage, Vsn};
//! let m = RawMessage::decode(r#"[null,null,"room:a","tick",{"n":[1,2.5e3,true]}]"#, Vsn::V2)?;
//! assert_eq!(m.payload, r#"{"n":[1,2.5e3,true]}"#);
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

/// Nesting this scanner follows before it leaves the text to serde_json (whose own limit is
/// 128): well below it, so nothing this scanner accepts is refused by serde_json.
pub(crate) const MAX_DEPTH: u32 = 64;

/// The index of the first byte at or after `i` that is not JSON whitespace.
pub(crate) fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index of the first `"`, `\` or control byte (below 0x20) at or after `i`, or the
/// length of `bytes`: where a string's plain run ends.
fn plain_run_end(bytes: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        while let Some(chunk) = bytes.get(i..i + 16) {
            // SAFETY: SSE2 is part of every x86_64 CPU (the target's baseline), and the load
            // reads exactly the 16 bytes of `chunk`, which `get` checked are in bounds.
            let mask = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let limit = _mm_set1_epi8(0x1f);
                // max(v, 0x1f) == 0x1f exactly for the bytes 0x00..=0x1f (unsigned).
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit);
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
            };
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// A string whose opening quote is at `i - 1`: the index past its closing quote, and whether
/// it had escapes. `None` if it is not a valid JSON string.
pub(crate) fn string_end(bytes: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        i = plain_run_end(bytes, i);
        match bytes.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match bytes.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    // Stricter than serde_json's skipping (which checks only the hex digits):
                    // a surrogate must come in a pair, as serde_json requires when it reads
                    // the string, so whatever is scanned here also parses into a value.
                    b'u' => {
                        let unit = hex4(bytes.get(i + 2..i + 6)?)?;
                        match unit {
                            0xD800..=0xDBFF => {
                                if bytes.get(i + 6..i + 8)? != b"\\u" {
                                    return None;
                                }
                                if !(0xDC00..=0xDFFF).contains(&hex4(bytes.get(i + 8..i + 12)?)?) {
                                    return None;
                                }
                                i += 12;
                            }
                            0xDC00..=0xDFFF => return None,
                            _ => i += 6,
                        }
                    }
                    _ => return None,
                }
            }
            _ => return None, // a control byte
        }
    }
}

/// Four hex digits as a UTF-16 code unit.
fn hex4(digits: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(digits).ok()?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

fn digits_end(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// A number starting at `i`: the index past it (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
fn number_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    let start = i;
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match bytes.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits_end(bytes, i + 1),
        _ => return None,
    };
    if bytes.get(i) == Some(&b'.') {
        bytes.get(i + 1).filter(|b| b.is_ascii_digit())?;
        i = digits_end(bytes, i + 1);
    }
    let exponent = matches!(bytes.get(i), Some(b'e' | b'E'));
    if exponent {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        bytes.get(i).filter(|b| b.is_ascii_digit())?;
        i = digits_end(bytes, i);
    }
    // serde_json refuses a number too large for an f64 ("number out of range"): only an
    // exponent or a very long number can be one, so only those are parsed.
    if exponent || i - start > 300 {
        let text = std::str::from_utf8(&bytes[start..i]).ok()?;
        if !text.parse::<f64>().is_ok_and(f64::is_finite) {
            return None;
        }
    }
    Some(i)
}

/// A value starting at `i` (no whitespace before it), nested `depth` deep: the index past
/// it, or `None` if it is not valid JSON (or nests deeper than [`MAX_DEPTH`]).
pub(crate) fn value_end(bytes: &[u8], i: usize, depth: u32) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => string_end(bytes, i + 1).map(|(end, _)| end),
        open @ (b'{' | b'[') => {
            if depth >= MAX_DEPTH {
                return None;
            }
            let close = if *open == b'{' { b'}' } else { b']' };
            let mut i = skip_ws(bytes, i + 1);
            if bytes.get(i) == Some(&close) {
                return Some(i + 1);
            }
            loop {
                if close == b'}' {
                    if bytes.get(i) != Some(&b'"') {
                        return None;
                    }
                    i = skip_ws(bytes, string_end(bytes, i + 1)?.0);
                    if bytes.get(i) != Some(&b':') {
                        return None;
                    }
                    i = skip_ws(bytes, i + 1);
                }
                i = skip_ws(bytes, value_end(bytes, i, depth + 1)?);
                match bytes.get(i)? {
                    b',' => i = skip_ws(bytes, i + 1),
                    b if *b == close => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        b't' => bytes[i..].starts_with(b"true").then_some(i + 4),
        b'f' => bytes[i..].starts_with(b"false").then_some(i + 5),
        b'n' => bytes[i..].starts_with(b"null").then_some(i + 4),
        _ => number_end(bytes, i),
    }
}

/// A text that is a JSON array of exactly `N` values (whitespace allowed around them): each
/// value's text. `None` if it is anything else, or not valid JSON.
pub(crate) fn array_elements<const N: usize>(text: &str) -> Option<[&str; N]> {
    let bytes = text.as_bytes();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(bytes, i + 1);
    let mut spans = [(0, 0); N];
    for (n, span) in spans.iter_mut().enumerate() {
        let end = value_end(bytes, i, 1)?;
        *span = (i, end);
        i = skip_ws(bytes, end);
        if n + 1 < N {
            if bytes.get(i) != Some(&b',') {
                return None;
            }
            i = skip_ws(bytes, i + 1);
        }
    }
    if bytes.get(i) != Some(&b']') || skip_ws(bytes, i + 1) != bytes.len() {
        return None;
    }
    // Every span starts and ends at an ASCII byte, so each is a char boundary.
    Some(spans.map(|(start, end)| &text[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts exactly when serde_json does, for texts within the depth limit.
    fn agrees(text: &str) {
        let ours = value_end(text.as_bytes(), skip_ws(text.as_bytes(), 0), 1)
            .is_some_and(|end| skip_ws(text.as_bytes(), end) == text.len());
        // Against reading a value, the strictest serde_json read (skipping is laxer).
        let serde = serde_json::from_str::<serde_json::Value>(text).is_ok();
        assert_eq!(ours, serde, "scanner and serde_json disagree on {text:?}");
    }

    #[test]
    fn values_are_accepted_and_refused_as_serde_json_does() {
        for text in [
            "0",
            "-0",
            "1",
            "-12.5e+3",
            "1E9",
            "0.5",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "+1",
            "--1",
            "0x1",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "True",
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9\ud800""#,
            r#""\ud83d\ude00""#,
            r#""\udc00""#,
            r#""\ud83d\u0041""#,
            r#""\ud83d""#,
            "1e400",
            "-1e400",
            "1e308",
            "1e-400",
            "123456789012345678901234567890",
            r#""\u00g0""#,
            r#""\x""#,
            "\"a\tb\"",
            "\"a\u{1f}b\"",
            "\"é ☃ \u{1F600}\"",
            r#""unterminated"#,
            "[]",
            "[ ]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            r#"{"a":1}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":{"b":[{"c":null}]}}"#,
            " [1, {\"x\" : \"y\"} ] ",
            "[1]]",
            "[[1]",
            "",
            " ",
        ] {
            agrees(text);
        }
        // Strings long enough for the 16-byte steps, with each kind of stop at each offset.
        for stop in ["\"", "\\n", "\\u0041", "\n", "\u{1}", "é"] {
            for at in 0..40 {
                let text = format!("\"{}{stop}{}\"", "x".repeat(at), "y".repeat(40 - at));
                agrees(&text);
            }
        }
    }

    #[test]
    fn nesting_past_the_limit_is_left_to_serde_json() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(value_end(deep(63).as_bytes(), 0, 1).is_some());
        assert!(value_end(deep(64).as_bytes(), 0, 1).is_none());
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(&deep(64)).is_ok());
    }

    #[test]
    fn array_elements_gives_each_value_text() {
        let text = r#" [ null , "1" ,"room:a", "tick",{"n":[1, "]"]} ] "#;
        assert_eq!(
            array_elements::<5>(text),
            Some(["null", r#""1""#, r#""room:a""#, r#""tick""#, r#"{"n":[1, "]"]}"#])
        );
        assert_eq!(array_elements::<4>(text), None);
        assert_eq!(array_elements::<6>(text), None);
        assert_eq!(array_elements::<1>("[1] x"), None);
        assert_eq!(array_elements::<1>(r#"{"a":1}"#), None);
    }
}
