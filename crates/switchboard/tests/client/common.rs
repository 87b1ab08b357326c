//! Harness: servers on free ports, client options pointing at them, a freezable TCP proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchboard::{Client, ClientOptions, ClientOptionsBuilder, Event, EventStream};
use switchboard_server::{AppConfig, RunningServer, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const WAIT: Duration = Duration::from_secs(5);
pub const APP_ID: &str = "1000";
pub const KEY: &str = "client-key";
pub const SECRET: &str = "client-secret";

pub fn app() -> AppConfig {
    AppConfig { id: APP_ID.into(), key: KEY.into(), secret: SECRET.into(), ..AppConfig::default() }
}

pub fn config(port: u16, app: AppConfig) -> ServerConfig {
    ServerConfig { port, apps: vec![app], shutdown_grace: 2, ..ServerConfig::default() }
}

pub async fn server() -> RunningServer {
    Server::start(config(0, app())).await.expect("server starts")
}

pub fn options_for(addr: SocketAddr) -> ClientOptionsBuilder {
    ClientOptions::builder(KEY)
        .host(addr.ip().to_string())
        .port(addr.port())
        .tls(false)
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(400))
        .subscribe_timeout(WAIT)
}

pub async fn connect(server: &RunningServer) -> Client {
    let options = options_for(server.local_addr()).secret(SECRET).build().expect("options");
    tokio::time::timeout(WAIT, Client::connect(options)).await.expect("connect in time").expect("connects")
}

pub fn publisher(server: &RunningServer) -> switchboard::Publisher {
    switchboard::Publisher::new(&format!("http://{}", server.local_addr()), APP_ID, KEY, SECRET).expect("publisher")
}

/// The next event with this name from `stream` (skipping others), within WAIT.
pub async fn next_named(stream: &mut EventStream, name: &str) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = stream.recv().await.expect("stream open");
            if event.name() == name {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} within {WAIT:?}"))
}

/// Assert nothing named `name` arrives within `ms`.
pub async fn none_named(stream: &mut EventStream, name: &str, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, stream.recv()).await {
        assert_ne!(event.name(), name, "unexpected {event:?}");
    }
}

/// Poll `check` every 20 ms until true, or panic after `within`.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy on 127.0.0.1 that can freeze: while frozen it neither reads nor writes, as
/// a blackholed network or a hung server would behave.
pub struct Proxy {
    pub addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, flag.clone()), pump(ro, wi, flag));
                });
            }
        });
        Proxy { addr, frozen }
    }

    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // Bounded: a proxied connection lives at most as long as a test.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        if frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        match tokio::time::timeout(Duration::from_millis(10), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// A private-channel signer that counts its calls and answers call number `slow` (0-based)
/// only after `delay`: for races between an authorization and a reconnect or a resubscribe.
pub fn counting_signer(
    slow: usize,
    delay: Duration,
) -> (impl switchboard::Authorizer, Arc<std::sync::atomic::AtomicUsize>) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let auth = switchboard::FnAuthorizer::new(move |req| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == slow {
                tokio::time::sleep(delay).await;
            }
            let auth = switchboard_protocol::signature::sign_channel(KEY, SECRET, &req.socket_id, &req.channel, None);
            Ok(switchboard::ChannelAuth { auth, channel_data: None, shared_secret: None })
        }
    });
    (auth, calls)
}

/// A raw WebSocket the fault tests' stand-in servers hold.
pub type RawSocket = tokio_websockets::WebSocketStream<TcpStream>;

/// A stand-in Pusher server for the faults a real one will not produce: every connection
/// accepted on `listener` is upgraded, greeted with `connection_established` (announcing
/// `activity_timeout` seconds) and handed to `script`.
pub fn raw_pusher_server<F, Fut>(listener: TcpListener, activity_timeout: u64, script: F)
where
    F: Fn(RawSocket) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(stream).await else { return };
                if send_hello(&mut ws, activity_timeout).await {
                    script(ws).await;
                }
            });
        }
    });
}

/// Send `pusher:connection_established` (socket id 1.1); false if the socket is gone.
pub async fn send_hello(ws: &mut RawSocket, activity_timeout: u64) -> bool {
    use futures_util::SinkExt;
    let data = format!(r#"{{"socket_id":"1.1","activity_timeout":{activity_timeout}}}"#);
    let hello =
        switchboard_protocol::frame::encode_server_frame("pusher:connection_established", None, Some(&data), None);
    ws.send(tokio_websockets::Message::text(hello)).await.is_ok()
}

/// Read until the client's `pusher:subscribe`; false if the socket ended first.
pub async fn await_subscribe(ws: &mut RawSocket) -> bool {
    use futures_util::StreamExt;
    while let Some(Ok(message)) = ws.next().await {
        if message.as_text().is_some_and(|t| t.contains("pusher:subscribe")) {
            return true;
        }
    }
    false
}

/// Send each text frame, ignoring a socket that is gone (the client under test decides).
pub async fn send_frames(ws: &mut RawSocket, frames: &[&str]) {
    use futures_util::SinkExt;
    for frame in frames {
        let _ = ws.send(tokio_websockets::Message::text(frame.to_string())).await;
    }
}
