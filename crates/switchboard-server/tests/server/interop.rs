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

/// The official socket.io-client against the RealtimeX endpoint, with the `pusher` SDK
/// signing and publishing and pusher-js on a shared presence channel
/// (`interop/socketio.test.mjs`).
#[tokio::test]
async fn socket_io_client_interop() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let modules = format!("{root}/interop/node_modules/socket.io-client");
    assert!(
        std::path::Path::new(&modules).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let config = switchboard_server::ServerConfig {
        realtimex_ping_interval_ms: 300,
        realtimex_ping_timeout_ms: 400,
        ..config_with(app())
    };
    let server = start(config).await;
    let addr = server.local_addr();
    let stdout = node_test(
        "interop/socketio.test.mjs",
        &[
            ("SWITCHBOARD_HOST", addr.ip().to_string()),
            ("SWITCHBOARD_PORT", addr.port().to_string()),
            ("SWITCHBOARD_APP_ID", APP_ID.into()),
            ("SWITCHBOARD_APP_KEY", KEY.into()),
            ("SWITCHBOARD_APP_SECRET", SECRET.into()),
            ("SWITCHBOARD_PING_MS", "300".into()),
        ],
    )
    .await;
    assert!(stdout.contains("ℹ pass 8"), "unexpected node output:\n{stdout}");
    server.shutdown().await;
}

/// The official python-socketio client against the RealtimeX endpoint
/// (`interop/socketio_peer.py`, in the venv scripts/test makes).
#[tokio::test]
async fn python_socketio_client_interop() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let python = format!("{root}/interop/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "interop/.venv is missing: scripts/test makes it (python3 -m venv interop/.venv && interop/.venv/bin/pip install -r interop/requirements.txt)"
    );
    let config = switchboard_server::ServerConfig {
        realtimex_ping_interval_ms: 300,
        realtimex_ping_timeout_ms: 400,
        ..config_with(app())
    };
    let server = start(config).await;
    let addr = server.local_addr();
    let child = tokio::process::Command::new(&python)
        .arg("interop/socketio_peer.py")
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .env("SWITCHBOARD_APP_KEY", KEY)
        .env("SWITCHBOARD_APP_SECRET", SECRET)
        .env("SWITCHBOARD_PING_MS", "300")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the venv's python runs");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the python peer finishes within 120 s")
        .expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "socketio_peer.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with("ok 6"), "unexpected output:\n{stdout}\n{stderr}");
    server.shutdown().await;
}

/// The seed RealtimeX Python SDK itself (`interop/seed_realtimex_peer.py`): public channels,
/// the bindings its README documents (our mirror events), a published event, and a clear
/// refusal of the private channel it cannot authorize (it drops `auth`).
#[tokio::test]
async fn the_seed_realtimex_python_sdk_on_our_endpoint() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let python = format!("{root}/interop/.venv/bin/python");
    assert!(std::path::Path::new(&python).exists(), "interop/.venv is missing: scripts/test makes it");
    let server = start_default().await;
    let addr = server.local_addr();
    let mut child = tokio::process::Command::new(&python)
        .arg("interop/seed_realtimex_peer.py")
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .env("SWITCHBOARD_APP_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the venv's python runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("the seed subscribes");
    assert_eq!(first.expect("read").as_deref(), Some("subscribed"));
    let (status, _) = Api::new(&server)
        .post(
            "/apps/1000/events",
            serde_json::json!({"name": "headline", "channels": ["news"], "data": "{\"title\":\"hi\"}"}),
        )
        .await;
    assert_eq!(status, 200);
    let last = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("the seed finishes");
    let output =
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("exits").expect("ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(last.expect("read").as_deref(), Some("ok"), "seed peer failed:\n{stderr}");
    assert!(output.status.success(), "{stderr}");
    server.shutdown().await;
}
