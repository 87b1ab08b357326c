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
//! Small buffers are left to the allocator's per-thread cache, which handles them well; the
//! pool is bounded in bytes, and only a thread that decodes frames keeps one (a thread that
//! only consumes events frees their buffers as usual).

use std::cell::RefCell;

/// Buffers smaller than this go straight to the allocator.
const MIN_CAPACITY: usize = 512;
/// Buffers larger than this are not kept (one huge event must not pin its memory).
const MAX_CAPACITY: usize = 16 * 1024;
/// Kept buffers looked at per request (the newest).
const LOOK_AT: usize = 4;
/// What one thread keeps, at most: about what a socket reader produces before tokio's
/// cooperative budget makes it yield to the consumers on its thread.
const MAX_KEPT_BYTES: usize = 512 * 1024;

#[derive(Default)]
struct Pool {
    buffers: Vec<String>,
    bytes: usize,
    /// This thread decodes frames (it asked for a buffer): only then are buffers kept here,
    /// so threads that only consume events never hold memory nobody will reuse.
    decodes: bool,
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
        if pool.decodes && pool.bytes + capacity <= MAX_KEPT_BYTES {
            pool.bytes += capacity;
            pool.buffers.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_decoding_thread_keeps_buffers() {
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
        let mut stale = take(1_000);
        stale.push_str("previous event");
        let address = stale.as_ptr();
        give(stale);
        let again = take(900);
        assert_eq!(again.as_ptr(), address, "a kept buffer that fits is reused");
        assert!(again.is_empty() && again.capacity() >= 1_000);
        // Too small or too big: not kept.
        give(String::with_capacity(100));
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
    fn misfits_drain_instead_of_piling_up() {
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
