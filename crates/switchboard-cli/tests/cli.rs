//! The `switchboard` binary end to end: bad configuration exits 2 naming the setting;
//! `serve` prints its app, serves, and on SIGTERM closes sockets with 4200.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG").current_dir(std::env::temp_dir());
    for name in ["REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET", "REVERB_SERVER_PORT", "REVERB_PORT"] {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_configuration_is_one_line_and_exit_code_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (&["serve", "--port", "0"], &[("REVERB_SERVER_PORT", "eighty")], "REVERB_SERVER_PORT"),
        (&["serve", "--port", "0"], &[("REVERB_APP_KEY", "only-key")], "REVERB_APP_ID"),
        (&["serve", "--port", "0", "--path", "no-slash"], &[], "path"),
        (&["serve", "--config", "/nonexistent/switchboard.toml"], &[], "/nonexistent/switchboard.toml"),
        (&["serve", "--host", "not an address", "--port", "0"], &[], "host"),
    ];
    for (args, env, needle) in cases {
        let (code, stderr) = run_with_env(args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?} should name {needle}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    }
}

#[test]
fn help_has_examples() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("Examples:") && text.contains("switchboard serve --config"), "{text}");
}

#[tokio::test]
async fn serve_prints_its_app_and_closes_sockets_with_4200_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--app-id", "77", "--app-key", "cli-key", "--app-secret", "cli-secret"])
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("serve prints where it listens");
    let addr = first.rsplit(' ').next().expect("address").to_owned();
    assert!(first.contains("listening on 127.0.0.1:"), "{first}");
    let app_line = rx.recv_timeout(Duration::from_secs(5)).expect("app line");
    assert!(app_line.contains("id=77") && app_line.contains("key=cli-key"), "{app_line}");

    let url = format!("ws://{addr}/app/cli-key?protocol=7");
    let builder = tokio_websockets::ClientBuilder::new().uri(&url).expect("uri");
    let (mut ws, _) =
        tokio::time::timeout(Duration::from_secs(5), builder.connect()).await.expect("in time").expect("connects");
    let hello = ws.next().await.expect("frame").expect("ok");
    assert!(hello.as_text().expect("text").contains("pusher:connection_established"));

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let error =
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("in time").expect("frame").expect("ok");
    let text = error.as_text().expect("text");
    assert!(text.contains("pusher:error") && text.contains("4200"), "{text}");
    let close =
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("in time").expect("frame").expect("ok");
    assert_eq!(close.as_close().map(|(code, _)| u16::from(code)), Some(4200));
    drop(ws);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "serve exits cleanly after SIGTERM: {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
