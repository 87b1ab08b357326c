//! Where a cluster member stands between its join and the join's answer, for every
//! protocol (Pusher channels, Phoenix rooms, gateway topics). The join script's answer and
//! the bus arrive on different Redis connections, so bus items that reach this node before
//! the answer wait here; the answer's snapshot number then decides which of them the member
//! gets: those numbered after it. On one node every member is `live()` and nothing waits.
//!
//! ```
//! // Crate-internal. The shape, for reference: held 5 and 7; the join's snapshot is 6.
//! let held = [(5u64, "a"), (7, "b")];
//! let after: Vec<_> = held.iter().filter(|(seq, _)| *seq > 6).map(|(_, item)| *item).collect();
//! assert_eq!(after, ["b"]);
//! ```

/// Most bus items one member holds while its join is in flight; past it the member's socket
/// is closed (it reconnects) rather than buffer without bound or lose one.
pub(crate) const PENDING_ITEMS: usize = 256;

/// A member's bus gate: live past a number, or holding items until its join is answered.
pub(crate) enum BusGate<T> {
    /// Takes every bus item numbered above `since`.
    Live { since: u64 },
    /// Joining: items wait with their numbers.
    Pending(Vec<(u64, T)>),
}

/// What [`BusGate::offer`] decided for one bus item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Deliver it now.
    Now,
    /// Held until the join is answered, or numbered before the join: nothing to do now.
    Later,
    /// The hold is full: close the member's socket.
    Full,
}

impl<T> BusGate<T> {
    /// A member that takes everything (one node, or a join already answered at 0).
    pub(crate) fn live() -> Self {
        Self::Live { since: 0 }
    }

    /// A member whose join is in flight.
    pub(crate) fn pending() -> Self {
        Self::Pending(Vec::new())
    }

    /// Bus item `seq` arrived; `item` makes what to hold if it must wait.
    pub(crate) fn offer(&mut self, seq: u64, item: impl FnOnce() -> T) -> Offer {
        match self {
            Self::Live { since } if seq > *since => Offer::Now,
            Self::Live { .. } => Offer::Later,
            Self::Pending(held) if held.len() >= PENDING_ITEMS => Offer::Full,
            Self::Pending(held) => {
                held.push((seq, item()));
                Offer::Later
            }
        }
    }

    /// The join was answered with snapshot `since`: go live, and return the held items
    /// numbered after it, in order (none if it was live already).
    pub(crate) fn go_live(&mut self, since: u64) -> Vec<T> {
        match std::mem::replace(self, Self::Live { since }) {
            Self::Pending(held) => held.into_iter().filter(|(seq, _)| *seq > since).map(|(_, item)| item).collect(),
            live @ Self::Live { .. } => {
                *self = live;
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_items_after_the_snapshot_go_out_in_order_and_then_it_is_live() {
        let mut gate = BusGate::pending();
        for seq in [4, 6, 7, 9] {
            assert_eq!(gate.offer(seq, || seq), Offer::Later);
        }
        assert_eq!(gate.go_live(6), vec![7, 9]);
        assert_eq!(gate.offer(6, || 6), Offer::Later, "numbered before the join");
        assert_eq!(gate.offer(10, || 10), Offer::Now);
        assert!(gate.go_live(20).is_empty(), "a second answer changes nothing");
        assert_eq!(gate.offer(11, || 11), Offer::Now);
    }

    #[test]
    fn a_full_hold_asks_for_a_close() {
        let mut gate = BusGate::pending();
        for seq in 0..PENDING_ITEMS as u64 {
            assert_eq!(gate.offer(seq, || ()), Offer::Later);
        }
        assert_eq!(gate.offer(999, || ()), Offer::Full);
        assert_eq!(BusGate::<()>::live().offer(1, || ()), Offer::Now);
    }
}
