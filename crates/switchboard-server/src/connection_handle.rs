//! The shared half of a socket: what other tasks use to queue frames for it or close it.
//!
//! The socket's own task owns the WebSocket; everyone else holds an
//! `Arc<ConnectionHandle>` and only ever does non-blocking things with it.

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

/// A close the socket task should perform: `pusher:error` with `code`, then a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The Pusher code (sent in `pusher:error` and as the WebSocket close code).
    pub code: u16,
    /// Why.
    pub message: String,
}

/// Handle to one connected socket.
#[derive(Debug)]
pub struct ConnectionHandle {
    /// Process-unique id.
    pub id: u64,
    /// The Pusher socket id, `\d+\.\d+`.
    pub socket_id: Box<str>,
    queue: mpsc::Sender<Bytes>,
    close: Mutex<Option<CloseRequest>>,
    close_notify: Notify,
}

impl ConnectionHandle {
    pub(crate) fn new(id: u64, socket_id: String, queue: mpsc::Sender<Bytes>) -> Self {
        Self { id, socket_id: socket_id.into_boxed_str(), queue, close: Mutex::new(None), close_notify: Notify::new() }
    }

    /// Queue an encoded frame. A full queue means the client reads slower than events
    /// arrive: the socket is closed with 4100 (reconnect after a backoff) instead of
    /// buffering without bound or stalling everyone else. Returns false if not queued.
    pub fn send(&self, frame: &Bytes) -> bool {
        match self.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.terminate(4100, "Too many unsent messages: the client reads slower than events arrive");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Ask the socket's task to close with `code`. The first request wins.
    pub fn terminate(&self, code: u16, message: &str) {
        let mut close = self.close.lock().unwrap_or_else(|p| p.into_inner());
        if close.is_none() {
            *close = Some(CloseRequest { code, message: message.to_owned() });
            self.close_notify.notify_one();
        }
    }

    /// Wait until someone asked for a close, and return the request.
    pub(crate) async fn close_requested(&self) -> CloseRequest {
        loop {
            if let Some(req) = self.close.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return req;
            }
            self.close_notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_asks_for_a_4100_close_and_never_blocks() {
        let (tx, mut rx) = mpsc::channel(2);
        let handle = ConnectionHandle::new(1, "1.1".into(), tx);
        let frame = Bytes::from_static(b"{}");
        assert!(handle.send(&frame));
        assert!(handle.send(&frame));
        assert!(!handle.send(&frame), "third frame does not fit");
        let req = handle.close_requested().await;
        assert_eq!(req.code, 4100);
        // The first request wins: a later terminate does not replace it.
        handle.terminate(4009, "later");
        assert_eq!(handle.close_requested().await.code, 4100);
        assert_eq!(rx.recv().await, Some(frame.clone()));
        drop(rx);
        assert!(!handle.send(&frame), "closed queue");
    }
}
