//! The bounded queue between the socket reader and each listener (an event stream, or the
//! task that runs bound handlers), with wake-ups batched per read burst.
//!
//! Why not tokio's `mpsc`: its `try_send` wakes the receiver on every item, and when the
//! consumer keeps up (the usual case) every wake is a cross-thread unpark — a futex call and
//! a context switch per event. At a million events a second that was the largest cost left
//! in the client. Here the socket reader opens a [`WakeBatch`] around each burst of frames
//! it already has, and the consumers it fed are woken once when the burst ends; the
//! consumer then takes everything queued under one lock.
//!
//! A stream's sender goes further: during a burst it *stages* items ([`StagingSender`]) and
//! hands them to the queue in one lock when the burst ends, with one update of the shared
//! count. Per item, the lock, the count and the receiver's waker each sat on a cache line the
//! consumer's thread also writes, so every event moved those lines between two cores: about a
//! third of the reader's time at 100-byte events.
//!
//! The bound is exact: items waiting (queued, or taken by the receiver but not yet handed out)
//! never exceed the capacity, so a full queue refuses the item. The socket reader then waits
//! for [`Room`] (backpressure: it stops reading the socket), or, by explicit policy, drops
//! the item and reports it (see `delivery.rs`). The receiver signals room once the queue is
//! back to half full, so a waiting reader wakes once per half queue, not once per item.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Why [`QueueSender::try_push`] refused an item (which it hands back).
#[derive(Debug)]
pub(crate) enum PushError<T> {
    /// The queue holds its capacity.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

struct State<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    senders: usize,
    receiver_alive: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    room: Arc<Room>,
}

/// The part of a queue a blocked sender waits on: how full it is, and a signal for room.
pub(crate) struct Room {
    /// Items waiting (in the shared queue or the receiver's batch, not yet handed out):
    /// raised by senders under the lock, lowered by the receiver (without it) as it hands
    /// each out.
    queued: AtomicUsize,
    capacity: usize,
    /// A sender waits in [`Room::wait`]: the receiver notifies once the queue is half empty.
    sender_waiting: AtomicBool,
    receiver_alive: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Room {
    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// The capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// True if one more item fits (or the receiver is gone, so pushing fails at once).
    pub(crate) fn has_room(&self) -> bool {
        self.len() < self.capacity || !self.receiver_alive.load(Ordering::Acquire)
    }

    /// True if at most half the capacity is taken: a lagging listener is caught up enough
    /// to be told what it missed.
    pub(crate) fn half_empty(&self) -> bool {
        self.len() <= self.capacity / 2
    }

    /// Wait until the queue is at most half full, or its receiver is gone.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // SeqCst pairs with the receiver's: either it sees this flag, or this sees its count.
            self.sender_waiting.store(true, Ordering::SeqCst);
            if self.queued.load(Ordering::SeqCst) <= self.capacity / 2 || !self.receiver_alive.load(Ordering::SeqCst) {
                self.sender_waiting.store(false, Ordering::Relaxed);
                return;
            }
            notified.await;
        }
    }

    /// One item was handed out (`before` were waiting): wake a waiting sender at half.
    fn handed_out(&self) {
        let before = self.queued.fetch_sub(1, Ordering::SeqCst);
        if before - 1 <= self.capacity / 2
            && self.sender_waiting.load(Ordering::SeqCst)
            && self.sender_waiting.swap(false, Ordering::SeqCst)
        {
            self.notify.notify_one();
        }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bounded queue: many senders, one receiver.
pub(crate) fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let room = Arc::new(Room {
        queued: AtomicUsize::new(0),
        capacity: capacity.max(1),
        sender_waiting: AtomicBool::new(false),
        receiver_alive: AtomicBool::new(true),
        notify: tokio::sync::Notify::new(),
    });
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), waker: None, senders: 1, receiver_alive: true }),
        room,
    });
    (QueueSender { shared: shared.clone() }, QueueReceiver { shared, local: VecDeque::new() })
}

/// The sending half; cloning adds a sender, and the receiver ends when all are dropped.
pub(crate) struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueSender<T> {
    /// Queue `item` without waiting. The receiver's wake-up goes through `wakes` (deferred
    /// while a [`WakeBatch`] is open).
    pub(crate) fn try_push(&self, item: T, wakes: &Wakes) -> Result<(), PushError<T>> {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                return Err(PushError::Closed(item));
            }
            if self.shared.room.queued.load(Ordering::Acquire) >= self.shared.room.capacity {
                return Err(PushError::Full(item));
            }
            self.push_locked(&mut state, item, wakes)
        };
        if let Some(waker) = waker {
            wakes.wake(waker);
        }
        Ok(())
    }

    /// Queue `item` even past the capacity (false if the receiver is gone). For replaying
    /// held events into a listener as it attaches: they are few (a hold's bound), and the
    /// listener's queue then exerts backpressure until it is back under its capacity.
    pub(crate) fn force_push(&self, item: T, wakes: &Wakes) -> bool {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                return false;
            }
            self.push_locked(&mut state, item, wakes)
        };
        if let Some(waker) = waker {
            wakes.wake(waker);
        }
        true
    }

    fn push_locked(&self, state: &mut State<T>, item: T, wakes: &Wakes) -> Option<Waker> {
        state.items.push_back(item);
        let waiting = self.shared.room.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if waiting * 2 > self.shared.room.capacity {
            wakes.pressure.store(true, Ordering::Relaxed);
        }
        state.waker.take()
    }

    /// Queue all of `items` (emptying it) in one lock, even past the capacity (the caller
    /// counted them against it). False if the receiver is gone (the items are dropped).
    fn push_all(&self, items: &mut VecDeque<T>, wakes: &Wakes) -> bool {
        let (waker, refused) = {
            let mut state = self.shared.lock();
            if state.receiver_alive {
                let n = items.len();
                if state.items.is_empty() {
                    // The usual case (the consumer took everything): trade buffers, as the
                    // receiver does, instead of moving each item again.
                    std::mem::swap(&mut state.items, items);
                } else {
                    state.items.extend(items.drain(..));
                }
                let waiting = self.shared.room.queued.fetch_add(n, Ordering::AcqRel) + n;
                if waiting * 2 > self.shared.room.capacity {
                    wakes.pressure.store(true, Ordering::Relaxed);
                }
                (state.waker.take(), None)
            } else {
                (None, Some(std::mem::take(items)))
            }
        };
        if let Some(waker) = waker {
            wakes.wake(waker);
        }
        refused.is_none() // refused items are dropped here, outside the lock
    }

    /// Wake the receiver if it waits (through `wakes`), with nothing queued: it has
    /// something else to look at (a drop to report).
    pub(crate) fn wake_receiver(&self, wakes: &Wakes) {
        let waker = self.shared.lock().waker.take();
        if let Some(waker) = waker {
            wakes.wake(waker);
        }
    }

    /// How full the queue is, and the signal a blocked sender waits on.
    pub(crate) fn room(&self) -> &Arc<Room> {
        &self.shared.room
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self { shared: self.shared.clone() }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 { state.waker.take() } else { None }
        };
        if let Some(waker) = waker {
            waker.wake(); // the end of the stream is never deferred
        }
    }
}

/// A sender that stages items while a read burst lasts and hands them to the queue at its
/// end, in one lock (see the module doc). The owner (a stream's slot, under its registry's
/// lock) registers for the hand-over with [`Wakes::hand_over_later`]; without an open batch
/// it calls [`StagingSender::flush`] itself.
///
/// The bound stays exact: staged items count against the capacity. `credit` is how many more
/// fit by the last look at the shared count; the consumer only ever lowers that count, so the
/// credit never overstates the room, and the shared line is read once per credit, not per item.
pub(crate) struct StagingSender<T> {
    tx: QueueSender<T>,
    staged: VecDeque<T>,
    credit: usize,
}

impl<T> StagingSender<T> {
    pub(crate) fn new(tx: QueueSender<T>) -> Self {
        Self { tx, staged: VecDeque::new(), credit: 0 }
    }

    fn refresh_credit(&mut self) {
        let room = self.tx.room();
        self.credit = room.capacity.saturating_sub(room.len() + self.staged.len());
    }

    /// True if one more item fits, counting the staged ones (or the receiver is gone, so
    /// staging fails at once). When the staged ones are what fills the queue they are handed
    /// over first, so that the consumer can make room.
    pub(crate) fn has_room(&mut self, wakes: &Wakes) -> bool {
        if self.credit > 0 {
            return true;
        }
        self.refresh_credit();
        if self.credit == 0 && !self.staged.is_empty() {
            self.flush(wakes);
            self.refresh_credit();
        }
        self.credit > 0 || !self.tx.room().receiver_alive.load(Ordering::Acquire)
    }

    /// Stage `item` (handed over by the next [`StagingSender::flush`]), or refuse it: the
    /// queue is full (staged items then handed over), or the receiver is gone (looked at
    /// when the credit runs out; what was staged for a receiver gone meanwhile is dropped).
    pub(crate) fn stage(&mut self, item: T, wakes: &Wakes) -> Result<(), PushError<T>> {
        if self.credit == 0 {
            if !self.tx.room().receiver_alive.load(Ordering::Acquire) {
                return Err(PushError::Closed(item));
            }
            if !self.has_room(wakes) || self.credit == 0 {
                return Err(PushError::Full(item));
            }
        }
        self.credit -= 1;
        self.staged.push_back(item);
        Ok(())
    }

    /// Hand what is staged to the queue (one lock) and wake the receiver through `wakes`.
    /// False if the receiver is gone.
    pub(crate) fn flush(&mut self, wakes: &Wakes) -> bool {
        self.staged.is_empty() || self.tx.push_all(&mut self.staged, wakes)
    }

    /// True if items wait to be handed over.
    #[cfg(test)]
    fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Hand over what is staged, then queue `item` even past the capacity (see
    /// [`QueueSender::force_push`]).
    pub(crate) fn force_push(&mut self, item: T, wakes: &Wakes) -> bool {
        self.flush(wakes) && self.tx.force_push(item, wakes)
    }

    /// Hand over what is staged (which wakes the receiver), or else wake it (see
    /// [`QueueSender::wake_receiver`]).
    pub(crate) fn wake_receiver(&mut self, wakes: &Wakes) {
        if self.staged.is_empty() {
            self.tx.wake_receiver(wakes);
        } else {
            self.flush(wakes);
        }
    }

    /// How full the queue is (staged items not counted: hand them over first).
    pub(crate) fn room(&self) -> &Arc<Room> {
        self.tx.room()
    }
}

impl<T> Drop for StagingSender<T> {
    fn drop(&mut self) {
        // A stream ends after what was staged for it, like after what was queued.
        self.flush(&Wakes::default());
    }
}

/// The receiving half.
pub(crate) struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
    /// Items taken from the shared queue in one lock, handed out one by one.
    local: VecDeque<T>,
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    ///
    /// Unlike tokio's channels this does not spend tokio's cooperative budget. With it, a
    /// consumer that shares a thread with the socket reader was parked after 128 events
    /// until the scheduler next polled its I/O driver, while the reader, always ready, kept
    /// filling the queue: on a current-thread runtime 95 % of a fast stream overflowed. A
    /// consumer cannot starve the reader on its own thread (the queue runs dry while it
    /// runs), and on a multi-thread runtime other workers take the other tasks.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.local.is_empty() {
            let mut state = self.shared.lock();
            if state.items.is_empty() {
                if state.senders == 0 {
                    return Poll::Ready(None);
                }
                if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    state.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // Swap buffers: the senders go on filling the (empty) one this receiver had.
            std::mem::swap(&mut state.items, &mut self.local);
        }
        let item = self.local.pop_front();
        // Handed out: its room is the senders' again.
        self.shared.room.handed_out();
        Poll::Ready(item)
    }

    /// The item `ahead` places after the next one [`QueueReceiver::poll_recv`] hands out, if
    /// already taken from the shared queue (to prefetch what it points to).
    pub(crate) fn peek_taken(&self, ahead: usize) -> Option<&T> {
        self.local.get(ahead)
    }

    /// The next item (see [`QueueReceiver::poll_recv`]).
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            std::mem::take(&mut state.items)
        };
        self.shared.room.receiver_alive.store(false, Ordering::SeqCst);
        self.shared.room.notify.notify_one(); // a sender waiting for room must not wait for ever
        drop(items); // outside the lock: dropping an item may run arbitrary code
    }
}

/// Staged items an owner hands to their queues when the batch ends (see [`StagingSender`]).
pub(crate) trait HandOver: Send + Sync {
    /// Flush every staged sender it owns, waking through `wakes`.
    fn hand_over(&self, wakes: &Wakes);
}

/// What an open batch holds back.
#[derive(Default)]
struct HeldBack {
    wakers: Vec<Waker>,
    /// Owners with staged items, handed over before the wakers are woken.
    staged: Vec<Arc<dyn HandOver>>,
}

/// Where receivers' wake-ups go: at once, or held until the open [`WakeBatch`]es close.
#[derive(Default)]
pub(crate) struct Wakes {
    open_batches: AtomicUsize,
    held: Mutex<HeldBack>,
    /// A queue passed half its capacity since [`Wakes::take_pressure`] last looked.
    pressure: AtomicBool,
}

impl Wakes {
    /// True if a receiver's queue passed half full since the last call. The socket reader
    /// then yields after its burst: consumers on its own thread only run when it does, and
    /// a reader whose socket never runs dry yields only when tokio's cooperative budget runs
    /// out, thousands of frames later, by which time a fast consumer's queue has overflowed.
    /// Yielding only under pressure keeps the fast path free of scheduler round trips (each
    /// yield on a multi-thread runtime wakes an idle worker: 15 % at 100 B events when the
    /// reader yielded every 64 KiB).
    pub(crate) fn take_pressure(&self) -> bool {
        self.pressure.swap(false, Ordering::Relaxed)
    }

    fn held(&self) -> MutexGuard<'_, HeldBack> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self, waker: Waker) {
        if self.open_batches.load(Ordering::Acquire) > 0 {
            let mut held = self.held();
            // Re-check under the lock: a batch that closed meanwhile has already drained.
            if self.open_batches.load(Ordering::Acquire) > 0 {
                held.wakers.push(waker);
                return;
            }
        }
        waker.wake();
    }

    /// True while a batch is open: senders may stage (and must register their owner).
    pub(crate) fn batching(&self) -> bool {
        self.open_batches.load(Ordering::Acquire) > 0
    }

    /// Have `owner` hand over its staged items when the batches close (or at
    /// [`Wakes::release_held`]). Only while [`Wakes::batching`], from the reader's task.
    pub(crate) fn hand_over_later(&self, owner: Arc<dyn HandOver>) {
        self.held().staged.push(owner);
    }

    /// Hand over everything staged (their wake-ups join the held ones).
    fn hand_over_staged(&self) {
        let staged = std::mem::take(&mut self.held().staged);
        for owner in staged {
            owner.hand_over(self);
        }
    }

    /// Hand over what is staged and wake the receivers held so far now, leaving open batches
    /// open: a reader that is about to wait (on a socket write) must not keep consumers
    /// waiting for events already read.
    pub(crate) fn release_held(&self) {
        self.hand_over_staged();
        let held = std::mem::take(&mut self.held().wakers);
        for waker in held {
            waker.wake();
        }
    }

    /// Hold wake-ups until the returned guard is dropped (the end of a read burst).
    pub(crate) fn batch(self: &Arc<Self>) -> WakeBatch {
        self.open_batches.fetch_add(1, Ordering::AcqRel);
        WakeBatch { wakes: self.clone() }
    }
}

/// Holds receivers' wake-ups while it lives; dropping it wakes them, once each.
pub(crate) struct WakeBatch {
    wakes: Arc<Wakes>,
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        if self.wakes.open_batches.load(Ordering::Acquire) == 1 {
            // The last batch: staged items go to their queues while wake-ups are still held.
            self.wakes.hand_over_staged();
        }
        let held = {
            let mut held = self.wakes.held();
            if self.wakes.open_batches.fetch_sub(1, Ordering::AcqRel) != 1 {
                return; // an outer batch still holds them
            }
            std::mem::take(&mut held.wakers)
        };
        for waker in held {
            waker.wake();
        }
    }
}

/// Frames the socket reader handles in one burst before its other `select!` branches
/// (commands, timers) get a turn.
const BURST_FRAMES: usize = 256;

/// One read burst: the frames the socket reader already has, handled without going back
/// through its `select!`, with listeners' wake-ups held until the burst ends.
pub(crate) struct Burst {
    frames: usize,
    wakes: WakeBatch,
}

impl Burst {
    /// Start a burst that holds wake-ups in `wakes`.
    pub(crate) fn new(wakes: WakeBatch) -> Self {
        Self { frames: 0, wakes }
    }

    /// The next item `socket` already has, if the burst has room for it: `None` ends the
    /// burst (it is full, or nothing more is buffered).
    pub(crate) fn next_buffered<S: futures_util::Stream + Unpin>(&mut self, socket: &mut S) -> Option<Option<S::Item>> {
        use futures_util::{FutureExt, StreamExt};
        self.frames += 1;
        if self.frames >= BURST_FRAMES {
            return None;
        }
        socket.next().now_or_never()
    }

    /// End the burst: wake the listeners it fed, and if it filled a queue past half, yield so
    /// that a consumer on this thread runs before the reader reads on (see
    /// [`Wakes::take_pressure`]).
    pub(crate) async fn end(self) {
        let wakes = self.wakes.wakes.clone();
        drop(self.wakes);
        if wakes.take_pressure() {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    #[test]
    fn bound_counts_items_waiting_not_items_handed_out() {
        let wakes = Wakes::default();
        let (tx, mut rx) = queue::<u32>(3);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        for i in 0..3 {
            tx.try_push(i, &wakes).unwrap();
        }
        assert!(matches!(tx.try_push(9, &wakes), Err(PushError::Full(9))));
        // The receiver takes all three into its batch; each one handed out frees its room,
        // even though the rest of the batch is still waiting.
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(0)));
        tx.try_push(3, &wakes).unwrap();
        assert!(matches!(tx.try_push(9, &wakes), Err(PushError::Full(9))));
        for i in 1..4 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        for i in 4..7 {
            tx.try_push(i, &wakes).unwrap();
        }
        assert!(matches!(tx.try_push(9, &wakes), Err(PushError::Full(9))));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(4)));
    }

    #[test]
    fn a_consumer_one_behind_loses_nothing() {
        // Four behind, then one in and one out per tick: never more than four wait.
        let wakes = Wakes::default();
        let (tx, mut rx) = queue::<u32>(4);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        for i in 0..4 {
            tx.try_push(i, &wakes).unwrap();
        }
        for i in 4..1_000 {
            assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(Some(_))));
            tx.try_push(i, &wakes).unwrap();
        }
    }

    #[test]
    fn room_returns_as_soon_as_the_batch_is_handed_out() {
        // A consumer that read everything and now waits must not keep the queue full.
        let wakes = Wakes::default();
        let (tx, mut rx) = queue::<u32>(2);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        tx.try_push(0, &wakes).unwrap();
        tx.try_push(1, &wakes).unwrap();
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(0)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        tx.try_push(2, &wakes).unwrap();
        tx.try_push(3, &wakes).unwrap();
        assert!(matches!(tx.try_push(4, &wakes), Err(PushError::Full(4))));
    }

    #[test]
    fn wakes_are_held_for_a_batch_and_given_once() {
        let wakes = Arc::new(Wakes::default());
        let (tx, mut rx) = queue::<u32>(100);
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        {
            let _outer = wakes.batch();
            {
                let _inner = wakes.batch();
                for i in 0..10 {
                    tx.try_push(i, &wakes).unwrap();
                }
            }
            assert_eq!(counter.0.load(Ordering::SeqCst), 0, "held while a batch is open");
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one wake for the burst");
        for i in 0..10 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        // Released early (before the reader waits on a write), then not again at the end.
        {
            let _batch = wakes.batch();
            tx.try_push(100, &wakes).unwrap();
            wakes.release_held();
            assert_eq!(counter.0.load(Ordering::SeqCst), 2, "released while the batch is open");
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(100)));
        // Without a batch the wake is immediate.
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.try_push(10, &wakes).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn pressure_is_reported_past_half_full() {
        let wakes = Wakes::default();
        let (tx, mut rx) = queue::<u32>(4);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        tx.try_push(0, &wakes).unwrap();
        tx.try_push(1, &wakes).unwrap();
        assert!(!wakes.take_pressure(), "half full is fine");
        tx.try_push(2, &wakes).unwrap();
        assert!(wakes.take_pressure());
        assert!(!wakes.take_pressure(), "reported once");
        for i in 0..3 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        tx.try_push(3, &wakes).unwrap();
        assert!(!wakes.take_pressure());
    }

    #[test]
    fn ends_when_senders_go_and_refuses_when_receiver_goes() {
        let wakes = Wakes::default();
        let (tx, mut rx) = queue::<u32>(4);
        let tx2 = tx.clone();
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        tx.try_push(1, &wakes).unwrap();
        drop(tx);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        drop(tx2);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the last sender wakes the receiver");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));

        let (tx, rx) = queue::<u32>(4);
        drop(rx);
        assert!(matches!(tx.try_push(1, &wakes), Err(PushError::Closed(1))));
    }

    /// A stream's slot as the listeners hold it: a staging sender behind a lock, handed over
    /// when the batch ends.
    struct Owner(Mutex<StagingSender<u64>>);
    impl HandOver for Owner {
        fn hand_over(&self, wakes: &Wakes) {
            self.0.lock().unwrap().flush(wakes);
        }
    }

    fn owner(capacity: usize) -> (Arc<Owner>, QueueReceiver<u64>) {
        let (tx, rx) = queue::<u64>(capacity);
        (Arc::new(Owner(Mutex::new(StagingSender::new(tx)))), rx)
    }

    #[test]
    fn staged_items_arrive_when_the_batch_ends_in_order_with_one_wake() {
        let wakes = Arc::new(Wakes::default());
        let (owner, mut rx) = owner(100);
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        {
            let _batch = wakes.batch();
            for i in 0..10 {
                owner.0.lock().unwrap().stage(i, &wakes).unwrap();
            }
            wakes.hand_over_later(owner.clone());
            assert_eq!(rx.poll_recv(&mut cx), Poll::Pending, "staged, not yet queued");
            assert_eq!(owner.0.lock().unwrap().room().len(), 0);
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "one wake for the burst");
        for i in 0..10 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        // Released early (the reader is about to wait on a write): staged items go too.
        {
            let _batch = wakes.batch();
            owner.0.lock().unwrap().stage(10, &wakes).unwrap();
            wakes.hand_over_later(owner.clone());
            wakes.release_held();
            assert_eq!(counter.0.load(Ordering::SeqCst), 2);
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(10)));
        }
    }

    #[test]
    fn staged_items_count_against_the_bound() {
        let wakes = Arc::new(Wakes::default());
        let (tx, mut rx) = queue::<u64>(3);
        let mut tx = StagingSender::new(tx);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let _batch = wakes.batch();
        for i in 0..3 {
            tx.stage(i, &wakes).unwrap();
        }
        // Full with what is staged: those are handed over (so the consumer can make room)
        // and the item is refused.
        assert!(matches!(tx.stage(9, &wakes), Err(PushError::Full(9))));
        assert!(!tx.has_staged());
        assert_eq!(tx.room().len(), 3);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(0)));
        // The consumer made room for one: the credit is refreshed from the shared count.
        tx.stage(3, &wakes).unwrap();
        assert!(matches!(tx.stage(9, &wakes), Err(PushError::Full(9))));
        for i in 1..4 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        // The receiver gone: refused as closed once the credit runs out.
        drop(rx);
        let refused = (0..5).map(|i| tx.stage(i, &wakes)).find(Result::is_err);
        assert!(matches!(refused, Some(Err(PushError::Closed(_)))));
    }

    #[test]
    fn a_dropped_staging_sender_hands_over_first() {
        let wakes = Arc::new(Wakes::default());
        let (tx, mut rx) = queue::<u64>(10);
        let mut tx = StagingSender::new(tx);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let _batch = wakes.batch();
        tx.stage(1, &wakes).unwrap();
        tx.stage(2, &wakes).unwrap();
        drop(tx); // a closed connection's stream ends after what was staged for it
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    /// Run `producer` on a 2-worker runtime and check that `rx` gets 0..100,000 in order.
    fn arrive_in_order_across_threads<F>(rx: QueueReceiver<u64>, producer: F)
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let run = async move {
            let mut rx = rx;
            let producer = tokio::spawn(producer);
            let mut expected = 0;
            while let Some(n) = rx.recv().await {
                assert_eq!(n, expected);
                expected += 1;
            }
            assert_eq!(expected, 100_000);
            producer.await.unwrap();
        };
        rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("in time") });
    }

    #[test]
    fn staged_items_cross_threads_in_order_under_load() {
        let wakes = Arc::new(Wakes::default());
        let (owner, rx) = owner(64);
        arrive_in_order_across_threads(rx, async move {
            let mut next = 0u64;
            while next < 100_000 {
                let batch = wakes.batch();
                let mut staged = false;
                for _ in 0..50.min(100_000 - next) {
                    match owner.0.lock().unwrap().stage(next, &wakes) {
                        Ok(()) => (next, staged) = (next + 1, true),
                        Err(PushError::Full(_)) => break,
                        Err(PushError::Closed(_)) => panic!("receiver gone"),
                    }
                }
                if staged {
                    wakes.hand_over_later(owner.clone());
                }
                drop(batch);
                tokio::task::yield_now().await;
            }
        });
    }

    #[test]
    fn items_cross_threads_in_order_under_load() {
        let wakes = Arc::new(Wakes::default());
        let (tx, rx) = queue::<u64>(64);
        // Refusals (`Full`) are the bound at work: every item still arrives, in order.
        arrive_in_order_across_threads(rx, async move {
            let mut next = 0u64;
            while next < 100_000 {
                let batch = wakes.batch();
                for _ in 0..50.min(100_000 - next) {
                    match tx.try_push(next, &wakes) {
                        Ok(()) => next += 1,
                        Err(PushError::Full(_)) => {}
                        Err(PushError::Closed(_)) => panic!("receiver gone"),
                    }
                }
                drop(batch);
                tokio::task::yield_now().await;
            }
        });
    }
}
