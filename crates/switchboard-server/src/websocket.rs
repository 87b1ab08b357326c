//! The rules every protocol's socket task follows when it writes and when it ends: how long
//! a write may take, how long a close may linger, and how a read error is answered. One
//! place, so the Pusher, Phoenix and later protocols' tasks cannot drift apart.
//!
//! ```
//! // The two limits, as every socket task applies them (crate-internal, shown for reference):
//! let (linger, write_timeout) = (std::time::Duration::from_secs(2), std::time::Duration::from_secs(30));
//! assert!(linger < write_timeout);
//! ```

use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::{CloseCode, Message, WebSocketStream};

use crate::connection_handle::{CloseRequest, ConnectionHandle};

/// How long to wait for the client's close frame after ours, and how long a pending write
/// may still finish once a close was requested.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// A single write that cannot complete for this long means the client stopped reading.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// After a read error, tell the client why: protocol errors and oversized frames have a
/// close frame (1002, 1009) queued by tokio-websockets, which is flushed; a message over the
/// limit only once its fragments are put together has none, so 1009 is sent here. Every
/// protocol's socket task ends this way.
pub(crate) async fn close_after_read_error<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    error: &tokio_websockets::Error,
) {
    if let tokio_websockets::Error::PayloadTooLong { max_len, .. } = error {
        // Refused (AlreadyClosed) when a single frame was too long: its close is queued.
        let close = Message::close(Some(CloseCode::MESSAGE_TOO_BIG), &format!("max length: {max_len}"));
        if tokio::time::timeout(CLOSE_LINGER, ws.send(close)).await.is_ok_and(|sent| sent.is_ok()) {
            return;
        }
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, ws.flush()).await;
}

/// A write that did not complete in time: the client stopped reading.
pub(crate) struct WriteStalled;

/// The write rule every socket task of the server follows (Pusher, Phoenix, the protocols to
/// come): a write may take `WRITE_TIMEOUT`; once `give_up` resolves (a close was requested,
/// the socket was found too slow, the server is shutting down) it has `CLOSE_LINGER` more.
/// So a client that stops reading never holds its task, the idle timer or the shutdown.
pub(crate) async fn write_within<T>(
    write: impl Future<Output = T>,
    give_up: impl Future<Output = ()>,
) -> Result<T, WriteStalled> {
    let mut write = std::pin::pin!(write);
    tokio::select! {
        result = &mut write => Ok(result),
        () = give_up => tokio::time::timeout(CLOSE_LINGER, write).await.map_err(|_| WriteStalled),
        () = tokio::time::sleep(WRITE_TIMEOUT) => Err(WriteStalled),
    }
}

/// How a write under [`write_guarded`] failed.
pub(crate) enum WriteFailed {
    /// The socket is gone (an I/O error, or it stalled with no close requested).
    Gone,
    /// It stalled after this close was requested: drop the connection without a goodbye.
    Abort(CloseRequest),
}

/// One write of a socket task whose other tasks hold `handle`: [`write_within`], giving up
/// `CLOSE_LINGER` after a close is requested on the handle (a slow consumer, a terminate).
pub(crate) async fn write_guarded<T, F: Clone>(
    handle: &ConnectionHandle<F>,
    write: impl Future<Output = Result<T, tokio_websockets::Error>>,
) -> Result<T, WriteFailed> {
    let mut request = None;
    let given_up = async {
        request = Some(handle.close_requested().await);
    };
    match write_within(write, given_up).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(WriteFailed::Gone),
        Err(WriteStalled) => Err(request.map_or(WriteFailed::Gone, WriteFailed::Abort)),
    }
}

/// A close frame with `code` and `reason`, the reason cut on a char boundary to fit (close
/// reasons are limited to 123 bytes).
pub(crate) fn close_frame(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::close(CloseCode::try_from(code).ok(), &reason[..end])
}
