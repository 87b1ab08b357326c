//! The listeners of one channel (or of the whole client): event streams and bound handlers,
//! and the hold that keeps a channel's first events for the listeners attached after its
//! confirmation.
//!
//! Every protocol's connection task offers events here through [`crate::delivery::Outbox`].
//! An offer is all-or-nothing: either every listener the event is for can take it, or none
//! gets it and the offer says who is full ([`Blocker`]), so the reader can stop reading the
//! socket until there is room (backpressure) without delivering an event twice.
//!
//! **The hold.** `subscribe(..).await` resolves when the server confirms, and the server
//! may send events right behind the confirmation, before the caller's next line attaches a
//! listener. So a channel confirmed with no listener *holds* its events (each with its
//! delivery number, the order the socket brought it). Every listener attached while the
//! hold is open gets its own copy of the held events it matches, then the live ones: a
//! stream finds them in its queue, a handler gets them as dispatches for it alone. Each
//! listener remembers the last number it was given, so an event is never run or queued for
//! it twice, whatever the handler task or the reader were doing meanwhile. The hold closes
//! [`HOLD_WINDOW`] after the confirmation (later listeners start with live events, as they
//! would with pusher-js after an `await`), or when it is full and somebody listens. Full with
//! nobody listening, it blocks the reader like a full queue, but only until the window ends;
//! what a hold kept for nobody is reported to the next listener as `switchboard:lagged`.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::BoxFuture;
use crate::event::{Event, HandlerId, LAGGED_EVENT};
use crate::queue::{HandOver, PushError, QueueReceiver, QueueSender, Room, StagingSender, Wakes, queue};

/// How long after a channel's confirmation its hold stays open for listeners to attach.
pub(crate) const HOLD_WINDOW: Duration = Duration::from_secs(2);

type SyncHandler = Arc<dyn Fn(&Event) + Send + Sync>;
type AsyncHandler = Arc<dyn Fn(Event) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
enum Handler {
    Sync(SyncHandler),
    Async(AsyncHandler),
}

struct HandlerSlot {
    id: u64,
    /// The event name, or "*".
    event: String,
    handler: Handler,
    /// Held events up to this delivery number were dispatched to this handler alone when it
    /// was bound; it does not run for them again.
    replayed_until: u64,
}

impl HandlerSlot {
    fn wants(&self, event: &Event, seq: u64, matcher: Matcher) -> bool {
        matcher(&self.event, event) && seq > self.replayed_until
    }
}

struct StreamSlot {
    /// Stages events during a read burst (handed over when it ends, see `queue.rs`).
    tx: StagingSender<Event>,
    /// Only this event name, or everything.
    filter: Option<String>,
    /// Events dropped for this stream, reported by the stream itself.
    lag: Arc<Lag>,
    /// Dropped for (stalled past the limit, or full under `DropAndReport`): later events are
    /// dropped too, so none overtakes the report, until it has room again.
    lagging: bool,
    /// Held events up to this delivery number were replayed into it when it attached.
    replayed_until: u64,
}

impl StreamSlot {
    fn wants(&self, event: &Event, seq: u64, matcher: Matcher) -> bool {
        self.filter.as_deref().is_none_or(|f| matcher(f, event)) && seq > self.replayed_until
    }

    fn drop_one(&mut self, channel: Option<&str>, wakes: &Wakes) {
        self.lagging = true;
        // What was staged came before the loss: the stream must have it before it can
        // report the loss (it reports when it runs dry).
        self.tx.flush(wakes);
        if self.lag.dropped.fetch_add(1, Ordering::AcqRel) == 0 {
            *self.lag.channel.lock().unwrap_or_else(|p| p.into_inner()) = channel.map(str::to_owned);
            // A stream that ran dry must wake up to report.
            self.tx.wake_receiver(wakes);
        }
    }
}

/// Events dropped for one stream and not yet reported. The stream reports them itself, as
/// `switchboard:lagged`, once it has handed out what it had, so the report comes where the
/// loss was even if no later event arrives; or the reader puts the report ahead of the next
/// event it delivers, whichever comes first.
#[derive(Default)]
struct Lag {
    dropped: AtomicU64,
    channel: Mutex<Option<String>>,
}

/// An event kept by the hold, with its delivery number.
struct Held {
    event: Event,
    seq: u64,
}

struct Hold {
    events: VecDeque<Held>,
    capacity: usize,
    closes_at: Instant,
    /// A listener attached (or the global set took its events): what it kept was wanted.
    claimed: bool,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// (id, slot): a few per channel, so a `Vec` is the cheapest thing to walk per event.
    streams: Vec<(u64, StreamSlot)>,
    /// In bind order.
    handlers: Vec<HandlerSlot>,
    hold: Option<Hold>,
    /// Events a hold dropped after waiting in vain for a listener: told to the next one.
    unreported: u64,
}

impl Registry {
    /// Close the hold if its window has passed; what it kept for nobody is reported to the
    /// next listener.
    fn expire_hold(&mut self, holding: &AtomicBool) -> Option<Hold> {
        if self.hold.as_ref().is_none_or(|h| Instant::now() < h.closes_at) {
            return None;
        }
        holding.store(false, Ordering::Release);
        let hold = self.hold.take()?;
        if !hold.claimed {
            self.unreported += hold.events.len() as u64;
        }
        Some(hold) // dropped by the caller, outside the lock
    }

    /// Hand every stream what was staged for it.
    fn flush_staged(&mut self, wakes: &Wakes) {
        for (_, slot) in &mut self.streams {
            slot.tx.flush(wakes);
        }
    }

    /// Copies of the held events `wanted` takes.
    fn held_for(&mut self, wanted: impl Fn(&Event) -> bool) -> Vec<(u64, Event)> {
        let Some(hold) = self.hold.as_mut() else { return Vec::new() };
        hold.claimed = true;
        hold.events.iter().filter(|h| wanted(&h.event)).map(|h| (h.seq, h.event.clone())).collect()
    }
}

/// The listeners of one channel, or the client's global listeners.
pub(crate) struct Listeners {
    registry: Mutex<Registry>,
    /// Streams plus handlers, so a set nobody listens to is skipped without locking.
    active: AtomicUsize,
    /// A hold is open (see the module doc).
    holding: AtomicBool,
    /// The handler task's queue, for replaying held events to a handler as it is bound.
    handler_queue: Option<QueueSender<Dispatch>>,
    /// Signalled when a listener attaches: a reader blocked on a full hold waits for it.
    attached: tokio::sync::Notify,
    /// The connection ended for good: streams end (after what they hold), new ones at once.
    closed: AtomicBool,
    /// Its streams have staged events and it is registered to hand them over (see
    /// [`HandOver`]). Only the reader's task sets and clears it.
    staged: AtomicBool,
    /// Which events a listener's name or pattern takes (see [`Matcher`]).
    matcher: Matcher,
}

/// Whether a listener bound to `pattern` takes `event`. Pusher and Phoenix: the event's name,
/// or `*` for all ([`exact_or_star`]); the gateway: the SDKs' wildcards on
/// `"{topic}.{messageType}"`.
pub(crate) type Matcher = fn(&str, &Event) -> bool;

/// The Pusher and Phoenix rule: `*`, or the exact event name.
pub(crate) fn exact_or_star(pattern: &str, event: &Event) -> bool {
    pattern == "*" || pattern == event.name()
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            registry: Mutex::default(),
            active: AtomicUsize::new(0),
            holding: AtomicBool::new(false),
            handler_queue: None,
            attached: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            staged: AtomicBool::new(false),
            matcher: exact_or_star,
        }
    }
}

/// A registry guard that republishes the listener count when it is dropped.
struct RegistryGuard<'a> {
    guard: std::sync::MutexGuard<'a, Registry>,
    active: &'a AtomicUsize,
}

impl RegistryGuard<'_> {
    /// Publish the listener count now (before reading other sets' holds).
    fn publish(&self) {
        self.active.store(self.guard.streams.len() + self.guard.handlers.len(), Ordering::Release);
    }
}

impl std::ops::Deref for RegistryGuard<'_> {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.guard
    }
}

impl std::ops::DerefMut for RegistryGuard<'_> {
    fn deref_mut(&mut self) -> &mut Registry {
        &mut self.guard
    }
}

impl Drop for RegistryGuard<'_> {
    fn drop(&mut self) {
        self.publish();
    }
}

/// What an offer did.
pub(crate) enum Offer {
    /// Delivered to every listener that wants it (or held, or wanted by nobody); with a copy
    /// for the client's global listeners if they listened when it was delivered.
    Done(Option<Event>),
    /// A listener has no room: nothing was delivered, the event comes back.
    Blocked(Event, Blocker),
}

/// Who a blocked offer waits for.
#[derive(Clone)]
pub(crate) enum Blocker {
    /// A stream's queue is full.
    Stream { listeners: Arc<Listeners>, id: u64, room: Arc<Room> },
    /// The handler task's queue is full.
    Handlers(Arc<Room>),
    /// A hold is full and nobody listens to its channel yet (nor, if given, globally); it
    /// waits at most until the hold's window ends.
    Hold(Arc<Listeners>, Option<Arc<Listeners>>, Instant),
}

impl Blocker {
    /// Events waiting in the full queue: when it goes down, the consumer made progress.
    pub(crate) fn queued(&self) -> Option<usize> {
        match self {
            Blocker::Stream { room, .. } | Blocker::Handlers(room) => Some(room.len()),
            Blocker::Hold(..) => None,
        }
    }

    /// Wait until the blocker may have room (the caller offers again to find out).
    pub(crate) async fn wait(&self) {
        match self {
            Blocker::Stream { room, .. } | Blocker::Handlers(room) => room.wait().await,
            Blocker::Hold(listeners, global, closes_at) => loop {
                let attached = listeners.attached.notified();
                tokio::pin!(attached);
                attached.as_mut().enable();
                let global_attached = async {
                    match global {
                        Some(global) => global.attached.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::pin!(global_attached);
                if listeners.is_active()
                    || !listeners.holding.load(Ordering::Acquire)
                    || global.as_ref().is_some_and(|g| g.is_active())
                {
                    return;
                }
                tokio::select! {
                    () = attached => {}
                    () = global_attached => {}
                    () = tokio::time::sleep_until((*closes_at).into()) => return,
                }
            },
        }
    }
}

/// How an offer is made: the policy, and the handler task's queue.
pub(crate) struct OfferContext<'a> {
    pub(crate) wakes: &'a Wakes,
    /// Backpressure: a full listener blocks the offer. Otherwise it drops for that listener.
    pub(crate) wait: bool,
    pub(crate) handlers: &'a QueueSender<Dispatch>,
    /// The handler queue stalled past the limit: drop for it until it is half empty.
    pub(crate) handlers_lagging: &'a AtomicBool,
    /// Events dropped for bound handlers (counted in `Client::dropped_events`).
    pub(crate) handler_drops: &'a AtomicU64,
    /// The client's global listeners, offered this channel event next.
    pub(crate) global: Option<&'a Arc<Listeners>>,
    /// The delivery number (see the module doc).
    pub(crate) seq: u64,
}

impl Listeners {
    /// A listener set whose handlers bound during a hold get its held events through
    /// `handler_queue`.
    pub(crate) fn for_channel(handler_queue: QueueSender<Dispatch>) -> Self {
        Self { handler_queue: Some(handler_queue), ..Self::default() }
    }

    /// A listener set whose names are patterns read by `matcher` (the gateway's wildcards).
    pub(crate) fn with_matcher(handler_queue: QueueSender<Dispatch>, matcher: Matcher) -> Self {
        Self { handler_queue: Some(handler_queue), matcher, ..Self::default() }
    }

    fn lock(&self) -> RegistryGuard<'_> {
        RegistryGuard { guard: self.registry.lock().unwrap_or_else(|p| p.into_inner()), active: &self.active }
    }

    /// True if any stream or handler listens here.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// Start holding events for listeners still to come (at most `capacity`, for
    /// [`HOLD_WINDOW`]); an earlier hold (of an earlier subscription) is dropped.
    pub(crate) fn open_hold(&self, capacity: usize) {
        let hold = Hold {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            closes_at: Instant::now() + HOLD_WINDOW,
            claimed: false,
        };
        let old = {
            let mut reg = self.lock();
            self.holding.store(true, Ordering::Release);
            reg.hold.replace(hold)
        };
        drop(old); // outside the lock
    }

    /// The reader waited past the stall limit on this full hold with nobody listening: close
    /// it now (the next listener is told how many it kept).
    pub(crate) fn give_up_hold(&self) -> u64 {
        let old = {
            let mut reg = self.lock();
            self.holding.store(false, Ordering::Release);
            let old = reg.hold.take();
            reg.unreported += old.as_ref().map_or(0, |h| h.events.len() as u64);
            old
        };
        old.map_or(0, |h| h.events.len() as u64)
    }

    /// The connection ended for good (failed, or disconnected): every stream ends once it has
    /// handed out what it holds, and streams attached later end at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close_hold();
        let streams = std::mem::take(&mut self.lock().streams);
        drop(streams); // their senders: each stream ends after its queued events
    }

    /// End the hold (the channel was left): its events are for nobody now.
    pub(crate) fn close_hold(&self) {
        if !self.holding.load(Ordering::Acquire) {
            return;
        }
        let old = {
            let mut reg = self.lock();
            self.holding.store(false, Ordering::Release);
            reg.hold.take()
        };
        drop(old);
    }

    /// A stream stalled past the limit: drop for it until it catches up.
    pub(crate) fn set_lagging(&self, id: u64) {
        if let Some((_, slot)) = self.lock().streams.iter_mut().find(|(sid, _)| *sid == id) {
            slot.lagging = true;
        }
    }

    pub(crate) fn bind(self: &Arc<Self>, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        self.add_handler(event, Handler::Sync(Arc::new(handler)), &[])
    }

    pub(crate) fn bind_async<F, Fut>(self: &Arc<Self>, event: &str, handler: F) -> HandlerId
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.add_handler(event, Handler::Async(Arc::new(move |e| Box::pin(handler(e)))), &[])
    }

    /// A global handler: the events `channels` hold are replayed to it (see the module doc).
    pub(crate) fn bind_global(
        self: &Arc<Self>,
        event: &str,
        handler: impl Fn(&Event) + Send + Sync + 'static,
        channels: &[Arc<Listeners>],
    ) -> HandlerId {
        self.add_handler(event, Handler::Sync(Arc::new(handler)), channels)
    }

    /// Bind `handler`, replaying to it the held events it matches: this set's own hold, or
    /// (for the global set) the holds of `channels`.
    fn add_handler(self: &Arc<Self>, event: &str, handler: Handler, channels: &[Arc<Listeners>]) -> HandlerId {
        let mut reg = self.lock();
        reg.next_id += 1;
        let id = reg.next_id;
        reg.handlers.push(HandlerSlot { id, event: event.to_owned(), handler, replayed_until: 0 });
        // Published before other sets' holds are read: the reader's offers of events that
        // are not among them then reach this set (and wait for its lock).
        reg.publish();
        let expired = reg.expire_hold(&self.holding);
        let matcher = self.matcher;
        let held = replay_source(&mut reg, channels, |held| matcher(event, held));
        // A lag report goes to a handler of every event, not to one bound to a name.
        let unreported = if event == "*" { std::mem::take(&mut reg.unreported) } else { 0 };
        if let Some(queue) = &self.handler_queue {
            // Under this set's lock, so the reader's next offer queues after these.
            let wakes = Wakes::default();
            if unreported > 0 {
                let lagged = lagged_event(None, unreported);
                queue.force_push(Dispatch { listeners: self.clone(), event: lagged, seq: 0, only: Some(id) }, &wakes);
            }
            let mut replayed_until = 0;
            for (seq, event) in held {
                replayed_until = seq;
                queue.force_push(Dispatch { listeners: self.clone(), event, seq, only: Some(id) }, &wakes);
            }
            if let Some(slot) = reg.handlers.iter_mut().find(|h| h.id == id) {
                slot.replayed_until = replayed_until;
            }
        }
        drop(reg);
        drop(expired);
        self.attached.notify_one();
        HandlerId(id)
    }

    /// Remove handlers of `event` (all of them, or the one with `id`). Returns how many.
    pub(crate) fn unbind(&self, event: &str, id: Option<HandlerId>) -> usize {
        let mut reg = self.lock();
        let before = reg.handlers.len();
        reg.handlers.retain(|h| !(h.event == event && id.is_none_or(|id| id.0 == h.id)));
        before - reg.handlers.len()
    }

    pub(crate) fn unbind_all(&self) {
        self.lock().handlers.clear();
    }

    /// A stream of this set's events, with its hold replayed first.
    pub(crate) fn stream(self: &Arc<Self>, filter: Option<String>, capacity: usize) -> EventStream {
        self.attach_stream(filter, capacity, &[])
    }

    /// A global stream: every event of every channel, with the events `channels` hold
    /// replayed first (merged in the order the socket brought them).
    pub(crate) fn global_stream(
        self: &Arc<Self>,
        filter: Option<String>,
        capacity: usize,
        channels: &[Arc<Listeners>],
    ) -> EventStream {
        self.attach_stream(filter, capacity, channels)
    }

    fn attach_stream(
        self: &Arc<Self>,
        filter: Option<String>,
        capacity: usize,
        channels: &[Arc<Listeners>],
    ) -> EventStream {
        let (tx, rx) = queue(capacity);
        // The registry stays locked while holds are read and replayed, so the reader's next
        // offer here (of an event that may be among them) comes after, and is recognised by
        // its number. Lock order: this set, then one channel at a time (the reader never
        // holds two).
        let mut reg = self.lock();
        reg.next_id += 1;
        let id = reg.next_id;
        let expired = reg.expire_hold(&self.holding);
        let unreported = std::mem::take(&mut reg.unreported);
        let lag = Arc::new(Lag { dropped: AtomicU64::new(unreported), channel: Mutex::default() });
        if self.closed.load(Ordering::Acquire) {
            // No sender: the stream ends at once.
            return EventStream { rx, owner: Arc::downgrade(self), id, lag };
        }
        let wanted = {
            let (filter, matcher) = (filter.clone(), self.matcher);
            move |event: &Event| filter.as_deref().is_none_or(|f| matcher(f, event))
        };
        // Published before any hold is read (see `replay_source`); the reader cannot offer to
        // this set meanwhile, its lock is held.
        reg.streams.push((
            id,
            StreamSlot {
                tx: StagingSender::new(tx),
                filter,
                lag: lag.clone(),
                lagging: unreported > 0,
                replayed_until: 0,
            },
        ));
        reg.publish();
        let held = replay_source(&mut reg, channels, wanted);
        let wakes = Wakes::default();
        if let Some((_, slot)) = reg.streams.last_mut() {
            for (seq, event) in held {
                slot.replayed_until = seq;
                slot.tx.force_push(event, &wakes);
            }
        }
        drop(reg);
        drop(expired);
        self.attached.notify_one();
        EventStream { rx, owner: Arc::downgrade(self), id, lag }
    }

    /// Offer `event` to every listener that wants it, all or nothing (see [`Offer`]); the
    /// event is moved into the last taker instead of cloned.
    pub(crate) fn offer(self: &Arc<Self>, event: Event, cx: &OfferContext<'_>) -> Offer {
        if !self.is_active() && !self.holding.load(Ordering::Acquire) {
            // Nobody here; the global listeners (if any) get it.
            return Offer::Done(cx.global.filter(|g| g.is_active()).map(|_| event));
        }
        let mut reg = self.lock();
        let expired = reg.expire_hold(&self.holding);
        let seq = cx.seq;
        let matcher = self.matcher;
        let wants_handlers = reg.handlers.iter().any(|h| h.wants(&event, seq, matcher));
        let handlers_lagging = cx.handlers_lagging.load(Ordering::Relaxed);
        if cx.wait {
            for (id, slot) in reg.streams.iter_mut() {
                if slot.wants(&event, seq, matcher) && !slot.lagging && !slot.tx.has_room(cx.wakes) {
                    let room = slot.tx.room().clone();
                    return Offer::Blocked(event, Blocker::Stream { listeners: self.clone(), id: *id, room });
                }
            }
            if wants_handlers && !handlers_lagging && !cx.handlers.room().has_room() {
                return Offer::Blocked(event, Blocker::Handlers(cx.handlers.room().clone()));
            }
        }
        let takers = reg.streams.iter().filter(|(_, slot)| slot.wants(&event, seq, matcher)).count();
        let listened = !reg.streams.is_empty() || !reg.handlers.is_empty();
        // Decided under this lock: a global listener attaching publishes itself before it
        // reads this set's hold (see `attach_stream`), so the event is in the hold it reads,
        // or it gets this copy.
        let taken_elsewhere = cx.global.is_some_and(|g| g.is_active());
        let global_copy = if taken_elsewhere { Some(event.clone()) } else { None };
        let mut event = Some(event);
        let mut closed = None;
        if let Some(hold) = reg.hold.as_mut() {
            let taken = takers > 0 || wants_handlers || taken_elsewhere;
            hold.claimed |= taken;
            if hold.events.len() < hold.capacity {
                let kept = if taken { event.clone() } else { event.take() };
                if let Some(kept) = kept {
                    hold.events.push_back(Held { event: kept, seq });
                }
            } else if listened || taken_elsewhere {
                // Its listeners are here: later ones start with the live events.
                self.holding.store(false, Ordering::Release);
                closed = reg.hold.take();
            } else if let Some(event) = event.take() {
                let closes_at = hold.closes_at;
                drop(reg);
                drop(expired);
                return Offer::Blocked(event, Blocker::Hold(self.clone(), cx.global.cloned(), closes_at));
            }
        }
        let Some(event) = event else {
            drop(reg);
            drop((expired, closed));
            return Offer::Done(global_copy);
        };
        let mut event = Some(event);
        let mut seen = 0;
        let mut staged = false;
        reg.streams.retain_mut(|(_, slot)| {
            let Some(current) = event.as_ref() else { return true };
            if !slot.wants(current, seq, matcher) {
                return true;
            }
            seen += 1;
            if slot.lagging {
                slot.tx.flush(cx.wakes); // (staged events, if any, come before the report)
                // Caught up: a stalled stream once half empty, otherwise once the report and
                // this event fit. The report goes first (unless the stream, run dry, took it).
                let room = slot.tx.room();
                // (Room for this event; the report may go one over the capacity.)
                let caught_up = if cx.wait { room.half_empty() } else { room.len() < room.capacity() };
                if !caught_up {
                    slot.drop_one(current.channel(), cx.wakes);
                    return true;
                }
                slot.lagging = false;
                let dropped = slot.lag.dropped.swap(0, Ordering::AcqRel);
                if dropped > 0 {
                    let first = slot.lag.channel.lock().unwrap_or_else(|p| p.into_inner()).take();
                    let report = lagged_event(first.as_deref().or(current.channel()), dropped);
                    if !slot.tx.force_push(report, cx.wakes) {
                        return false;
                    }
                }
            }
            let last = seen == takers && !wants_handlers;
            let outgoing = if last { event.take() } else { event.clone() };
            let Some(outgoing) = outgoing else { return true };
            match slot.tx.stage(outgoing, cx.wakes) {
                Ok(()) => {
                    staged = true;
                    true
                }
                Err(PushError::Full(dropped)) => {
                    slot.drop_one(dropped.channel(), cx.wakes);
                    tracing::warn!(event = %dropped.name(), "event stream full: dropping an event (reported as {LAGGED_EVENT})");
                    true
                }
                Err(PushError::Closed(_)) => false,
            }
        });
        if staged {
            if !cx.wakes.batching() {
                reg.flush_staged(cx.wakes); // no burst to end: hand over now
            } else if !self.staged.load(Ordering::Relaxed) {
                self.staged.store(true, Ordering::Relaxed);
                cx.wakes.hand_over_later(self.clone());
            }
        }
        if wants_handlers && let Some(event) = event {
            // Under the registry lock: handlers bound meanwhile replay held events after this.
            if handlers_lagging && cx.handlers.room().half_empty() {
                cx.handlers_lagging.store(false, Ordering::Relaxed);
            }
            let dispatch = Dispatch { listeners: self.clone(), event, seq, only: None };
            if cx.handlers_lagging.load(Ordering::Relaxed) {
                // Stalled past the limit (already logged): counted.
                cx.handler_drops.fetch_add(1, Ordering::Relaxed);
            } else if cx.wait {
                // The room was checked above; a replay queued meanwhile by a handler bound on
                // another set may have taken it, so this one may go over (by a hold at most).
                cx.handlers.force_push(dispatch, cx.wakes);
            } else if let Err(PushError::Full(d) | PushError::Closed(d)) = cx.handlers.try_push(dispatch, cx.wakes) {
                let n = cx.handler_drops.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(event = %d.event.name(), dropped_total = n, "handlers are behind: dropping an event for bound handlers");
            }
        }
        drop(reg);
        drop((expired, closed));
        Offer::Done(global_copy)
    }

    /// The handlers to run for a dispatch: the one it was replayed to, or every bound
    /// handler that wants it and was not given it by a replay.
    fn handlers_for(&self, event: &Event, seq: u64, only: Option<u64>) -> Vec<Handler> {
        let reg = self.lock();
        let chosen = reg.handlers.iter().filter(|h| match only {
            Some(id) => h.id == id,
            None => h.wants(event, seq, self.matcher),
        });
        chosen.map(|h| h.handler.clone()).collect()
    }

    fn remove_stream(&self, id: u64) {
        self.lock().streams.retain(|(sid, _)| *sid != id);
    }
}

impl HandOver for Listeners {
    /// The burst ended: every stream gets what was staged for it.
    fn hand_over(&self, wakes: &Wakes) {
        let mut reg = self.lock();
        self.staged.store(false, Ordering::Relaxed);
        reg.flush_staged(wakes);
    }
}

/// What a listener attaching under `reg`'s lock is replayed: this set's own hold, or (for the
/// global set) the holds of `channels`. The caller has already published itself as a
/// listener (global attach) or holds the only lock the reader would take (own hold), so an
/// event is either among these or offered to the new listener afterwards, by number.
fn replay_source(
    reg: &mut Registry,
    channels: &[Arc<Listeners>],
    wanted: impl Fn(&Event) -> bool,
) -> Vec<(u64, Event)> {
    if channels.is_empty() { reg.held_for(wanted) } else { collect_held(channels, wanted) }
}

/// Copies of the events `channels` hold that `wanted` takes, merged by delivery number.
fn collect_held(channels: &[Arc<Listeners>], wanted: impl Fn(&Event) -> bool) -> Vec<(u64, Event)> {
    let mut held = Vec::new();
    for channel in channels.iter().filter(|c| c.holding.load(Ordering::Acquire)) {
        held.extend(channel.lock().held_for(&wanted));
    }
    held.sort_by_key(|(seq, _)| *seq);
    held
}

fn lagged_event(channel: Option<&str>, dropped: u64) -> Event {
    Event::new(channel, LAGGED_EVENT, Some(&format!("{{\"dropped\":{dropped}}}")))
}

/// How many events ahead of the one handed out a stream prefetches: a cache line written
/// on the reader's core takes about as long to come over as a consumer takes for a few events.
const PREFETCH_AHEAD: usize = 3;

/// A stream of events (`while let Some(ev) = stream.next().await`). Dropping it stops the
/// delivery to it; the channel stays subscribed (other streams and handlers may use it).
///
/// A stream that is not read holds up the socket once its queue is full (backpressure), up
/// to the stall limit (see [`crate::SlowConsumer`]).
///
/// ```no_run
/// use futures_util::StreamExt;
/// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
/// let news = client.subscribe("news").await?;
/// let mut headlines = news.events_named("headline");
/// tokio::spawn(async move {
///     while let Some(event) = headlines.next().await {
///         println!("{:?}", event.data());
///     }
/// });
/// # Ok(()) }
/// ```
pub struct EventStream {
    rx: QueueReceiver<Event>,
    owner: Weak<Listeners>,
    id: u64,
    lag: Arc<Lag>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("id", &self.id).finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event, or `None` once the client is gone.
    ///
    /// ```no_run
    /// # async fn run(client: switchboard::Client) -> Result<(), switchboard::Error> {
    /// let mut events = client.subscribe("news").await?.events();
    /// if let Some(first) = events.recv().await {
    ///     println!("{}", first.name());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                if let Some(later) = self.rx.peek_taken(PREFETCH_AHEAD) {
                    later.prefetch();
                }
                Poll::Ready(Some(event))
            }
            // Ran dry (or ended): what was dropped after the last event comes now.
            ready_or_pending => match self.lag.dropped.swap(0, Ordering::AcqRel) {
                0 => ready_or_pending,
                dropped => {
                    let channel = self.lag.channel.lock().unwrap_or_else(|p| p.into_inner()).take();
                    Poll::Ready(Some(lagged_event(channel.as_deref(), dropped)))
                }
            },
        }
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.poll_event(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.remove_stream(self.id);
        }
    }
}

/// An event on its way to bound handlers.
pub(crate) struct Dispatch {
    pub(crate) listeners: Arc<Listeners>,
    pub(crate) event: Event,
    /// Its delivery number.
    seq: u64,
    /// A replay for one handler, as it was bound.
    only: Option<u64>,
}

/// The handler task: runs each event's handlers in bind order, async ones awaited, panics
/// caught and logged.
pub(crate) async fn run_handlers(mut rx: QueueReceiver<Dispatch>) {
    while let Some(Dispatch { listeners, event, seq, only }) = rx.recv().await {
        for handler in listeners.handlers_for(&event, seq, only) {
            let outcome = match handler {
                Handler::Sync(f) => std::panic::catch_unwind(AssertUnwindSafe(|| f(&event))),
                Handler::Async(f) => AssertUnwindSafe(f(event.clone())).catch_unwind().await,
            };
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                tracing::error!(event = %event.name(), "an event handler panicked (the connection lives on): {message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next_now(stream: &mut EventStream) -> Poll<Option<Event>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        stream.poll_event(&mut cx)
    }

    /// Under `DropAndReport` a full stream drops; the events staged in the same burst came
    /// before the loss, so the stream hands them out before it reports it, even while the
    /// burst is still open. (One drop only: a second would take the lagging branch, which
    /// hands over on its own.)
    #[test]
    fn lag_report_comes_after_the_events_staged_before_the_drop() {
        let (handlers, _handler_rx) = queue::<Dispatch>(16);
        let listeners = Arc::new(Listeners::for_channel(handlers.clone()));
        let mut stream = listeners.stream(None, 4);
        let wakes = Arc::new(Wakes::default());
        let (lagging, drops) = (AtomicBool::new(false), AtomicU64::new(0));
        let burst = wakes.batch();
        for seq in 1..=5 {
            let cx = OfferContext {
                wakes: &wakes,
                wait: false,
                handlers: &handlers,
                handlers_lagging: &lagging,
                handler_drops: &drops,
                global: None,
                seq,
            };
            let event = Event::new(Some("room"), "tick", Some(&seq.to_string()));
            assert!(matches!(listeners.offer(event, &cx), Offer::Done(None)));
        }
        for seq in 1..=4 {
            let Poll::Ready(Some(event)) = next_now(&mut stream) else { panic!("event {seq} missing") };
            assert_eq!((event.name(), event.data()), ("tick", Some(seq.to_string().as_str())));
        }
        let Poll::Ready(Some(report)) = next_now(&mut stream) else { panic!("no lag report") };
        assert_eq!((report.name(), report.data()), (LAGGED_EVENT, Some("{\"dropped\":1}")));
        drop(burst);
        assert!(next_now(&mut stream).is_pending());
    }
}
