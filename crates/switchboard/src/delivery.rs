//! Delivery from a socket reader to listeners, with backpressure: the one mechanism every
//! protocol's connection task uses (Pusher, Phoenix, and the ones to come).
//!
//! By default nothing is dropped. When a listener's queue is full, the event waits in the
//! [`Outbox`] and the reader stops reading its socket until there is room, so TCP flow
//! control slows the server instead of the client losing events. While it waits the task
//! still serves commands and auth answers, and keeps the server seeing it alive (see
//! [`SlowConsumer`]). A listener that takes nothing for the stall limit meets the policy:
//! events are dropped *for it* and reported as `switchboard:lagged`, or the connection is
//! dropped and remade, which every channel sees as `switchboard:gap`. Dropping on overflow
//! without waiting is an explicit option.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::Event;
use crate::listeners::{Blocker, Dispatch, Listeners, Offer, OfferContext, run_handlers};
use crate::queue::{QueueSender, WakeBatch, Wakes, queue};

/// What a client does when a listener (an event stream, or the bound handlers) reads slower
/// than events arrive.
///
/// ```
/// use std::time::Duration;
/// use switchboard::{ClientOptions, SlowConsumer, StallAction};
/// // The default: wait (stop reading the socket) up to 10 s, then drop for that listener.
/// assert_eq!(SlowConsumer::default(), SlowConsumer::Backpressure { stall_limit: Duration::from_secs(10), on_stall: StallAction::DropAndReport });
/// // A dashboard that prefers fresh events to complete ones:
/// let opts = ClientOptions::builder("key").slow_consumer(SlowConsumer::DropAndReport).build()?;
/// # let _ = opts;
/// # Ok::<(), switchboard::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Stop reading the socket until the listener has room (TCP pushes back on the server).
    /// Nothing is lost while the listener makes progress. A listener that takes nothing for
    /// `stall_limit` meets `on_stall`.
    ///
    /// While the socket is not read, the server's pings wait unread behind the events; the
    /// client keeps writing its own ping every activity timeout, so servers that count any
    /// inbound frame as activity (Reverb, Pusher, `switchboard serve`, Phoenix heartbeats)
    /// keep the connection, and it does not treat the unread pongs as a dead connection.
    Backpressure {
        /// How long a listener may take nothing before `on_stall` (10 s).
        stall_limit: Duration,
        /// What happens then.
        on_stall: StallAction,
    },
    /// Never wait: a full listener misses the event, and its next item is
    /// `switchboard:lagged` with `{"dropped": n}` (for bound handlers the drops are counted
    /// in `Client::dropped_events` and logged).
    DropAndReport,
}

impl Default for SlowConsumer {
    fn default() -> Self {
        SlowConsumer::Backpressure { stall_limit: Duration::from_secs(10), on_stall: StallAction::DropAndReport }
    }
}

/// What happens to a listener that took nothing for the stall limit.
///
/// ```
/// use std::time::Duration;
/// use switchboard::{SlowConsumer, StallAction};
/// let policy = SlowConsumer::Backpressure { stall_limit: Duration::from_secs(30), on_stall: StallAction::Reconnect };
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallAction {
    /// Drop events for that listener (only) until its queue is half empty, then give it
    /// `switchboard:lagged {"dropped": n}` and wait for it again. Others get everything.
    DropAndReport,
    /// Drop the connection and reconnect (after the usual backoff), so the server stops
    /// sending into a full socket. Nothing already received is dropped: it waits for the
    /// listener. What the server sent meanwhile is lost as in any outage, and every channel
    /// gets `switchboard:gap` when it is resubscribed. A listener still stalled on the new
    /// connection causes another reconnect after the stall limit.
    Reconnect,
}

/// Events kept behind a full listener while a blocked reader reads on for an awaited answer.
const READ_ON_WHILE_BLOCKED: usize = 4_096;

/// What [`Outbox::stalled`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// The listener made progress after all: wait on.
    No,
    /// Events are dropped for the stalled listener from now on (until it catches up).
    Dropping,
    /// The policy wants a new connection.
    Reconnect,
}

/// The handler task's queue and the wake-ups of listeners; cheap to clone.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    tx: QueueSender<Dispatch>,
    /// Events dropped for bound handlers.
    pub(crate) dropped: Arc<AtomicU64>,
    /// The handler queue stalled past the limit and is being dropped for.
    handlers_lagging: Arc<AtomicBool>,
    wakes: Arc<Wakes>,
}

impl Dispatcher {
    /// Start the handler task.
    pub(crate) fn start(capacity: usize) -> Self {
        let (tx, rx) = queue(capacity);
        tokio::spawn(run_handlers(rx));
        Self { tx, dropped: Arc::default(), handlers_lagging: Arc::default(), wakes: Arc::default() }
    }

    /// Listeners for a channel, whose handlers bound during a hold get its held events.
    pub(crate) fn channel_listeners(&self) -> Arc<Listeners> {
        Arc::new(Listeners::for_channel(self.tx.clone()))
    }

    /// The gateway client's listeners: names are the SDKs' wildcard patterns over
    /// `"{topic}.{messageType}"` (the event's channel and name).
    pub(crate) fn gateway_listeners(&self) -> Arc<Listeners> {
        fn matches(pattern: &str, event: &Event) -> bool {
            match event.channel() {
                Some(topic) => {
                    switchboard_protocol::gateway::wildcard::event_matches_parts(pattern, topic, event.name())
                }
                None => switchboard_protocol::gateway::event_matches(pattern, event.name()),
            }
        }
        Arc::new(Listeners::with_matcher(self.tx.clone(), matches))
    }
}

/// An event waiting for a listener with room.
struct Waiting {
    listeners: Arc<Listeners>,
    event: Event,
    /// The client's global listeners, when they get this event after `listeners`.
    global: Option<Arc<Listeners>>,
    seq: u64,
}

/// A connection task's delivery: offers events to listeners, and keeps those that wait for
/// room in order (once one waits, every later one waits behind it).
pub(crate) struct Outbox {
    dispatcher: Dispatcher,
    policy: SlowConsumer,
    waiting: VecDeque<Waiting>,
    blocker: Option<Blocker>,
    /// The last time the listener waited for made progress (or the wait began).
    progress_at: Instant,
    /// How many events the full queue held when last looked at: fewer means progress.
    queued_at_block: Option<usize>,
    /// Numbers deliveries in the order the socket brought them (see `listeners.rs`).
    next_seq: u64,
}

impl Outbox {
    pub(crate) fn new(dispatcher: Dispatcher, policy: SlowConsumer) -> Self {
        Self {
            dispatcher,
            policy,
            waiting: VecDeque::new(),
            blocker: None,
            progress_at: Instant::now(),
            queued_at_block: None,
            next_seq: 0,
        }
    }

    /// Hold listeners' wake-ups until the guard drops: the socket reader opens one around
    /// each burst of frames, so a consumer that keeps up is woken once per burst, not once
    /// per event.
    pub(crate) fn batch(&self) -> WakeBatch {
        self.dispatcher.wakes.batch()
    }

    /// Wake the listeners held by an open batch now: call it before the reader awaits
    /// something that may take long (a socket write) in the middle of a burst.
    pub(crate) fn release_held(&self) {
        self.dispatcher.wakes.release_held();
    }

    /// Deliver `event` to `listeners`, or keep it until they have room.
    pub(crate) fn deliver(&mut self, listeners: &Arc<Listeners>, event: Event) {
        self.deliver_to(listeners, None, event);
    }

    /// Deliver a channel's event to its listeners, then to the client's global listeners
    /// (cloned only if they listen). Channel first: a global listener attaching meanwhile
    /// replays the channel's hold, and the shared number tells it what it already has.
    pub(crate) fn deliver_with_global(&mut self, channel: &Arc<Listeners>, global: &Arc<Listeners>, event: Event) {
        self.deliver_to(channel, Some(global), event);
    }

    fn deliver_to(&mut self, listeners: &Arc<Listeners>, global: Option<&Arc<Listeners>>, event: Event) {
        self.next_seq += 1;
        let seq = self.next_seq;
        if !self.waiting.is_empty() {
            self.waiting.push_back(Waiting { listeners: listeners.clone(), event, global: global.cloned(), seq });
            return;
        }
        // The fast path borrows; only an event that must wait is given owned handles.
        if let Some((waiting, blocker)) = self.offer(listeners, event, global, seq) {
            self.waiting.push_back(waiting);
            self.queued_at_block = blocker.queued();
            self.blocker = Some(blocker);
            self.progress_at = Instant::now();
        }
    }

    /// Offer an event to its listeners, then (if they listen now) to the global ones. On a
    /// block, what is left to deliver comes back (`Some`), with what it waits for.
    fn offer(
        &self,
        listeners: &Arc<Listeners>,
        event: Event,
        global: Option<&Arc<Listeners>>,
        seq: u64,
    ) -> Option<(Waiting, Blocker)> {
        // The channel's offer decides, under its lock, whether the global listeners get a
        // copy (see `Listeners::offer`).
        let copy = match listeners.offer(event, &self.context(global, seq)) {
            Offer::Blocked(event, blocker) => {
                return Some((Waiting { listeners: listeners.clone(), event, global: global.cloned(), seq }, blocker));
            }
            Offer::Done(copy) => copy,
        };
        if let (Some(global), Some(event)) = (global, copy)
            && let Offer::Blocked(event, blocker) = global.offer(event, &self.context(None, seq))
        {
            return Some((Waiting { listeners: global.clone(), event, global: None, seq }, blocker));
        }
        None
    }

    fn context<'a>(&'a self, global: Option<&'a Arc<Listeners>>, seq: u64) -> OfferContext<'a> {
        OfferContext {
            wakes: &self.dispatcher.wakes,
            wait: matches!(self.policy, SlowConsumer::Backpressure { .. }),
            handlers: &self.dispatcher.tx,
            handlers_lagging: &self.dispatcher.handlers_lagging,
            handler_drops: &self.dispatcher.dropped,
            global,
            seq,
        }
    }

    /// Whether a blocked reader may read on: only while an answer is `awaited` (the
    /// consumer filling the queue may be the one awaiting it, behind the unread events), and
    /// only up to [`READ_ON_WHILE_BLOCKED`] waiting events.
    pub(crate) fn may_read_on(&self, awaited: bool) -> bool {
        awaited && self.waiting.len() < READ_ON_WHILE_BLOCKED
    }

    /// True while events wait for room: the reader must not read on.
    pub(crate) fn is_blocked(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Deliver what waits, in order, as far as listeners have room. Returns what the rest
    /// waits for, and when it stalls, or `None` once everything is delivered.
    pub(crate) fn flush(&mut self) -> Option<(Blocker, Instant)> {
        let mut delivered = false;
        while let Some(Waiting { listeners, event, global, seq }) = self.waiting.pop_front() {
            match self.offer(&listeners, event, global.as_ref(), seq) {
                None => delivered = true,
                Some((item, blocker)) => {
                    self.waiting.push_front(item);
                    if delivered {
                        self.progress_at = Instant::now();
                    }
                    self.queued_at_block = blocker.queued();
                    self.blocker = Some(blocker.clone());
                    // A limit too large to add (Duration::MAX) means: wait as long as it takes.
                    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
                    let stall_at = self.progress_at.checked_add(self.stall_limit()).unwrap_or(far);
                    return Some((blocker, stall_at));
                }
            }
        }
        self.blocker = None;
        None
    }

    fn stall_limit(&self) -> Duration {
        match self.policy {
            SlowConsumer::Backpressure { stall_limit, .. } => stall_limit,
            SlowConsumer::DropAndReport => Duration::ZERO,
        }
    }

    /// The stall limit passed since the listener waited for last made progress, as far as
    /// the Outbox saw. If it did take events meanwhile (a slow but steady consumer, which
    /// has not yet freed half its queue), the clock restarts and this returns `Stall::No`.
    /// Otherwise events are dropped for that listener from now on (until it catches up), or
    /// the policy wants a new connection. A hold nobody listens to is given up either way.
    pub(crate) fn stalled(&mut self) -> Stall {
        let now_queued = self.blocker.as_ref().and_then(Blocker::queued);
        if let (Some(now), Some(before)) = (now_queued, self.queued_at_block)
            && now < before
        {
            self.queued_at_block = Some(now);
            self.progress_at = Instant::now();
            return Stall::No;
        }
        let Some(blocker) = self.blocker.take() else { return Stall::No };
        self.progress_at = Instant::now();
        let reconnect = matches!(self.policy, SlowConsumer::Backpressure { on_stall: StallAction::Reconnect, .. });
        if reconnect && !matches!(blocker, Blocker::Hold(..)) {
            tracing::warn!(
                "a listener took nothing for {:?}: reconnecting (StallAction::Reconnect)",
                self.stall_limit()
            );
            return Stall::Reconnect;
        }
        match blocker {
            Blocker::Stream { listeners, id, .. } => {
                tracing::warn!(
                    "an event stream took nothing for {:?}: dropping events for it until it catches up (reported as switchboard:lagged)",
                    self.stall_limit()
                );
                listeners.set_lagging(id);
            }
            Blocker::Handlers(_) => {
                tracing::warn!(
                    "bound handlers took nothing for {:?}: dropping events for them until they catch up (counted in dropped_events)",
                    self.stall_limit()
                );
                self.dispatcher.handlers_lagging.store(true, Ordering::Relaxed);
            }
            Blocker::Hold(listeners, ..) => {
                let dropped = listeners.give_up_hold();
                tracing::warn!(
                    dropped,
                    "a channel was subscribed but nothing listened to it for {:?}: its held events are dropped (the next listener gets switchboard:lagged)",
                    self.stall_limit()
                );
            }
        }
        Stall::Dropping
    }
}
