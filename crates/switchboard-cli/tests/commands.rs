//! The client commands end to end: line-mode chat between two processes through the
//! embedded server, the TUI in a real terminal (tmux), listen and trigger, channels and
//! users, TLS through a terminating proxy, and bad configuration. Every server binds
//! 127.0.0.1 on a free port.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const WAIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(std::env::temp_dir()).env("RUST_LOG", "warn").kill_on_drop(true);
    for name in ["REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET", "REVERB_HOST", "REVERB_PORT", "REVERB_SCHEME"]
    {
        cmd.env_remove(name);
    }
    cmd
}

/// A tmux server of a test's own (`-L` socket name) running one session, `ada`, 110x24 or
/// as given; killed when dropped, so a failed TUI test leaves no terminal or chat behind.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `cmd` in session `ada`, `width` x `height`, on a server named after `name`.
    fn start(name: &str, width: u16, height: u16, cmd: &str) -> Tmux {
        let version = std::process::Command::new("tmux").arg("-V").output();
        assert!(version.is_ok_and(|o| o.status.success()), "tmux is needed for the TUI tests (.ci/run installs it)");
        let tmux = Tmux { socket: format!("switchboard-{name}-{}", std::process::id()) };
        tmux.run(&["new-session", "-d", "-s", "ada", "-x", &width.to_string(), "-y", &height.to_string(), cmd]);
        tmux
    }

    /// Run a tmux command on this server; its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .env("TERM", "xterm-256color") // CI has no terminal of its own
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Type into the session (`keys` as tmux send-keys takes them).
    fn keys(&self, keys: &[&str]) {
        self.run(&[&["send-keys", "-t", "ada"], keys].concat());
    }

    /// What the session's screen shows now.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "ada"])
    }

    /// The screen, once it shows `needle`; panics after WAIT.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.screen();
            if now.contains(needle) {
                return now;
            }
            assert!(tokio::time::Instant::now() < deadline, "the screen never showed {needle:?}:\n{now}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

struct Proc {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
    err: Lines<BufReader<ChildStderr>>,
}

fn spawn(args: &[&str]) -> Proc {
    let mut child =
        command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let err = BufReader::new(child.stderr.take().expect("stderr")).lines();
    Proc { child, out, err }
}

/// Read lines until one contains `needle`; panics after WAIT.
async fn line_with(lines: &mut Lines<BufReader<impl tokio::io::AsyncRead + Unpin>>, needle: &str) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return Some(line);
            }
            seen.push(line);
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!("no line with {needle:?}; saw {seen:?}"),
    }
}

impl Proc {
    async fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write");
        stdin.flush().await.expect("flush");
    }

    async fn exit_code(mut self) -> i32 {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("exits in time").expect("status");
        status.code().unwrap_or(-1)
    }
}

#[tokio::test]
async fn line_mode_chat_between_two_processes_through_the_embedded_server() {
    let port = free_port().to_string();
    let mut bob = spawn(&["chat", "--port", &port, "--name", "bob"]);
    line_with(&mut bob.err, "started the embedded server").await;
    line_with(&mut bob.err, "in room lobby").await;
    let mut alice = spawn(&["chat", "--port", &port, "--name", "alice"]);
    line_with(&mut alice.err, "alice in room lobby (2 members)").await;
    assert_eq!(line_with(&mut alice.out, "* members").await, "* members of lobby: bob, alice", "on joining");
    line_with(&mut bob.out, "* alice joined").await;

    alice.say("hello from alice").await;
    assert_eq!(line_with(&mut bob.out, "hello").await, "alice: hello from alice");
    line_with(&mut bob.err, "~ alice is typing").await;
    alice.say("/who").await;
    assert_eq!(line_with(&mut alice.out, "* members").await, "* members of lobby: bob, alice");
    bob.say("hi alice").await;
    assert_eq!(line_with(&mut alice.out, "hi alice").await, "bob: hi alice");

    alice.say("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    line_with(&mut bob.out, "* alice left").await;
    assert_eq!(bob.exit_code().await, 0, "end of input ends line mode");
}

#[tokio::test]
async fn listen_trigger_channels_and_users_end_to_end() {
    let config = switchboard_server::ServerConfig { port: 0, ..switchboard_server::ServerConfig::default() };
    let server = switchboard_server::Server::start(config).await.expect("server");
    let port = server.local_addr().port().to_string();
    let mut listen = spawn(&["listen", "news", "private-room", "presence-watch", "--port", &port]);
    line_with(&mut listen.err, "subscribed to presence-watch").await;

    let out = command(&["trigger", "news", "headline", r#"{"title":"hi"}"#, "--port", &port])
        .output()
        .await
        .expect("trigger");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = line_with(&mut listen.out, "headline").await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(json["channel"], "news");
    assert_eq!(json["data"]["title"], "hi");
    assert!(json["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{json}");

    let mut trigger = command(&["trigger", "news", "from-stdin", "-", "--port", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    trigger.stdin.take().expect("stdin").write_all(b"plain text").await.expect("write");
    assert!(trigger.wait().await.expect("status").success());
    let line = line_with(&mut listen.out, "from-stdin").await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&line).expect("json")["data"], "plain text");

    let out = command(&["trigger", "private-room", "typing", r#"{"on":true}"#, "--client", "--port", &port])
        .output()
        .await
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = line_with(&mut listen.out, "client-typing").await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&line).expect("json")["data"]["on"], true);

    // On a presence channel, trigger --client joins as listen does (it exited 1 before).
    let out = command(&["trigger", "presence-watch", "wave", r#"{"hand":"left"}"#, "--client", "--port", &port])
        .output()
        .await
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = line_with(&mut listen.out, "client-wave").await;
    let wave: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(wave["data"]["hand"], "left");
    assert!(wave["user_id"].as_str().is_some_and(|id| id.starts_with("switchboard-trigger-")), "{wave}");

    let out = command(&["channels", "--port", &port]).output().await.expect("run");
    let channels: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(channels["channels"]["news"]["subscription_count"], 1);

    let mut chat = spawn(&["chat", "--port", &port, "--name", "carol", "--room", "ops"]);
    line_with(&mut chat.err, "in room ops").await;
    let out = command(&["users", "presence-chat.ops", "--port", &port]).output().await.expect("run");
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(users["users"][0].as_str().is_some_and(|id| id.starts_with("carol-")), "{users}");
    assert_eq!(chat.exit_code().await, 0);
    drop(listen);
    server.shutdown().await;
}

#[tokio::test]
async fn client_commands_refuse_bad_configuration_with_exit_code_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (&["listen", "news"], &[("REVERB_PORT", "eighty")], "REVERB_PORT"),
        (&["chat", "--token", "t"], &[], "--auth-endpoint"),
        (&["trigger", "news", "e", "--url", "http://nowhere"], &[], "--url"),
        (&["users", "news"], &[], "presence-"),
    ];
    for (args, env, needle) in cases {
        let mut cmd = command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[tokio::test]
async fn the_tui_shows_members_typing_and_messages_in_a_terminal() {
    let port = free_port().to_string();
    let log = std::env::temp_dir().join(format!("switchboard-tui-{}.log", std::process::id()));
    let cmd =
        format!("env -u REVERB_PORT -u REVERB_HOST {BIN} chat --port {port} --name ada --log-file {}", log.display());
    let tmux = Tmux::start("test", 100, 20, &cmd);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !tmux.screen().contains("embedded server on") {
        assert!(tokio::time::Instant::now() < deadline, "the TUI did not start:\n{}", tmux.screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut bob = spawn(&["chat", "--port", &port, "--name", "bob"]);
    line_with(&mut bob.err, "in room lobby (2 members)").await;
    bob.say("hello tui").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = tmux.screen();
        if now.contains("bob: hello tui") && now.contains("members (2)") && now.contains("ada (you)") {
            assert!(now.contains("│bob"), "bob in the member list:\n{now}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "screen never showed bob's message:\n{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Typing shows in the other terminal's member list.
    tmux.keys(&["abc"]);
    line_with(&mut bob.err, "~ ada is typing").await;
    tmux.keys(&["Enter"]);
    assert_eq!(line_with(&mut bob.out, "abc").await, "ada: abc");
    tmux.keys(&["/quit", "Enter"]);
    line_with(&mut bob.out, "* ada left").await;
    drop(tmux);
    let _ = bob.exit_code().await;
}

#[tokio::test]
async fn line_mode_chat_over_phoenix_through_the_embedded_server() {
    let port = free_port().to_string();
    let mut bob = spawn(&["chat", "--protocol", "phoenix", "--port", &port, "--name", "bob"]);
    line_with(&mut bob.err, "started the embedded server").await;
    line_with(&mut bob.err, "in room lobby").await;
    let url = format!("ws://127.0.0.1:{port}/socket");
    let mut alice = spawn(&["chat", "--url", &url, "--name", "alice"]);
    line_with(&mut alice.err, "alice in room lobby").await;
    assert_eq!(line_with(&mut alice.out, "* members").await, "* members of lobby: alice, bob", "on joining");
    line_with(&mut bob.out, "* alice joined").await;
    alice.say("hello over phoenix").await;
    assert_eq!(line_with(&mut bob.out, "hello").await, "alice: hello over phoenix");
    line_with(&mut bob.err, "~ alice is typing").await;
    alice.say("/who").await;
    assert_eq!(line_with(&mut alice.out, "* members").await, "* members of lobby: alice, bob");
    alice.say("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    line_with(&mut bob.out, "* alice left").await;
    assert_eq!(bob.exit_code().await, 0);
}

#[tokio::test]
async fn a_realtimex_chat_and_a_pusher_chat_share_a_room() {
    let port = free_port().to_string();
    let mut bob = spawn(&["chat", "--port", &port, "--name", "bob"]);
    line_with(&mut bob.err, "started the embedded server").await;
    line_with(&mut bob.err, "in room lobby").await;
    // The seed SDK's URL form: the protocol comes from ?api_key=.
    let url = format!("http://127.0.0.1:{port}?api_key=switchboard-key");
    let mut alice = spawn(&["chat", "--url", &url, "--name", "alice"]);
    line_with(&mut alice.err, "alice in room lobby (2 members)").await;
    assert_eq!(line_with(&mut alice.out, "* members").await, "* members of lobby: bob, alice");
    line_with(&mut bob.out, "* alice joined").await;
    alice.say("hello over socket.io").await;
    assert_eq!(line_with(&mut bob.out, "hello").await, "alice: hello over socket.io");
    line_with(&mut bob.err, "~ alice is typing").await;
    bob.say("hi alice").await;
    assert_eq!(line_with(&mut alice.out, "hi alice").await, "bob: hi alice");
    alice.say("/quit").await;
    assert_eq!(alice.exit_code().await, 0);
    line_with(&mut bob.out, "* alice left").await;
    assert_eq!(bob.exit_code().await, 0);
}

#[tokio::test]
async fn listen_and_trigger_client_over_realtimex() {
    let config = switchboard_server::ServerConfig { port: 0, ..switchboard_server::ServerConfig::default() };
    let server = switchboard_server::Server::start(config).await.expect("server");
    let port = server.local_addr().port().to_string();
    let mut listen = spawn(&["listen", "news", "private-room", "--protocol", "realtimex", "--port", &port]);
    line_with(&mut listen.err, "subscribed to private-room").await;
    // Published over the Pusher HTTP API, received over Socket.IO.
    let out = command(&["trigger", "news", "headline", r#"{"title":"hi"}"#, "--port", &port])
        .output()
        .await
        .expect("trigger");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = line_with(&mut listen.out, "headline").await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(
        (json["channel"].clone(), json["data"]["title"].clone()),
        (serde_json::json!("news"), serde_json::json!("hi"))
    );
    // A client event sent over RealtimeX too.
    let out = command(&[
        "trigger",
        "private-room",
        "typing",
        r#"{"on":true}"#,
        "--client",
        "--protocol",
        "realtimex",
        "--port",
        &port,
    ])
    .output()
    .await
    .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = line_with(&mut listen.out, "client-typing").await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&line).expect("json")["data"]["on"], true);
    drop(listen);
    server.shutdown().await;
}

/// A TLS-terminating proxy in front of `backend`, as Reverb and `switchboard serve` are run
/// in production (behind nginx or Caddy), with a certificate for 127.0.0.1 signed by a fresh
/// CA. Returns the proxy's port and the CA's PEM.
async fn tls_proxy(backend: std::net::SocketAddr) -> (u16, String) {
    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer, pki_types::PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server cert");

    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (a client that does not trust the CA) just ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, ca_cert.pem())
}

#[tokio::test]
async fn listen_over_tls_trusts_the_system_roots_and_nothing_else() {
    let config = switchboard_server::ServerConfig { port: 0, ..switchboard_server::ServerConfig::default() };
    let server = switchboard_server::Server::start(config).await.expect("server");
    let (tls_port, ca_pem) = tls_proxy(server.local_addr()).await;
    let tls_port = tls_port.to_string();
    let dir = std::env::temp_dir().join(format!("switchboard-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write CA");
    let listen_args = ["listen", "news", "--scheme", "wss", "--host", "127.0.0.1", "--port", &tls_port];

    // rustls with the system's roots: the unknown CA is refused, the reason is said, and the
    // client backs off and retries.
    let mut untrusting = command(&listen_args)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = BufReader::new(untrusting.stderr.take().expect("stderr")).lines();
    let refused = line_with(&mut err, "certificate").await;
    assert!(refused.contains("invalid peer certificate: UnknownIssuer") && refused.contains("retrying"), "{refused}");
    drop(untrusting);

    // The same roots, with the CA added the standard way (SSL_CERT_FILE, read by
    // rustls-native-certs): connected over TLS, events arrive.
    let mut listen = spawn_with_env(&listen_args, &[("SSL_CERT_FILE", ca_file.to_str().expect("path"))]);
    line_with(&mut listen.err, "subscribed to news").await;
    let port = server.local_addr().port().to_string();
    let out = command(&["trigger", "news", "over-tls", r#"{"secure":true}"#, "--port", &port])
        .output()
        .await
        .expect("trigger");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = line_with(&mut listen.out, "over-tls").await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&line).expect("json")["data"]["secure"], true);
    drop(listen);
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown().await;
}

fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = command(args);
    cmd.envs(env.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let err = BufReader::new(child.stderr.take().expect("stderr")).lines();
    Proc { child, out, err }
}

// A pipe that reads slower than events arrive: `listen` waits for it, the client stops
// reading the socket, and the backpressure reaches the server; every line comes, in order.
#[tokio::test]
async fn listen_into_a_slow_pipe_loses_nothing() {
    const EVENTS: usize = 20_000;
    // The server may queue them all for the slow socket (its default closes a socket that
    // falls 1,000 frames behind, which is the server's policy, not the client's).
    let config = switchboard_server::ServerConfig {
        port: 0,
        max_queued_messages: EVENTS + 1_000,
        ..switchboard_server::ServerConfig::default()
    };
    let server = switchboard_server::Server::start(config).await.expect("server");
    let port = server.local_addr().port().to_string();
    let mut listen = spawn(&["listen", "firehose", "--port", &port]);
    line_with(&mut listen.err, "subscribed to firehose").await;
    let app = switchboard_server::AppConfig::default();
    let publisher =
        switchboard::Publisher::new(&format!("http://{}", server.local_addr()), &app.id, &app.key, &app.secret)
            .expect("publisher");
    let publishing = tokio::spawn(async move {
        for start in (0..EVENTS).step_by(10) {
            let batch: Vec<switchboard::pusher::publisher::BatchEvent> = (start..start + 10)
                .map(|n| switchboard::pusher::publisher::BatchEvent {
                    channel: "firehose".into(),
                    name: "tick".into(),
                    data: format!(r#"{{"n":{n}}}"#),
                    socket_id: None,
                })
                .collect();
            publisher.trigger_batch(&batch).await.expect("publish");
        }
    });
    // Not read at all for a second (the pipe fills), then read slowly.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let read = async {
        for expected in 0..EVENTS {
            let line = listen.out.next_line().await.expect("read").expect("a line");
            let json: serde_json::Value = serde_json::from_str(&line).expect("json");
            assert_eq!(json["data"]["n"], expected, "in order, none lost: {line}");
            if expected.is_multiple_of(200) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read).await.expect("every line in time");
    publishing.await.expect("published");
    drop(listen);
    server.shutdown().await;
}

// `listen … | head`: a closed stdout ends listen quietly, with success.
#[tokio::test]
async fn listen_ends_quietly_when_its_output_is_closed() {
    let config = switchboard_server::ServerConfig { port: 0, ..switchboard_server::ServerConfig::default() };
    let server = switchboard_server::Server::start(config).await.expect("server");
    let port = server.local_addr().port().to_string();
    let mut listen = spawn(&["listen", "news", "--port", &port]);
    line_with(&mut listen.err, "subscribed to news").await;
    let Proc { mut child, out, mut err } = listen;
    drop(out); // the reading end of the pipe is gone
    let app = switchboard_server::AppConfig::default();
    let publisher =
        switchboard::Publisher::new(&format!("http://{}", server.local_addr()), &app.id, &app.key, &app.secret)
            .expect("publisher");
    publisher.trigger(&["news"], "headline", &"x", None).await.expect("publish");
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("exits in time").expect("status");
    assert_eq!(status.code(), Some(0));
    let mut rest = Vec::new();
    while let Ok(Some(line)) = err.next_line().await {
        rest.push(line);
    }
    assert!(!rest.iter().any(|l| l.contains("panicked")), "{rest:?}");
    server.shutdown().await;
}

// A final close after the handshake (here 4009, as terminate_connections sends): listen
// exits with code 3 so a supervisor restarts it, instead of waiting for ever.
#[tokio::test]
async fn listen_exits_3_when_the_server_ends_the_connection_for_good() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_websockets::{CloseCode, Message, ServerBuilder};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok((_, mut ws)) = ServerBuilder::new().accept(stream).await else { return };
                let hello = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":120}"}"#;
                let _ = ws.send(Message::text(hello)).await;
                while let Some(Ok(m)) = ws.next().await {
                    if m.as_text().is_some_and(|t| t.contains("pusher:subscribe")) {
                        break;
                    }
                }
                let ok = r#"{"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"}"#;
                let error = r#"{"event":"pusher:error","data":{"code":4009,"message":"terminated"}}"#;
                let _ = ws.send(Message::text(ok)).await;
                let _ = ws.send(Message::text(error)).await;
                let _ = ws.send(Message::close(CloseCode::try_from(4009).ok(), "terminated")).await;
                while ws.next().await.is_some() {}
            });
        }
    });
    let mut listen = spawn(&["listen", "news", "--port", &port]);
    line_with(&mut listen.err, "subscribed to news").await;
    let message = line_with(&mut listen.err, "ended for good").await;
    assert!(message.contains("4009"), "{message}");
    assert_eq!(listen.exit_code().await, 3);
}

// A server that sends events for a channel listen never subscribed to: they are not printed.
#[tokio::test]
async fn listen_prints_only_the_channels_it_subscribed_to() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_websockets::{Message, ServerBuilder};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else { return };
        let Ok((_, mut ws)) = ServerBuilder::new().accept(stream).await else { return };
        let hello =
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":120}"}"#;
        let _ = ws.send(Message::text(hello)).await;
        while let Some(Ok(m)) = ws.next().await {
            if m.as_text().is_some_and(|t| t.contains("pusher:subscribe")) {
                break;
            }
        }
        for frame in [
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"}"#,
            r#"{"event":"before","channel":"news","data":"{}"}"#,
            r#"{"event":"forged","channel":"private-intruder","data":"{}"}"#,
            r#"{"event":"after","channel":"news","data":"{}"}"#,
        ] {
            let _ = ws.send(Message::text(frame)).await;
        }
        while ws.next().await.is_some() {}
    });
    let mut listen = spawn(&["listen", "news", "--port", &port]);
    let first = line_with(&mut listen.out, "\"news\"").await;
    assert!(first.contains("before"), "{first}");
    let second = tokio::time::timeout(WAIT, listen.out.next_line()).await.expect("in time").expect("read");
    assert!(second.as_deref().is_some_and(|l| l.contains("after")), "the forged event was skipped: {second:?}");
}

#[tokio::test]
async fn exactly_one_of_the_remaining_chats_takes_the_server_over() {
    let port = free_port().to_string();
    let mut ada = spawn(&["chat", "--port", &port, "--name", "ada"]);
    line_with(&mut ada.err, "started the embedded server").await;
    let mut others = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let mut chat = spawn(&["chat", "--port", &port, "--name", name]);
        line_with(&mut chat.out, "* members of lobby").await;
        others.push(chat);
    }
    ada.child.start_kill().expect("SIGKILL");
    let _ = tokio::time::timeout(WAIT, ada.child.wait()).await.expect("killed in time");
    // Each remaining chat reconnects; count who says it hosts the server now.
    let mut hosts = 0;
    // One deadline for all: whichever chat takes over, within it.
    let deadline = tokio::time::Instant::now() + WAIT;
    for chat in &mut others {
        loop {
            match tokio::time::timeout_at(deadline, chat.err.next_line()).await {
                Ok(Ok(Some(line))) if line.contains("this chat hosts it now") => {
                    hosts += 1;
                    break;
                }
                Ok(Ok(Some(_))) => {}
                _ => break, // reconnecting until the deadline without taking over
            }
        }
    }
    assert_eq!(hosts, 1, "exactly one chat took the server over");
    // And all three are in the room on it.
    let out = command(&["users", "presence-chat.lobby", "--port", &port]).output().await.expect("users");
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(users["users"].as_array().map(Vec::len), Some(3), "{users}");
    for chat in others {
        assert_eq!(chat.exit_code().await, 0);
    }
}

/// Three line-mode chats on the embedded default: ada hosts, bob joins; ada goes (`leave`),
/// bob takes the server over, and carol, who joins after the handover, talks with bob.
async fn the_room_outlives_its_host(leave: impl AsyncFnOnce(Proc)) {
    let port = free_port().to_string();
    let mut ada = spawn(&["chat", "--port", &port, "--name", "ada"]);
    line_with(&mut ada.err, "started the embedded server").await;
    line_with(&mut ada.out, "* members of lobby: ada").await;
    let mut bob = spawn(&["chat", "--port", &port, "--name", "bob"]);
    assert_eq!(line_with(&mut bob.out, "* members").await, "* members of lobby: ada, bob", "the member line on join");
    line_with(&mut ada.out, "* bob joined").await;
    leave(ada).await;
    // Bob hosts the server now, and is connected to it again (in either order).
    line_with(&mut bob.err, "disconnected").await;
    let (mut hosting, mut reconnected) = (false, false);
    while !(hosting && reconnected) {
        let line = line_with(&mut bob.err, "").await;
        hosting |= line.contains("this chat hosts it now");
        reconnected |= line.contains("connected (socket");
    }
    line_with(&mut bob.out, "* ada left").await;
    let mut carol = spawn(&["chat", "--port", &port, "--name", "carol"]);
    assert_eq!(line_with(&mut carol.out, "* members").await, "* members of lobby: bob, carol");
    line_with(&mut bob.out, "* carol joined").await;
    bob.say("still here after the handover").await;
    assert_eq!(line_with(&mut carol.out, "still here").await, "bob: still here after the handover");
    carol.say("hi bob").await;
    assert_eq!(line_with(&mut bob.out, "hi bob").await, "carol: hi bob");
    assert_eq!(carol.exit_code().await, 0);
    assert_eq!(bob.exit_code().await, 0);
}

#[tokio::test]
async fn the_room_outlives_a_host_that_quits() {
    the_room_outlives_its_host(async |mut ada: Proc| {
        ada.say("/quit").await;
        assert_eq!(ada.exit_code().await, 0);
    })
    .await;
}

#[tokio::test]
async fn the_room_outlives_a_host_that_is_killed() {
    the_room_outlives_its_host(async |mut ada: Proc| {
        ada.child.start_kill().expect("SIGKILL");
        let _ = tokio::time::timeout(WAIT, ada.child.wait()).await.expect("killed in time");
    })
    .await;
}

#[tokio::test]
async fn the_tui_takes_the_room_over_from_a_host_that_quits_and_keeps_log_lines_off_the_screen() {
    the_tui_takes_the_room_over("quit", async |mut bob: Proc| {
        bob.say("/quit").await;
        assert_eq!(bob.exit_code().await, 0);
    })
    .await;
}

#[tokio::test]
async fn the_tui_takes_the_room_over_from_a_host_that_is_killed() {
    the_tui_takes_the_room_over("kill", async |mut bob: Proc| {
        bob.child.start_kill().expect("SIGKILL");
        let _ = tokio::time::timeout(WAIT, bob.child.wait()).await.expect("killed in time");
    })
    .await;
}

/// Bob (line mode) hosts; ada's TUI joins; bob goes (`leave`); ada takes the server over,
/// with no log text on her screen, and carol, who joins after, hears her.
async fn the_tui_takes_the_room_over(case: &str, leave: impl AsyncFnOnce(Proc)) {
    let port = free_port().to_string();
    // Bob (line mode) hosts; ada's TUI joins, logging to a file of its own.
    let mut bob = spawn(&["chat", "--port", &port, "--name", "bob"]);
    line_with(&mut bob.err, "started the embedded server").await;
    let log = std::env::temp_dir().join(format!("switchboard-chat-{case}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let cmd = format!(
        "env -u REVERB_PORT -u REVERB_HOST RUST_LOG=info {BIN} chat --port {port} --name ada --log-file {}",
        log.display()
    );
    let tmux = Tmux::start(&format!("handover-{case}"), 110, 24, &cmd);
    tmux.wait_for("ada (you)").await;
    line_with(&mut bob.out, "* ada joined").await;
    // The host goes: ada's TUI takes the server over, says so in the room, logs nothing on screen.
    leave(bob).await;
    let now = tmux.wait_for("this chat hosts it now").await;
    for log_text in ["WARN", "INFO", "switchboard::", "4200", "reset by peer"] {
        assert!(!now.contains(log_text), "log text {log_text:?} on the screen:\n{now}");
    }
    let logged = std::fs::read_to_string(&log).expect("the log file");
    if case == "quit" {
        assert!(logged.contains("shutting down"), "the 4200 warning went to the log file:\n{logged}");
    }
    // Ada is back in the room on the server she now hosts.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let out = command(&["users", "presence-chat.lobby", "--port", &port]).output().await.expect("users");
        if String::from_utf8_lossy(&out.stdout).contains("ada-") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ada never rejoined:\n{}", tmux.screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Carol joins after the handover and hears ada.
    let mut carol = spawn(&["chat", "--port", &port, "--name", "carol"]);
    assert_eq!(line_with(&mut carol.out, "* members").await, "* members of lobby: ada, carol");
    tmux.wait_for("* carol joined").await;
    tmux.keys(&["after the handover", "Enter"]);
    assert_eq!(line_with(&mut carol.out, "after the handover").await, "ada: after the handover");
    tmux.keys(&["/quit", "Enter"]);
    line_with(&mut carol.out, "* ada left").await;
    drop(tmux);
    let _ = carol.exit_code().await;
    let _ = std::fs::remove_file(&log);
}

/// A TCP relay from `port` (0: a free one) to `backend`; dropping the returned task set cuts
/// every relayed connection and stops listening. Returns the port and the tasks.
async fn relay(port: u16, backend: std::net::SocketAddr) -> (u16, tokio::task::JoinSet<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("relay binds");
    let port = listener.local_addr().expect("addr").port();
    let mut tasks = tokio::task::JoinSet::new();
    let connections = std::sync::Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new()));
    tasks.spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut connections = connections.lock().await;
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, tasks)
}

#[tokio::test]
async fn a_message_typed_during_an_outage_is_sent_after_the_reconnect() {
    use switchboard_server::{AppConfig, Server, ServerConfig};
    // A configured server (not the local default, so no chat takes it over); bob reaches it
    // through a relay that goes away for a while, ada directly.
    let app = AppConfig { key: "outage-key".into(), secret: "outage-secret".into(), ..AppConfig::default() };
    let server =
        Server::start(ServerConfig { port: 0, apps: vec![app], ..ServerConfig::default() }).await.expect("server");
    let (relay_port, relay_tasks) = relay(0, server.local_addr()).await;
    let chat = |port: u16, name: &str| {
        let url = format!("ws://127.0.0.1:{port}/app/outage-key");
        spawn(&["chat", "--url", &url, "--secret", "outage-secret", "--name", name])
    };
    let mut ada = chat(server.local_addr().port(), "ada");
    line_with(&mut ada.out, "* members of lobby: ada").await;
    let mut bob = chat(relay_port, "bob");
    line_with(&mut bob.out, "* members of lobby: ada, bob").await;
    line_with(&mut ada.out, "* bob joined").await;
    drop(relay_tasks); // bob's connection is cut, and nothing listens on its port
    line_with(&mut bob.err, "disconnected").await;
    // Typed while offline: kept, said so, in order.
    bob.say("first while offline").await;
    line_with(&mut bob.err, "kept to send on reconnect (1 waiting): first while offline").await;
    bob.say("second while offline").await;
    line_with(&mut bob.err, "(2 waiting)").await;
    // The way back opens: both arrive, in order, once bob is in the room again.
    let (_, _relay_tasks) = relay(relay_port, server.local_addr()).await;
    line_with(&mut bob.err, "sent 2 message(s) kept while offline").await;
    assert_eq!(line_with(&mut ada.out, "while offline").await, "bob: first while offline");
    assert_eq!(line_with(&mut ada.out, "while offline").await, "bob: second while offline");
    assert_eq!(bob.exit_code().await, 0);
    assert_eq!(ada.exit_code().await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_tui_shows_a_message_typed_offline_as_pending_and_sends_it_on_reconnect() {
    use switchboard_server::{AppConfig, Server, ServerConfig};
    let app = AppConfig { key: "outage-key".into(), secret: "outage-secret".into(), ..AppConfig::default() };
    let server =
        Server::start(ServerConfig { port: 0, apps: vec![app], ..ServerConfig::default() }).await.expect("server");
    let (relay_port, relay_tasks) = relay(0, server.local_addr()).await;
    let log = std::env::temp_dir().join(format!("switchboard-outage-{}.log", std::process::id()));
    let cmd = format!(
        "{BIN} chat --url ws://127.0.0.1:{relay_port}/app/outage-key --secret outage-secret --name ada --log-file {}",
        log.display()
    );
    let tmux = Tmux::start("outage", 120, 24, &cmd);
    tmux.wait_for("ada (you)").await;
    let url = format!("ws://127.0.0.1:{}/app/outage-key", server.local_addr().port());
    let mut bob = spawn(&["chat", "--url", &url, "--secret", "outage-secret", "--name", "bob"]);
    line_with(&mut bob.out, "* members of lobby: ada, bob").await;
    tmux.wait_for("* bob joined").await;
    drop(relay_tasks); // ada's way to the server goes away
    line_with(&mut bob.out, "* ada left").await;
    tmux.keys(&["typed while offline", "Enter"]);
    tmux.wait_for("me (pending): typed while offline").await;
    let (_, _relay_tasks) = relay(relay_port, server.local_addr()).await;
    assert_eq!(line_with(&mut bob.out, "typed while offline").await, "ada: typed while offline");
    tmux.wait_for("sent 1 message(s) kept while offline").await;
    tmux.keys(&["/quit", "Enter"]);
    line_with(&mut bob.out, "* ada left").await;
    drop(tmux);
    assert_eq!(bob.exit_code().await, 0);
    server.shutdown().await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn the_room_outlives_a_host_that_is_terminated() {
    the_room_outlives_its_host(async |mut ada: Proc| {
        let pid = ada.child.id().expect("pid").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        line_with(&mut ada.err, "terminated: leaving the room").await;
        assert_eq!(ada.exit_code().await, 0, "SIGTERM leaves as /quit does");
    })
    .await;
}

#[tokio::test]
async fn the_room_outlives_a_host_interrupted_with_ctrl_c_in_line_mode() {
    the_room_outlives_its_host(async |mut ada: Proc| {
        let pid = ada.child.id().expect("pid").to_string();
        let sent = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
        assert!(sent.success());
        line_with(&mut ada.err, "terminated: leaving the room").await;
        assert_eq!(ada.exit_code().await, 0, "SIGINT leaves as /quit does");
    })
    .await;
}

/// The gateway from a terminal: `listen` with wildcards, `publish --wait-ack`, `respond`
/// running a command per request, `request` with its exit codes, and `token` for curl and
/// the seed SDKs.
#[tokio::test]
async fn gateway_listen_publish_request_respond_and_token() {
    let config = switchboard_server::ServerConfig { port: 0, ..switchboard_server::ServerConfig::default() };
    let server = switchboard_server::Server::start(config).await.expect("server");
    let port = server.local_addr().port().to_string();
    let gw: Vec<String> = ["--protocol", "gateway", "--port", &port].iter().map(|a| a.to_string()).collect();
    let with =
        |args: &[&str]| -> Vec<String> { gw.iter().cloned().chain(args.iter().map(|a| a.to_string())).collect() };

    let mut listen = spawn_owned(with(&["listen", "chat", "alerts", "--event", "text"]));
    line_with(&mut listen.err, "subscribed to alerts").await;
    tokio::time::sleep(Duration::from_millis(200)).await; // subscribes are not confirmed
    let out = command_owned(with(&["publish", "chat", r#"{"text":"hi"}"#, "--type", "text", "--wait-ack"]))
        .output()
        .await
        .expect("publish");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["id"].as_str().expect("id").to_owned();
    let line = line_with(&mut listen.out, r#""topic":"chat""#).await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(
        (json["topic"].as_str(), json["data"]["text"].as_str(), json["id"].as_str()),
        (Some("chat"), Some("hi"), Some(id.as_str()))
    );
    // Not matching the --event pattern: not printed; the next matching one is.
    for (kind, data) in [("other", "1"), ("text", "2")] {
        let out = command_owned(with(&["publish", "alerts", data, "--type", kind, "--wait-ack"]))
            .output()
            .await
            .expect("publish");
        assert!(out.status.success());
    }
    let line = line_with(&mut listen.out, "alerts").await;
    assert!(line.contains(r#""messageType":"text""#) && line.contains(r#""data":2"#), "{line}");

    // A responder that answers with jq-free shell: the payload comes back wrapped.
    let mut respond =
        spawn_owned(with(&["respond", "--type", "echo", "--", "sh", "-c", r#"printf '{"got":%s}' "$(cat)""#]));
    line_with(&mut respond.err, "answering secure/inbound.echo").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = command_owned(with(&["request", r#"{"n":7}"#, "--type", "echo"])).output().await.expect("request");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((answer["status"].as_str(), &answer["data"]), (Some("ok"), &serde_json::json!({"got": {"n": 7}})));
    drop(respond);
    // A failing responder gives status error, and exit code 1.
    let mut failing = spawn_owned(with(&["respond", "--type", "fail", "--", "sh", "-c", "echo nope; exit 3"]));
    line_with(&mut failing.err, "answering").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = command_owned(with(&["request", "{}", "--type", "fail"])).output().await.expect("request");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""status":"error""#));
    drop(failing);
    // Nobody answers: exit code 4 after the timeout.
    let out =
        command_owned(with(&["request", "{}", "--type", "nobody", "--timeout", "1"])).output().await.expect("request");
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));

    // `token`: verifies with the app secret, and works for the admin API as curl would use it.
    let out = command(&["token", "--sub", "ada", "--permission", "realtime:publisher:write:topic:chat"])
        .output()
        .await
        .expect("token");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let verified = switchboard_protocol::gateway::jwt::verify(
        &token,
        switchboard_server::config::DEV_APP_SECRET.as_bytes(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64,
    )
    .expect("a valid token");
    assert_eq!(verified.subject.as_deref(), Some("ada"));
    assert!(verified.permissions.may_publish("chat") && !verified.permissions.may_publish("other"));
    // Gateway-only commands say so without a gateway target.
    let out = command(&["publish", "chat", "{}", "--port", &port]).output().await.expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--protocol gateway"));
    drop(listen);
    server.shutdown().await;
}

fn spawn_owned(args: Vec<String>) -> Proc {
    spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn command_owned(args: Vec<String>) -> Command {
    command(&args.iter().map(String::as_str).collect::<Vec<_>>())
}
