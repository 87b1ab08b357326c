//! Recycled event buffers, per thread.
//!
//! Every received event owns one buffer (its name, channel and payload, unescaped). At 1 KB
//! events and a million events a second, allocating each and freeing it when the consumer is
//! done cost up to a quarter of the throughput with glibc's allocator: a consumer on the
//! reader's worker thread (tokio's usual placement) runs when the reader yields, often after
//! hundreds of kilobytes of events; freed together they left the heap top above glibc's trim
//! threshold, so it returned the memory to the kernel and faulted it back in for the next
//! round (about 600,000 page faults per 3 million events). Consumers now hand their buffers
//! back here and the reader takes them for the next frames (a few hundred page faults).
//!
//! A consumer on another thread than the reader (the future in `#[tokio::main]`'s `main`
//! is not a tokio worker) used to free every buffer into the reader's allocator arena: at
//! 100 B events glibc's `malloc`, `_int_free` and the arena lock they fight over took 14 % of
//! the client. Such a thread now collects what it drops into batches and hands each batch,
//! in one lock, to a small process-wide stack that decoding threads take from when their
//! own pool runs dry. Every pool, and that stack, is bounded in bytes.

use std::cell::RefCell;
use std::sync::Mutex;

/// Buffers smaller than this go straight to the allocator.
const MIN_CAPACITY: usize = 64;
/// Buffers larger than this are not kept (one huge event must not pin its memory).
const MAX_CAPACITY: usize = 16 * 1024;
/// Kept buffers looked at per request (the newest).
const LOOK_AT: usize = 4;
/// What one thread keeps, at most: about what a socket reader produces before tokio's
/// cooperative budget makes it yield to the consumers on its thread.
const MAX_KEPT_BYTES: usize = 512 * 1024;
/// A thread that does not decode hands back its buffers in batches of this many bytes at
/// most (what one such thread may hold between batches).
const BATCH_BYTES: usize = 64 * 1024;
/// ... or of this many buffers.
const BATCH_BUFFERS: usize = 64;
/// Batches waiting for a decoding thread, at most (the rest are freed).
const MAX_BATCHES: usize = 8;

#[derive(Default)]
struct Pool {
    buffers: Vec<String>,
    bytes: usize,
    /// This thread decodes frames (it asked for a buffer): only then are buffers kept here,
    /// so threads that only consume events never hold memory nobody will reuse.
    decodes: bool,
    /// On a thread that does not decode: the batch being collected for [`RETURNED`].
    batch: Batch,
}

#[derive(Default)]
struct Batch {
    buffers: Vec<String>,
    bytes: usize,
}

/// Batches of buffers from threads that do not decode, for the threads that do.
static RETURNED: Mutex<Vec<Batch>> = Mutex::new(Vec::new());

impl Pool {
    /// Refill an empty pool with a batch from [`RETURNED`], if there is one.
    fn refill(&mut self) {
        let batch = RETURNED.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(batch) = batch {
            self.bytes += batch.bytes;
            self.buffers.extend(batch.buffers);
        }
    }
}

impl Batch {
    fn push(&mut self, buffer: String) {
        self.bytes += buffer.capacity();
        self.buffers.push(buffer);
        if self.bytes >= BATCH_BYTES || self.buffers.len() >= BATCH_BUFFERS {
            // The next batch starts at its full size: growing it took 5 reallocs a batch.
            let full = std::mem::replace(self, Batch { buffers: Vec::with_capacity(BATCH_BUFFERS), bytes: 0 });
            let mut returned = RETURNED.lock().unwrap_or_else(|p| p.into_inner());
            if returned.len() < MAX_BATCHES {
                returned.push(full);
                return;
            }
            drop(returned);
            drop(full); // outside the lock
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An empty buffer with room for at least `len` bytes: a recycled one if this thread has one.
pub(crate) fn take(len: usize) -> String {
    if len >= MIN_CAPACITY
        && let Ok(Some(buffer)) = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.decodes = true;
            if pool.buffers.is_empty() {
                pool.refill();
            }
            // Big enough, but not more than twice the need: an event keeps its buffer. Only
            // the newest few are looked at, so a pool full of misfits (copies of events,
            // sized to their content, not to a frame) costs O(1) per frame; when none of
            // them fits, the newest is freed if too small, so misfits drain, not pile up.
            let fits = |b: &String| (len..=len.saturating_mul(2)).contains(&b.capacity());
            let newest = pool.buffers.len().saturating_sub(LOOK_AT);
            let at = match pool.buffers[newest..].iter().rposition(fits) {
                Some(at) => newest + at,
                None => {
                    // Free the newest if it is too small for this request (a copy sized to
                    // its content); one that is merely too big stays for a bigger frame.
                    if pool.buffers.last().is_some_and(|b| b.capacity() < len)
                        && let Some(misfit) = pool.buffers.pop()
                    {
                        pool.bytes -= misfit.capacity();
                    }
                    return None;
                }
            };
            let mut buffer = pool.buffers.swap_remove(at);
            pool.bytes -= buffer.capacity();
            if let Some(next) = pool.buffers.last() {
                prefetch_for_write(next);
            }
            buffer.clear();
            Some(buffer)
        })
    {
        return buffer;
    }
    String::with_capacity(len)
}

/// Hand a buffer back for reuse on this thread (or free it, if it does not fit the pool).
pub(crate) fn give(mut buffer: String) {
    let capacity = buffer.capacity();
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return;
    }
    buffer.clear();
    // During thread teardown the pool may be gone: then the buffer is simply freed.
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if !pool.decodes {
            pool.batch.push(buffer);
        } else if pool.bytes + capacity <= MAX_KEPT_BYTES {
            pool.bytes += capacity;
            pool.buffers.push(buffer);
        }
    });
}

/// At most this much of a buffer is prefetched: a few cache lines already cover the usual
/// event, and a huge one is better left to the hardware prefetcher.
const PREFETCH_BYTES: usize = 1024;

/// Ask the CPU to fetch the cache lines of `buffer` (its capacity, up to [`PREFETCH_BYTES`])
/// for writing. Buffers come back from the consumer's core, so writing a frame into one
/// waited for each line to move over (about 100 ns a line on a 2-core cloud VM); fetched one
/// frame ahead, the move overlaps the work on the frame before.
fn prefetch_for_write(buffer: &String) {
    let start = buffer.as_ptr();
    for offset in (0..buffer.capacity().min(PREFETCH_BYTES)).step_by(64) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHW is a hint: it never faults, writes nothing and leaves the flags
        // alone, whatever the address. CPUs without it (Intel before Broadwell) run its
        // encoding (0F 0D /1) as a no-op.
        unsafe {
            std::arch::asm!("prefetchw [{0}]", in(reg) start.wrapping_add(offset), options(nostack, preserves_flags, readonly));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (start, offset);
    }
}

/// Ask the CPU to fetch the cache lines of `text` (up to [`PREFETCH_BYTES`]) for reading: a
/// consumer's coming event, written on the reader's core.
pub(crate) fn prefetch_for_read(text: &str) {
    let start = text.as_ptr();
    for offset in (0..text.len().min(PREFETCH_BYTES)).step_by(64) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it never faults and changes no memory, whatever the
        // address; SSE (PREFETCHT0) is part of every x86_64 CPU.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (start, offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`RETURNED`] is process-wide: a test's decoding thread with an empty pool would take
    /// another test's batch.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn only_a_decoding_thread_keeps_buffers() {
        let _serial = serial();
        // A fresh thread that only drops events frees their buffers.
        std::thread::spawn(|| {
            give(String::with_capacity(1_000));
            assert_eq!(POOL.with_borrow(|p| p.buffers.len()), 0);
            drop(take(1_000));
            give(String::with_capacity(1_000));
            assert_eq!(POOL.with_borrow(|p| p.buffers.len()), 1);
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn buffers_are_reused_within_bounds() {
        let _serial = serial();
        let mut stale = take(1_000);
        stale.push_str("previous event");
        let address = stale.as_ptr();
        give(stale);
        let again = take(900);
        assert_eq!(again.as_ptr(), address, "a kept buffer that fits is reused");
        assert!(again.is_empty() && again.capacity() >= 1_000);
        // Too small or too big: not kept.
        give(String::with_capacity(MIN_CAPACITY - 1));
        give(String::with_capacity(MAX_CAPACITY + 1));
        assert_eq!(POOL.with_borrow(|p| p.buffers.len()), 0);
        // Bounded in bytes.
        for _ in 0..1_000 {
            give(String::with_capacity(MAX_CAPACITY));
        }
        assert!(POOL.with_borrow(|p| p.bytes) <= MAX_KEPT_BYTES);
        assert_eq!(POOL.with_borrow(|p| p.buffers.len()), MAX_KEPT_BYTES / MAX_CAPACITY);
        // A request larger than every kept buffer allocates, and a small one does not get a
        // buffer more than twice its size.
        assert!(take(MAX_CAPACITY * 2).capacity() >= MAX_CAPACITY * 2);
        assert!(take(600).capacity() < MAX_CAPACITY);
    }

    #[test]
    fn a_consuming_thread_hands_buffers_back_in_batches() {
        let _serial = serial();
        // A capacity no other test uses, so the batch found below is this test's.
        const SIZE: usize = 777; // a full batch by count: 64 × 777 < BATCH_BYTES
        let addresses: Vec<usize> = std::thread::spawn(|| {
            let buffers: Vec<String> = (0..BATCH_BUFFERS).map(|_| String::with_capacity(SIZE)).collect();
            let addresses = buffers.iter().map(|b| b.as_ptr() as usize).collect();
            for buffer in buffers {
                give(buffer); // this thread never decodes
            }
            assert_eq!(POOL.with_borrow(|p| p.batch.buffers.len()), 0, "the full batch went back");
            addresses
        })
        .join()
        .expect("consumer thread");
        // A decoding thread whose pool is empty takes the batch.
        let reused = std::thread::spawn(|| {
            let buffer = take(SIZE);
            buffer.as_ptr() as usize
        })
        .join()
        .expect("reader thread");
        assert!(addresses.contains(&reused), "a returned buffer is reused");
        assert!(RETURNED.lock().expect("lock").len() <= MAX_BATCHES);
    }

    #[test]
    fn misfits_drain_instead_of_piling_up() {
        let _serial = serial();
        drop(take(1_000)); // this thread decodes
        // Copies of events come back sized to their content, smaller than a frame needs.
        for _ in 0..100 {
            give(String::with_capacity(600));
        }
        let kept = POOL.with_borrow(|p| p.buffers.len());
        assert!(kept > 0);
        for _ in 0..kept {
            let buffer = take(1_000);
            assert!(buffer.capacity() >= 1_000, "a misfit is never handed out");
        }
        assert_eq!(POOL.with_borrow(|p| p.buffers.len()), 0, "each miss freed one misfit");
    }
}
