//! The background task that owns the socket: connect, handshake, liveness, reconnect with
//! backoff, subscriptions (with fresh auth for every socket id), presence, client events.
//!
//! One task per client. The cheap cloneable [`crate::Client`] talks to it through a command
//! channel; it answers through oneshot replies, the state watch and the listeners. Auth runs
//! in spawned futures whose answers come back tagged with the socket id and a generation, so
//! an answer for an old socket or a cancelled subscription is dropped, never sent.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard_protocol::frame::{encode_client_frame, push_json_string};
use switchboard_protocol::messages::{ConnectionEstablished, ErrorData};
use switchboard_protocol::socketio::Assembler;
use switchboard_protocol::{ChannelKind, CloseAction, ErrorCode, Frame, PackedFrame};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_websockets::{ClientBuilder, Message};

use crate::backoff::Backoff;
use crate::delivery::{Dispatcher, Outbox, Stall};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{DECRYPTION_ERROR_EVENT, Event, GAP_EVENT};
use crate::listeners::Listeners;
use crate::pusher::auth::{AuthRequest, Authorizer, ChannelAuth, PresenceUser, UserAuth};
use crate::pusher::channel::ChannelShared;
use crate::pusher::options::{ClientOptions, Protocol};
use crate::pusher::presence::{Member, id_string};
use crate::queue::Burst;
use crate::realtimex::wire::{self as rtx_wire, Inbound};
use crate::state::ConnectionState;

type Ws = crate::transport::ClientSocket;

/// Client events waiting for the rate limit, at most.
const MAX_QUEUED_CLIENT_EVENTS: usize = 1_000;
/// Encrypted events held while a new key is fetched, at most per channel.
const MAX_HELD_ENCRYPTED: usize = 100;

/// What the client asks of the task.
pub(crate) enum Command {
    Subscribe {
        channel: Arc<ChannelShared>,
        presence: Option<PresenceUser>,
        reply: oneshot::Sender<Result<()>>,
    },
    Unsubscribe {
        name: String,
    },
    Trigger {
        channel: String,
        event: String,
        data: String,
        reply: oneshot::Sender<Result<()>>,
    },
    Signin {
        reply: oneshot::Sender<Result<()>>,
    },
    /// RealtimeX: a raw Socket.IO event, answered when written or, with `Ack`, when the
    /// server acks it.
    Emit {
        event: String,
        args: Vec<Value>,
        reply: EmitReply,
    },
    Disconnect,
}

/// Who waits for an emit.
pub(crate) enum EmitReply {
    /// Told when the frame is written.
    Sent(oneshot::Sender<Result<()>>),
    /// Told the server's ack arguments.
    Ack(oneshot::Sender<Result<Vec<Value>>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubStatus {
    /// Not sent on this connection (offline, or waiting to start).
    Idle,
    /// Waiting for the authorizer.
    Authorizing,
    /// `pusher:subscribe` sent, no answer yet.
    Sent,
    /// Confirmed by the server.
    Subscribed,
}

struct Sub {
    shared: Arc<ChannelShared>,
    presence: Option<PresenceUser>,
    status: SubStatus,
    /// Bumped every time the subscription is (re)started; stale auth answers carry an old one.
    generation: u64,
    waiters: Vec<oneshot::Sender<Result<()>>>,
    /// Confirmed on an earlier connection: the next confirmation is a resubscription.
    confirmed_before: bool,
    /// Encrypted channels: the key from the auth answer's `shared_secret`.
    key: Option<[u8; 32]>,
    /// Encrypted channels: a new key is being fetched after a decryption failure.
    rekeying: bool,
    /// Encrypted events waiting for that key.
    held: Vec<Event>,
}

impl Sub {
    fn new(
        shared: Arc<ChannelShared>,
        presence: Option<PresenceUser>,
        waiters: Vec<oneshot::Sender<Result<()>>>,
    ) -> Self {
        Self {
            shared,
            presence,
            status: SubStatus::Idle,
            generation: 0,
            waiters,
            confirmed_before: false,
            key: None,
            rekeying: false,
            held: Vec::new(),
        }
    }
}

/// What an auth answer is for.
enum AuthFor {
    /// Subscribing the channel.
    Subscribe(String),
    /// A fresh key for an encrypted channel after a decryption failure (pusher-js retries once).
    Rekey(String),
    /// User sign-in.
    Signin,
}

enum AuthAnswer {
    Channel(Result<ChannelAuth>),
    User(Result<UserAuth>),
}

struct AuthDone {
    target: AuthFor,
    generation: u64,
    socket_id: String,
    answer: AuthAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigninStatus {
    Idle,
    Authorizing,
    Sent,
    Done,
}

/// User sign-in: wanted once asked for, redone after every reconnect.
struct Signin {
    wanted: bool,
    status: SigninStatus,
    generation: u64,
    waiters: Vec<oneshot::Sender<Result<()>>>,
    user_id: Option<String>,
}

/// A request the server answers in order, tracked so a channel-less `pusher:error` can be
/// attributed to the right one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unanswered {
    /// `pusher:subscribe` of an authorized channel.
    Subscribe(String),
    /// A subscribe that was cancelled (unsubscribed) before its answer: the answer still comes.
    Cancelled(String),
    /// `pusher:signin`.
    Signin,
}

/// Why a connection (or an attempt) ended.
enum Ended {
    /// `disconnect()` or every client handle dropped.
    User,
    /// The socket closed or failed; `code` is the close code or the last `pusher:error` code.
    Lost { code: Option<u16>, reason: String },
}

/// The client-event window: a second, plus a margin, because servers count fixed windows from
/// the first event's arrival, and network jitter could otherwise land an event paced exactly
/// one second later inside the server's window (and get it refused with 4301).
const CLIENT_EVENT_WINDOW: Duration = Duration::from_millis(1_100);

/// Client-event rate limiting: at most `rate` sends in any window; the rest wait.
struct ClientEvents {
    rate: usize,
    sent_at: VecDeque<Instant>,
    /// (channel, encoded frame, reply), in trigger order.
    queue: VecDeque<(String, String, oneshot::Sender<Result<()>>)>,
}

impl ClientEvents {
    /// When the next queued event may go, if one is waiting.
    fn next_slot(&mut self, now: Instant) -> Option<Instant> {
        while self.sent_at.front().is_some_and(|t| now.duration_since(*t) >= CLIENT_EVENT_WINDOW) {
            self.sent_at.pop_front();
        }
        if self.queue.is_empty() {
            return None;
        }
        if self.sent_at.len() < self.rate { Some(now) } else { self.sent_at.front().map(|t| *t + CLIENT_EVENT_WINDOW) }
    }

    fn fail_all(&mut self, error: &Error) {
        for (_, _, reply) in self.queue.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

pub(crate) struct ConnectionTask {
    options: ClientOptions,
    tls: bool,
    state: watch::Sender<ConnectionState>,
    global: Arc<Listeners>,
    /// Delivery to listeners, with backpressure.
    outbox: Outbox,
    /// By name; looked up for every received event, hence the fast (non-SipHash) hasher.
    subs: HashMap<String, Sub, foldhash::fast::RandomState>,
    /// Channels whose `pusher:subscribe` is unanswered, in send order: a channel-less
    /// `pusher:error` 4009 (Reverb, Sockudo) belongs to the oldest.
    sent_order: VecDeque<Unanswered>,
    next_generation: u64,
    backoff: Backoff,
    client_events: ClientEvents,
    auth_tx: mpsc::UnboundedSender<AuthDone>,
    socket_id: Option<String>,
    /// The code of the last `pusher:error`, to classify a close that carries none (Reverb
    /// sends the error, then drops TCP).
    last_error_code: Option<u16>,
    signin: Signin,
    /// Listeners of the signed-in user's `#server-to-user-{id}` events.
    user: Arc<Listeners>,
    /// A `pusher:ping` (RealtimeX: an Engine.IO ping) came in this burst: one pong goes out
    /// when it ends.
    pong_due: bool,
    /// The wire (see `crate::realtimex` for what RealtimeX changes).
    protocol: Protocol,
    /// RealtimeX: the server pings, so no client pings; the connection is dead after
    /// `activity` without a frame.
    server_pings: bool,
    /// How often to show the server we are alive while a full listener keeps us from reading.
    keepalive_every: Duration,
    /// RealtimeX: a binary packet whose attachments are coming.
    assembling: Option<Assembler>,
    /// RealtimeX: emits awaiting the server's ack, by ack id (registered before the write).
    acks: HashMap<u64, oneshot::Sender<Result<Vec<Value>>>>,
    next_ack_id: u64,
}

/// Start the task. Returns the command sender and the state receiver.
pub(crate) fn spawn(
    options: ClientOptions,
    global: Arc<Listeners>,
    user: Arc<Listeners>,
    dispatcher: Dispatcher,
) -> (mpsc::UnboundedSender<Command>, watch::Receiver<ConnectionState>) {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (state, state_rx) = watch::channel(ConnectionState::Initialized);
    let (auth_tx, auth_rx) = mpsc::unbounded_channel();
    let task = ConnectionTask {
        tls: options.tls,
        backoff: Backoff::new(options.reconnect_min, options.reconnect_max),
        client_events: ClientEvents {
            rate: options.client_event_rate as usize,
            sent_at: VecDeque::new(),
            queue: VecDeque::new(),
        },
        outbox: Outbox::new(dispatcher, options.slow_consumer),
        options,
        state,
        global,
        subs: HashMap::default(),
        sent_order: VecDeque::new(),
        next_generation: 0,
        auth_tx,
        socket_id: None,
        last_error_code: None,
        signin: Signin { wanted: false, status: SigninStatus::Idle, generation: 0, waiters: Vec::new(), user_id: None },
        user,
        pong_due: false,
        protocol: Protocol::Pusher,
        server_pings: false,
        keepalive_every: Duration::from_secs(1),
        assembling: None,
        acks: HashMap::new(),
        next_ack_id: 0,
    };
    let mut task = task;
    task.protocol = task.options.protocol;
    let runtime = task.options.io_runtime;
    crate::io_thread::spawn(runtime, task.run(commands, auth_rx));
    (commands_tx, state_rx)
}

impl ConnectionTask {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut auth_rx: mpsc::UnboundedReceiver<AuthDone>,
    ) {
        let mut failures: u32 = 0;
        loop {
            self.state.send_replace(ConnectionState::Connecting);
            let (ended, was_healthy) = self.connect_and_serve(&mut commands, &mut auth_rx).await;
            self.on_connection_end();
            let (code, reason) = match ended {
                Ended::User => return self.finish(ConnectionState::Disconnected),
                Ended::Lost { code, reason } => (code, reason),
            };
            // Only a connection that lasted counts as a recovery: a server that accepts and
            // closes at once is retried with a growing delay.
            if was_healthy {
                failures = 0;
                self.backoff.reset();
            }
            failures += 1;
            let action = code.map_or(CloseAction::Backoff, |c| ErrorCode(c).close_action());
            if action == CloseAction::Stop {
                return self.finish(ConnectionState::Failed { reason, code });
            }
            if !self.options.reconnect {
                return self.finish(ConnectionState::Failed { reason: format!("{reason} (reconnect is off)"), code });
            }
            if self.options.max_retries.is_some_and(|max| failures > max) {
                let reason = format!("{reason} (gave up after {} attempts)", failures);
                return self.finish(ConnectionState::Failed { reason, code });
            }
            let first_retry = self.backoff.attempts() == 0;
            let backoff = self.backoff.next_delay();
            let delay = match action {
                CloseAction::SwitchToTls => {
                    self.tls = true;
                    Duration::ZERO
                }
                CloseAction::ReconnectNow if first_retry => Duration::ZERO,
                _ => backoff,
            };
            self.state.send_replace(ConnectionState::Unavailable { retry_in: delay, reason });
            if let Ended::User = self.wait_offline(delay, &mut commands).await {
                return self.finish(ConnectionState::Disconnected);
            }
        }
    }

    fn finish(&mut self, state: ConnectionState) {
        let error = match &state {
            ConnectionState::Failed { reason, code } => {
                let e = Error::new(ErrorKind::Connection, reason.clone());
                code.map_or(e.clone(), |c| e.with_code(c))
            }
            _ => Error::closed(),
        };
        for sub in self.subs.values_mut() {
            for waiter in sub.waiters.drain(..) {
                let _ = waiter.send(Err(error.clone()));
            }
        }
        self.client_events.fail_all(&error);
        for (_, waiter) in self.acks.drain() {
            let _ = waiter.send(Err(error.clone()));
        }
        for waiter in self.signin.waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        self.state.send_replace(state);
        // Nothing more will come: streams end (after what they hold), so a consumer's
        // `while let Some(..)` loop ends instead of waiting for ever.
        for sub in self.subs.values() {
            sub.shared.listeners.close();
        }
        self.global.close();
        self.user.close();
    }

    /// Sleep `delay` while answering commands the offline way.
    async fn wait_offline(&mut self, delay: Duration, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ended::Lost { code: None, reason: String::new() },
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Ended::User,
                    Some(command) => self.on_command_offline(command),
                },
            }
        }
    }

    fn on_command_offline(&mut self, command: Command) {
        match command {
            Command::Subscribe { channel, presence, reply } => {
                self.add_sub(channel, presence, reply);
            }
            Command::Unsubscribe { name } => {
                self.remove_sub(&name);
            }
            Command::Trigger { channel, reply, .. } => {
                let _ = reply.send(Err(Error::new(
                    ErrorKind::Connection,
                    format!("not connected: client event on {channel} not sent"),
                )));
            }
            Command::Signin { reply } if self.protocol == Protocol::RealtimeX => {
                let _ = reply.send(Err(no_signin()));
            }
            Command::Signin { reply } => {
                self.signin.wanted = true;
                self.signin.waiters.push(reply);
            }
            Command::Emit { event, reply, .. } => {
                let error = Error::new(ErrorKind::Connection, format!("not connected: {event} not sent"));
                match reply {
                    EmitReply::Sent(reply) => {
                        let _ = reply.send(Err(error));
                    }
                    EmitReply::Ack(reply) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            Command::Disconnect => {}
        }
    }

    /// Forget a subscription the user left; waiters still waiting are told so.
    fn remove_sub(&mut self, name: &str) -> Option<Sub> {
        let mut sub = self.subs.remove(name)?;
        sub.shared.subscribed.store(false, Ordering::Release);
        sub.shared.listeners.close_hold();
        for waiter in sub.waiters.drain(..) {
            let message = format!("{name}: unsubscribed before the server answered");
            let _ = waiter.send(Err(Error::new(ErrorKind::Subscription, message)));
        }
        Some(sub)
    }

    /// Record a subscription; returns true if it is new.
    fn add_sub(
        &mut self,
        channel: Arc<ChannelShared>,
        presence: Option<PresenceUser>,
        reply: oneshot::Sender<Result<()>>,
    ) -> bool {
        if let Some(sub) = self.subs.get_mut(&channel.name) {
            if presence.is_some() {
                sub.presence = presence;
            }
            if sub.status == SubStatus::Subscribed {
                let _ = reply.send(Ok(()));
            } else {
                sub.waiters.push(reply);
            }
            return false;
        }
        let name = channel.name.clone();
        self.subs.insert(name, Sub::new(channel, presence, vec![reply]));
        true
    }

    async fn connect_and_serve(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        auth_rx: &mut mpsc::UnboundedReceiver<AuthDone>,
    ) -> (Ended, bool) {
        let url = {
            let mut opts = self.options.clone();
            opts.tls = self.tls;
            opts.url()
        };
        let attempt = open(
            url.clone(),
            self.options.headers.clone(),
            self.options.connect_timeout,
            self.options.max_message_size,
            self.protocol,
        );
        tokio::pin!(attempt);
        let (mut ws, established) = loop {
            tokio::select! {
                result = &mut attempt => match result {
                    Ok(ok) => break ok,
                    Err(ended) => return (ended, false),
                },
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return (Ended::User, false),
                    Some(command) => self.on_command_offline(command),
                },
            }
        };
        let (established, heartbeat) = established;
        let socket_id = established.socket_id.clone();
        let server_timeout = established.activity_timeout.map_or(self.options.activity_timeout, Duration::from_secs);
        let mut activity = self.options.activity_timeout.min(server_timeout).max(Duration::from_secs(1));
        self.keepalive_every = activity;
        self.server_pings = false;
        if let Some((interval, timeout)) = heartbeat {
            // Engine.IO: the server pings every interval and gives up after timeout more.
            activity = interval + timeout;
            // Unasked pongs while not reading: often enough that one always lands within
            // the server's pong wait after its ping (whenever that ping comes).
            self.keepalive_every = (interval.min(timeout) / 2).max(Duration::from_millis(10));
            self.server_pings = true;
        }
        self.socket_id = Some(socket_id.clone());
        self.last_error_code = None;
        let connected_at = Instant::now();
        self.state.send_replace(ConnectionState::Connected { socket_id: socket_id.clone() });
        tracing::debug!(%url, %socket_id, "connected");
        let ended = self.serve(&mut ws, commands, auth_rx, activity).await;
        if let Ended::User = ended {
            let goodbye = async {
                if self.protocol == Protocol::RealtimeX {
                    // Leave the namespace, so the server drops our channels at once.
                    ws.send(Message::text(rtx_wire::DISCONNECT.to_owned())).await?;
                }
                ws.send(Message::close(None, "")).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
        }
        (ended, connected_at.elapsed() >= self.options.healthy_after)
    }

    async fn serve(
        &mut self,
        ws: &mut Ws,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        auth_rx: &mut mpsc::UnboundedReceiver<AuthDone>,
        activity: Duration,
    ) -> Ended {
        // The user's own channel waits for the sign-in, which the server checks first.
        let names: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.shared.kind != ChannelKind::ServerToUser)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if let Err(ended) = self.start_sub(&name, ws).await {
                return ended;
            }
        }
        if self.signin.wanted {
            self.start_signin();
        }
        let mut last_inbound = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut close_code: Option<u16> = None;
        // The ping timer is moved lazily: when it fires early (traffic came since it was
        // set) it is re-armed, so busy connections never touch the timer wheel per frame.
        let ping_timer = tokio::time::sleep_until(last_inbound + activity);
        let events_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(ping_timer, events_timer);
        loop {
            if self.outbox.is_blocked() {
                if let Err(ended) = self.wait_for_listeners(ws, commands, auth_rx, activity, &mut close_code).await {
                    return ended;
                }
                // Frames waited in the socket all along: the server is alive. Pongs to pings
                // written meanwhile are read from here on.
                last_inbound = Instant::now();
                ping_sent = None;
                ping_timer.as_mut().reset(last_inbound + activity);
            }
            let next_event_slot = self.client_events.next_slot(Instant::now());
            if let Some(slot) = next_event_slot
                && events_timer.deadline() != slot
            {
                events_timer.as_mut().reset(slot);
            }
            tokio::select! {
                inbound = ws.next() => {
                    last_inbound = Instant::now();
                    if ping_sent.take().is_some() {
                        // The server answered: the next ping is an activity timeout from now,
                        // not a pong timeout from the last ping (the timer was set to that).
                        ping_timer.as_mut().reset(last_inbound + activity);
                    }
                    // Handle this frame and the ones already buffered without going back
                    // through select!, which matters at hundreds of thousands of frames/s,
                    // and wake each listener once for the whole burst.
                    let mut burst = Burst::new(self.outbox.batch());
                    let mut inbound = inbound;
                    loop {
                        if let Err(ended) = self.on_inbound(inbound, ws, &mut close_code).await {
                            return ended;
                        }
                        if self.outbox.is_blocked() {
                            break; // a listener is full: read no further (backpressure)
                        }
                        match burst.next_buffered(ws) {
                            Some(next) => inbound = next,
                            None => break,
                        }
                    }
                    burst.end().await;
                    if let Err(ended) = self.send_pong_if_due(ws).await {
                        return ended;
                    }
                },
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Ended::User,
                    Some(command) => if let Err(ended) = self.on_command(command, ws).await {
                        return ended;
                    },
                },
                Some(done) = auth_rx.recv() => if let Err(ended) = self.on_auth(done, ws).await {
                    return ended;
                },
                () = &mut ping_timer => {
                    let due = last_inbound + activity;
                    if ping_sent.is_none() && due > Instant::now() {
                        ping_timer.as_mut().reset(due); // traffic came since: not idle yet
                        continue;
                    }
                    if self.server_pings {
                        return Ended::Lost {
                            code: Some(ErrorCode::PONG_NOT_RECEIVED.0),
                            reason: format!("nothing from the server for pingInterval + pingTimeout ({activity:?}): the connection is dead"),
                        };
                    }
                    if ping_sent.is_some() {
                        return Ended::Lost {
                            code: Some(ErrorCode::PONG_NOT_RECEIVED.0),
                            reason: format!("no reply to a ping within {:?}: the connection is dead", self.options.pong_timeout),
                        };
                    }
                    if let Err(ended) = send(ws, self.options.pong_timeout, r#"{"event":"pusher:ping","data":{}}"#.to_owned()).await {
                        return ended;
                    }
                    let now = Instant::now();
                    ping_sent = Some(now);
                    ping_timer.as_mut().reset(now + self.options.pong_timeout);
                }
                () = &mut events_timer, if next_event_slot.is_some() => {
                    if let Err(ended) = self.flush_client_events(ws).await {
                        return ended;
                    }
                }
            }
        }
    }

    /// A listener has no room: read nothing more from the socket until it has (TCP then
    /// slows the server). Commands and auth answers are still served, and a `pusher:ping`
    /// is written every `activity`, so the server sees the client alive; its replies wait
    /// unread with the events. A listener that takes nothing for the stall limit meets the
    /// policy (see `delivery.rs`).
    async fn wait_for_listeners(
        &mut self,
        ws: &mut Ws,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        auth_rx: &mut mpsc::UnboundedReceiver<AuthDone>,
        activity: Duration,
        close_code: &mut Option<u16>,
    ) -> Result<(), Ended> {
        let _ = activity;
        let mut next_ping = Instant::now() + self.keepalive_every;
        loop {
            let Some((blocker, stall_at)) = self.outbox.flush() else { return Ok(()) };
            // Consumers must see what is queued for them before the reader waits on them.
            self.outbox.release_held();
            // An answer someone awaits (a subscription, the sign-in) may sit behind the
            // unread events, and the consumer may be the one awaiting it: read on, keeping
            // what arrives in order behind the waiting events, up to a bound.
            let awaited =
                self.signin.status == SigninStatus::Sent || self.subs.values().any(|s| s.status == SubStatus::Sent);
            let read_on = self.outbox.may_read_on(awaited);
            let event_slot = self.client_events.next_slot(Instant::now());
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                () = blocker.wait() => {}
                () = tokio::time::sleep_until(stall_at) => {
                    if self.outbox.stalled() == Stall::Reconnect {
                        return Err(Ended::Lost {
                            code: None,
                            reason: "a listener took no event within the stall limit: reconnecting (policy StallAction::Reconnect)".into(),
                        });
                    }
                }
                () = tokio::time::sleep_until(next_ping) => {
                    send(ws, self.options.pong_timeout, self.keepalive_text()).await?;
                    next_ping = Instant::now() + self.keepalive_every;
                }
                // Client events waiting for the rate limit still go out.
                () = tokio::time::sleep_until(event_slot.unwrap_or(far)), if event_slot.is_some() => {
                    self.flush_client_events(ws).await?;
                }
                inbound = ws.next(), if read_on => {
                    self.on_inbound(inbound, ws, close_code).await?;
                    self.send_pong_if_due(ws).await?;
                }
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Err(Ended::User),
                    Some(command) => self.on_command(command, ws).await?,
                },
                Some(done) = auth_rx.recv() => self.on_auth(done, ws).await?,
            }
        }
    }

    /// Handle one frame from the socket (or its end).
    async fn on_inbound(
        &mut self,
        inbound: Option<Result<Message, tokio_websockets::Error>>,
        ws: &mut Ws,
        close_code: &mut Option<u16>,
    ) -> Result<(), Ended> {
        match inbound {
            None => {
                let code = close_code.or(self.last_error_code);
                Err(Ended::Lost { code, reason: describe_close(code, "the server closed the connection") })
            }
            Some(Err(e)) => {
                let reason = crate::transport::close_after_read_error(ws, &e).await;
                if matches!(e, tokio_websockets::Error::PayloadTooLong { .. }) {
                    tracing::warn!("{reason}");
                    return Err(Ended::Lost { code: Some(1009), reason });
                }
                let code = close_code.or(self.last_error_code);
                Err(Ended::Lost { code, reason: describe_close(code, &reason) })
            }
            Some(Ok(message)) => {
                if let Some((code, _)) = message.as_close() {
                    *close_code = Some(u16::from(code));
                    Ok(())
                } else if let Some(text) = message.as_text() {
                    match self.protocol {
                        Protocol::Pusher => self.on_text(text, ws).await,
                        Protocol::RealtimeX => self.on_realtimex_text(text, ws).await,
                    }
                } else if self.protocol == Protocol::RealtimeX && message.is_binary() {
                    self.on_realtimex_binary(message.into_payload().to_vec(), ws).await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Answer the pings of the frames just handled with one pong: a server (or an attacker)
    /// that floods pings gets one write per burst, not one per ping.
    async fn send_pong_if_due(&mut self, ws: &mut Ws) -> Result<(), Ended> {
        if !std::mem::take(&mut self.pong_due) {
            return Ok(());
        }
        let pong = match self.protocol {
            Protocol::Pusher => r#"{"event":"pusher:pong","data":{}}"#.to_owned(),
            Protocol::RealtimeX => rtx_wire::PONG.to_owned(),
        };
        send(ws, self.options.pong_timeout, pong).await
    }

    /// What shows the server we are alive while we do not read: a `pusher:ping`, or an
    /// unasked Engine.IO pong.
    fn keepalive_text(&self) -> String {
        match self.protocol {
            Protocol::Pusher => r#"{"event":"pusher:ping","data":{}}"#.to_owned(),
            Protocol::RealtimeX => rtx_wire::PONG.to_owned(),
        }
    }

    fn subscribe_text(&self, channel: &str, auth: &str, channel_data: Option<&str>) -> String {
        match self.protocol {
            Protocol::Pusher => subscribe_frame(channel, auth, channel_data),
            Protocol::RealtimeX => rtx_wire::subscribe(channel, auth, channel_data),
        }
    }

    fn unsubscribe_text(&self, channel: &str) -> String {
        match self.protocol {
            Protocol::Pusher => {
                let mut frame = String::from(r#"{"event":"pusher:unsubscribe","data":{"channel":"#);
                push_json_string(&mut frame, channel);
                frame.push_str("}}");
                frame
            }
            Protocol::RealtimeX => rtx_wire::unsubscribe(channel),
        }
    }

    /// Forget per-connection state; subscriptions wait for the next connection.
    fn on_connection_end(&mut self) {
        self.socket_id = None;
        self.sent_order.clear();
        self.assembling = None;
        // Never re-sent: a message sent twice is worse than one reported failed.
        for (_, waiter) in self.acks.drain() {
            let _ = waiter.send(Err(Error::new(ErrorKind::Connection, "connection lost before the server acked")));
        }
        for sub in self.subs.values_mut() {
            sub.status = SubStatus::Idle;
            sub.shared.subscribed.store(false, Ordering::Release);
            // A key request in flight is for the old socket and will be dropped as stale;
            // events held for it belong to the gap the resubscription reports.
            sub.rekeying = false;
            sub.held.clear();
        }
        self.client_events
            .fail_all(&Error::new(ErrorKind::Connection, "connection lost before the client event was sent"));
        self.client_events.sent_at.clear();
        self.signin.status = SigninStatus::Idle;
    }

    /// Ask the authorizer for a sign-in for the current socket.
    fn start_signin(&mut self) {
        let Some(socket_id) = self.socket_id.clone() else { return };
        let Some(authorizer) = self.options.authorizer.clone() else {
            self.fail_signin(Error::new(
                ErrorKind::Authentication,
                "sign-in needs an authorizer: .secret() with a user, or an HttpAuthorizer with user_endpoint",
            ));
            return;
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        self.signin.generation = generation;
        self.signin.status = SigninStatus::Authorizing;
        let tx = self.auth_tx.clone();
        let timeout = self.options.subscribe_timeout;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, authorizer.authenticate_user(socket_id.clone())).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the authorizer did not answer the sign-in within {timeout:?}"),
                )),
            };
            let _ =
                tx.send(AuthDone { target: AuthFor::Signin, generation, socket_id, answer: AuthAnswer::User(result) });
        });
    }

    /// The sign-in failed. A refusal (4009, 401/403/419) stops it; anything else (the
    /// endpoint was down, a timeout) leaves it wanted, so the next connection tries again.
    fn fail_signin(&mut self, error: Error) {
        let refused = error.code() == Some(4009)
            || matches!(error.status(), Some(401 | 403 | 419))
            || error.kind() == ErrorKind::Protocol;
        if refused {
            self.signin.wanted = false;
        }
        self.signin.status = SigninStatus::Idle;
        for waiter in self.signin.waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        let mut data = String::from("{\"error\":");
        push_json_string(&mut data, error.message());
        data.push('}');
        self.outbox.deliver(&self.user, Event::internal(None, "pusher:signin_error", Some(data)));
    }

    async fn on_signin_success(&mut self, frame: &Frame, ws: &mut Ws) -> Result<(), Ended> {
        if self.signin.status != SigninStatus::Sent {
            return Ok(());
        }
        self.sent_order.retain(|p| *p != Unanswered::Signin);
        let data: Value = frame.data.parse().unwrap_or(Value::Null);
        let user: Option<Value> = data["user_data"].as_str().and_then(|u| serde_json::from_str(u).ok());
        let Some(id) = user.as_ref().and_then(|u| u["id"].as_str()).filter(|id| !id.is_empty()).map(str::to_owned)
        else {
            self.fail_signin(Error::new(ErrorKind::Protocol, "signin_success without a user_data id"));
            return Ok(());
        };
        self.signin.status = SigninStatus::Done;
        let prefix = switchboard_protocol::channel::SERVER_TO_USER_PREFIX;
        let channel = format!("{prefix}{id}");
        if self.signin.user_id.as_deref() != Some(id.as_str()) {
            if let Some(old) = self.signin.user_id.take() {
                self.subs.remove(&format!("{prefix}{old}"));
            }
            let shared =
                Arc::new(ChannelShared::with_listeners(channel.clone(), ChannelKind::ServerToUser, self.user.clone()));
            self.subs.insert(channel.clone(), Sub::new(shared, None, Vec::new()));
            self.signin.user_id = Some(id);
        }
        for waiter in self.signin.waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        let event = Event::internal(None, "pusher:signin_success", frame.data.as_text().map(str::to_owned));
        self.outbox.deliver(&self.user, event);
        self.start_sub(&channel, ws).await
    }

    /// Authorize (if needed) and send `pusher:subscribe` for `name` on this connection.
    async fn start_sub(&mut self, name: &str, ws: &mut Ws) -> Result<(), Ended> {
        let Some(socket_id) = self.socket_id.clone() else { return Ok(()) };
        self.next_generation += 1;
        let generation = self.next_generation;
        let Some(sub) = self.subs.get_mut(name) else { return Ok(()) };
        sub.generation = generation;
        let kind = sub.shared.kind;
        if !matches!(kind, ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence) {
            sub.status = SubStatus::Sent;
            let frame = self.subscribe_text(name, "", None);
            return send(ws, self.options.pong_timeout, frame).await;
        }
        let Some(authorizer) = self.options.authorizer.clone() else {
            let error = Error::new(
                ErrorKind::Authentication,
                format!("{name} needs authorization: configure .secret(), an HttpAuthorizer or .authorizer()"),
            );
            self.fail_sub(name, error);
            return Ok(());
        };
        sub.status = SubStatus::Authorizing;
        let request = AuthRequest { socket_id, channel: name.to_owned(), presence: sub.presence.clone() };
        self.spawn_channel_auth(authorizer, request, generation, AuthFor::Subscribe(name.to_owned()));
        Ok(())
    }

    /// Ask the authorizer in a task of its own; the answer comes back on `auth_tx`, tagged
    /// with the socket id and generation it was asked for.
    fn spawn_channel_auth(
        &self,
        authorizer: Arc<dyn Authorizer>,
        request: AuthRequest,
        generation: u64,
        target: AuthFor,
    ) {
        let tx = self.auth_tx.clone();
        let timeout = self.options.subscribe_timeout;
        tokio::spawn(async move {
            let (socket_id, channel) = (request.socket_id.clone(), request.channel.clone());
            let result = match tokio::time::timeout(timeout, authorizer.authorize_channel(request)).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the authorizer did not answer for {channel} within {timeout:?}"),
                )),
            };
            let _ = tx.send(AuthDone { target, generation, socket_id, answer: AuthAnswer::Channel(result) });
        });
    }

    /// Fetch a fresh key for an encrypted channel whose event did not decrypt.
    fn start_rekey(&mut self, name: &str) {
        let (Some(socket_id), Some(authorizer)) = (self.socket_id.clone(), self.options.authorizer.clone()) else {
            return;
        };
        let Some(sub) = self.subs.get_mut(name) else { return };
        sub.rekeying = true;
        let generation = sub.generation;
        let request = AuthRequest { socket_id, channel: name.to_owned(), presence: None };
        self.spawn_channel_auth(authorizer, request, generation, AuthFor::Rekey(name.to_owned()));
    }

    async fn on_auth(&mut self, done: AuthDone, ws: &mut Ws) -> Result<(), Ended> {
        let current = self.socket_id.as_deref() == Some(done.socket_id.as_str());
        match (done.target, done.answer) {
            (AuthFor::Subscribe(channel), AuthAnswer::Channel(result)) => {
                self.on_channel_auth(channel, done.generation, current, result, ws).await
            }
            (AuthFor::Rekey(channel), AuthAnswer::Channel(result)) => {
                self.on_rekey(&channel, done.generation, current, result);
                Ok(())
            }
            (AuthFor::Signin, AuthAnswer::User(result)) => {
                if !current
                    || self.signin.generation != done.generation
                    || self.signin.status != SigninStatus::Authorizing
                {
                    return Ok(()); // for an old socket
                }
                match result {
                    Ok(user) => {
                        self.signin.status = SigninStatus::Sent;
                        self.sent_order.push_back(Unanswered::Signin);
                        let mut frame = String::from(r#"{"event":"pusher:signin","data":{"auth":"#);
                        push_json_string(&mut frame, &user.auth);
                        frame.push_str(",\"user_data\":");
                        push_json_string(&mut frame, &user.user_data);
                        frame.push_str("}}");
                        send(ws, self.options.pong_timeout, frame).await
                    }
                    Err(error) => {
                        self.fail_signin(error);
                        Ok(())
                    }
                }
            }
            _ => Ok(()),
        }
    }

    fn on_rekey(&mut self, channel: &str, generation: u64, current: bool, result: Result<ChannelAuth>) {
        let Some(sub) = self.subs.get_mut(channel) else { return };
        if !current || sub.generation != generation {
            return;
        }
        sub.rekeying = false;
        let key = result
            .ok()
            .and_then(|auth| auth.shared_secret)
            .and_then(|s| switchboard_protocol::encryption::decode_shared_secret(&s).ok());
        if key.is_some() {
            sub.key = key;
        }
        let held = std::mem::take(&mut sub.held);
        let shared = sub.shared.clone();
        for event in held {
            match key.as_ref().map(|k| decrypt_event(k, &event)) {
                Some(Ok(plain)) => self.deliver(&shared, plain),
                _ => self.decryption_failed(&shared, &event),
            }
        }
    }

    fn decryption_failed(&mut self, shared: &Arc<ChannelShared>, event: &Event) {
        tracing::warn!(channel = %shared.name, event = %event.name(), "dropping an event that does not decrypt, even with a fresh key");
        let mut data = String::from("{\"event\":");
        push_json_string(&mut data, event.name());
        data.push('}');
        self.deliver(shared, Event::internal(Some(&shared.name), DECRYPTION_ERROR_EVENT, Some(data)));
    }

    /// Deliver an event of an encrypted channel: decrypt it, or hold it and fetch a new key
    /// once (the key may have been rotated), as pusher-js does.
    fn deliver_encrypted(&mut self, channel: &str, event: Event) {
        let Some(sub) = self.subs.get_mut(channel) else { return };
        let shared = sub.shared.clone();
        let opened = if sub.rekeying { None } else { sub.key.as_ref().map(|key| decrypt_event(key, &event)) };
        if let Some(Ok(plain)) = opened {
            self.deliver(&shared, plain);
            return;
        }
        if sub.held.len() >= MAX_HELD_ENCRYPTED {
            self.decryption_failed(&shared, &event);
            return;
        }
        sub.held.push(event);
        if !sub.rekeying {
            self.start_rekey(channel);
        }
    }

    async fn on_channel_auth(
        &mut self,
        channel: String,
        generation: u64,
        current: bool,
        result: Result<ChannelAuth>,
        ws: &mut Ws,
    ) -> Result<(), Ended> {
        let Some(sub) = self.subs.get_mut(&channel) else { return Ok(()) };
        if !current || sub.generation != generation || sub.status != SubStatus::Authorizing {
            tracing::debug!(%channel, "dropping auth for an old socket or a cancelled subscription");
            return Ok(());
        }
        let auth = match result {
            Ok(auth) => auth,
            Err(error) => {
                self.fail_sub(&channel, error);
                return Ok(());
            }
        };
        if sub.shared.kind == ChannelKind::PrivateEncrypted {
            match auth.shared_secret.as_deref().map(switchboard_protocol::encryption::decode_shared_secret) {
                Some(Ok(key)) => sub.key = Some(key),
                _ => {
                    let error = Error::new(
                        ErrorKind::Authentication,
                        format!(
                            "{channel}: the authorizer gave no valid shared_secret for an encrypted channel (configure the encryption master key where auth is signed)"
                        ),
                    );
                    self.fail_sub(&channel, error);
                    return Ok(());
                }
            }
        }
        let is_presence = sub.shared.kind == ChannelKind::Presence;
        if is_presence {
            let me = auth
                .channel_data
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|d| id_string(&d["user_id"]));
            if me.is_none() {
                let error = Error::new(
                    ErrorKind::Authentication,
                    format!("the authorizer gave no channel_data with a user_id for {}", channel),
                );
                self.fail_sub(&channel, error);
                return Ok(());
            }
            sub.shared.members().set_me(me);
        }
        sub.status = SubStatus::Sent;
        self.sent_order.push_back(Unanswered::Subscribe(channel.clone()));
        let channel_data = if is_presence { auth.channel_data.as_deref() } else { None };
        let frame = self.subscribe_text(&channel, &auth.auth, channel_data);
        send(ws, self.options.pong_timeout, frame).await
    }

    /// The subscription failed: tell its waiters and listeners, and forget it.
    /// A subscription failed: tell its waiters and listeners. A channel that was subscribed
    /// before (this was a resubscription) is kept and tried again on the next connection, as
    /// pusher-js does; a new one is forgotten.
    fn fail_sub(&mut self, name: &str, error: Error) {
        self.sent_order.retain(|p| *p != Unanswered::Subscribe(name.to_owned()));
        let keep = self.subs.get(name).is_some_and(|s| s.confirmed_before);
        let mut sub = if keep {
            let Some(sub) = self.subs.get_mut(name) else { return };
            sub.status = SubStatus::Idle;
            sub.shared.subscribed.store(false, Ordering::Release);
            FailedSub { shared: sub.shared.clone(), waiters: std::mem::take(&mut sub.waiters) }
        } else {
            let Some(sub) = self.subs.remove(name) else { return };
            sub.shared.subscribed.store(false, Ordering::Release);
            FailedSub { shared: sub.shared, waiters: sub.waiters }
        };
        let mut data = String::from("{\"type\":");
        push_json_string(
            &mut data,
            if error.kind() == ErrorKind::Subscription { "SubscriptionError" } else { "AuthError" },
        );
        data.push_str(",\"error\":");
        push_json_string(&mut data, error.message());
        data.push_str(",\"status\":");
        data.push_str(&error.status().or(error.code()).map_or("null".to_owned(), |s| s.to_string()));
        data.push('}');
        let event = Event::internal(Some(name), "pusher:subscription_error", Some(data));
        self.deliver(&sub.shared, event);
        for waiter in sub.waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
    }

    /// Deliver to the channel's listeners and the global ones; the event is cloned only
    /// when both have takers.
    fn deliver(&mut self, shared: &Arc<ChannelShared>, event: Event) {
        deliver_to(&mut self.outbox, &self.global, shared, event);
    }

    async fn on_command(&mut self, command: Command, ws: &mut Ws) -> Result<(), Ended> {
        match command {
            Command::Subscribe { channel, presence, reply } => {
                let name = channel.name.clone();
                if self.add_sub(channel, presence, reply) {
                    self.start_sub(&name, ws).await?;
                }
            }
            Command::Unsubscribe { name } => {
                if let Some(sub) = self.remove_sub(&name) {
                    // Its answer still comes: keep its place so errors stay attributed right.
                    for pending in self.sent_order.iter_mut() {
                        if *pending == Unanswered::Subscribe(name.clone()) {
                            *pending = Unanswered::Cancelled(name.clone());
                        }
                    }
                    // Client events waiting for the rate limit would only earn a 4009 now.
                    let queue = std::mem::take(&mut self.client_events.queue);
                    for (channel, frame, reply) in queue {
                        if channel == name {
                            let _ = reply
                                .send(Err(Error::new(ErrorKind::InvalidRequest, format!("unsubscribed from {name}"))));
                        } else {
                            self.client_events.queue.push_back((channel, frame, reply));
                        }
                    }
                    if matches!(sub.status, SubStatus::Sent | SubStatus::Subscribed) {
                        let frame = self.unsubscribe_text(&name);
                        send(ws, self.options.pong_timeout, frame).await?;
                    }
                }
            }
            Command::Trigger { channel, event, data, reply } => {
                if self.subs.get(&channel).is_none_or(|s| s.status != SubStatus::Subscribed) {
                    let _ = reply.send(Err(Error::new(
                        ErrorKind::InvalidRequest,
                        format!("not subscribed to {channel}: client events go to channels you are subscribed to"),
                    )));
                    return Ok(());
                }
                if self.client_events.queue.len() >= MAX_QUEUED_CLIENT_EVENTS {
                    let _ = reply.send(Err(Error::new(
                        ErrorKind::InvalidRequest,
                        format!("{MAX_QUEUED_CLIENT_EVENTS} client events already wait for the rate limit"),
                    )));
                    return Ok(());
                }
                let frame = match self.protocol {
                    Protocol::Pusher => encode_client_frame(&event, Some(&channel), Some(&data)),
                    Protocol::RealtimeX => rtx_wire::client_event(&channel, &event, &data),
                };
                self.client_events.queue.push_back((channel, frame, reply));
                self.flush_client_events(ws).await?;
            }
            Command::Signin { reply } if self.protocol == Protocol::RealtimeX => {
                let _ = reply.send(Err(no_signin()));
            }
            Command::Emit { event, args, reply } => self.emit(event, args, reply, ws).await?,
            Command::Signin { reply } => {
                self.signin.wanted = true;
                if self.signin.status == SigninStatus::Done {
                    let _ = reply.send(Ok(()));
                } else {
                    self.signin.waiters.push(reply);
                    if self.signin.status == SigninStatus::Idle {
                        self.start_signin();
                    }
                }
            }
            Command::Disconnect => {}
        }
        Ok(())
    }

    /// Send queued client events as far as the rate allows.
    async fn flush_client_events(&mut self, ws: &mut Ws) -> Result<(), Ended> {
        loop {
            let now = Instant::now();
            if self.client_events.next_slot(now) != Some(now) {
                return Ok(());
            }
            let Some((_, frame, reply)) = self.client_events.queue.pop_front() else { return Ok(()) };
            self.client_events.sent_at.push_back(now);
            match send(ws, self.options.pong_timeout, frame).await {
                Ok(()) => {
                    let _ = reply.send(Ok(()));
                }
                Err(ended) => {
                    let _ = reply
                        .send(Err(Error::new(ErrorKind::Connection, "connection lost while sending the client event")));
                    return Err(ended);
                }
            }
        }
    }

    async fn on_text(&mut self, text: &str, ws: &mut Ws) -> Result<(), Ended> {
        let packed = match PackedFrame::decode_into(text, crate::buffers::take(text.len())) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!("ignoring a malformed frame from the server: {e}");
                return Ok(());
            }
        };
        if !packed.event().starts_with("pusher:") && !packed.event().starts_with("pusher_internal:") {
            // App and client events, the hot path: the decoded buffer becomes the event.
            self.deliver_app_event(Event::from_frame(packed));
            return Ok(());
        }
        self.on_control(Frame::from(packed), ws).await
    }

    /// A control frame (`pusher:…`, `pusher_internal:…`), whichever wire it came on.
    async fn on_control(&mut self, frame: Frame, ws: &mut Ws) -> Result<(), Ended> {
        // Control frames may make the reader write (a pong, a resubscription): consumers
        // must not wait on that for the events of this burst.
        self.outbox.release_held();
        let channel = frame.channel.clone();
        match frame.event.as_str() {
            // Answered once per read burst (see `send_pong_if_due`), not once per ping.
            "pusher:ping" => self.pong_due = true,
            "pusher:pong" => {}
            "pusher:error" => self.on_error(&frame),
            "pusher:signin_success" => self.on_signin_success(&frame, ws).await?,
            "pusher_internal:subscription_succeeded" => {
                if let Some(channel) = channel {
                    self.on_succeeded(&channel, &frame, ws).await?;
                }
            }
            "pusher:subscription_error" => {
                if let Some(channel) = channel {
                    let data: Value = frame.data.parse().unwrap_or(Value::Null);
                    let message = data["error"].as_str().unwrap_or("the server refused the subscription").to_owned();
                    let mut error = Error::new(ErrorKind::Subscription, format!("{channel}: {message}"));
                    if let Some(status) = data["status"].as_u64() {
                        error = error.with_code(status as u16);
                    }
                    self.fail_sub(&channel, error);
                }
            }
            "pusher_internal:member_added" | "pusher_internal:member_removed" => {
                if let Some(channel) = channel {
                    self.on_member(&channel, &frame);
                }
            }
            "pusher_internal:subscription_count" => {
                if let Some(sub) = channel.as_deref().and_then(|c| self.subs.get(c)) {
                    let event = Event::internal(
                        channel.as_deref(),
                        "pusher:subscription_count",
                        frame.data.as_text().map(str::to_owned),
                    );
                    deliver_to(&mut self.outbox, &self.global, &sub.shared, event);
                }
            }
            event if event.starts_with("pusher_internal:") => {}
            // Other pusher: events (pusher:cache_miss, …) go to listeners as they are.
            _ => self.deliver_app_event(Event::from_frame(PackedFrame::from(frame))),
        }
        Ok(())
    }

    /// RealtimeX: one text frame, read as what it means in the channel model.
    async fn on_realtimex_text(&mut self, text: &str, ws: &mut Ws) -> Result<(), Ended> {
        // Engine.IO's pings may come between a binary packet and its attachments; a
        // Socket.IO packet may not.
        if self.assembling.is_some() && text.starts_with('4') {
            tracing::warn!("a Socket.IO packet while a binary packet's attachments were due: that packet is dropped");
            self.assembling = None;
        }
        if let Some(event) = rtx_wire::fast_server_event(text) {
            self.deliver_app_event(event);
            return Ok(());
        }
        let inbound = rtx_wire::decode(text);
        self.on_realtimex(inbound, ws).await
    }

    /// RealtimeX: a binary frame, the next attachment of the packet being assembled.
    async fn on_realtimex_binary(&mut self, payload: Vec<u8>, ws: &mut Ws) -> Result<(), Ended> {
        let Some(assembler) = self.assembling.as_mut() else {
            tracing::warn!("ignoring a binary frame that no binary packet announced");
            return Ok(());
        };
        let Some((packet, attachments)) = assembler.push(payload) else { return Ok(()) };
        self.assembling = None;
        let inbound = rtx_wire::binary_event(packet, &attachments);
        self.on_realtimex(inbound, ws).await
    }

    async fn on_realtimex(&mut self, inbound: Inbound, ws: &mut Ws) -> Result<(), Ended> {
        match inbound {
            Inbound::Channel(frame, ack_id) => {
                if frame.event.starts_with("pusher:") || frame.event.starts_with("pusher_internal:") {
                    self.on_control(frame, ws).await?;
                } else {
                    self.deliver_app_event(Event::from_frame(PackedFrame::from(frame)));
                }
                self.ack_delivered(ack_id, ws).await
            }
            Inbound::Ping(payload) => {
                match payload {
                    // A probe echoes its payload; plain pings share one pong per burst.
                    Some(payload) => send(ws, self.options.pong_timeout, format!("3{payload}")).await?,
                    None => self.pong_due = true,
                }
                Ok(())
            }
            Inbound::Event { name, data, ack_id } => {
                self.outbox.deliver(&self.global, Event::internal(None, &name, data));
                self.ack_delivered(ack_id, ws).await
            }
            Inbound::Binary(packet) => {
                self.assembling = Some(Assembler::new(packet));
                Ok(())
            }
            Inbound::Ack { id, args } => {
                if let Some(waiter) = self.acks.remove(&id) {
                    let _ = waiter.send(Ok(args));
                }
                Ok(())
            }
            Inbound::Disconnect => Err(Ended::Lost {
                code: Some(ErrorCode::UNAUTHORIZED.0),
                reason: "the server disconnected this client (Socket.IO DISCONNECT): not reconnecting".into(),
            }),
            Inbound::Close => Err(Ended::Lost { code: None, reason: "the server closed the Engine.IO session".into() }),
            Inbound::Ignored => Ok(()),
            Inbound::Invalid(why) => {
                tracing::warn!("ignoring a malformed packet from the server: {why}");
                Ok(())
            }
        }
    }

    /// RealtimeX: answer a server's ack request `{"ok":true}` once its event is queued for the
    /// listeners (or taken as a control frame). Acks are not retried.
    async fn ack_delivered(&mut self, ack_id: Option<u64>, ws: &mut Ws) -> Result<(), Ended> {
        let Some(id) = ack_id else { return Ok(()) };
        self.outbox.release_held();
        send(ws, self.options.pong_timeout, rtx_wire::ack(id, vec![serde_json::json!({ "ok": true })])).await
    }

    /// RealtimeX: write a raw event; with `EmitReply::Ack` the waiter is registered first, so
    /// an answer that comes at once is not missed.
    async fn emit(&mut self, event: String, args: Vec<Value>, reply: EmitReply, ws: &mut Ws) -> Result<(), Ended> {
        if self.protocol != Protocol::RealtimeX {
            let error = Error::new(ErrorKind::InvalidRequest, "emit is RealtimeX's (Socket.IO events); use trigger");
            match reply {
                EmitReply::Sent(reply) => drop(reply.send(Err(error))),
                EmitReply::Ack(reply) => drop(reply.send(Err(error))),
            }
            return Ok(());
        }
        match reply {
            EmitReply::Sent(reply) => {
                let sent = send(ws, self.options.pong_timeout, rtx_wire::emit(&event, args, None)).await;
                let _ = reply.send(match &sent {
                    Ok(()) => Ok(()),
                    Err(_) => Err(Error::new(ErrorKind::Connection, format!("connection lost while sending {event}"))),
                });
                sent
            }
            EmitReply::Ack(reply) => {
                self.next_ack_id += 1;
                let id = self.next_ack_id;
                // Waiters whose caller gave up (timed out, dropped) go now, not at the end
                // of a long-lived connection.
                self.acks.retain(|_, waiter| !waiter.is_closed());
                self.acks.insert(id, reply);
                send(ws, self.options.pong_timeout, rtx_wire::emit(&event, args, Some(id))).await
            }
        }
    }

    fn deliver_app_event(&mut self, event: Event) {
        match event.channel().and_then(|c| self.subs.get(c)) {
            Some(sub) if sub.shared.kind == ChannelKind::PrivateEncrypted && !event.name().starts_with("pusher:") => {
                let name = sub.shared.name.clone();
                self.deliver_encrypted(&name, event);
            }
            Some(sub) => deliver_to(&mut self.outbox, &self.global, &sub.shared, event),
            None => self.outbox.deliver(&self.global, event),
        }
    }

    fn on_error(&mut self, frame: &Frame) {
        let data: Option<ErrorData> = frame.data.parse().ok();
        let code = data.as_ref().and_then(|d| d.code);
        let message = data.as_ref().map_or("unknown error", |d| d.message.as_str()).to_owned();
        // A RealtimeX error answers one event; it says nothing about how a later close ends.
        if self.protocol == Protocol::Pusher {
            self.last_error_code = code;
        }
        tracing::warn!(?code, "pusher:error: {message}");
        // Reverb and Sockudo refuse a subscription (or sign-in) with a channel-less 4009: it
        // answers the oldest unanswered request. Reverb answers `pusher:signin`, which it
        // does not implement, with 4200 "Invalid message format".
        if frame.channel.is_none() && code == Some(ErrorCode::UNAUTHORIZED.0) {
            match self.sent_order.pop_front() {
                Some(Unanswered::Subscribe(name)) => {
                    self.fail_sub(
                        &name,
                        Error::new(ErrorKind::Subscription, format!("{name}: {message}")).with_code(4009),
                    );
                }
                Some(Unanswered::Signin) => {
                    let error =
                        Error::new(ErrorKind::Authentication, format!("sign-in refused: {message}")).with_code(4009);
                    self.fail_signin(error);
                }
                Some(Unanswered::Cancelled(_)) | None => {}
            }
        } else if frame.channel.is_none()
            && code == Some(ErrorCode::RECONNECT.0)
            && let Some(at) = self.sent_order.iter().position(|p| *p == Unanswered::Signin)
        {
            self.sent_order.remove(at);
            let error =
                Error::new(ErrorKind::Authentication, format!("the server does not support sign-in: {message}"));
            self.fail_signin(error.with_code(4200));
        }
        let event = Event::internal(frame.channel.as_deref(), "pusher:error", frame.data.as_text().map(str::to_owned));
        self.outbox.deliver(&self.global, event);
    }

    async fn on_succeeded(&mut self, channel: &str, frame: &Frame, ws: &mut Ws) -> Result<(), Ended> {
        // The oldest unanswered subscribe of this channel got its answer.
        if let Some(at) = self
            .sent_order
            .iter()
            .position(|p| matches!(p, Unanswered::Subscribe(n) | Unanswered::Cancelled(n) if n == channel))
        {
            self.sent_order.remove(at);
        }
        let Some(sub) = self.subs.get_mut(channel) else {
            // Unsubscribed while pending: the server subscribed us anyway, so leave again.
            let leave = self.unsubscribe_text(channel);
            return send(ws, self.options.pong_timeout, leave).await;
        };
        // Only a subscribe in flight is confirmed. A confirmation while Idle or Authorizing
        // answers an earlier, cancelled subscribe; while Subscribed, it is a duplicate.
        if sub.status != SubStatus::Sent {
            return Ok(());
        }
        let resubscribed = sub.confirmed_before;
        sub.status = SubStatus::Subscribed;
        sub.confirmed_before = true;
        sub.shared.subscribed.store(true, Ordering::Release);
        let mut changes = (Vec::new(), Vec::new());
        let mut capped = false;
        if sub.shared.kind == ChannelKind::Presence {
            let data: Value = frame.data.parse().unwrap_or(Value::Null);
            let mut members = sub.shared.members();
            members.set_cap(self.options.max_presence_members);
            changes = members.replace(&data["presence"]);
            capped = members.take_capped_report();
        }
        let shared = sub.shared.clone();
        let data = frame.data.as_text().map(str::to_owned);
        self.deliver(&shared, Event::internal(Some(channel), "pusher:subscription_succeeded", data));
        // What the server sends right behind the confirmation is held for the listeners
        // attached after `subscribe(..).await` returns (see listeners.rs): opened before the
        // waiters are answered, so no listener can attach in between.
        if !resubscribed && !shared.listeners.is_active() {
            shared.listeners.open_hold(self.options.event_queue);
        }
        // Held like the events behind the confirmation, for the listener attached next.
        if capped {
            self.report_members_capped(&shared, channel);
        }
        if let Some(sub) = self.subs.get_mut(channel) {
            for waiter in sub.waiters.drain(..) {
                let _ = waiter.send(Ok(()));
            }
        }
        if resubscribed {
            let (added, removed) = changes;
            for member in added {
                self.deliver(
                    &shared,
                    Event::internal(Some(channel), "pusher:member_added", Some(member_data(&member))),
                );
            }
            for member in removed {
                self.deliver(
                    &shared,
                    Event::internal(Some(channel), "pusher:member_removed", Some(member_data(&member))),
                );
            }
            self.deliver(&shared, Event::internal(Some(channel), GAP_EVENT, Some("{}".into())));
        }
        Ok(())
    }

    fn on_member(&mut self, channel: &str, frame: &Frame) {
        let Some(sub) = self.subs.get(channel) else { return };
        let data: Value = frame.data.parse().unwrap_or(Value::Null);
        let Some(id) = id_string(&data["user_id"]) else { return };
        let added = frame.event == "pusher_internal:member_added";
        // Listeners get {user_id (a string), user_info}; for a removal, the info it had.
        let member = if added {
            let info = data.get("user_info").cloned().unwrap_or(Value::Null);
            sub.shared.members().add(id.clone(), info.clone()).then_some(Member { id, info })
        } else {
            sub.shared.members().remove(&id)
        };
        let capped = sub.shared.members().take_capped_report();
        let shared = sub.shared.clone();
        if let Some(member) = member {
            let name = if added { "pusher:member_added" } else { "pusher:member_removed" };
            self.deliver(&shared, Event::internal(Some(channel), name, Some(member_data(&member))));
        }
        if capped {
            self.report_members_capped(&shared, channel);
        }
    }

    /// The roster reached `max_presence_members` and left a member out: say so, once.
    fn report_members_capped(&mut self, shared: &Arc<ChannelShared>, channel: &str) {
        let limit = self.options.max_presence_members;
        tracing::warn!(channel, limit, "presence roster capped at max_presence_members; later members are not tracked");
        let data = format!("{{\"limit\":{limit}}}");
        self.deliver(shared, Event::internal(Some(channel), crate::event::MEMBERS_CAPPED_EVENT, Some(data)));
    }
}

/// Deliver to a channel's listeners and the global ones (a free function, so the caller may
/// hold a borrow of the subscription map); the event is cloned only when both listen.
fn deliver_to(outbox: &mut Outbox, global: &Arc<Listeners>, shared: &Arc<ChannelShared>, event: Event) {
    outbox.deliver_with_global(&shared.listeners, global, event);
}

/// Open the socket and read the handshake, within `timeout`.
/// What a handshake gives: the socket, its id (and Pusher's activity timeout), and for
/// RealtimeX the server's ping interval and timeout.
type Opened = (Ws, (ConnectionEstablished, Option<(Duration, Duration)>));

async fn open(
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    max_message_size: usize,
    protocol: Protocol,
) -> Result<Opened, Ended> {
    let lost = |reason: String| Ended::Lost { code: None, reason };
    let attempt = async {
        let mut builder = ClientBuilder::new().uri(&url).map_err(|e| lost(format!("invalid URL {url}: {e}")))?;
        for (name, value) in &headers {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|e| lost(format!("invalid header name {name}: {e}")))?;
            let value =
                http::HeaderValue::try_from(value.as_str()).map_err(|e| lost(format!("invalid header value: {e}")))?;
            builder = builder.add_header(name, value).map_err(|e| lost(format!("header not allowed: {e}")))?;
        }
        let mut ws = crate::transport::connect(builder, &url, max_message_size).await.map_err(lost)?;
        if protocol == Protocol::RealtimeX {
            return match rtx_wire::handshake(&mut ws).await {
                Ok(session) => {
                    let established = ConnectionEstablished { socket_id: session.socket_id, activity_timeout: None };
                    Ok((ws, (established, Some((session.ping_interval, session.ping_timeout)))))
                }
                Err(refused) => {
                    Err(Ended::Lost { code: refused.code, reason: describe_close(refused.code, &refused.reason) })
                }
            };
        }
        loop {
            let message = match ws.next().await {
                None => return Err(lost("the server closed the connection during the handshake".into())),
                Some(Err(e)) => return Err(lost(format!("handshake failed: {e}"))),
                Some(Ok(message)) => message,
            };
            if let Some((code, reason)) = message.as_close() {
                let code = u16::from(code);
                return Err(Ended::Lost { code: Some(code), reason: describe_close(Some(code), reason) });
            }
            let Some(text) = message.as_text() else { continue };
            let frame = Frame::decode(text).map_err(|e| lost(format!("malformed handshake: {e}")))?;
            match frame.event.as_str() {
                "pusher:connection_established" => {
                    let data: ConnectionEstablished = frame
                        .data
                        .parse()
                        .map_err(|e| lost(format!("connection_established without a socket_id: {e}")))?;
                    return Ok((ws, (data, None)));
                }
                "pusher:error" => {
                    let data: Option<ErrorData> = frame.data.parse().ok();
                    let code = data.as_ref().and_then(|d| d.code);
                    let message = data.map_or_else(|| "refused".to_owned(), |d| d.message);
                    return Err(Ended::Lost { code, reason: describe_close(code, &message) });
                }
                _ => {}
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(lost(format!("no connection_established (or Socket.IO CONNECT) from {url} within {timeout:?}"))),
    }
}

fn describe_close(code: Option<u16>, reason: &str) -> String {
    match code {
        Some(4001) => format!("the server does not know this app key (4001): {reason}"),
        Some(4000) => format!("the app only accepts TLS (4000): {reason}"),
        Some(code) => format!("{reason} (code {code})"),
        None => reason.to_owned(),
    }
}

fn subscribe_frame(channel: &str, auth: &str, channel_data: Option<&str>) -> String {
    let mut out = String::from(r#"{"event":"pusher:subscribe","data":{"channel":"#);
    push_json_string(&mut out, channel);
    out.push_str(",\"auth\":");
    push_json_string(&mut out, auth);
    if let Some(data) = channel_data {
        out.push_str(",\"channel_data\":");
        push_json_string(&mut out, data);
    }
    out.push_str("}}");
    out
}

/// Write one frame within `timeout` (the pong timeout: how long the server may take to show
/// it is alive); a stalled write ends the connection (see `transport::send_within`).
async fn send(ws: &mut Ws, timeout: Duration, text: String) -> Result<(), Ended> {
    crate::transport::send_within(ws, Message::text(text), timeout)
        .await
        .map_err(|reason| Ended::Lost { code: None, reason })
}

/// Open an encrypted event: data `{nonce, ciphertext}` → the plaintext JSON.
fn decrypt_event(key: &[u8; 32], event: &Event) -> Result<Event> {
    let payload = event.data().unwrap_or_default();
    let plain = switchboard_protocol::encryption::decrypt(key, payload)
        .map_err(|e| Error::new(ErrorKind::Protocol, format!("{}: {e}", event.name())))?;
    Ok(event.with_data(&plain))
}

/// `{"user_id": id, "user_info": info}` for member events.
fn member_data(member: &Member) -> String {
    serde_json::json!({ "user_id": member.id, "user_info": member.info }).to_string()
}

/// A failed subscription's listeners and waiters, whether or not the entry is kept.
struct FailedSub {
    shared: Arc<ChannelShared>,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

fn no_signin() -> Error {
    Error::new(ErrorKind::InvalidRequest, "RealtimeX has no user sign-in (pusher:signin is a Pusher protocol feature)")
}
