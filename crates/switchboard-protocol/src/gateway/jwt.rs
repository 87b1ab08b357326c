//! The gateway's access tokens: JWTs signed with HMAC (HS256, HS384, HS512), verified with
//! the app's key, and minted for local development.
//!
//! Written here (about a hundred lines on `hmac`, `sha2` and `base64`, already in the
//! workspace) instead of pulling `jsonwebtoken`, whose RSA/EC support the local server does
//! not need yet. What is checked, in order: three base64url parts; a header whose `alg` is
//! one of the three (`none` and everything else refused); the signature (constant time); a
//! claims object; `nbf` and `exp` when present, each with [`LEEWAY_SECS`] of leeway.
//!
//! ```
//! use switchboard_protocol::gateway::jwt::{self, Algorithm};
//! let claims = serde_json::json!({"sub": "ada", "permissions": ["realtime:publisher:write:topic:*"], "exp": 2_000_000_000});
//! let token = jwt::sign(&claims, b"app-secret", Algorithm::Hs256);
//! let verified = jwt::verify(&token, b"app-secret", 1_900_000_000)?;
//! assert_eq!(verified.subject.as_deref(), Some("ada"));
//! assert!(verified.permissions.may_publish("chat"));
//! assert!(matches!(jwt::verify(&token, b"wrong", 1_900_000_000), Err(jwt::TokenError::BadSignature)));
//! # Ok::<(), jwt::TokenError>(())
//! ```

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::Permissions;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An HMAC signing algorithm.
///
/// ```
/// use switchboard_protocol::gateway::jwt::Algorithm;
/// assert_eq!(Algorithm::from_name("HS384"), Some(Algorithm::Hs384));
/// assert_eq!(Algorithm::from_name("none"), None);
/// assert_eq!(Algorithm::Hs512.name(), "HS512");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

impl Algorithm {
    /// The algorithm a header's `alg` names, if it is one of these.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "HS256" => Some(Algorithm::Hs256),
            "HS384" => Some(Algorithm::Hs384),
            "HS512" => Some(Algorithm::Hs512),
            _ => None,
        }
    }

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
            let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else { return Vec::new() };
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Hs256 => run::<Hmac<Sha256>>(key, message),
            Algorithm::Hs384 => run::<Hmac<Sha384>>(key, message),
            Algorithm::Hs512 => run::<Hmac<Sha512>>(key, message),
        }
    }

    fn verify(self, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
            let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else { return false };
            mac.update(message);
            mac.verify_slice(signature).is_ok() // constant time
        }
        match self {
            Algorithm::Hs256 => run::<Hmac<Sha256>>(key, message, signature),
            Algorithm::Hs384 => run::<Hmac<Sha384>>(key, message, signature),
            Algorithm::Hs512 => run::<Hmac<Sha512>>(key, message, signature),
        }
    }
}

/// Why a token was refused. The server puts the message in its HTTP 401 body.
///
/// ```
/// use switchboard_protocol::gateway::jwt::{self, TokenError};
/// assert_eq!(jwt::verify("abc", b"k", 0).unwrap_err(), TokenError::Malformed("a JWT has three dot-separated parts"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT at all.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm this server does not verify (`none` included).
    #[error("unsupported token algorithm {0:?}: use HS256, HS384 or HS512")]
    UnsupportedAlgorithm(String),
    /// The signature does not match the key.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The clock when it was checked.
        now: i64,
    },
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The clock when it was checked.
        now: i64,
    },
    /// A claim has the wrong type (e.g. `permissions` not a list of strings).
    #[error("invalid token claim: {0}")]
    InvalidClaim(String),
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// How it was signed.
    pub algorithm: Algorithm,
    /// The `sub` claim: who the connection is (`client.subject` in deliveries).
    pub subject: Option<String>,
    /// `permissions` and `scope`, together.
    pub permissions: Permissions,
    /// The `exp` claim, if any.
    pub expires_at: Option<i64>,
    /// Every claim, as sent.
    pub claims: Map<String, Value>,
}

/// Sign `claims` (a JSON object) with `key`.
///
/// ```
/// use switchboard_protocol::gateway::jwt::{self, Algorithm};
/// let token = jwt::sign(&serde_json::json!({"sub": "x"}), b"k", Algorithm::Hs512);
/// assert_eq!(token.split('.').count(), 3);
/// assert!(token.starts_with("eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.")); // {"alg":"HS512","typ":"JWT"}
/// ```
pub fn sign(claims: &Value, key: &[u8], algorithm: Algorithm) -> String {
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, algorithm.name());
    let mut token = B64.encode(header);
    token.push('.');
    token.push_str(&B64.encode(claims.to_string()));
    let signature = algorithm.mac(key, token.as_bytes());
    token.push('.');
    token.push_str(&B64.encode(signature));
    token
}

/// Verify `token` with `key` at unix time `now` (seconds).
///
/// ```
/// use switchboard_protocol::gateway::jwt::{self, Algorithm, TokenError};
/// let token = jwt::sign(&serde_json::json!({"exp": 100}), b"k", Algorithm::Hs256);
/// assert!(jwt::verify(&token, b"k", 129).is_ok(), "30 s of leeway");
/// assert_eq!(jwt::verify(&token, b"k", 131).unwrap_err(), TokenError::Expired { exp: 100, now: 131 });
/// ```
pub fn verify(token: &str, key: &[u8], now: i64) -> Result<VerifiedToken, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a JWT has three dot-separated parts"));
    };
    let header: Value = decode_json(header, "the header is not base64url JSON")?;
    let name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let algorithm = Algorithm::from_name(name).ok_or_else(|| TokenError::UnsupportedAlgorithm(name.to_owned()))?;
    let signature = B64.decode(signature).map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    let signed = &token[..header_and_payload_len(token)];
    if !algorithm.verify(key, signed.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }
    let Value::Object(claims) = decode_json(payload, "the claims are not base64url JSON")? else {
        return Err(TokenError::Malformed("the claims are not a JSON object"));
    };
    let time = |name: &str| -> Result<Option<i64>, TokenError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            // NumericDate may have a fraction (RFC 7519 §2); whole seconds are enough here.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| TokenError::InvalidClaim(format!("{name} must be a number"))),
            Some(_) => Err(TokenError::InvalidClaim(format!("{name} must be a number"))),
        }
    };
    let (exp, nbf) = (time("exp")?, time("nbf")?);
    if let Some(nbf) = nbf
        && now + LEEWAY_SECS < nbf
    {
        return Err(TokenError::NotYetValid { nbf, now });
    }
    if let Some(exp) = exp
        && now - LEEWAY_SECS >= exp
    {
        return Err(TokenError::Expired { exp, now });
    }
    let subject = match claims.get("sub") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(TokenError::InvalidClaim("sub must be a string".into())),
    };
    let permissions = match claims.get("permissions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TokenError::InvalidClaim("permissions must be a list of strings".into()))?,
        Some(_) => return Err(TokenError::InvalidClaim("permissions must be a list of strings".into())),
    };
    let scope = match claims.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(TokenError::InvalidClaim("scope must be a string".into())),
    };
    let permissions = Permissions::from_claims(&permissions, scope);
    Ok(VerifiedToken { algorithm, subject, permissions, expires_at: exp, claims })
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json(part: &str, what: &'static str) -> Result<Value, TokenError> {
    let bytes = B64.decode(part).map_err(|_| TokenError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_rfc_7515_hs256_example() {
        // RFC 7515 appendix A.1: the JWK's `k`, and the signed example (exp 1300819380).
        let key = B64
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .expect("key");
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let verified = verify(token, &key, 1_300_819_000).expect("valid before exp");
        assert_eq!(verified.algorithm, Algorithm::Hs256);
        assert_eq!(verified.claims["iss"], "joe");
        assert_eq!(
            verify(token, &key, 1_300_819_410),
            Err(TokenError::Expired { exp: 1_300_819_380, now: 1_300_819_410 })
        );
        let mut forged = token.to_owned();
        forged.pop();
        forged.push('Y');
        assert_eq!(verify(&forged, &key, 1_300_819_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn every_algorithm_round_trips_and_keys_are_not_interchangeable() {
        let claims = serde_json::json!({"sub": "s", "scope": "a b", "permissions": ["c"]});
        for algorithm in [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512] {
            let token = sign(&claims, b"key", algorithm);
            let verified = verify(&token, b"key", 0).expect("verifies");
            assert_eq!(
                (verified.algorithm, verified.permissions.as_slice()),
                (algorithm, &["c".to_owned(), "a".into(), "b".into()][..])
            );
            assert_eq!(verify(&token, b"other", 0), Err(TokenError::BadSignature));
        }
    }

    #[test]
    fn refuses_none_and_other_algorithms_and_bad_shapes() {
        let unsigned = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(r#"{"sub":"x"}"#));
        assert_eq!(verify(&unsigned, b"k", 0), Err(TokenError::UnsupportedAlgorithm("none".into())));
        let rs = format!("{}.{}.c2ln", B64.encode(r#"{"alg":"RS256"}"#), B64.encode("{}"));
        assert_eq!(verify(&rs, b"k", 0), Err(TokenError::UnsupportedAlgorithm("RS256".into())));
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.e30", "e30.e30.e30"] {
            assert!(verify(bad, b"k", 0).is_err(), "{bad:?}");
        }
        let array_claims = {
            let head = format!("{}.{}", B64.encode(r#"{"alg":"HS256"}"#), B64.encode("[1]"));
            let sig = B64.encode(Algorithm::Hs256.mac(b"k", head.as_bytes()));
            format!("{head}.{sig}")
        };
        assert_eq!(verify(&array_claims, b"k", 0), Err(TokenError::Malformed("the claims are not a JSON object")));
        for claims in [
            serde_json::json!({"permissions": "realtime:x"}),
            serde_json::json!({"permissions": [1]}),
            serde_json::json!({"scope": ["a"]}),
            serde_json::json!({"sub": 7}),
            serde_json::json!({"exp": "soon"}),
        ] {
            let token = sign(&claims, b"k", Algorithm::Hs256);
            assert!(matches!(verify(&token, b"k", 0), Err(TokenError::InvalidClaim(_))), "{claims}");
        }
    }

    #[test]
    fn not_before_has_the_same_leeway() {
        let token = sign(&serde_json::json!({"nbf": 1000}), b"k", Algorithm::Hs256);
        assert!(verify(&token, b"k", 970).is_ok());
        assert_eq!(verify(&token, b"k", 969), Err(TokenError::NotYetValid { nbf: 1000, now: 969 }));
    }
}
