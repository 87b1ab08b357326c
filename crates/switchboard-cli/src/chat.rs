//! `switchboard chat`: a presence chat over Pusher (`presence-chat.{room}`, messages and
//! typing as client events) or Phoenix (a Hub-style `room:{room}`: shouts, typing in the
//! presence metas), behind one session type. With nothing configured it starts the embedded server on
//! 127.0.0.1:8080 unless one already listens there, so a second `switchboard chat` joins the
//! same room; when the chat that hosts it goes away, another takes over ([`EmbeddedHost`]).
//! A terminal gets the TUI (`tui.rs`); pipes get line mode.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchboard::{Channel, Client, ConnectionState, Member, PresenceUser, phoenix};
use switchboard_server::{RunningServer, Server, ServerConfig};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::commands::{Failure, describe_state};
use crate::settings::{Protocol, Settings};

/// Something the chat UI shows.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// A chat message (`user_id`: the sender's member id, to clear its typing mark).
    Message { user_id: String, name: String, text: String },
    /// Someone started or stopped typing.
    Typing { user_id: String, name: String, typing: bool },
    /// A member joined.
    Joined(Member),
    /// A member left.
    Left(Member),
    /// The connection state changed.
    State(ConnectionState),
    /// Something to tell the user about the room itself (e.g. this chat now hosts it).
    Notice(String),
}

/// One chat participant's session over either protocol: the same messages, members, typing
/// and room switching.
pub struct ChatSession {
    backend: Backend,
    room: String,
    name: String,
    events: mpsc::UnboundedSender<ChatEvent>,
    /// Messages typed while the connection was down, oldest first (at most [`MAX_PENDING`]).
    pending: std::collections::VecDeque<String>,
}

/// Messages kept while offline; past it a message is refused (and the UI keeps its text).
pub const MAX_PENDING: usize = 100;

/// Kept messages sent per [`ChatSession::flush_pending`] call (under Pusher's 10 client
/// events per second, about what goes out in one tick).
pub const FLUSH_BATCH: usize = 4;

/// What became of a message given to [`ChatSession::say`].
#[derive(Debug, PartialEq, Eq)]
pub enum Said {
    /// Sent.
    Sent,
    /// Kept, to be sent in order once the chat is connected again; `n` wait now.
    Pending(usize),
    /// Not kept: [`MAX_PENDING`] messages wait already.
    Refused,
}

enum Backend {
    /// `presence-chat.{room}`; messages and typing are client events.
    Pusher { client: Client, channel: Channel },
    /// `room:{room}` of a Hub-style Phoenix server; messages are shouts, typing is presence.
    Phoenix { socket: phoenix::Socket, channel: phoenix::PhxChannel },
}

/// The display name of a member (its `user_info.name`, else its id).
pub fn member_name(member: &Member) -> String {
    member.info["name"].as_str().map_or_else(|| member.id.clone(), str::to_owned)
}

/// The embedded server behind a chat on the local default (127.0.0.1:8080 unless `--port`
/// says otherwise), and its handover.
///
/// Every local chat watches its own connection. When it cannot reach the server and nothing
/// listens on the address any more (the hosting chat quit, or was killed), it starts a server
/// there itself. Binding the address is the election: exactly one chat can bind it, the
/// others find it listening and reconnect to it, and as long as one chat runs, one of them
/// keeps trying, so the room ends with one server, never two or none. A configured server is
/// never replaced.
pub struct EmbeddedHost {
    port: u16,
    addr: String,
    server: Arc<tokio::sync::Mutex<Option<RunningServer>>>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

impl EmbeddedHost {
    /// For the local default only (`None` otherwise): start the server unless one listens.
    pub async fn start(settings: &Settings) -> Result<Option<Self>, Failure> {
        if !settings.server_is_default {
            return Ok(None);
        }
        let addr = format!("{}:{}", settings.host, settings.port);
        let server = if listening(&addr).await {
            None // someone (another chat, or switchboard serve) is there already
        } else {
            match start_embedded(settings.port).await {
                Ok(server) => Some(server),
                // Another chat bound it a moment ago: join it.
                Err(_) if listening(&addr).await => None,
                Err(e) => return Err(Failure(format!("cannot start the embedded server: {e}"), 1)),
            }
        };
        Ok(Some(Self {
            port: settings.port,
            addr,
            server: Arc::new(tokio::sync::Mutex::new(server)),
            supervisor: None,
        }))
    }

    /// The address, if this chat hosts the server now.
    pub async fn hosting(&self) -> Option<std::net::SocketAddr> {
        self.server.lock().await.as_ref().map(RunningServer::local_addr)
    }

    /// Take over the server when it goes away: `connected` says whether this chat's own
    /// connection is up; `events` hears when this chat starts hosting.
    pub fn keep_the_room(
        &mut self,
        connected: impl Fn() -> bool + Send + Sync + 'static,
        events: mpsc::UnboundedSender<ChatEvent>,
    ) {
        let (port, addr, server) = (self.port, self.addr.clone(), self.server.clone());
        self.supervisor = Some(tokio::spawn(async move {
            loop {
                // Jitter, so chats that lost the server together do not all bind at once
                // (one would win anyway; the others' attempts are wasted work).
                tokio::time::sleep(Duration::from_millis(150 + u64::from(rand::random::<u8>()))).await;
                if connected() || server.lock().await.is_some() || listening(&addr).await {
                    continue;
                }
                let mut slot = server.lock().await;
                if slot.is_none()
                    && let Ok(started) = start_embedded(port).await
                {
                    let at = started.local_addr();
                    *slot = Some(started);
                    let _ = events.send(ChatEvent::Notice(format!(
                        "the server of the room went away: this chat hosts it now, on {at}"
                    )));
                }
            }
        }));
    }

    /// Stop watching, and if this chat hosts the server, stop it once our own leave went
    /// through (so the others see us leave; then one of them takes over).
    pub async fn stop(mut self, whereabouts: &(Protocol, String, Option<String>)) {
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
        if let Some(server) = self.server.lock().await.take() {
            wait_until_left(&server, whereabouts).await;
            server.shutdown().await;
        }
    }
}

/// True if something accepts connections on `addr`.
async fn listening(addr: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await.is_ok_and(|r| r.is_ok())
}

async fn start_embedded(port: u16) -> Result<RunningServer, switchboard_server::ServerError> {
    Server::start(ServerConfig { port, ..ServerConfig::default() }).await
}

impl ChatSession {
    /// Join `room` as `name` with the protocol the settings name.
    pub async fn start(
        settings: &Settings,
        room: &str,
        name: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<ChatEvent>), Failure> {
        let (events, rx) = mpsc::unbounded_channel();
        let backend = match settings.protocol {
            Protocol::Gateway => {
                return Err(Failure(
                    "chat speaks Pusher and Phoenix rooms; the gateway has no presence rooms: use listen, publish, request".into(),
                    2,
                ));
            }
            // RealtimeX is the same channels on another wire: one chat for both.
            Protocol::Pusher | Protocol::RealtimeX => {
                let user_id = format!("{}-{:04x}", sanitize(name), rand::random::<u16>());
                let me = PresenceUser::new(user_id, json!({ "name": name }));
                let client = Client::new(settings.client_options(Some(me.clone()))?);
                let feed = events.clone();
                client.on_state_change(move |_, now| {
                    let _ = feed.send(ChatEvent::State(now.clone()));
                });
                let channel = join(&client, room, &me, &events).await?;
                Backend::Pusher { client, channel }
            }
            Protocol::Phoenix => {
                let options = phoenix::SocketOptions::new(settings.phoenix_endpoint()).params(&[("username", name)]);
                let socket = phoenix::Socket::connect(options).await?;
                let mut states = socket.state_changes();
                states.borrow_and_update(); // the current state is sent below
                let feed = events.clone();
                tokio::spawn(async move {
                    while states.changed().await.is_ok() {
                        let state = states.borrow_and_update().clone();
                        if feed.send(ChatEvent::State(state)).is_err() {
                            break;
                        }
                    }
                });
                let channel = join_phoenix(&socket, room, name, &events).await?;
                Backend::Phoenix { socket, channel }
            }
        };
        let current = match &backend {
            Backend::Pusher { client, .. } => client.state(),
            Backend::Phoenix { socket, .. } => socket.state(),
        };
        let _ = events.send(ChatEvent::State(current));
        let pending = std::collections::VecDeque::new();
        Ok((Self { backend, room: room.to_owned(), name: name.to_owned(), events, pending }, rx))
    }

    /// A probe of whether this session's connection is up now (for [`EmbeddedHost`]).
    pub fn connected_probe(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let backend = match &self.backend {
            Backend::Pusher { client, .. } => Ok(client.clone()),
            Backend::Phoenix { socket, .. } => Err(socket.clone()),
        };
        move || {
            let state = match &backend {
                Ok(client) => client.state(),
                Err(socket) => socket.state(),
            };
            matches!(state, ConnectionState::Connected { .. })
        }
    }

    /// Wait (at most 2 s) until the roster holds this participant: a Phoenix join is
    /// answered before the presence state that lists the members arrives.
    pub async fn settle_roster(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            let me = self.my_id();
            if self.members().iter().any(|m| Some(&m.id) == me.as_ref()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A sender of chat events to this session's feed (for notices from outside it).
    pub fn feed(&self) -> mpsc::UnboundedSender<ChatEvent> {
        self.events.clone()
    }

    /// The room name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Current members.
    pub fn members(&self) -> Vec<Member> {
        match &self.backend {
            Backend::Pusher { channel, .. } => channel.members().iter().collect(),
            Backend::Phoenix { channel, .. } => {
                channel.presence().list_by(|key, _| Member { id: key.to_owned(), info: json!({ "name": key }) })
            }
        }
    }

    /// This participant's own member id.
    pub fn my_id(&self) -> Option<String> {
        match &self.backend {
            Backend::Pusher { channel, .. } => channel.members().me().map(|m| m.id),
            Backend::Phoenix { .. } => Some(self.name.clone()),
        }
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        let state = match &self.backend {
            Backend::Pusher { client, .. } => client.state(),
            Backend::Phoenix { socket, .. } => socket.state(),
        };
        matches!(state, ConnectionState::Connected { .. })
    }

    /// Send a message, or keep it while the chat is offline (behind any already kept, so
    /// the order holds). A message that fails to go out is kept too.
    pub async fn say(&mut self, text: &str) -> Said {
        if self.pending.is_empty() && self.is_connected() && self.send(text).await.is_ok() {
            return Said::Sent;
        }
        if self.pending.len() >= MAX_PENDING {
            return Said::Refused;
        }
        self.pending.push_back(text.to_owned());
        Said::Pending(self.pending.len())
    }

    /// Send the kept messages in order, while connected, at most [`FLUSH_BATCH`] per call
    /// (the UI calls again on its next tick, so a long queue under the client-event rate does
    /// not freeze it); returns how many went out. One that fails stays first in line.
    pub async fn flush_pending(&mut self) -> usize {
        let mut sent = 0;
        while sent < FLUSH_BATCH
            && let Some(text) = self.pending.front().cloned()
        {
            if !self.is_connected() || self.send(&text).await.is_err() {
                break;
            }
            self.pending.pop_front();
            sent += 1;
        }
        sent
    }

    /// The messages still kept (not sent).
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().map(String::as_str)
    }

    /// Send a message.
    pub async fn send(&self, text: &str) -> Result<(), Failure> {
        match &self.backend {
            Backend::Pusher { channel, .. } => {
                channel.trigger("message", &json!({ "name": self.name, "text": text })).await.map_err(Into::into)
            }
            // A shout has no reply: queued in order, sent once the channel is joined.
            Backend::Phoenix { channel, .. } => channel
                .cast("shout", json!({ "body": text, "channel": self.room, "name": self.name }))
                .map_err(Into::into),
        }
    }

    /// Say whether we are typing.
    pub async fn typing(&self, typing: bool) -> Result<(), Failure> {
        match &self.backend {
            Backend::Pusher { channel, .. } => {
                channel.trigger("typing", &json!({ "name": self.name, "typing": typing })).await.map_err(Into::into)
            }
            // Not waited for: a typing mark is not worth holding up the UI (offline, the
            // reply would take the push timeout).
            Backend::Phoenix { channel, .. } => {
                channel.cast("user:typing", json!({ "username": self.name, "typing": typing })).map_err(Into::into)
            }
        }
    }

    /// Leave this room and join `room`. Messages still kept for the old room are not sent
    /// to the new one: they are returned, for the UI to show as not sent.
    pub async fn switch_room(&mut self, room: &str) -> Result<Vec<String>, Failure> {
        let unsent: Vec<String> = self.pending.drain(..).collect();
        match &mut self.backend {
            Backend::Pusher { client, channel } => {
                let id = channel.members().me().map_or_else(|| sanitize(&self.name), |m| m.id);
                let me = PresenceUser::new(id, json!({ "name": self.name }));
                channel.unbind_all();
                channel.unsubscribe().await;
                *channel = join(client, room, &me, &self.events).await?;
            }
            Backend::Phoenix { socket, channel } => {
                let _ = channel.leave().await;
                *channel = join_phoenix(socket, room, &self.name, &self.events).await?;
            }
        }
        self.room = room.to_owned();
        Ok(unsent)
    }

    /// The channel this session is in and the member id it has there, for waiting until the
    /// embedded server has processed our leave.
    pub fn whereabouts(&self) -> (Protocol, String, Option<String>) {
        match &self.backend {
            Backend::Pusher { .. } => (Protocol::Pusher, format!("presence-chat.{}", self.room), self.my_id()),
            Backend::Phoenix { .. } => (Protocol::Phoenix, format!("room:{}", self.room), self.my_id()),
        }
    }

    /// Leave.
    pub async fn quit(&self) {
        match &self.backend {
            Backend::Pusher { client, .. } => client.disconnect().await,
            Backend::Phoenix { socket, channel } => {
                let _ = channel.leave().await;
                socket.disconnect().await;
            }
        }
    }
}

/// Join `room:{room}` on a Hub-style Phoenix server and turn its events into chat events.
async fn join_phoenix(
    socket: &phoenix::Socket,
    room: &str,
    name: &str,
    events: &mpsc::UnboundedSender<ChatEvent>,
) -> Result<phoenix::PhxChannel, Failure> {
    let channel = socket.channel(&format!("room:{room}"), json!({ "username": name }));
    let (me, feed) = (name.to_owned(), events.clone());
    channel.on("shout", move |event| {
        let data: serde_json::Value = event.json().unwrap_or_default();
        let sender = data["name"].as_str().unwrap_or("?").to_owned();
        if sender != me {
            let text = data["body"].as_str().unwrap_or_default().to_owned();
            let _ = feed.send(ChatEvent::Message { user_id: sender.clone(), name: sender, text });
        }
    });
    let (me, feed) = (name.to_owned(), events.clone());
    channel.on("presence:join", move |event| {
        let data: serde_json::Value = event.json().unwrap_or_default();
        let key = data["key"].as_str().unwrap_or_default().to_owned();
        if key == me {
            return;
        }
        if data["current"].is_null() {
            let _ = feed.send(ChatEvent::Joined(Member { id: key.clone(), info: json!({ "name": key }) }));
        }
        let typing = data["joined"]["metas"].as_array().is_some_and(|m| m.iter().any(|m| m["typing"] == true));
        let _ = feed.send(ChatEvent::Typing { user_id: key.clone(), name: key, typing });
    });
    let (me, feed) = (name.to_owned(), events.clone());
    channel.on("presence:leave", move |event| {
        let data: serde_json::Value = event.json().unwrap_or_default();
        let key = data["key"].as_str().unwrap_or_default().to_owned();
        let gone = data["current"]["metas"].as_array().is_none_or(Vec::is_empty);
        if key != me && gone {
            let _ = feed.send(ChatEvent::Left(Member { id: key.clone(), info: json!({ "name": key }) }));
        }
    });
    channel.join().await?;
    Ok(channel)
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
        let user_id = event.user_id().map(str::to_owned).unwrap_or_default();
        let _ = feed.send(ChatEvent::Message { user_id, name, text });
    });
    let feed = events.clone();
    channel.bind("client-typing", move |event| {
        let data: serde_json::Value = event.json().unwrap_or_default();
        let _ = feed.send(ChatEvent::Typing {
            user_id: event.user_id().map(str::to_owned).unwrap_or_default(),
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
) -> Result<(Protocol, String, Option<String>), Failure> {
    if let Some(addr) = embedded {
        eprintln!("switchboard chat: started the embedded server on {addr}");
    }
    // Who is here, on stdout, so a script sees it without asking (/who prints the same).
    session.settle_roster().await;
    eprintln!("switchboard chat: {} in room {} ({} members)", session.name, session.room, session.members().len());
    print_members(&session);
    let mut last_state = String::new();
    // Kept messages are retried on this tick (and at once when the state turns connected).
    let mut retry = tokio::time::interval(Duration::from_millis(250));
    let terminated = terminated();
    tokio::pin!(terminated);
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
                        ("/who", _) => print_members(&session),
                        ("/room", room) if !room.is_empty() => {
                            let left = session.room.clone();
                            match session.switch_room(room).await {
                                Ok(unsent) => {
                                    for text in unsent {
                                        eprintln!("switchboard chat: left {left} offline, NOT SENT: {text}");
                                    }
                                    eprintln!("switchboard chat: now in room {room}");
                                    session.settle_roster().await;
                                    print_members(&session);
                                }
                                Err(Failure(message, _)) => eprintln!("switchboard chat: cannot join {room}: {message}"),
                            }
                        }
                        _ => {
                            // Typing marks are best effort: offline they are not worth keeping.
                            let _ = session.typing(true).await;
                            match session.say(&line).await {
                                Said::Sent => {}
                                Said::Pending(n) => eprintln!("switchboard chat: offline: kept to send on reconnect ({n} waiting): {line}"),
                                Said::Refused => eprintln!("switchboard chat: offline with {MAX_PENDING} messages waiting: NOT SENT: {line}"),
                            }
                            let _ = session.typing(false).await;
                        }
                    }
                }
                // End of input: send what is kept (waiting up to 10 s for the connection),
                // give the last messages a moment to arrive, then leave.
                Ok(None) | Err(_) => {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                    while session.pending().next().is_some() && tokio::time::Instant::now() < deadline {
                        report_flushed(session.flush_pending().await);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    break;
                }
            },
            _ = retry.tick(), if session.pending().next().is_some() => report_flushed(session.flush_pending().await),
            () = &mut terminated => {
                eprintln!("switchboard chat: terminated: leaving the room");
                break;
            }
            Some(event) = events.recv() => match event {
                ChatEvent::Message { name, text, .. } => println!("{name}: {text}"),
                ChatEvent::Joined(member) => println!("* {} joined", member_name(&member)),
                ChatEvent::Left(member) => println!("* {} left", member_name(&member)),
                ChatEvent::Typing { name, typing, .. } => {
                    if typing {
                        eprintln!("~ {name} is typing");
                    }
                }
                ChatEvent::State(state) => {
                    // The state as of joining and the change that led to it can be the same.
                    let now = describe_state(&state);
                    if now != last_state {
                        eprintln!("switchboard chat: {now}");
                        last_state = now;
                    }
                    if matches!(state, ConnectionState::Connected { .. }) {
                        report_flushed(session.flush_pending().await);
                    }
                }
                ChatEvent::Notice(text) => eprintln!("switchboard chat: {text}"),
            },
        }
    }
    for text in session.pending() {
        eprintln!("switchboard chat: still offline, NOT SENT: {text}");
    }
    let whereabouts = session.whereabouts();
    session.quit().await;
    Ok(whereabouts)
}

fn report_flushed(sent: usize) {
    if sent > 0 {
        eprintln!("switchboard chat: sent {sent} message(s) kept while offline");
    }
}

/// Resolves when the process is asked to stop (SIGTERM, as `kill` or systemd send it;
/// SIGINT, Ctrl-C in line mode; SIGHUP, its terminal closed): the chat then leaves as
/// `/quit` does, so the others see it leave, its server is handed over, unsent messages are
/// listed, and the TUI gives the terminal back. Never resolves where no signal can be watched.
pub fn terminated() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals: Vec<tokio::signal::unix::Signal> = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::terminate(), SignalKind::interrupt(), SignalKind::hangup()]
            .into_iter()
            .filter_map(|kind| signal(kind).ok())
            .collect()
    };
    async move {
        #[cfg(unix)]
        if !signals.is_empty() {
            let waits = signals.into_iter().map(|mut s| Box::pin(async move { s.recv().await }));
            let _ = futures_util::future::select_all(waits).await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// `* members of ROOM: a, b` on stdout.
fn print_members(session: &ChatSession) {
    let names: Vec<String> = session.members().iter().map(member_name).collect();
    println!("* members of {}: {}", session.room, names.join(", "));
}

/// Before stopping the embedded server, wait (at most 2 s) until it has processed our own
/// leave, so the others hear `left` rather than a server shutdown first.
pub async fn wait_until_left(server: &RunningServer, (protocol, channel, me): &(Protocol, String, Option<String>)) {
    let Some(me) = me else { return };
    let gone = || match protocol {
        Protocol::Pusher | Protocol::RealtimeX => server
            .app(switchboard_server::config::DEV_APP_ID)
            .is_none_or(|app| !app.presence_users(channel).contains(me)),
        Protocol::Phoenix => !server.phoenix_rooms().usernames(channel).contains(me),
        Protocol::Gateway => true,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !gone() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
