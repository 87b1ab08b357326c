//! Interop: a pusher-js client (under Node) and ours on one presence channel of our server
//! exchange client events, and each sees the other as a member.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use switchboard::PresenceUser;

use crate::common::*;

#[tokio::test]
async fn pusher_js_and_switchboard_meet_on_a_presence_channel() {
    let server = server().await;
    meet(&server, &server).await;
    server.shutdown().await;
}

/// The same across a two-node cluster: ours on one node, pusher-js on the other, one
/// `redis-server` (started here on a unix socket) between them.
#[tokio::test]
async fn pusher_js_and_switchboard_meet_across_two_scaled_out_nodes() {
    let dir = std::env::temp_dir().join(format!("sb-client-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let socket = dir.join("redis.sock");
    /// Killed however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _redis = Killed(
        std::process::Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; .ci/run installs it)"),
    );
    for _ in 0..250 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scaling = switchboard_server::ScalingConfig {
        enabled: true,
        url: format!("unix://{}", socket.display()),
        ..Default::default()
    };
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let config = switchboard_server::ServerConfig { scaling: scaling.clone(), ..config(0, app()) };
        nodes.push(switchboard_server::Server::start(config).await.expect("node joins the cluster"));
    }
    meet(&nodes[0], &nodes[1]).await;
    for node in nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Our client joins on `rust_server`, pusher-js on `js_server`; each sees the other as a
/// member and gets the other's client event.
async fn meet(rust_server: &switchboard_server::RunningServer, js_server: &switchboard_server::RunningServer) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    assert!(
        std::path::Path::new(&format!("{root}/interop/node_modules/pusher-js")).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let channel_name = "presence-interop";
    let client = connect(rust_server).await;
    let channel = client
        .subscribe_presence(channel_name, PresenceUser::new("rust", json!({"name": "switchboard"})))
        .await
        .expect("joined");
    let mut events = channel.events();
    let addr = js_server.local_addr();
    let node = tokio::process::Command::new("node")
        .arg("interop/presence-peer.mjs")
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .env("SWITCHBOARD_APP_KEY", KEY)
        .env("SWITCHBOARD_APP_SECRET", SECRET)
        .env("SWITCHBOARD_CHANNEL", channel_name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");

    let added = next_named(&mut events, "pusher:member_added").await;
    assert_eq!(added.json::<serde_json::Value>().expect("json")["user_id"], "js");
    assert_eq!(channel.members().get("js").expect("js is a member").info["name"], "pusher-js");
    let hello = next_named(&mut events, "client-hello").await;
    assert_eq!(hello.user_id(), Some("js"));
    assert_eq!(hello.json::<serde_json::Value>().expect("json")["from"], "js");
    channel.trigger("hello", &json!({"from": "rust"})).await.expect("whisper");

    let output = tokio::time::timeout(Duration::from_secs(20), node.wait_with_output())
        .await
        .expect("node finishes")
        .expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pusher-js peer failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("OK: hello from rust"), "{stdout}");
    assert!(stdout.contains("\"rust\""), "pusher-js listed rust among the members at subscribe: {stdout}");
}

/// The official Realtime Pub/Sub JS client and ours, RPC both ways through our server: we
/// request and the JS client replies; the JS client publishes a question and we reply.
#[tokio::test]
async fn realtime_pubsub_js_client_and_ours_answer_each_other() {
    use switchboard::gateway::{GatewayClient, GatewayOptions, Incoming, PublishOptions};
    use switchboard_protocol::gateway::jwt::{self, Algorithm};
    use tokio::io::{AsyncBufReadExt, BufReader};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    assert!(
        std::path::Path::new(&format!("{root}/interop/node_modules/realtime-pubsub-client")).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let server = server().await;
    let addr = server.local_addr();
    let claims = json!({"sub": "rust", "permissions": ["realtime:publisher:write:topic:*"]});
    let url =
        format!("ws://{addr}/apps/{APP_ID}?access_token={}", jwt::sign(&claims, SECRET.as_bytes(), Algorithm::Hs512));
    let client = GatewayClient::connect(GatewayOptions::new(url)).await.expect("session");
    let topic = "interop-rpc";
    client.subscribe(topic).expect("subscribe");
    let replier = client.clone();
    client.on(&format!("{topic}.js-asks"), move |event| {
        let incoming = Incoming::from_event(event).expect("delivery");
        replier.reply(&incoming, &json!({"from": "rust", "got": incoming.payload}), "ok").expect("reply");
    });
    let mut node = tokio::process::Command::new("node")
        .arg("interop/gateway-peer.mjs")
        .current_dir(root)
        .env("SWITCHBOARD_HOST", addr.ip().to_string())
        .env("SWITCHBOARD_PORT", addr.port().to_string())
        .env("SWITCHBOARD_APP_ID", APP_ID)
        .env("SWITCHBOARD_APP_SECRET", SECRET)
        .env("SWITCHBOARD_TOPIC", topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut output = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
            if line == "READY" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the JS peer did not get ready:\n{output}");
    let answer = client
        .request(&json!({"question": "and you?"}), PublishOptions::new().message_type("rust-asks"))
        .expect("request")
        .reply()
        .await
        .expect("the JS client replied");
    assert_eq!(answer.data, json!({"from": "js", "got": {"question": "and you?"}}));
    let rest = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
        }
        node.wait().await
    })
    .await
    .expect("node finishes")
    .expect("status");
    assert!(rest.success(), "the JS peer failed:\n{output}");
    assert!(
        output.contains(r#"OK: {"data":{"from":"rust","got":{"question":"who are you?"}},"status":"ok""#),
        "{output}"
    );
    client.disconnect().await;
    server.shutdown().await;
}

/// Our RealtimeX client against a stand-in written on the official `socket.io` Node server
/// (`interop/realtimex-standin.mjs`): a Socket.IO server that is not ours. Signatures over
/// its `socket.id`, presence, a published event, acks both ways, a binary event, the
/// heartbeat, a CONNECT_ERROR, and a server disconnect that stops the client.
#[tokio::test]
async fn our_realtimex_client_against_a_socket_io_server() {
    use switchboard::{Client, ConnectionState, realtimex};
    use tokio::io::{AsyncBufReadExt, BufReader};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    assert!(
        std::path::Path::new(&format!("{root}/interop/node_modules/socket.io")).exists(),
        "interop/node_modules is missing: run `npm ci --prefix interop` (scripts/test does it)"
    );
    let mut node = tokio::process::Command::new("node")
        .arg("interop/realtimex-standin.mjs")
        .current_dir(root)
        .env("SWITCHBOARD_APP_KEY", KEY)
        .env("SWITCHBOARD_APP_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let stdout = node.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("stand-in starts");
    let port: u16 = first
        .expect("read")
        .and_then(|line| line.strip_prefix("listening ").map(str::to_owned))
        .and_then(|port| port.parse().ok())
        .expect("the stand-in prints its port");
    let options = |key: &str| {
        realtimex::options(key)
            .host("127.0.0.1")
            .port(port)
            .tls(false)
            .secret(SECRET)
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(400))
            .subscribe_timeout(WAIT)
            .build()
            .expect("options")
    };
    let client = Client::new(options(KEY));
    let mut global = client.events();
    let private = client.subscribe("private-x").await.expect("signed over socket.io's socket.id");
    let mut private_events = private.events();
    let socket_id = client.socket_id().expect("connected");
    assert!(!socket_id.contains('.'), "socket.io's own id, not a Pusher one: {socket_id}");
    let room =
        client.subscribe_presence("presence-r", PresenceUser::new("rust", json!({"n": 1}))).await.expect("joined");
    assert_eq!(room.members().me().expect("me").id, "rust");
    assert_eq!(room.members().count(), 1);

    let published = json!({"action": "publish", "channel": "private-x", "event": "hello", "data": {"n": 1}});
    assert_eq!(client.emit_with_ack("standin:do", published).await.expect("ack"), json!({"ok": true}));
    assert_eq!(next_named(&mut private_events, "hello").await.data(), Some(r#"{"n":1}"#));
    // The server asks, our client answers (after queueing the event for the listeners).
    let asked = client.emit_with_ack("standin:do", json!({"action": "ask", "q": 7})).await.expect("ack");
    assert_eq!(asked, json!({"ok": true, "reply": {"ok": true}}));
    assert_eq!(next_named(&mut global, "server-question").await.data(), Some(r#"{"q":7}"#));
    // A channel event with an ack request, and a binary one, reach the channel.
    let asked = json!({"action": "ask-channel", "channel": "private-x", "q": 8});
    assert_eq!(
        client.emit_with_ack("standin:do", asked).await.expect("ack"),
        json!({"ok": true, "reply": {"ok": true}})
    );
    assert_eq!(next_named(&mut private_events, "asked").await.data(), Some(r#"{"q":8}"#));
    client.emit_with_ack("standin:do", json!({"action": "binary-channel", "channel": "private-x"})).await.expect("ack");
    assert_eq!(next_named(&mut private_events, "blob").await.data(), Some("BAUG"));
    client.emit_with_ack("standin:do", json!({"action": "binary"})).await.expect("ack");
    assert_eq!(next_named(&mut global, "file").await.data(), Some(r#"{"body":"AQID","name":"blob"}"#));
    // Heartbeat 300 + 400 ms: answered, so still connected well past it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(client.state(), ConnectionState::Connected { .. }));

    let refused = Client::new(options("wrong-key"));
    let error = tokio::time::timeout(WAIT, refused.connected()).await.expect("in time").expect_err("refused");
    assert_eq!(error.code(), Some(4001), "{error}");

    let mut states = client.state_changes();
    client.emit_with_ack("standin:do", json!({"action": "kick"})).await.expect("ack");
    let state = tokio::time::timeout(WAIT, states.wait_for(ConnectionState::is_final)).await.expect("in time");
    assert!(matches!(*state.expect("state"), ConnectionState::Failed { code: Some(4009), .. }));
    drop(node.stdin.take()); // the stand-in exits when stdin closes
    let _ = tokio::time::timeout(Duration::from_secs(5), node.wait()).await;
}
