//! The official pusher-js client and `pusher` Node SDK against our server
//! (`interop/pusher-js.test.mjs`, run with node's test runner).

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn pusher_js_and_node_sdk_interop() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let modules = format!("{root}/interop/node_modules/pusher-js");
    assert!(
        std::path::Path::new(&modules).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let server = start_default().await;
    let addr = server.local_addr();
    let stdout = node_test(
        "interop/pusher-js.test.mjs",
        &[
            ("SWITCHBOARD_HOST", addr.ip().to_string()),
            ("SWITCHBOARD_PORT", addr.port().to_string()),
            ("SWITCHBOARD_APP_ID", APP_ID.into()),
            ("SWITCHBOARD_APP_KEY", KEY.into()),
            ("SWITCHBOARD_APP_SECRET", SECRET.into()),
        ],
    )
    .await;
    assert!(!stdout.contains("ℹ pass 0"), "unexpected node output:\n{stdout}");
    server.shutdown().await;
}

/// The official Realtime Pub/Sub JS client against the gateway endpoint
/// (`interop/gateway.test.mjs`).
#[tokio::test]
async fn realtime_pubsub_js_client_interop() {
    use switchboard_protocol::gateway::jwt::{self, Algorithm};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let modules = format!("{root}/interop/node_modules/realtime-pubsub-client");
    assert!(
        std::path::Path::new(&modules).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let server = start_default().await;
    let addr = server.local_addr();
    let minted = jwt::sign(
        &serde_json::json!({"sub": "minted-by-rust", "permissions": ["realtime:publisher:write:topic:*"]}),
        SECRET.as_bytes(),
        Algorithm::Hs384,
    );
    let stdout = node_test(
        "interop/gateway.test.mjs",
        &[
            ("SWITCHBOARD_HOST", addr.ip().to_string()),
            ("SWITCHBOARD_PORT", addr.port().to_string()),
            ("SWITCHBOARD_APP_ID", APP_ID.into()),
            ("SWITCHBOARD_APP_SECRET", SECRET.into()),
            ("SWITCHBOARD_RUST_TOKEN", minted),
        ],
    )
    .await;
    assert!(stdout.contains("ℹ pass 7"), "unexpected node output:\n{stdout}");
    server.shutdown().await;
}

/// Run one node test file (node's test runner) from the repository root with `env`; its
/// stdout, after asserting that it passed with no failure.
async fn node_test(file: &str, env: &[(&str, String)]) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut command = tokio::process::Command::new("node");
    command.args(["--test", "--test-reporter=spec", file]).current_dir(root);
    for (name, value) in env {
        command.env(name, value);
    }
    let child =
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().expect("node is installed");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("interop run finishes within 120 s")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{file} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ℹ fail 0"), "unexpected node output:\n{stdout}");
    stdout
}
