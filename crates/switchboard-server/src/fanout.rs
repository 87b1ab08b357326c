//! One channel frame on its way to every subscriber, whatever protocol each speaks. A frame is
//! encoded the Pusher way by whoever publishes it (the HTTP API, a client event, a presence
//! change); a RealtimeX subscriber gets it transcoded, and the transcoding is done the first
//! time a subscriber needs it, so a publish costs at most one encoding per protocol however
//! many sockets it reaches.
//!
//! ```
//! // Crate-internal. The rule it keeps, for reference: one encoding per protocol per publish.
//! let subscribers = ["pusher", "realtimex", "realtimex", "pusher"];
//! let mut encodings = std::collections::BTreeSet::new();
//! for wire in subscribers { encodings.insert(wire); }
//! assert_eq!(encodings.len(), 2);
//! ```

use std::cell::OnceCell;

use bytes::Bytes;

use crate::connection_handle::{ConnectionHandle, Wire};

/// A Pusher-encoded channel frame and, once needed, its other encodings.
pub(crate) struct ChannelFrame<'a> {
    pusher: &'a Bytes,
    /// RealtimeX: also send the seed SDK's mirror events.
    mirrors: bool,
    realtimex: OnceCell<Vec<Bytes>>,
}

impl<'a> ChannelFrame<'a> {
    pub(crate) fn new(pusher: &'a Bytes, mirrors: bool) -> Self {
        Self { pusher, mirrors, realtimex: OnceCell::new() }
    }

    /// Queue the frame for `conn` in its protocol. False if not queued (the queue was full,
    /// so the socket is being closed as too slow, or the socket is gone).
    pub(crate) fn send_to(&self, conn: &ConnectionHandle) -> bool {
        match conn.wire {
            Wire::Pusher => conn.send(self.pusher),
            Wire::RealtimeX => {
                let frames =
                    self.realtimex.get_or_init(|| crate::realtimex::wire::from_pusher_frame(self.pusher, self.mirrors));
                frames.iter().all(|frame| conn.send(frame))
            }
        }
    }
}
