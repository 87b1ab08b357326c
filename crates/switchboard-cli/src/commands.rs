//! `listen`, `trigger`, `channels` and `users`: what an operator reaches for when wiring
//! Reverb or Pusher into scripts. Data goes to stdout (JSON), status to stderr.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use switchboard::{Client, ConnectionState, ErrorKind, GAP_EVENT, LAGGED_EVENT, PresenceUser};

use crate::settings::Settings;

/// A failure to report: the message, and the exit code (2 for bad settings).
pub struct Failure(pub String, pub u8);

impl From<crate::settings::SettingError> for Failure {
    fn from(e: crate::settings::SettingError) -> Self {
        Failure(e.0, 2)
    }
}

impl From<switchboard::Error> for Failure {
    fn from(e: switchboard::Error) -> Self {
        let code = if e.kind() == ErrorKind::Config { 2 } else { 1 };
        Failure(e.to_string(), code)
    }
}

/// Subscribe, retrying while the server is unreachable; stop on a refusal.
async fn subscribe_forever(client: &Client, channel: &str) -> Result<(), Failure> {
    loop {
        match client.subscribe(channel).await {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Connection) && !client.state().is_final() => {
                eprintln!("switchboard: {channel}: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Who `command` joins presence channels as when it signs locally (an auth endpoint brings
/// its own identity): `switchboard-<command>-<4 hex digits>`.
fn identity(command: &str) -> PresenceUser {
    PresenceUser::new(
        format!("switchboard-{command}-{:04x}", rand::random::<u16>()),
        json!({ "name": format!("switchboard {command}") }),
    )
}

/// `listen CHANNEL... [--event NAME]`: one JSON line per event, forever.
pub async fn listen(settings: Settings, channels: Vec<String>, only: Option<String>) -> Result<ExitCode, Failure> {
    let client = Client::new(settings.client_options(Some(identity("listen")))?);
    client.on_state_change(|_, now| eprintln!("switchboard listen: {}", describe_state(now)));
    let mut events = client.events();
    for channel in &channels {
        subscribe_forever(&client, channel).await?;
        eprintln!("switchboard listen: subscribed to {channel}");
    }
    // Lines are written with blocking writes on this thread (the runtime's `block_on` thread,
    // not a worker): a pipe that reads slowly blocks them, the event stream then fills, and
    // the client stops reading the socket, so the backpressure reaches the server and
    // nothing is dropped. Output is flushed whenever no further event is ready.
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut next = events.next().await;
    while let Some(event) = next {
        match event.name() {
            GAP_EVENT => eprintln!(
                "switchboard listen: resubscribed to {}: events sent while disconnected were lost",
                event.channel().unwrap_or("?")
            ),
            LAGGED_EVENT => eprintln!("switchboard listen: events were dropped: {}", event.data().unwrap_or("?")),
            name => {
                let internal = name.starts_with("pusher:")
                    || name.starts_with("pusher_internal:")
                    || name.starts_with("switchboard:");
                // Only the channels asked for: a server that sends events for others (a bug or
                // a hostile server) does not get them printed as if they were subscribed.
                let asked_for = event.channel().is_some_and(|c| channels.iter().any(|wanted| wanted == c));
                if !internal && asked_for && only.as_deref().is_none_or(|only| only == name) {
                    let data = event.data().map(|text| {
                        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
                    });
                    let mut line =
                        json!({ "channel": event.channel(), "event": name, "data": data, "at": rfc3339_now() });
                    // Who sent a client event on a presence channel (as pusher-js passes it).
                    if let Some(user_id) = event.user_id() {
                        line["user_id"] = json!(user_id);
                    }
                    if let Err(e) = writeln!(out, "{line}") {
                        return output_closed(e);
                    }
                }
            }
        }
        next = match events.next().now_or_never() {
            Some(ready) => ready,
            None => {
                if let Err(e) = out.flush() {
                    return output_closed(e);
                }
                events.next().await
            }
        };
    }
    // The stream ends when the connection ended for good: the server refused this client
    // after the handshake (4001 unknown key, 4004 over quota, 4009 terminated, …), or
    // reconnecting gave up. Exit with a code a supervisor acts on (systemd's Restart=).
    if let Err(e) = out.flush() {
        return output_closed(e);
    }
    match client.state() {
        ConnectionState::Failed { reason, .. } => {
            Err(Failure(format!("the connection ended for good: {reason}"), EXIT_CONNECTION_ENDED))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `listen`'s exit code when the server ends the connection for good.
pub const EXIT_CONNECTION_ENDED: u8 = 3;

/// stdout failed: a closed pipe (`listen … | head`) ends `listen` quietly with success;
/// anything else is an error.
pub(crate) fn output_closed(error: std::io::Error) -> Result<ExitCode, Failure> {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure(format!("writing to stdout: {error}"), 1))
    }
}

/// `trigger CHANNEL EVENT [DATA|-] [--client]`.
pub async fn trigger(
    settings: Settings,
    channel: String,
    event: String,
    data: Option<String>,
    client_event: bool,
) -> Result<ExitCode, Failure> {
    let text = match data.as_deref() {
        Some("-") => {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| Failure(format!("reading data from stdin: {e}"), 1))?;
            buf
        }
        Some(text) => text.to_owned(),
        None => "{}".to_owned(),
    };
    let value = serde_json::from_str::<Value>(text.trim()).unwrap_or(Value::String(text));
    if client_event {
        // A presence channel is joined as `listen` joins it.
        let client = Client::connect(settings.client_options(Some(identity("trigger")))?).await?;
        let channel = client.subscribe(&channel).await?;
        channel.trigger(&event, &value).await?;
        client.disconnect().await;
        eprintln!("switchboard trigger: sent client event on {}", channel.name());
    } else {
        let reply = settings.publisher()?.trigger(&[channel.as_str()], &event, &value, None).await?;
        println!("{reply}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `channels [--prefix P]`.
pub async fn channels(settings: Settings, prefix: Option<String>) -> Result<ExitCode, Failure> {
    let info = match prefix.as_deref() {
        Some(p) if p.starts_with("presence-") => Some("user_count,subscription_count"),
        _ => Some("subscription_count"),
    };
    let reply = settings.publisher()?.channels(prefix.as_deref(), info).await?;
    println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `users CHANNEL`.
pub async fn users(settings: Settings, channel: String) -> Result<ExitCode, Failure> {
    if !channel.starts_with("presence-") {
        return Err(Failure(format!("{channel}: users are listed for presence- channels only"), 2));
    }
    let users = settings.publisher()?.users(&channel).await?;
    println!("{}", json!({ "channel": channel, "users": users }));
    Ok(ExitCode::SUCCESS)
}

/// One line for a state, with the reconnect countdown.
pub fn describe_state(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connected { socket_id } if socket_id.is_empty() => "connected".to_owned(),
        ConnectionState::Connected { socket_id } => format!("connected (socket {socket_id})"),
        ConnectionState::Unavailable { retry_in, reason } => {
            format!("disconnected: {reason}; retrying in {:.1}s", retry_in.as_secs_f64())
        }
        ConnectionState::Failed { reason, .. } => format!("failed: {reason}"),
        other => other.name().to_owned(),
    }
}

/// The current UTC time as RFC 3339 with milliseconds.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_has_the_right_shape() {
        let t = super::rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
