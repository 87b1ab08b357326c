//! `switchboard chat`: a presence-channel chat (`presence-chat.{room}`). Messages and typing
//! travel as client events. With nothing configured it starts the embedded server on
//! 127.0.0.1:8080 unless one already listens there, so a second `switchboard chat` joins the
//! same room. A terminal gets the TUI (`tui.rs`); pipes get line mode.

use std::time::Duration;

use serde_json::json;
use switchboard::{Channel, Client, ConnectionState, Member, PresenceUser};
use switchboard_server::{RunningServer, Server, ServerConfig};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::commands::{Failure, describe_state};
use crate::settings::Settings;

/// Something the chat UI shows.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// A chat message.
    Message { name: String, text: String },
    /// Someone started or stopped typing.
    Typing { user_id: String, name: String, typing: bool },
    /// A member joined.
    Joined(Member),
    /// A member left.
    Left(Member),
    /// The connection state changed.
    State(ConnectionState),
}

/// One chat participant's session: the client, the room channel and the event feed.
pub struct ChatSession {
    client: Client,
    channel: Channel,
    room: String,
    name: String,
    events: mpsc::UnboundedSender<ChatEvent>,
}

/// The display name of a member (its `user_info.name`, else its id).
pub fn member_name(member: &Member) -> String {
    member.info["name"].as_str().map_or_else(|| member.id.clone(), str::to_owned)
}

/// Start the embedded server when the target is the local development app and nothing
/// listens there (127.0.0.1:8080 unless `--port` says otherwise). Returns it (keep it alive).
pub async fn embedded_server(settings: &Settings) -> Result<Option<RunningServer>, Failure> {
    if !settings.server_is_default {
        return Ok(None);
    }
    let addr = format!("{}:{}", settings.host, settings.port);
    if tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&addr))
        .await
        .is_ok_and(|r| r.is_ok())
    {
        return Ok(None); // someone (another chat, or switchboard serve) is there already
    }
    let config = ServerConfig { port: settings.port, ..ServerConfig::default() };
    let server =
        Server::start(config).await.map_err(|e| Failure(format!("cannot start the embedded server: {e}"), 1))?;
    Ok(Some(server))
}

impl ChatSession {
    /// Join `presence-chat.{room}` as `name`.
    pub async fn start(
        settings: &Settings,
        room: &str,
        name: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<ChatEvent>), Failure> {
        let user_id = format!("{}-{:04x}", sanitize(name), rand::random::<u16>());
        let me = PresenceUser::new(user_id, json!({ "name": name }));
        let client = Client::new(settings.client_options(Some(me.clone()))?);
        let (events, rx) = mpsc::unbounded_channel();
        let feed = events.clone();
        client.on_state_change(move |_, now| {
            let _ = feed.send(ChatEvent::State(now.clone()));
        });
        let channel = join(&client, room, &me, &events).await?;
        Ok((Self { client, channel, room: room.to_owned(), name: name.to_owned(), events }, rx))
    }

    /// The room name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Current members.
    pub fn members(&self) -> Vec<Member> {
        self.channel.members().iter().collect()
    }

    /// This participant's own user id.
    pub fn my_id(&self) -> Option<String> {
        self.channel.members().me().map(|m| m.id)
    }

    /// Send a message.
    pub async fn send(&self, text: &str) -> Result<(), Failure> {
        self.channel.trigger("message", &json!({ "name": self.name, "text": text })).await.map_err(Into::into)
    }

    /// Say whether we are typing.
    pub async fn typing(&self, typing: bool) -> Result<(), Failure> {
        self.channel.trigger("typing", &json!({ "name": self.name, "typing": typing })).await.map_err(Into::into)
    }

    /// Leave this room and join `room`.
    pub async fn switch_room(&mut self, room: &str) -> Result<(), Failure> {
        let me = PresenceUser::new(self.my_id().unwrap_or_else(|| sanitize(&self.name)), json!({ "name": self.name }));
        self.channel.unbind_all();
        self.channel.unsubscribe().await;
        self.channel = join(&self.client, room, &me, &self.events).await?;
        self.room = room.to_owned();
        Ok(())
    }

    /// Leave.
    pub async fn quit(&self) {
        self.client.disconnect().await;
    }
}

async fn join(
    client: &Client,
    room: &str,
    me: &PresenceUser,
    events: &mpsc::UnboundedSender<ChatEvent>,
) -> Result<Channel, Failure> {
    let name = format!("presence-chat.{room}");
    let channel = client.subscribe_presence(&name, me.clone()).await?;
    let feed = events.clone();
    channel.bind("client-message", move |event| {
        let data: serde_json::Value = event.json().unwrap_or_default();
        let name = data["name"].as_str().unwrap_or("?").to_owned();
        let text = data["text"].as_str().unwrap_or_default().to_owned();
        let _ = feed.send(ChatEvent::Message { name, text });
    });
    let feed = events.clone();
    channel.bind("client-typing", move |event| {
        let data: serde_json::Value = event.json().unwrap_or_default();
        let _ = feed.send(ChatEvent::Typing {
            user_id: event.user_id.clone().unwrap_or_default(),
            name: data["name"].as_str().unwrap_or("?").to_owned(),
            typing: data["typing"].as_bool().unwrap_or(false),
        });
    });
    for (name, joined) in [("pusher:member_added", true), ("pusher:member_removed", false)] {
        let feed = events.clone();
        channel.bind(name, move |event| {
            let data: serde_json::Value = event.json().unwrap_or_default();
            let Some(id) = data["user_id"].as_str().map(str::to_owned) else { return };
            let member = Member { id, info: data.get("user_info").cloned().unwrap_or_default() };
            let _ = feed.send(if joined { ChatEvent::Joined(member) } else { ChatEvent::Left(member) });
        });
    }
    Ok(channel)
}

fn sanitize(name: &str) -> String {
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).take(32).collect();
    if clean.is_empty() { "guest".into() } else { clean }
}

/// Line mode: one message per input line, one received message per output line.
pub async fn line_mode(
    mut session: ChatSession,
    mut events: mpsc::UnboundedReceiver<ChatEvent>,
    embedded: Option<std::net::SocketAddr>,
) -> Result<(), Failure> {
    if let Some(addr) = embedded {
        eprintln!("switchboard chat: started the embedded server on {addr}");
    }
    eprintln!("switchboard chat: {} in room {} ({} members)", session.name, session.room, session.members().len());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let line = line.trim().to_owned();
                    if line.is_empty() {
                        continue;
                    }
                    match line.split_once(' ').map_or((line.as_str(), ""), |(c, r)| (c, r.trim())) {
                        ("/quit", _) => break,
                        ("/who", _) => {
                            let names: Vec<String> = session.members().iter().map(member_name).collect();
                            println!("* members of {}: {}", session.room, names.join(", "));
                        }
                        ("/room", room) if !room.is_empty() => {
                            session.switch_room(room).await?;
                            eprintln!("switchboard chat: now in room {room}");
                        }
                        _ => {
                            session.typing(true).await?;
                            session.send(&line).await?;
                            session.typing(false).await?;
                        }
                    }
                }
                // End of input: give the last messages a moment to arrive, then leave.
                Ok(None) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    break;
                }
            },
            Some(event) = events.recv() => match event {
                ChatEvent::Message { name, text } => println!("{name}: {text}"),
                ChatEvent::Joined(member) => println!("* {} joined", member_name(&member)),
                ChatEvent::Left(member) => println!("* {} left", member_name(&member)),
                ChatEvent::Typing { name, typing, .. } => {
                    if typing {
                        eprintln!("~ {name} is typing");
                    }
                }
                ChatEvent::State(state) => eprintln!("switchboard chat: {}", describe_state(&state)),
            },
        }
    }
    session.quit().await;
    Ok(())
}
