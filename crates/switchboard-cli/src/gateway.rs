//! The gateway commands: `listen`, `publish`, `request`, `respond` and `token`, for the
//! Realtime Pub/Sub protocol (`--protocol gateway`, or a `--url …/apps/ID`). Data goes to
//! stdout as JSON, status to stderr.
//!
//! Without `--access-token`, each connection gets a fresh token minted with the app secret
//! (known for the local development app), allowed every topic: what a developer wants from
//! a terminal. `token` prints such a token (or a narrower one) for the seed SDKs and curl.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use serde_json::{Value, json};
use switchboard::gateway::{GatewayClient, GatewayOptions, Incoming, PublishOptions};
use switchboard::{ConnectionState, Event, LAGGED_EVENT};
use switchboard_protocol::gateway::jwt::{self, Algorithm};

use crate::commands::{Failure, describe_state, rfc3339_now};
use crate::settings::Settings;

/// Every grant the gateway knows, for the CLI's own tokens.
const ALL_GRANTS: [&str; 4] = [
    "realtime:subscriber:read:topic:*",
    "realtime:publisher:write:topic:*",
    "realtime:admin:manage:connections",
    "realtime:admin:manage:subscribers",
];

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A token for `subject` with `grants`, valid `ttl` seconds, signed with the app secret.
fn mint(settings: &Settings, subject: &str, grants: &[String], ttl: u64) -> Result<String, Failure> {
    let secret = settings.secret.as_deref().ok_or_else(|| {
        Failure(
            "minting a token needs the app secret: --secret or REVERB_APP_SECRET (or pass --access-token)".into(),
            2,
        )
    })?;
    let now = unix_now();
    let claims = json!({"sub": subject, "permissions": grants, "iat": now, "exp": now + ttl as i64});
    Ok(jwt::sign(&claims, secret.as_bytes(), Algorithm::Hs256))
}

fn options(settings: &Settings, command: &str) -> Result<GatewayOptions, Failure> {
    let base = settings.gateway_base_url()?;
    let options = match settings.access_token.clone() {
        Some(token) => GatewayOptions::new(format!("{base}?access_token={token}")),
        None => {
            let settings = settings.clone();
            mint(&settings, "probe", &[], 60)?; // fail now, not on every connect, without a secret
            let subject = format!("switchboard-{command}-{:04x}", rand::random::<u16>());
            let grants: Vec<String> = ALL_GRANTS.iter().map(|g| (*g).to_owned()).collect();
            GatewayOptions::with_sync_url_provider(move || {
                let token = mint(&settings, &subject, &grants, 300)
                    .map_err(|f| switchboard::Error::new(switchboard::ErrorKind::Config, f.0))?;
                Ok(format!("{base}?access_token={token}"))
            })
        }
    };
    Ok(if settings.server_is_default {
        // The local development server: come back quickly when it restarts.
        options.backoff(switchboard::Backoff::new(Duration::from_millis(100), Duration::from_secs(2)))
    } else {
        options
    })
}

async fn connect(settings: &Settings, command: &str) -> Result<GatewayClient, Failure> {
    let client = GatewayClient::connect(options(settings, command)?).await?;
    let mut states = client.state_changes();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = states.borrow().clone();
            if !matches!(state, ConnectionState::Connecting) {
                eprintln!("switchboard: {}", describe_state(&state));
            }
        }
    });
    Ok(client)
}

/// The payload argument: JSON, `-` for stdin, or text; `{}` if absent.
fn payload_of(data: Option<String>) -> Result<Value, Failure> {
    let text = match data.as_deref() {
        None => return Ok(json!({})),
        Some("-") => std::io::read_to_string(std::io::stdin()).map_err(|e| Failure(format!("stdin: {e}"), 1))?,
        Some(text) => text.to_owned(),
    };
    Ok(serde_json::from_str(text.trim()).unwrap_or(Value::String(text)))
}

fn line_of(event: &Event) -> Option<Value> {
    let incoming = Incoming::from_event(event).ok()?;
    let mut line = json!({
        "topic": incoming.topic,
        "messageType": incoming.message_type,
        "data": incoming.payload,
        "at": rfc3339_now(),
    });
    if let Some(id) = incoming.id {
        line["id"] = json!(id);
    }
    if incoming.connection_id.is_some() || incoming.subject.is_some() {
        line["from"] = json!({"connectionId": incoming.connection_id, "subject": incoming.subject});
    }
    if incoming.compressed {
        line["compressed"] = json!(true);
    }
    Some(line)
}

/// `listen TOPIC... [--event PATTERN]`: subscribe, and print one JSON line per message whose
/// `topic.messageType` matches `TOPIC.PATTERN` (default `**`: everything on the topic).
pub async fn listen(settings: Settings, topics: Vec<String>, pattern: Option<String>) -> Result<ExitCode, Failure> {
    let client = connect(&settings, "listen").await?;
    let pattern = pattern.unwrap_or_else(|| "**".into());
    // One stream for all topics, so lines keep the order the socket brought them in.
    let mut events = client.events("**");
    for topic in &topics {
        client.subscribe(topic)?;
        eprintln!("switchboard listen: subscribed to {topic}");
    }
    let wanted: Vec<String> = topics.iter().map(|t| format!("{t}.{pattern}")).collect();
    // As Pusher's listen: blocking writes on this thread, so a slow pipe slows the socket.
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut next = events.recv().await;
    while let Some(event) = next {
        let key_topic = event.channel().unwrap_or_default();
        if event.name() == LAGGED_EVENT {
            eprintln!("switchboard listen: messages were dropped: {}", event.data().unwrap_or("?"));
        } else if wanted
            .iter()
            .any(|w| switchboard_protocol::gateway::wildcard::event_matches_parts(w, key_topic, event.name()))
            && event.name() != "ack"
            && let Some(line) = line_of(&event)
            && let Err(e) = writeln!(out, "{line}")
        {
            return crate::commands::output_closed(e);
        }
        next = match events.recv().now_or_never() {
            Some(ready) => ready,
            None => {
                if let Err(e) = out.flush() {
                    return crate::commands::output_closed(e);
                }
                events.recv().await
            }
        };
    }
    Ok(ExitCode::from(3))
}

/// `publish TOPIC [DATA] [--type T] [--compress] [--wait-ack]`.
pub async fn publish(
    settings: Settings,
    topic: String,
    data: Option<String>,
    options: PublishOptions,
    wait_ack: bool,
) -> Result<ExitCode, Failure> {
    let client = connect(&settings, "publish").await?;
    let mut pending = client.publish(&topic, &payload_of(data)?, options)?;
    if wait_ack {
        pending.ack().await?;
        eprintln!("switchboard publish: acked {}", pending.id());
    } else {
        // Written before the client goes: a disconnect sends what is queued first.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{}", json!({"id": pending.id()}));
    client.disconnect().await;
    Ok(ExitCode::SUCCESS)
}

/// `request [DATA] [--type T] [--timeout S]`: send to the backends and print the reply.
/// Exit code 0 when its status is `ok`, 1 for any other status, 4 when none came in time.
pub async fn request(
    settings: Settings,
    data: Option<String>,
    options: PublishOptions,
    timeout: Duration,
) -> Result<ExitCode, Failure> {
    let mut gateway_options = self::options(&settings, "request")?.reply_timeout(timeout).ack_timeout(timeout);
    gateway_options = gateway_options.connect_timeout(Duration::from_secs(10));
    let client = GatewayClient::connect(gateway_options).await?;
    let pending = client.request(&payload_of(data)?, options)?;
    let answer = match pending.reply().await {
        Ok(answer) => answer,
        Err(e) if e.kind() == switchboard::ErrorKind::Timeout => {
            client.disconnect().await;
            return Err(Failure(format!("{e} (is a responder subscribed to secure/inbound?)"), 4));
        }
        Err(e) => return Err(e.into()),
    };
    println!("{}", json!({"status": answer.status, "data": answer.data, "id": answer.id}));
    client.disconnect().await;
    Ok(if answer.status == "ok" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `respond [--type T] -- COMMAND [ARGS...]`: answer each request on `secure/inbound` by
/// running COMMAND with the payload (JSON) on stdin; its stdout (JSON, else text) is the
/// reply, with status `ok` when it exits 0 and `error` otherwise. One at a time, in order.
pub async fn respond(
    settings: Settings,
    message_type: Option<String>,
    command: Vec<String>,
) -> Result<ExitCode, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure("respond needs a command to run: respond -- jq .".into(), 2));
    };
    let client = connect(&settings, "respond").await?;
    let pattern = format!("secure/inbound.{}", message_type.as_deref().unwrap_or("*"));
    let mut requests = client.events(&pattern);
    client.subscribe("secure/inbound")?;
    eprintln!("switchboard respond: answering {pattern} with {program}");
    while let Some(event) = requests.recv().await {
        if matches!(event.name(), "presence" | "ack") {
            continue;
        }
        let Ok(incoming) = Incoming::from_event(&event) else { continue };
        if incoming.connection_id.is_none() {
            continue; // an HTTP publish: nobody to answer
        }
        let (data, status) = run_responder(program, args, &incoming.payload).await;
        if let Err(e) = client.reply(&incoming, &data, status) {
            eprintln!("switchboard respond: cannot reply to {}: {e}", incoming.id.as_deref().unwrap_or("?"));
        }
    }
    Ok(ExitCode::from(3))
}

async fn run_responder(program: &str, args: &[String], payload: &Value) -> (Value, &'static str) {
    use tokio::io::AsyncWriteExt;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return (json!({"error": format!("cannot run {program}: {e}")}), "error"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(payload.to_string().as_bytes()).await;
    }
    // Bounded: a responder that hangs answers with an error instead of blocking the queue.
    match tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await {
        Ok(Ok(output)) => {
            let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            let data = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (data, if output.status.success() { "ok" } else { "error" })
        }
        Ok(Err(e)) => (json!({"error": format!("{program}: {e}")}), "error"),
        Err(_) => (json!({"error": format!("{program} did not finish within 30 s")}), "error"),
    }
}

/// `token [--sub S] [--permission P]... [--ttl S]`: print a JWT for the app (its secret).
pub fn token(settings: Settings, subject: String, permissions: Vec<String>, ttl: u64) -> Result<ExitCode, Failure> {
    let grants =
        if permissions.is_empty() { ALL_GRANTS.iter().map(|g| (*g).to_owned()).collect() } else { permissions };
    println!("{}", mint(&settings, &subject, &grants, ttl)?);
    Ok(ExitCode::SUCCESS)
}
