//! End-to-end encrypted channels (`private-encrypted-`): NaCl secretbox (XSalsa20-Poly1305)
//! with the per-channel key `SHA256(channel || master_key)`.
//!
//! The event `data` is a JSON string `{"nonce": b64(24 bytes), "ciphertext": b64}` whose
//! plaintext is the JSON of the event data (`pusher-http-node` `lib/events.js encrypt`).
//!
//! ```
//! use switchboard_protocol::encryption::{decrypt, encrypt};
//! use switchboard_protocol::signature::encrypted_channel_secret;
//! let key = encrypted_channel_secret("private-encrypted-prices", &[1u8; 32]);
//! let sealed = encrypt(&key, r#"{"price":100}"#, [3u8; 24]);
//! assert!(sealed.starts_with(r#"{"ciphertext":"#));
//! assert_eq!(decrypt(&key, &sealed)?, r#"{"price":100}"#);
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use base64::Engine as _;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use serde::Deserialize;

use crate::ProtocolError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

/// Decode the base64 `shared_secret` an auth endpoint returns into a key.
///
/// ```
/// use base64::Engine as _;
/// use switchboard_protocol::encryption::decode_shared_secret;
/// use switchboard_protocol::signature::encrypted_channel_secret;
/// // An auth endpoint returns the channel key as base64.
/// let key = encrypted_channel_secret("private-encrypted-prices", &[1u8; 32]);
/// let shared_secret = base64::engine::general_purpose::STANDARD.encode(key);
/// assert_eq!(decode_shared_secret(&shared_secret)?, key);
/// assert!(decode_shared_secret("c2hvcnQ=").is_err(), "decodes to 5 bytes, not 32");
/// assert!(decode_shared_secret("not base64!").is_err());
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
pub fn decode_shared_secret(b64: &str) -> Result<[u8; 32], ProtocolError> {
    let bytes =
        B64.decode(b64.trim()).map_err(|e| ProtocolError::InvalidFrame(format!("shared_secret is not base64: {e}")))?;
    bytes.try_into().map_err(|_| ProtocolError::InvalidFrame("shared_secret must decode to 32 bytes".into()))
}

/// Open an encrypted event payload with the channel key; returns the plaintext (JSON text).
///
/// ```
/// use switchboard_protocol::encryption::{decrypt, encrypt};
/// let key = [7u8; 32];
/// let sealed = encrypt(&key, r#"{"hi":1}"#, [1u8; 24]);
/// assert_eq!(decrypt(&key, &sealed)?, r#"{"hi":1}"#);
/// assert!(decrypt(&[8u8; 32], &sealed).is_err());
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
pub fn decrypt(key: &[u8; 32], payload: &str) -> Result<String, ProtocolError> {
    let sealed: Sealed = serde_json::from_str(payload)
        .map_err(|e| ProtocolError::InvalidFrame(format!("encrypted payload is not {{nonce, ciphertext}}: {e}")))?;
    let nonce = B64.decode(&sealed.nonce).map_err(|e| ProtocolError::InvalidFrame(format!("nonce: {e}")))?;
    let ciphertext =
        B64.decode(&sealed.ciphertext).map_err(|e| ProtocolError::InvalidFrame(format!("ciphertext: {e}")))?;
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| ProtocolError::InvalidFrame("nonce must be 24 bytes".into()))?;
    let cipher = XSalsa20Poly1305::new(key.into());
    let plain = cipher
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map_err(|_| ProtocolError::InvalidFrame("decryption failed: wrong key or tampered payload".into()))?;
    String::from_utf8(plain).map_err(|_| ProtocolError::InvalidFrame("decrypted payload is not UTF-8".into()))
}

/// Seal `plaintext` (the JSON of the event data) for an encrypted channel with `nonce`
/// (24 random bytes; never reuse one with the same key).
///
/// ```
/// use switchboard_protocol::encryption::{decrypt, encrypt};
/// let key = [7u8; 32];
/// let sealed = encrypt(&key, r#"{"price":1}"#, [0u8; 24]);
/// let fields: serde_json::Value = serde_json::from_str(&sealed)?;
/// assert_eq!(fields["nonce"], "A".repeat(32)); // 24 zero bytes in base64
/// assert_eq!(decrypt(&key, &sealed)?, r#"{"price":1}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encrypt(key: &[u8; 32], plaintext: &str, nonce: [u8; 24]) -> String {
    let cipher = XSalsa20Poly1305::new(key.into());
    // Encryption with a valid key and nonce cannot fail.
    let ciphertext = cipher.encrypt(&nonce.into(), plaintext.as_bytes()).unwrap_or_default();
    serde_json::json!({ "nonce": B64.encode(nonce), "ciphertext": B64.encode(ciphertext) }).to_string()
}
