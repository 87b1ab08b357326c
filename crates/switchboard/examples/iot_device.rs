//! An IoT device that obeys commands sent to `private-device.{DEVICE_ID}` (the seeds'
//! Raspberry Pi agent): `command` events with `{"action": "ping" | "vitals" | "reboot"}`.
//! Each command is acknowledged with a `client-ack` event on the same channel. The device
//! reconnects forever and is resubscribed with fresh auth after every drop.
//!
//! ```sh
//! DEVICE_ID=7 REVERB_APP_KEY=switchboard-key REVERB_APP_SECRET=switchboard-secret \
//!   REVERB_HOST=127.0.0.1 REVERB_PORT=8080 REVERB_SCHEME=http cargo run -p switchboard --example iot_device
//! ```

use futures_util::StreamExt;
use serde_json::json;
use switchboard::{Client, ClientOptions, GAP_EVENT};

#[tokio::main]
async fn main() -> Result<(), switchboard::Error> {
    let device_id = std::env::var("DEVICE_ID").unwrap_or_else(|_| "1".into());
    let client = Client::connect(ClientOptions::from_env()?.build()?).await?;
    let channel = client.subscribe(&format!("private-device.{device_id}")).await?;
    eprintln!("device {device_id} listening on {}", channel.name());
    let started = std::time::Instant::now();
    let mut commands = channel.events();
    while let Some(event) = commands.next().await {
        match event.name() {
            "command" => {
                let command: serde_json::Value = event.json().unwrap_or_default();
                let action = command["action"].as_str().unwrap_or("");
                let reply = match action {
                    "ping" => json!({"action": "ping", "ok": true}),
                    "vitals" => json!({"action": "vitals", "uptime_s": started.elapsed().as_secs()}),
                    "reboot" => json!({"action": "reboot", "ok": true, "note": "simulated"}),
                    other => json!({"action": other, "ok": false, "error": "unknown action"}),
                };
                if let Err(e) = channel.trigger("ack", &reply).await {
                    eprintln!("could not acknowledge {action}: {e}");
                }
            }
            GAP_EVENT => eprintln!("reconnected: commands sent while offline were lost"),
            _ => {}
        }
    }
    Ok(())
}
