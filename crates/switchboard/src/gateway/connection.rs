//! The gateway client's connection task: one socket at a time, and everything that must
//! outlive it (subscriptions, waiters, the offline queue).
//!
//! Per connection: ask the URL provider, open the socket, wait for the welcome, publish the
//! connection info (`session.started`), replay every subscription, send what waited offline,
//! then serve: frames in (acks and replies resolve waiters; everything is delivered to the
//! listeners, losslessly: a full listener stops the reading), commands out, a WebSocket ping
//! after `ping_interval` of silence and a reconnect `pong_timeout` after it, waiter deadlines.
//!
//! A close the user did not ask for reconnects with the jittered backoff. The server's
//! "Subscription to secure topic is forbidden!" close fails the secure subscription sent last
//! (reported on its topic, and dropped from the replay). Waiters of a lost connection fail:
//! an unacked message is never re-sent, so nothing is delivered twice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use switchboard_protocol::gateway::frames::{ConnectionInfo, Inbound, Publish, Response};
use switchboard_protocol::gateway::{ClientFrame, ServerFrame};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_websockets::{ClientBuilder, Message};

use super::GatewayOptions;
use super::client::{Counters, PublishOptions};
use crate::delivery::{Dispatcher, Outbox, Stall};
use crate::listeners::Listeners;
use crate::queue::Burst;
use crate::transport::{ClientSocket, send_within};
use crate::{ConnectionState, Error, ErrorKind, Event, Result};

/// The close reason the server gives a forbidden secure subscribe (the SDKs' tests, verbatim).
const FORBIDDEN_SECURE: &str = "Subscription to secure topic is forbidden!";
/// The event a refused subscription is reported as, on its topic.
pub const SUBSCRIPTION_ERROR_EVENT: &str = "switchboard:subscription_error";

/// `now + duration`, or a year from now if that overflows (an option set to `Duration::MAX`
/// means "never").
fn later(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration).unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

fn duplicate_id(id: &str) -> Error {
    Error::new(
        ErrorKind::InvalidRequest,
        format!("a message with id {id} is already waiting for its answer: ids must be unique"),
    )
}

/// A publish or send, with its waiters.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// `None`: a `message` to the backends.
    pub(crate) topic: Option<String>,
    pub(crate) options: PublishOptions,
    pub(crate) id: String,
    pub(crate) payload: Box<RawValue>,
    pub(crate) ack: oneshot::Sender<Result<()>>,
    pub(crate) reply: Option<oneshot::Sender<Result<Response>>>,
}

impl Outbound {
    fn frame(&self) -> String {
        let (message_type, compress, payload, id) =
            (self.options.message_type.clone(), self.options.compress, self.payload.clone(), Some(self.id.clone()));
        match &self.topic {
            Some(topic) => ClientFrame::Publish(Publish { topic: topic.clone(), message_type, compress, payload, id }),
            None => ClientFrame::Message(Inbound { message_type, compress, payload, id }),
        }
        .encode()
    }
}

/// What the client handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        topic: String,
    },
    Unsubscribe {
        topic: String,
    },
    Publish(Box<Outbound>),
    /// The `Pending` was dropped: stop waiting for its answers.
    Cancel {
        id: String,
    },
    Disconnect,
}

struct Waiter {
    ack: Option<(oneshot::Sender<Result<()>>, Instant)>,
    reply: Option<(oneshot::Sender<Result<Response>>, Instant)>,
}

impl Waiter {
    fn is_done(&self) -> bool {
        self.ack.is_none() && self.reply.is_none()
    }
}

enum Flow {
    Stop,
    Reconnect(String),
}

pub(crate) struct Task {
    options: GatewayOptions,
    listeners: Arc<Listeners>,
    outbox: Outbox,
    state: watch::Sender<ConnectionState>,
    info: watch::Sender<Option<ConnectionInfo>>,
    counters: Arc<Counters>,
    /// Replayed after every welcome, in the order first subscribed.
    topics: Vec<String>,
    waiters: HashMap<String, Waiter>,
    /// Every waiter deadline, earliest first; entries of waiters already answered or
    /// cancelled are skipped when they come up (cheaper than a scan per loop turn).
    deadlines: BinaryHeap<Reverse<(Instant, String)>>,
    /// Sends made while offline, with when they were made.
    offline: VecDeque<(Instant, Box<Outbound>)>,
    /// This session's connection id (its `priv/<id>` carries our server's error frames).
    connection_id: String,
    /// The secure topic subscribed last in this session: a forbidden-subscribe close names
    /// no topic, so on a server without error frames it is blamed on this one.
    last_secure: Option<String>,
    /// The server said what it refused (an error frame) before its close.
    refusal_seen: bool,
}

impl Task {
    pub(crate) fn new(
        options: GatewayOptions,
        dispatcher: Dispatcher,
        listeners: Arc<Listeners>,
        state: watch::Sender<ConnectionState>,
        info: watch::Sender<Option<ConnectionInfo>>,
        counters: Arc<Counters>,
    ) -> Task {
        let outbox = Outbox::new(dispatcher, options.slow_consumer);
        Task {
            options,
            listeners,
            outbox,
            state,
            info,
            counters,
            topics: Vec::new(),
            waiters: HashMap::new(),
            deadlines: BinaryHeap::new(),
            offline: VecDeque::new(),
            connection_id: String::new(),
            last_secure: None,
            refusal_seen: false,
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut backoff = self.options.backoff.clone();
        loop {
            self.state.send_replace(ConnectionState::Connecting);
            let flow = match self.open(&mut commands).await {
                Ok((mut ws, info)) => {
                    let opened_at = Instant::now();
                    let flow = self.session(&mut ws, info, &mut commands).await;
                    self.end_session(&flow);
                    if matches!(flow, Flow::Stop) {
                        let close = Message::close(Some(tokio_websockets::CloseCode::NORMAL_CLOSURE), "");
                        let _ = send_within(&mut ws, close, Duration::from_secs(1)).await;
                    }
                    if opened_at.elapsed() >= self.options.healthy_after {
                        backoff.reset();
                    }
                    flow
                }
                Err(flow) => flow,
            };
            let reason = match flow {
                Flow::Stop => return self.finish(),
                Flow::Reconnect(reason) => reason,
            };
            let delay = backoff.next_delay();
            tracing::debug!("gateway connection lost ({reason}); reconnecting in {delay:?}");
            self.state.send_replace(ConnectionState::Unavailable { retry_in: delay, reason });
            let deadline = Instant::now() + delay;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    () = self.expire_waiters_at() => self.expire_waiters(Instant::now()),
                    command = commands.recv() => match command {
                        None | Some(Command::Disconnect) => return self.finish(),
                        Some(command) => self.on_command_offline(command),
                    },
                }
            }
        }
    }

    /// Ask for the URL, connect, and read up to the welcome (commands queue meanwhile).
    async fn open(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> std::result::Result<(ClientSocket, ConnectionInfo), Flow> {
        let timeout = self.options.connect_timeout;
        let (provider, max_message_size) = (self.options.url_provider.clone(), self.options.max_message_size);
        let attempt = async move {
            let url = provider().await.map_err(|e| format!("the URL provider failed: {e}"))?;
            let builder = ClientBuilder::new().uri(&url).map_err(|e| format!("invalid gateway URL: {e}"))?;
            let mut ws = crate::transport::connect(builder, &url, max_message_size).await?;
            // The first frame is the welcome; anything else first is a protocol error.
            loop {
                match ws.next().await {
                    None => return Err("the server closed the connection before the welcome".to_owned()),
                    Some(Err(e)) => return Err(format!("socket error before the welcome: {e}")),
                    Some(Ok(m)) if m.is_close() => {
                        let reason = m
                            .as_close()
                            .map(|(code, reason)| format!("{} {reason}", u16::from(code)))
                            .unwrap_or_default();
                        return Err(format!("the server closed the connection before the welcome: {reason}"));
                    }
                    Some(Ok(m)) if m.is_text() || m.is_binary() => {
                        let text =
                            std::str::from_utf8(m.as_payload()).map_err(|_| "the welcome is not UTF-8".to_owned())?;
                        let frame = ServerFrame::decode(text).map_err(|e| format!("bad welcome: {e}"))?;
                        let info = frame.connection_info().map_err(|e| format!("bad welcome: {e}"))?;
                        return Ok((ws, info));
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::pin!(attempt);
        let deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                result = &mut attempt => return result.map_err(Flow::Reconnect),
                () = tokio::time::sleep_until(deadline) => return Err(Flow::Reconnect(format!("no welcome within {timeout:?}"))),
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Err(Flow::Stop),
                    Some(command) => self.on_command_offline(command),
                },
            }
        }
    }

    async fn session(
        &mut self,
        ws: &mut ClientSocket,
        info: ConnectionInfo,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Flow {
        self.last_secure = None;
        self.refusal_seen = false;
        self.connection_id = info.id.clone();
        self.state.send_replace(ConnectionState::Connected { socket_id: info.id.clone() });
        self.info.send_replace(Some(info.clone()));
        let data = serde_json::to_string(&info).unwrap_or_default();
        self.outbox.deliver(&self.listeners, Event::gateway("session", "started", &data, false));
        for topic in self.topics.clone() {
            if let Err(reason) = self.write_subscribe(ws, &topic).await {
                return Flow::Reconnect(reason);
            }
        }
        self.counters.online.store(true, Ordering::Release);
        while let Some((_, outbound)) = self.offline.pop_front() {
            self.counters.offline_len.store(self.offline.len(), Ordering::Release);
            if let Err(reason) = self.write_outbound(ws, outbound).await {
                return Flow::Reconnect(reason);
            }
        }
        let mut last_inbound = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        loop {
            if self.outbox.is_blocked() {
                if let Err(flow) = self.wait_for_listeners(ws, commands).await {
                    return flow;
                }
                last_inbound = Instant::now();
                ping_sent = None;
            }
            let liveness = match ping_sent {
                None => later(last_inbound, self.options.ping_interval),
                Some(sent) => later(sent, self.options.pong_timeout),
            };
            let wake = liveness.min(self.next_waiter_deadline());
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            tokio::select! {
                inbound = ws.next() => {
                    last_inbound = Instant::now();
                    ping_sent = None;
                    let mut burst = Burst::new(self.outbox.batch());
                    let mut inbound = inbound;
                    loop {
                        if let Err(flow) = self.on_inbound(ws, inbound).await {
                            return flow;
                        }
                        if self.outbox.is_blocked() {
                            break;
                        }
                        match burst.next_buffered(ws) {
                            Some(next) => inbound = next,
                            None => break,
                        }
                    }
                    burst.end().await;
                }
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Flow::Stop,
                    Some(command) => if let Err(reason) = self.on_command(ws, command).await {
                        return Flow::Reconnect(reason);
                    },
                },
                () = &mut timer => {
                    let now = Instant::now();
                    self.expire_waiters(now);
                    match ping_sent {
                        Some(sent) if later(sent, self.options.pong_timeout) <= now => {
                            return Flow::Reconnect(format!("no answer to a ping within {:?}: the socket is dead", self.options.pong_timeout));
                        }
                        None if later(last_inbound, self.options.ping_interval) <= now => {
                            if let Err(reason) = send_within(ws, Message::ping(bytes::Bytes::new()), self.options.pong_timeout).await {
                                return Flow::Reconnect(reason);
                            }
                            ping_sent = Some(now);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// A listener has no room: read nothing until it has (backpressure), still serving
    /// commands, waiter deadlines and pings. Past the stall limit the policy applies.
    async fn wait_for_listeners(
        &mut self,
        ws: &mut ClientSocket,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> std::result::Result<(), Flow> {
        let mut next_ping = later(Instant::now(), self.options.ping_interval);
        loop {
            let Some((blocker, stall_at)) = self.outbox.flush() else { return Ok(()) };
            self.outbox.release_held();
            // An ack or reply someone awaits may sit behind the unread events: read on, in
            // order behind them, up to the Outbox's bound.
            let read_on = self.outbox.may_read_on(!self.waiters.is_empty());
            tokio::select! {
                () = blocker.wait() => {}
                () = tokio::time::sleep_until(stall_at) => {
                    if self.outbox.stalled() == Stall::Reconnect {
                        return Err(Flow::Reconnect("a listener took no event within the stall limit (policy StallAction::Reconnect)".into()));
                    }
                }
                () = tokio::time::sleep_until(self.next_waiter_deadline()) => self.expire_waiters(Instant::now()),
                inbound = ws.next(), if read_on => self.on_inbound(ws, inbound).await?,
                () = tokio::time::sleep_until(next_ping) => {
                    send_within(ws, Message::ping(bytes::Bytes::new()), self.options.pong_timeout).await.map_err(Flow::Reconnect)?;
                    next_ping = later(Instant::now(), self.options.ping_interval);
                }
                command = commands.recv() => match command {
                    None | Some(Command::Disconnect) => return Err(Flow::Stop),
                    Some(command) => self.on_command(ws, command).await.map_err(Flow::Reconnect)?,
                },
            }
        }
    }

    async fn on_inbound(
        &mut self,
        ws: &mut ClientSocket,
        inbound: Option<std::result::Result<Message, tokio_websockets::Error>>,
    ) -> std::result::Result<(), Flow> {
        let message = match inbound {
            None => return Err(Flow::Reconnect("the server closed the connection".into())),
            Some(Err(e)) => {
                let reason = crate::transport::close_after_read_error(ws, &e).await;
                return Err(Flow::Reconnect(reason));
            }
            Some(Ok(message)) => message,
        };
        if message.is_close() {
            let (code, reason) =
                message.as_close().map(|(c, r)| (u16::from(c), r.to_owned())).unwrap_or((1005, String::new()));
            // A server without error frames (the hosted gateway) names no topic: the
            // secure topic subscribed last is the best guess.
            if reason == FORBIDDEN_SECURE
                && !self.refusal_seen
                && let Some(topic) = self.last_secure.take()
            {
                self.refuse_topic(&topic, code, &reason);
            }
            return Err(Flow::Reconnect(format!("the server closed the connection: {code} {reason}")));
        }
        if !(message.is_text() || message.is_binary()) {
            return Ok(()); // pings are answered by tokio-websockets; pongs only count as life
        }
        let compressed = message.is_binary();
        let Ok(text) = std::str::from_utf8(message.as_payload()) else {
            tracing::warn!("ignoring a gateway binary frame that is not UTF-8 JSON");
            return Ok(());
        };
        let frame = match ServerFrame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!("ignoring an undecodable gateway frame: {e}");
                return Ok(());
            }
        };
        if frame.message_type.as_deref() == Some("error") && frame.topic == format!("priv/{}", self.connection_id) {
            self.on_refusal(&frame);
        }
        if let Some(id) = frame.ack_id() {
            if let Some(waiter) = self.waiters.get_mut(&id)
                && let Some((ack, _)) = waiter.ack.take()
            {
                let _ = ack.send(Ok(()));
            }
            self.forget_if_done(&id);
        } else if let Some(response) = frame.response()
            && let Some(id) = response.id.clone()
            && let Some(waiter) = self.waiters.get_mut(&id)
            && let Some((reply, _)) = waiter.reply.take()
        {
            let _ = reply.send(Ok(response));
            self.forget_if_done(&id);
        }
        // Every frame reaches the listeners too (acks and replies included, as in the SDKs).
        if let Some(message_type) = frame.message_type.as_deref() {
            let event = Event::gateway(&frame.topic, message_type, frame.data.get(), compressed);
            self.outbox.deliver(&self.listeners, event);
        }
        Ok(())
    }

    /// Our server's error frame before a policy close: what exactly was refused.
    fn on_refusal(&mut self, frame: &ServerFrame) {
        #[derive(serde::Deserialize)]
        struct Refusal {
            #[serde(default)]
            code: u16,
            #[serde(default)]
            reason: String,
            topic: Option<String>,
            id: Option<String>,
        }
        let Ok(refusal) = serde_json::from_str::<Refusal>(frame.data.get()) else { return };
        self.refusal_seen = true;
        if let Some(topic) = &refusal.topic {
            self.refuse_topic(topic, refusal.code, &refusal.reason);
        }
        if let Some(id) = &refusal.id
            && let Some(waiter) = self.waiters.remove(id)
        {
            let refused = || {
                Error::new(ErrorKind::InvalidRequest, format!("the server refused message {id}: {}", refusal.reason))
            };
            if let Some((ack, _)) = waiter.ack {
                let _ = ack.send(Err(refused()));
            }
            if let Some((reply, _)) = waiter.reply {
                let _ = reply.send(Err(refused()));
            }
        }
    }

    /// The server refused `topic`: report it on the topic, and stop replaying it (else every
    /// reconnect would be refused again).
    fn refuse_topic(&mut self, topic: &str, code: u16, reason: &str) {
        self.topics.retain(|t| t != topic);
        let data = serde_json::json!({"code": code, "reason": reason}).to_string();
        self.outbox.deliver(&self.listeners, Event::gateway(topic, SUBSCRIPTION_ERROR_EVENT, &data, false));
    }

    fn forget_if_done(&mut self, id: &str) {
        if self.waiters.get(id).is_some_and(Waiter::is_done) {
            self.waiters.remove(id);
        }
    }
    async fn on_command(&mut self, ws: &mut ClientSocket, command: Command) -> std::result::Result<(), String> {
        match command {
            Command::Subscribe { topic } => {
                if !self.topics.contains(&topic) {
                    self.topics.push(topic.clone());
                }
                self.write_subscribe(ws, &topic).await
            }
            Command::Unsubscribe { topic } => {
                self.topics.retain(|t| *t != topic);
                self.write(ws, ClientFrame::Unsubscribe { topic }.encode()).await
            }
            Command::Publish(outbound) => self.write_outbound(ws, outbound).await,
            // Only the waits end: the message itself still goes (fire and forget).
            Command::Cancel { id } => {
                self.waiters.remove(&id);
                Ok(())
            }
            Command::Disconnect => Ok(()),
        }
    }

    fn on_command_offline(&mut self, command: Command) {
        match command {
            Command::Subscribe { topic } => {
                if !self.topics.contains(&topic) {
                    self.topics.push(topic);
                }
            }
            Command::Unsubscribe { topic } => self.topics.retain(|t| *t != topic),
            Command::Publish(outbound) => {
                if self.offline.len() >= self.options.max_offline {
                    let max = self.options.max_offline;
                    let full = format!("offline, and {max} messages already wait to be sent (max_offline)");
                    let _ = outbound.ack.send(Err(Error::new(ErrorKind::Connection, full)));
                    return;
                }
                if self.id_in_flight(&outbound.id) {
                    let _ = outbound.ack.send(Err(duplicate_id(&outbound.id)));
                    return;
                }
                self.offline.push_back((Instant::now(), outbound));
                self.counters.offline_len.store(self.offline.len(), Ordering::Release);
            }
            // Only the waits end: the message itself still goes (fire and forget).
            Command::Cancel { id } => {
                self.waiters.remove(&id);
            }
            Command::Disconnect => {}
        }
    }

    async fn write_subscribe(&mut self, ws: &mut ClientSocket, topic: &str) -> std::result::Result<(), String> {
        if topic.starts_with("secure/") {
            self.last_secure = Some(topic.to_owned());
        }
        self.write(ws, ClientFrame::Subscribe { topic: topic.to_owned() }.encode()).await
    }

    /// A live waiter or a queued message already has this id (caller-chosen ids).
    fn id_in_flight(&self, id: &str) -> bool {
        self.waiters.contains_key(id) || self.offline.iter().any(|(_, o)| o.id == id && !o.ack.is_closed())
    }

    /// Register the waiters, then write the frame: an answer cannot overtake its waiter.
    async fn write_outbound(
        &mut self,
        ws: &mut ClientSocket,
        outbound: Box<Outbound>,
    ) -> std::result::Result<(), String> {
        if self.waiters.contains_key(&outbound.id) {
            let _ = outbound.ack.send(Err(duplicate_id(&outbound.id)));
            return Ok(());
        }
        let frame = outbound.frame();
        let Outbound { id, ack, reply, .. } = *outbound;
        let now = Instant::now();
        let waiter = Waiter {
            ack: (!ack.is_closed()).then(|| (ack, later(now, self.options.ack_timeout))),
            reply: reply.filter(|r| !r.is_closed()).map(|r| (r, later(now, self.options.reply_timeout))),
        };
        let deadlines = waiter.ack.as_ref().map(|(_, d)| *d).into_iter().chain(waiter.reply.as_ref().map(|(_, d)| *d));
        for deadline in deadlines {
            self.deadlines.push(Reverse((deadline, id.clone())));
        }
        if !waiter.is_done() {
            self.waiters.insert(id, waiter);
        }
        self.write(ws, frame).await
    }
    async fn write(&mut self, ws: &mut ClientSocket, text: String) -> std::result::Result<(), String> {
        send_within(ws, Message::text(text), self.options.pong_timeout).await
    }

    /// The next deadline: of a waiter, or of a queued message whose sender awaits its ack.
    fn next_waiter_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let waiter = self.deadlines.peek().map_or(far, |Reverse((at, _))| *at);
        // FIFO: the first live one is the earliest (at most max_offline to look at).
        let queued = self
            .offline
            .iter()
            .find(|(_, o)| !o.ack.is_closed())
            .map_or(far, |(at, _)| later(*at, self.options.ack_timeout));
        waiter.min(queued)
    }
    async fn expire_waiters_at(&self) {
        tokio::time::sleep_until(self.next_waiter_deadline()).await;
    }

    fn expire_waiters(&mut self, now: Instant) {
        let ack_timeout = self.options.ack_timeout;
        let reply_timeout = self.options.reply_timeout;
        // Queued while offline and still unsent when its ack was due: fail it, and do not
        // send it later (its sender was told it failed).
        let (due, kept) = std::mem::take(&mut self.offline)
            .into_iter()
            .partition(|(at, outbound)| !outbound.ack.is_closed() && later(*at, ack_timeout) <= now);
        self.offline = kept;
        for (_, outbound) in due {
            let Outbound { id, ack, reply, .. } = *outbound;
            let offline = || {
                Error::new(
                    ErrorKind::Timeout,
                    format!("message {id} was still unsent (offline) after {ack_timeout:?}; it will not be sent"),
                )
            };
            let _ = ack.send(Err(offline()));
            if let Some(reply) = reply {
                let _ = reply.send(Err(offline()));
            }
        }
        self.counters.offline_len.store(self.offline.len(), Ordering::Release);
        while self.deadlines.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, id))) = self.deadlines.pop() else { break };
            let Some(waiter) = self.waiters.get_mut(&id) else { continue };
            if waiter.ack.as_ref().is_some_and(|(_, d)| *d <= now)
                && let Some((ack, _)) = waiter.ack.take()
            {
                let _ = ack.send(Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no ack for message {id} within {ack_timeout:?}: the gateway acks only when the app's inbound ack is on \
                         (gateway_inbound_ack in switchboard serve, \"WebSocket Inbound ACK\" on the hosted gateway)"
                    ),
                )));
            }
            if waiter.reply.as_ref().is_some_and(|(_, d)| *d <= now)
                && let Some((reply, _)) = waiter.reply.take()
            {
                let _ = reply.send(Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no reply to message {id} within {reply_timeout:?}"),
                )));
            }
            self.forget_if_done(&id);
        }
    }
    fn end_session(&mut self, flow: &Flow) {
        self.counters.online.store(false, Ordering::Release);
        self.info.send_replace(None);
        let reason = match flow {
            Flow::Stop => "the client was disconnected".to_owned(),
            Flow::Reconnect(reason) => reason.clone(),
        };
        for (id, waiter) in self.waiters.drain() {
            let lost = || {
                Error::new(
                    ErrorKind::Connection,
                    format!("connection lost before the answer to {id} ({reason}); it is not re-sent"),
                )
            };
            if let Some((ack, _)) = waiter.ack {
                let _ = ack.send(Err(lost()));
            }
            if let Some((reply, _)) = waiter.reply {
                let _ = reply.send(Err(lost()));
            }
        }
    }

    fn finish(&mut self) {
        for (_, outbound) in self.offline.drain(..) {
            let _ = outbound.ack.send(Err(Error::closed()));
            if let Some(reply) = outbound.reply {
                let _ = reply.send(Err(Error::closed()));
            }
        }
        for (_, waiter) in self.waiters.drain() {
            if let Some((ack, _)) = waiter.ack {
                let _ = ack.send(Err(Error::closed()));
            }
            if let Some((reply, _)) = waiter.reply {
                let _ = reply.send(Err(Error::closed()));
            }
        }
        self.counters.offline_len.store(0, Ordering::Release);
        self.listeners.close();
        self.state.send_replace(ConnectionState::Disconnected);
    }
}
