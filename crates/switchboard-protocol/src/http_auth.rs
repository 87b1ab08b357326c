//! Signing and verifying HTTP API requests (auth_version 1.0).
//!
//! From `pusher-http-node` `lib/requests.js createSignedQueryString`: the parameters
//! `auth_key`, `auth_timestamp`, `auth_version=1.0`, `body_md5` (when there is a body) and
//! the user's own are sorted by key, joined as `k=v` with `&` **without URL-encoding**, and
//! `METHOD\npath\nquery` is signed with HMAC-SHA256. Verification accepts every official
//! SDK's form, including the Python SDK's `body_md5` of an empty GET body.
//!
//! ```
//! use switchboard_protocol::http_auth::{RequestToVerify, sign_request, verify_request};
//! let extra = [("info".to_string(), "user_count".to_string())];
//! let params = sign_request("key", "secret", "GET", "/apps/1/channels", &extra, None, 1_700_000_000);
//! let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
//! assert_eq!(names, ["auth_key", "auth_timestamp", "auth_version", "info", "auth_signature"]);
//! let req = RequestToVerify { method: "GET", path: "/apps/1/channels", params: &params, body: b"" };
//! assert!(verify_request(&req, "key", "secret", 1_700_000_030, 600).is_ok());
//! ```

use md5::{Digest, Md5};

use crate::signature::{hmac_hex, verify_hmac_hex};

/// Why a signed HTTP request was refused. Each maps to a 401 with a message saying what to fix.
///
/// ```
/// use switchboard_protocol::http_auth::{HttpAuthError, RequestToVerify, sign_request, verify_request};
/// let params = sign_request("key", "secret", "GET", "/apps/1/channels", &[], None, 1000);
/// let req = RequestToVerify { method: "GET", path: "/apps/1/channels", params: &params, body: b"" };
/// assert_eq!(verify_request(&req, "other-key", "secret", 1000, 600), Err(HttpAuthError::WrongKey));
/// assert_eq!(
///     verify_request(&req, "key", "secret", 2000, 600),
///     Err(HttpAuthError::StaleTimestamp { given: 1000, now: 2000, window: 600 })
/// );
/// assert!(matches!(verify_request(&req, "key", "wrong", 1000, 600), Err(HttpAuthError::BadSignature { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpAuthError {
    /// A required `auth_*` parameter is missing.
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    /// `auth_key` is not this app's key.
    #[error("auth_key does not match the app")]
    WrongKey,
    /// `auth_version` is not `1.0`.
    #[error("unsupported auth_version (expected 1.0)")]
    WrongVersion,
    /// `auth_timestamp` is not a number or outside the allowed window.
    #[error("auth_timestamp {given} is more than {window} s away from server time {now}")]
    StaleTimestamp {
        /// The timestamp the client sent.
        given: i64,
        /// The server's clock.
        now: i64,
        /// Allowed distance in seconds.
        window: i64,
    },
    /// `body_md5` does not match the body.
    #[error("body_md5 does not match the request body")]
    BodyMd5Mismatch,
    /// The query has more than [`MAX_QUERY_PARAMS`] parameters.
    #[error("too many query parameters: at most {max}")]
    TooManyParams {
        /// The cap.
        max: usize,
    },
    /// The signature does not match.
    #[error("invalid auth_signature (expected HMAC-SHA256 hex of \"{string_to_sign}\")")]
    BadSignature {
        /// What the server signed, so the caller can compare.
        string_to_sign: String,
    },
}

/// Hex MD5 of a body, as `body_md5` carries it.
///
/// ```
/// use switchboard_protocol::http_auth::body_md5;
/// assert_eq!(body_md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
/// assert_eq!(body_md5(b"hello"), "5d41402abc4b2a76b9719d911017c592");
/// ```
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Query parameters one request may carry. The SDKs send at most seven (the four `auth_*`,
/// `body_md5`, `info`, `filter_by_prefix`); the cap is checked before anything is decoded,
/// so an unsigned request with thousands of parameters costs one scan of its query string.
pub const MAX_QUERY_PARAMS: usize = 64;

/// Decode a query string into parameters. Array parameters as the PHP SDK sends them
/// (`info[]=a` or `info[0]=a&info[1]=b`) are joined into one `info=a,b`, which is what it
/// signs (as Reverb joins them before verifying). Linear in the query's length; more than
/// [`MAX_QUERY_PARAMS`] parameters are refused.
///
/// ```
/// use switchboard_protocol::http_auth::{parse_query, HttpAuthError, MAX_QUERY_PARAMS};
/// let params = parse_query("auth_key=k&info%5B0%5D=user_count&info%5B1%5D=subscription_count")?;
/// assert_eq!(params[1], ("info".to_string(), "user_count,subscription_count".to_string()));
/// let flood = vec!["a=1"; MAX_QUERY_PARAMS + 1].join("&");
/// assert_eq!(parse_query(&flood), Err(HttpAuthError::TooManyParams { max: MAX_QUERY_PARAMS }));
/// # Ok::<(), HttpAuthError>(())
/// ```
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, HttpAuthError> {
    parse_query_limited(query, MAX_QUERY_PARAMS)
}

/// [`parse_query`] with a cap of `max` parameters (a server's setting).
///
/// ```
/// use switchboard_protocol::http_auth::{parse_query_limited, HttpAuthError};
/// assert_eq!(parse_query_limited("a=1&b=2", 1), Err(HttpAuthError::TooManyParams { max: 1 }));
/// assert_eq!(parse_query_limited("a=1&b=2", 2)?.len(), 2);
/// # Ok::<(), HttpAuthError>(())
/// ```
pub fn parse_query_limited(query: &str, max: usize) -> Result<Vec<(String, String)>, HttpAuthError> {
    if query.split('&').filter(|p| !p.is_empty()).nth(max).is_some() {
        return Err(HttpAuthError::TooManyParams { max });
    }
    let mut out: Vec<(String, String)> = Vec::new();
    // The first parameter of each name, which array elements of that name are joined into.
    let mut first: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let base = match key.find('[') {
            Some(i) if key.ends_with(']') && i > 0 => &key[..i],
            _ => {
                first.entry(key.to_string()).or_insert(out.len());
                out.push((key.into_owned(), value.into_owned()));
                continue;
            }
        };
        match first.get(base) {
            Some(&at) => {
                let joined = &mut out[at].1;
                joined.push(',');
                joined.push_str(&value);
            }
            None => {
                first.insert(base.to_owned(), out.len());
                out.push((base.to_owned(), value.into_owned()));
            }
        }
    }
    Ok(out)
}

/// Build the `METHOD\npath\nsorted-query` string. `params` must not contain `auth_signature`.
///
/// ```
/// use switchboard_protocol::http_auth::string_to_sign;
/// let params = [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())];
/// assert_eq!(string_to_sign("get", "/apps/1/channels", &params), "GET\n/apps/1/channels\na=1&b=2");
/// ```
pub fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut query = String::new();
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            query.push('&');
        }
        query.push_str(k);
        query.push('=');
        query.push_str(v);
    }
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query)
}

/// Sign a request the way the official SDKs do. Returns the parameters to put in the query
/// string, `auth_signature` last (values still need URL-encoding when building a URL).
///
/// ```
/// use switchboard_protocol::http_auth::sign_request;
/// let params = sign_request("key", "secret", "GET", "/apps/1/channels", &[], None, 1700000000);
/// assert_eq!(params.last().map(|p| p.0.as_str()), Some("auth_signature"));
/// ```
pub fn sign_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    extra: &[(String, String)],
    body: Option<&[u8]>,
    timestamp: i64,
) -> Vec<(String, String)> {
    let mut params = vec![
        ("auth_key".to_owned(), key.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
    ];
    if let Some(body) = body {
        params.push(("body_md5".to_owned(), body_md5(body)));
    }
    params.extend(extra.iter().cloned());
    let signature = hmac_hex(secret, &string_to_sign(method, path, &params));
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params.push(("auth_signature".to_owned(), signature));
    params
}

/// What the server needs to check one request.
///
/// ```
/// use switchboard_protocol::http_auth::{HttpAuthError, RequestToVerify, sign_request, verify_request};
/// let body = br#"{"name":"e","data":"{}","channel":"news"}"#;
/// let params = sign_request("key", "secret", "POST", "/apps/1/events", &[], Some(body), 1000);
/// let req = RequestToVerify { method: "POST", path: "/apps/1/events", params: &params, body };
/// assert_eq!(verify_request(&req, "key", "secret", 1000, 600), Ok(()));
/// let tampered = RequestToVerify { body: b"{}", ..req };
/// assert_eq!(verify_request(&tampered, "key", "secret", 1000, 600), Err(HttpAuthError::BodyMd5Mismatch));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestToVerify<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Full path including `/apps/{id}` (and without any server path prefix).
    pub path: &'a str,
    /// Decoded query parameters, in any order, `auth_signature` included.
    pub params: &'a [(String, String)],
    /// The raw body (empty for GET).
    pub body: &'a [u8],
}

/// Verify a signed request for an app with `key`/`secret` at server time `now` (Unix
/// seconds), allowing `window` seconds of clock difference.
///
/// ```
/// use switchboard_protocol::http_auth::{sign_request, verify_request, RequestToVerify};
/// let body = br#"{"name":"e","data":"{}","channel":"c"}"#;
/// let params = sign_request("k", "s", "POST", "/apps/1/events", &[], Some(body), 1000);
/// let req = RequestToVerify { method: "POST", path: "/apps/1/events", params: &params, body };
/// assert!(verify_request(&req, "k", "s", 1100, 600).is_ok());
/// assert!(verify_request(&req, "k", "s", 5000, 600).is_err());
/// ```
pub fn verify_request(
    req: &RequestToVerify<'_>,
    key: &str,
    secret: &str,
    now: i64,
    window: i64,
) -> Result<(), HttpAuthError> {
    let find = |name: &str| req.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let given_key = find("auth_key").ok_or(HttpAuthError::Missing("auth_key"))?;
    let timestamp = find("auth_timestamp").ok_or(HttpAuthError::Missing("auth_timestamp"))?;
    let version = find("auth_version").ok_or(HttpAuthError::Missing("auth_version"))?;
    let signature = find("auth_signature").ok_or(HttpAuthError::Missing("auth_signature"))?;
    if given_key != key {
        return Err(HttpAuthError::WrongKey);
    }
    if version != "1.0" {
        return Err(HttpAuthError::WrongVersion);
    }
    let given: i64 = timestamp.parse().map_err(|_| HttpAuthError::StaleTimestamp { given: i64::MIN, now, window })?;
    // checked: a timestamp near i64::MIN must not overflow
    if given.checked_sub(now).is_none_or(|d| d.unsigned_abs() > window.unsigned_abs()) {
        return Err(HttpAuthError::StaleTimestamp { given, now, window });
    }
    match find("body_md5") {
        Some(md5) if !md5.eq_ignore_ascii_case(&body_md5(req.body)) => {
            return Err(HttpAuthError::BodyMd5Mismatch);
        }
        None if !req.body.is_empty() => return Err(HttpAuthError::Missing("body_md5")),
        _ => {}
    }
    let signed: Vec<(String, String)> = req.params.iter().filter(|(k, _)| k != "auth_signature").cloned().collect();
    let string_to_sign = string_to_sign(req.method, req.path, &signed);
    if verify_hmac_hex(secret, string_to_sign.as_bytes(), signature) {
        Ok(())
    } else {
        Err(HttpAuthError::BadSignature { string_to_sign })
    }
}
