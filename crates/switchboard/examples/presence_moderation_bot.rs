//! A presence moderation bot: joins `presence-{ROOM}` as a member, watches chat messages
//! (`client-message` whispers), and disconnects users who post a banned word through the
//! HTTP API (`terminate_connections`), announcing it in the room.
//!
//! ```sh
//! ROOM=lobby BANNED=spam,scam REVERB_APP_ID=1000 REVERB_APP_KEY=switchboard-key \
//!   REVERB_APP_SECRET=switchboard-secret REVERB_HOST=127.0.0.1 REVERB_PORT=8080 REVERB_SCHEME=http \
//!   cargo run -p switchboard --example presence_moderation_bot
//! ```

use futures_util::StreamExt;
use serde_json::json;
use switchboard::{Client, ClientOptions, Error, ErrorKind, PresenceUser, Publisher};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).map_err(|_| Error::new(ErrorKind::Config, format!("{name} is not set")));
    let room = format!("presence-{}", std::env::var("ROOM").unwrap_or_else(|_| "lobby".into()));
    let banned: Vec<String> =
        std::env::var("BANNED").unwrap_or_else(|_| "spam".into()).split(',').map(str::to_lowercase).collect();
    let scheme = if std::env::var("REVERB_SCHEME").as_deref() == Ok("http") { "http" } else { "https" };
    let api_base =
        format!("{scheme}://{}:{}", env("REVERB_HOST")?, std::env::var("REVERB_PORT").unwrap_or_else(|_| "443".into()));
    let publisher =
        Publisher::new(&api_base, &env("REVERB_APP_ID")?, &env("REVERB_APP_KEY")?, &env("REVERB_APP_SECRET")?)?;

    let client = Client::connect(ClientOptions::from_env()?.build()?).await?;
    let channel = client
        .subscribe_presence(&room, PresenceUser::new("moderator-bot", json!({"name": "Moderator", "bot": true})))
        .await?;
    eprintln!("moderating {room} with {} members", channel.members().count());
    let mut events = channel.events();
    while let Some(event) = events.next().await {
        match event.name() {
            "client-message" => {
                let text = event
                    .json::<serde_json::Value>()
                    .ok()
                    .and_then(|m| m["text"].as_str().map(str::to_lowercase))
                    .unwrap_or_default();
                let Some(user) = event.user_id().map(str::to_owned) else { continue };
                if banned.iter().any(|word| text.contains(word.as_str())) {
                    publisher.terminate_user_connections(&user).await?;
                    channel.trigger("message", &json!({"text": format!("user {user} was removed for a banned word"), "from": "moderator-bot"})).await?;
                    eprintln!("removed {user}");
                }
            }
            "pusher:member_added" => eprintln!("joined: {}", event.data().unwrap_or("")),
            "pusher:member_removed" => eprintln!("left: {}", event.data().unwrap_or("")),
            _ => {}
        }
    }
    Ok(())
}
