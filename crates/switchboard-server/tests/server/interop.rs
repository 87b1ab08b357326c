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
    let child = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "interop/pusher-js.test.mjs"])
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .env("SWITCHBOARD_APP_ID", APP_ID)
        .env("SWITCHBOARD_APP_KEY", KEY)
        .env("SWITCHBOARD_APP_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("interop run finishes within 120 s")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pusher-js interop failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ℹ fail 0") && !stdout.contains("ℹ pass 0"), "unexpected node output:\n{stdout}");
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
    let child = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "interop/gateway.test.mjs"])
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .env("SWITCHBOARD_APP_ID", APP_ID)
        .env("SWITCHBOARD_APP_SECRET", SECRET)
        .env("SWITCHBOARD_RUST_TOKEN", minted)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("interop run finishes within 120 s")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gateway interop failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ℹ fail 0") && stdout.contains("ℹ pass 7"), "unexpected node output:\n{stdout}");
    server.shutdown().await;
}
