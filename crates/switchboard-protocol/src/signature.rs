//! The HMAC-SHA256 signatures of channel auth, user sign-in and webhooks, and the shared
//! secret of encrypted channels.
//!
//! Strings to sign, from `pusher-http-node` `lib/auth.js` and `lib/webhook.js`:
//! private `socket_id:channel`, presence `socket_id:channel:channel_data`,
//! user `socket_id::user::user_data`, webhook: the raw body. Verification compares in
//! constant time.
//!
//! ```
//! use switchboard_protocol::signature::{sign_channel, verify_channel};
//! let channel_data = r#"{"user_id":"1"}"#;
//! let auth = sign_channel("key", "secret", "1234.5678", "presence-room", Some(channel_data));
//! assert!(verify_channel("key", "secret", &auth, "1234.5678", "presence-room", Some(channel_data)));
//! assert!(!verify_channel("key", "secret", &auth, "1234.5678", "presence-room", None));
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ProtocolError;

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `message` keyed with `secret`.
///
/// ```
/// use switchboard_protocol::signature::hmac_hex;
/// assert_eq!(hmac_hex("key", "The quick brown fox jumps over the lazy dog"),
///            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
/// ```
pub fn hmac_hex(secret: &str, message: &str) -> String {
    hex::encode(hmac_bytes(secret, message.as_bytes()))
}

fn hmac_bytes(secret: &str, message: &[u8]) -> [u8; 32] {
    // Any key length is valid for HMAC, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time check that `hex_signature` is the HMAC of `message` under `secret`.
///
/// ```
/// use switchboard_protocol::signature::{hmac_hex, verify_hmac_hex};
/// let signature = hmac_hex("secret", "message");
/// assert!(verify_hmac_hex("secret", b"message", &signature));
/// assert!(!verify_hmac_hex("other", b"message", &signature));
/// assert!(!verify_hmac_hex("secret", b"message", "not hex"));
/// ```
pub fn verify_hmac_hex(secret: &str, message: &[u8], hex_signature: &str) -> bool {
    let expected = hmac_bytes(secret, message);
    let mut given = [0u8; 32];
    if hex::decode_to_slice(hex_signature.as_bytes(), &mut given).is_err() {
        return false;
    }
    expected.ct_eq(&given).into()
}

/// The string signed for a channel subscription.
///
/// ```
/// use switchboard_protocol::signature::channel_string_to_sign;
/// assert_eq!(channel_string_to_sign("1234.5678", "private-a", None), "1234.5678:private-a");
/// assert_eq!(
///     channel_string_to_sign("1234.5678", "presence-a", Some(r#"{"user_id":"1"}"#)),
///     r#"1234.5678:presence-a:{"user_id":"1"}"#
/// );
/// ```
pub fn channel_string_to_sign(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The `auth` value (`key:hexsig`) that authorizes `socket_id` on `channel`.
///
/// ```
/// use switchboard_protocol::signature::sign_channel;
/// // Vector from the official Node SDK (`authorizeChannel`), see tests/vectors.
/// assert_eq!(sign_channel("app-key", "app-secret", "1234.5678", "private-orders.1", None),
///   "app-key:b9db33bdf95d8b131d3a251ee3fd4c230a90419e512d374ddee11a71f579c824");
/// ```
pub fn sign_channel(key: &str, secret: &str, socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    format!("{key}:{}", hmac_hex(secret, &channel_string_to_sign(socket_id, channel, channel_data)))
}

/// The `auth` value for user sign-in over `user_data` (the exact JSON string sent).
///
/// ```
/// use switchboard_protocol::signature::{hmac_hex, sign_user};
/// let auth = sign_user("key", "secret", "1.2", r#"{"id":"42"}"#);
/// assert_eq!(auth, format!("key:{}", hmac_hex("secret", r#"1.2::user::{"id":"42"}"#)));
/// ```
pub fn sign_user(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!("{key}:{}", hmac_hex(secret, &format!("{socket_id}::user::{user_data}")))
}

/// Split `key:hexsig` into its parts.
///
/// ```
/// use switchboard_protocol::ProtocolError;
/// use switchboard_protocol::signature::split_auth;
/// assert_eq!(split_auth("key:abc123")?, ("key", "abc123"));
/// assert_eq!(split_auth("no-colon"), Err(ProtocolError::MalformedAuth));
/// assert_eq!(split_auth(":abc123"), Err(ProtocolError::MalformedAuth));
/// # Ok::<(), ProtocolError>(())
/// ```
pub fn split_auth(auth: &str) -> Result<(&str, &str), ProtocolError> {
    match auth.split_once(':') {
        Some((key, sig)) if !key.is_empty() && !sig.is_empty() => Ok((key, sig)),
        _ => Err(ProtocolError::MalformedAuth),
    }
}

/// Verify a subscription `auth` for the given app. The key part must be the app key and the
/// signature must match, compared in constant time.
///
/// ```
/// use switchboard_protocol::signature::{sign_channel, verify_channel};
/// let auth = sign_channel("k", "s", "1.2", "private-x", None);
/// assert!(verify_channel("k", "s", &auth, "1.2", "private-x", None));
/// assert!(!verify_channel("k", "s", &auth, "9.9", "private-x", None));
/// ```
pub fn verify_channel(
    key: &str,
    secret: &str,
    auth: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> bool {
    let Ok((given_key, sig)) = split_auth(auth) else {
        return false;
    };
    let message = channel_string_to_sign(socket_id, channel, channel_data);
    let key_ok: bool = given_key.as_bytes().ct_eq(key.as_bytes()).into();
    verify_hmac_hex(secret, message.as_bytes(), sig) & key_ok
}

/// Verify a `pusher:signin` `auth` over `user_data`.
///
/// ```
/// use switchboard_protocol::signature::{sign_user, verify_user};
/// let user_data = r#"{"id":"42"}"#;
/// let auth = sign_user("key", "secret", "1.2", user_data);
/// assert!(verify_user("key", "secret", &auth, "1.2", user_data));
/// assert!(!verify_user("key", "secret", &auth, "1.2", r#"{"id":"43"}"#));
/// assert!(!verify_user("key", "secret", &auth, "9.9", user_data));
/// ```
pub fn verify_user(key: &str, secret: &str, auth: &str, socket_id: &str, user_data: &str) -> bool {
    let Ok((given_key, sig)) = split_auth(auth) else {
        return false;
    };
    let message = format!("{socket_id}::user::{user_data}");
    let key_ok: bool = given_key.as_bytes().ct_eq(key.as_bytes()).into();
    verify_hmac_hex(secret, message.as_bytes(), sig) & key_ok
}

/// `X-Pusher-Signature` of a webhook body.
///
/// ```
/// use switchboard_protocol::signature::{hmac_hex, sign_webhook};
/// let body = br#"{"time_ms":1,"events":[]}"#;
/// assert_eq!(sign_webhook("secret", body), hmac_hex("secret", r#"{"time_ms":1,"events":[]}"#));
/// ```
pub fn sign_webhook(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_bytes(secret, body))
}

/// Check a received webhook: `X-Pusher-Key` must be the app key and `X-Pusher-Signature`
/// the HMAC of the raw body.
///
/// ```
/// use switchboard_protocol::signature::{sign_webhook, verify_webhook};
/// let body = br#"{"time_ms":1,"events":[]}"#;
/// let sig = sign_webhook("secret", body);
/// assert!(verify_webhook("key", "secret", "key", &sig, body));
/// assert!(!verify_webhook("key", "secret", "key", &sig, b"{}"));
/// ```
pub fn verify_webhook(key: &str, secret: &str, header_key: &str, header_signature: &str, body: &[u8]) -> bool {
    let key_ok: bool = header_key.as_bytes().ct_eq(key.as_bytes()).into();
    verify_hmac_hex(secret, body, header_signature) & key_ok
}

/// The per-channel key of an encrypted channel: `SHA256(channel_name || master_key)`.
///
/// ```
/// use sha2::{Digest, Sha256};
/// use switchboard_protocol::signature::encrypted_channel_secret;
/// let master_key = [9u8; 32];
/// let key = encrypted_channel_secret("private-encrypted-a", &master_key);
/// let expected: [u8; 32] = Sha256::digest([b"private-encrypted-a".as_slice(), &master_key].concat()).into();
/// assert_eq!(key, expected);
/// assert_ne!(key, encrypted_channel_secret("private-encrypted-b", &master_key), "one key per channel");
/// ```
pub fn encrypted_channel_secret(channel: &str, master_key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(channel.as_bytes());
    hasher.update(master_key);
    hasher.finalize().into()
}
