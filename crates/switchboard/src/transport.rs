//! Opening a client WebSocket (TCP, TLS with the system roots, the HTTP upgrade), shared by
//! every protocol's connection task, and the read-ahead under it.
//!
//! Why a read-ahead: the WebSocket codec (tokio-util's `FramedRead`) reads into an 8 KiB
//! buffer, so a busy socket costs one `recv` system call per 8 KiB: eight 1 KB events per
//! call, each call a few microseconds on a virtual machine. [`ReadAhead`] reads up to 64 KiB
//! per call once a read shows more is waiting, and hands it to the codec from memory. An idle
//! connection never grows the buffer, so thousands of quiet clients stay small.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, Connector, MaybeTlsStream, WebSocketStream};

/// What a client socket is: TLS or not, with the read-ahead under the WebSocket codec.
pub(crate) type ClientSocket = WebSocketStream<ReadAhead<MaybeTlsStream<TcpStream>>>;

/// Read-ahead size once a connection is busy.
const READ_AHEAD: usize = 64 * 1024;
/// Reads in a row that brought less than the codec asks for before the read-ahead is freed.
const QUIET_READS: u32 = 64;
/// What the codec asks for at most per read (tokio-util's `FramedRead` buffer).
const CODEC_READ: usize = 8 * 1024;

/// The largest message a client accepts by default (16 MiB): far above what Pusher (10 KB)
/// or Phoenix servers send, and low enough that a hostile server cannot make the client
/// buffer hundreds of megabytes (a 60 MB frame cost 236 MB of RSS without a cap).
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Connect to `url` (`ws://` or `wss://`) and upgrade with `builder` (its URI and headers),
/// accepting messages of at most `max_message_size` bytes (larger: close 1009).
pub(crate) async fn connect(
    builder: ClientBuilder<'_>,
    url: &str,
    max_message_size: usize,
) -> Result<ClientSocket, String> {
    let builder = builder.limits(tokio_websockets::Limits::default().max_payload_len(Some(max_message_size)));
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {url}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(format!("invalid URL {url}: the scheme must be ws or wss")),
    };
    // Uri::host keeps the brackets of an IPv6 address; the resolver wants it bare.
    let host =
        uri.host().ok_or_else(|| format!("invalid URL {url}: no host"))?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port)).await.map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = if tls {
        tls_connector()?.wrap(host, tcp).await.map_err(|e| format!("cannot connect to {url}: {e}"))?
    } else {
        Connector::Plain.wrap(host, tcp).await.map_err(|e| format!("cannot connect to {url}: {e}"))?
    };
    let (ws, _) =
        builder.connect_on(ReadAhead::new(stream)).await.map_err(|e| format!("cannot connect to {url}: {e}"))?;
    Ok(ws)
}

/// After a read error: say why to the server, and to the user. tokio-websockets queues a
/// close (1002, 1009) for a bad or oversized frame, which is flushed; a message that is over
/// the limit only once its fragments are put together gets its 1009 here. Returns what to
/// report, e.g. "the server sent a message over max_message_size (16777216 bytes)".
pub(crate) async fn close_after_read_error(ws: &mut ClientSocket, error: &tokio_websockets::Error) -> String {
    // The close is a courtesy: a server that does not take it must not delay the reconnect.
    let timeout = std::time::Duration::from_secs(1);
    use futures_util::SinkExt;
    if let tokio_websockets::Error::PayloadTooLong { len, max_len } = error {
        // Refused (AlreadyClosed) when a single frame was too long: its close is queued.
        let close = tokio_websockets::Message::close(
            Some(tokio_websockets::CloseCode::MESSAGE_TOO_BIG),
            &format!("max length: {max_len}"),
        );
        if !tokio::time::timeout(timeout, ws.send(close)).await.is_ok_and(|sent| sent.is_ok()) {
            let _ = tokio::time::timeout(timeout, ws.flush()).await;
        }
        // Read on (discarding) until the server answers the close or the socket ends: a
        // socket dropped with unread data in it is reset, and the reset can overtake the
        // close frame, so the server would never learn why. The rest of the oversized
        // message arrives as more "too long" errors: skip those too.
        let _ = tokio::time::timeout(timeout, async {
            use futures_util::StreamExt;
            loop {
                match ws.next().await {
                    Some(Ok(message)) if message.is_close() => break,
                    Some(Ok(_) | Err(tokio_websockets::Error::PayloadTooLong { .. })) => {}
                    _ => break,
                }
            }
        })
        .await;
        return format!(
            "the server sent a message of at least {len} bytes, over max_message_size ({max_len} bytes); closed with 1009"
        );
    }
    let _ = tokio::time::timeout(timeout, ws.flush()).await;
    format!("socket error: {error}")
}

/// Write one message. A write that does not complete within `timeout` means the server
/// stopped reading: the caller treats the connection as dead, as a missing pong would be.
/// Every protocol's writes go through this.
pub(crate) async fn send_within(
    ws: &mut ClientSocket,
    message: tokio_websockets::Message,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use futures_util::SinkExt;
    match tokio::time::timeout(timeout, ws.send(message)).await {
        Ok(result) => result.map_err(|e| format!("send failed: {e}")),
        Err(_) => Err(format!("a write did not complete within {timeout:?}: the server stopped reading")),
    }
}

/// One TLS connector per process: loading the system roots (and `SSL_CERT_FILE`) takes
/// milliseconds, and a reconnecting client would otherwise do it on every attempt.
fn tls_connector() -> Result<&'static Connector, String> {
    static CONNECTOR: OnceLock<Result<Connector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| Connector::new().map_err(|e| format!("cannot set up TLS: {e}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// A read-ahead buffer that exists only while the connection is busy (see the module doc).
pub(crate) struct ReadAhead<S> {
    inner: S,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// Refills in a row that brought little: the connection went quiet.
    quiet: u32,
}

impl<S> ReadAhead<S> {
    fn new(inner: S) -> Self {
        Self { inner, buffer: Box::default(), start: 0, end: 0, quiet: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start == this.end {
            if this.buffer.is_empty() || out.remaining() >= this.buffer.len() {
                // Not busy yet (or a big request): read straight into the caller's buffer.
                let before = out.filled().len();
                std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                if out.remaining() == 0 && out.filled().len() > before && this.buffer.is_empty() {
                    // It filled the whole request: more is likely waiting. Read ahead from now on.
                    this.buffer = vec![0; READ_AHEAD].into_boxed_slice();
                }
                return Poll::Ready(Ok(()));
            }
            let mut ahead = ReadBuf::new(&mut this.buffer);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
            this.start = 0;
            this.end = ahead.filled().len();
            if this.end == 0 {
                return Poll::Ready(Ok(())); // end of stream
            }
            // Quiet again (a large message once, then little): give the memory back.
            this.quiet = if this.end < CODEC_READ { this.quiet + 1 } else { 0 };
            if this.quiet >= QUIET_READS && this.end <= out.remaining() {
                out.put_slice(&this.buffer[..this.end]);
                (this.buffer, this.start, this.end, this.quiet) = (Box::default(), 0, 0, 0);
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.end - this.start);
        out.put_slice(&this.buffer[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_everything_in_order_and_grows_only_when_busy() {
        let (mut server, client) = tokio::io::duplex(256 * 1024);
        let mut reader = ReadAhead::new(client);
        // Quiet: a small message into a bigger request never grows the buffer.
        server.write_all(b"hello").await.expect("duplex write");
        let mut small = [0u8; 64];
        let n = reader.read(&mut small).await.expect("read");
        assert_eq!(&small[..n], b"hello");
        assert!(reader.buffer.is_empty(), "an idle connection keeps no read-ahead");
        // Busy: 200 KiB waiting, read 8 KiB at a time (as the codec does).
        let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        server.write_all(&data).await.expect("duplex write");
        drop(server);
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 8 * 1024];
        loop {
            let n = reader.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(reader.buffer.len(), READ_AHEAD, "a busy connection reads ahead");
    }

    #[tokio::test]
    async fn a_connection_that_goes_quiet_gives_the_buffer_back() {
        let (mut server, client) = tokio::io::duplex(256 * 1024);
        let mut reader = ReadAhead::new(client);
        server.write_all(&[7u8; 20 * 1024]).await.expect("duplex write");
        let mut chunk = vec![0u8; CODEC_READ];
        let mut got = 0;
        while got < 20 * 1024 {
            got += reader.read(&mut chunk).await.expect("read");
        }
        assert_eq!(reader.buffer.len(), READ_AHEAD);
        for i in 0..QUIET_READS {
            server.write_all(&i.to_be_bytes()).await.expect("duplex write");
            let n = reader.read(&mut chunk).await.expect("read");
            assert_eq!(&chunk[..n], &i.to_be_bytes(), "small messages still arrive whole");
        }
        assert!(reader.buffer.is_empty(), "quiet: no read-ahead kept");
    }
}
