//! Signatures checked against vectors produced by the official `pusher` Node server SDK
//! (`interop/gen-vectors.cjs` wrote `tests/vectors/pusher-sdk.json`).

use base64::Engine as _;
use serde_json::Value;
use switchboard_protocol::http_auth::{RequestToVerify, body_md5, sign_request, verify_request};
use switchboard_protocol::signature::{
    encrypted_channel_secret, sign_channel, sign_user, sign_webhook, verify_channel, verify_user, verify_webhook,
};

fn vectors() -> Value {
    let text = include_str!("vectors/pusher-sdk.json");
    serde_json::from_str(text).expect("vector file is JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string in vector file")
}

#[test]
fn channel_auth_matches_sdk() {
    let v = vectors();
    let (key, secret) = (s(&v["app"]["key"]), s(&v["app"]["secret"]));
    let cases = v["channel_auth"].as_array().expect("array");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let socket_id = s(&case["socket_id"]);
        let channel = s(&case["channel"]);
        let channel_data = case["response"]["channel_data"].as_str();
        let expected = s(&case["response"]["auth"]);
        assert_eq!(sign_channel(key, secret, socket_id, channel, channel_data), expected, "{channel}");
        assert!(verify_channel(key, secret, expected, socket_id, channel, channel_data));
        assert!(!verify_channel(key, secret, expected, "1.1", channel, channel_data));
        assert!(!verify_channel("other-key", secret, expected, socket_id, channel, channel_data));
        if let Some(data) = channel_data {
            // Re-serialised presence data (Pysher PR #76) must not verify.
            let respaced = data.replace(':', ": ");
            assert!(!verify_channel(key, secret, expected, socket_id, channel, Some(&respaced)));
        }
    }
}

#[test]
fn user_auth_matches_sdk() {
    let v = vectors();
    let (key, secret) = (s(&v["app"]["key"]), s(&v["app"]["secret"]));
    for case in v["user_auth"].as_array().expect("array") {
        let socket_id = s(&case["socket_id"]);
        let user_data = s(&case["response"]["user_data"]);
        let expected = s(&case["response"]["auth"]);
        assert_eq!(sign_user(key, secret, socket_id, user_data), expected);
        assert!(verify_user(key, secret, expected, socket_id, user_data));
        assert!(!verify_user(key, "wrong", expected, socket_id, user_data));
    }
}

#[test]
fn http_request_signing_matches_sdk() {
    let v = vectors();
    let (key, secret) = (s(&v["app"]["key"]), s(&v["app"]["secret"]));
    let cases = v["http_requests"].as_array().expect("array");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let method = s(&case["method"]);
        let path = s(&case["path"]);
        let body = case["body"].as_str().map(str::as_bytes);
        let extra: Vec<(String, String)> =
            case["params"].as_object().expect("object").iter().map(|(k, v)| (k.clone(), s(v).to_owned())).collect();
        let ours = sign_request(key, secret, method, path, &extra, body, 1_700_000_000);
        let ours_query: Vec<String> = ours.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(ours_query.join("&"), s(&case["query"]), "{method} {path}");

        let theirs: Vec<(String, String)> = s(&case["query"])
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let req = RequestToVerify { method, path, params: &theirs, body: body.unwrap_or_default() };
        assert_eq!(verify_request(&req, key, secret, 1_700_000_000, 600), Ok(()));
        assert!(verify_request(&req, key, secret, 1_700_000_601, 600).is_err(), "stale timestamp accepted");
        assert!(verify_request(&req, key, "other", 1_700_000_000, 600).is_err(), "wrong secret accepted");
        if let Some(body) = body {
            let mut tampered = body.to_vec();
            tampered.push(b' ');
            let req = RequestToVerify { body: &tampered, ..req };
            assert!(verify_request(&req, key, secret, 1_700_000_000, 600).is_err(), "tampered body accepted");
        }
    }
}

#[test]
fn python_sdk_get_with_empty_body_md5_verifies() {
    // The Python `pusher` SDK adds body_md5 of the empty body to GET requests.
    let extra = vec![("body_md5".to_owned(), body_md5(b""))];
    let params = sign_request("k", "s", "GET", "/apps/1/channels", &extra, None, 1000);
    let req = RequestToVerify { method: "GET", path: "/apps/1/channels", params: &params, body: b"" };
    assert_eq!(verify_request(&req, "k", "s", 1000, 600), Ok(()));
}

#[test]
fn webhook_signatures_match_sdk() {
    let v = vectors();
    let (key, secret) = (s(&v["app"]["key"]), s(&v["app"]["secret"]));
    for case in v["webhooks"].as_array().expect("array") {
        let body = s(&case["body"]).as_bytes();
        let signature = s(&case["signature"]);
        assert_eq!(sign_webhook(secret, body), signature);
        assert!(verify_webhook(key, secret, s(&case["key"]), signature, body));
        assert!(!verify_webhook(key, secret, "nope", signature, body));
    }
}

#[test]
fn encrypted_channel_shared_secret_matches_sdk() {
    let v = vectors();
    let engine = base64::engine::general_purpose::STANDARD;
    let master = engine.decode(s(&v["app"]["encryption_master_key_base64"])).expect("base64");
    for case in v["shared_secrets"].as_array().expect("array") {
        let ours = encrypted_channel_secret(s(&case["channel"]), &master);
        assert_eq!(engine.encode(ours), s(&case["shared_secret"]));
    }
}

#[test]
fn md5_matches_node() {
    let v = vectors();
    for case in v["md5"].as_array().expect("array") {
        assert_eq!(body_md5(s(&case["input"]).as_bytes()), s(&case["md5"]));
    }
}

#[test]
fn encrypted_events_from_the_sdk_decrypt() {
    use switchboard_protocol::encryption::{decrypt, encrypt};
    let v = vectors();
    let engine = base64::engine::general_purpose::STANDARD;
    let master = engine.decode(s(&v["app"]["encryption_master_key_base64"])).expect("base64");
    let cases = v["encrypted_events"].as_array().expect("array");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let key = encrypted_channel_secret(s(&case["channel"]), &master);
        assert_eq!(decrypt(&key, s(&case["payload"])).expect("decrypts"), s(&case["data"]));
        let wrong = encrypted_channel_secret("private-encrypted-other", &master);
        assert!(decrypt(&wrong, s(&case["payload"])).is_err());
        // and what we seal, we open
        let sealed = encrypt(&key, s(&case["data"]), [3u8; 24]);
        assert_eq!(decrypt(&key, &sealed).expect("round trip"), s(&case["data"]));
    }
}

#[test]
fn extreme_timestamps_are_refused_not_overflowed() {
    for ts in ["-9223372036854775808", "9223372036854775807", "1e9", ""] {
        let params = vec![
            ("auth_key".to_owned(), "k".to_owned()),
            ("auth_timestamp".to_owned(), ts.to_owned()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("auth_signature".to_owned(), "00".to_owned()),
        ];
        let req = RequestToVerify { method: "GET", path: "/apps/1/channels", params: &params, body: b"" };
        assert!(verify_request(&req, "k", "s", 1_700_000_000, 600).is_err(), "{ts}");
    }
}
