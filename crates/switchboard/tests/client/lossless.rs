//! Nothing is lost in ordinary use: subscribe-then-listen, bursts, slow consumers, any
//! runtime. A raw stream server writes numbered events as fast as TCP takes them (so a
//! client that stops reading pushes back on it), and can put the subscription confirmation
//! and the first events in one TCP write, the race a user hits when they attach a listener
//! after `subscribe(..).await`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use switchboard::phoenix::{Socket, SocketOptions};
use switchboard::{
    Client, ClientOptions, ConnectionState, Echo, Event, EventStream, GAP_EVENT, LAGGED_EVENT, SlowConsumer,
    StallAction,
};
use switchboard_protocol::frame::encode_server_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_websockets::ServerBuilder;

/// Events the big runs send.
const MANY: u64 = 200_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Pusher,
    Phoenix,
}

/// A stream server on 127.0.0.1: each connection gets `events` numbered events (`{"n":i}`
/// on channel/topic `bench`, event `tick`) right after it confirms the subscription or the
/// join, the first `first_batch` of them in the same write as the confirmation.
struct StreamServer {
    addr: std::net::SocketAddr,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// `pusher:ping` / Phoenix heartbeats read from clients.
    pings: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn event_frame(protocol: Protocol, n: u64) -> Vec<u8> {
    let text = match protocol {
        Protocol::Pusher => encode_server_frame("tick", Some("bench"), Some(&format!("{{\"n\":{n}}}")), None),
        Protocol::Phoenix => format!(r#"[null,null,"bench","tick",{{"n":{n}}}]"#),
    };
    ws_text_frame(text.as_bytes())
}

/// One unmasked, final WebSocket text frame (server to client).
fn ws_text_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x81);
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

async fn stream_server(protocol: Protocol, events: u64, first_batch: u64) -> StreamServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let pings = Arc::new(AtomicU64::new(0));
    let (conns, pings_seen) = (connections.clone(), pings.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let pings = pings_seen.clone();
            tokio::spawn(serve_one(stream, protocol, events, first_batch, pings));
        }
    });
    StreamServer { addr, connections, pings, task }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    protocol: Protocol,
    events: u64,
    first_batch: u64,
    pings: Arc<AtomicU64>,
) {
    let Ok((_, mut ws)) = ServerBuilder::new().accept(stream).await else { return };
    let confirmation = match protocol {
        Protocol::Pusher => {
            if !crate::common::send_hello(&mut ws, 120).await || !crate::common::await_subscribe(&mut ws).await {
                return;
            }
            encode_server_frame("pusher_internal:subscription_succeeded", Some("bench"), Some("{}"), None)
        }
        Protocol::Phoenix => loop {
            let Some(Ok(message)) = ws.next().await else { return };
            let Some(join) = message.as_text().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) else {
                continue;
            };
            if join[3] == "phx_join" {
                let reply =
                    serde_json::json!([join[0], join[1], join[2], "phx_reply", {"status": "ok", "response": {}}]);
                break reply.to_string();
            }
        },
    };
    let socket = ws.into_inner();
    let (mut reader, mut writer) = tokio::io::split(socket);
    // Count the client's pings while we stream (text frames are masked: look for the
    // unmasked bytes would be wrong, so unmask each frame's payload).
    let counter = tokio::spawn(async move { count_client_pings(&mut reader, &pings).await });
    let mut first = ws_text_frame(confirmation.as_bytes());
    let mut next = 0;
    while next < first_batch.min(events) {
        first.extend_from_slice(&event_frame(protocol, next));
        next += 1;
    }
    if writer.write_all(&first).await.is_err() {
        return;
    }
    let mut block = Vec::with_capacity(64 * 1024);
    while next < events {
        block.clear();
        while next < events && block.len() < 60 * 1024 {
            block.extend_from_slice(&event_frame(protocol, next));
            next += 1;
        }
        if writer.write_all(&block).await.is_err() {
            return;
        }
    }
    let _ = counter.await;
}

/// Read masked client frames and count pings (Pusher `pusher:ping`, Phoenix `heartbeat`).
async fn count_client_pings<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, pings: &AtomicU64) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = reader.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        // Parse as many complete frames as the buffer holds.
        loop {
            if buf.len() < 2 {
                break;
            }
            let short = usize::from(buf[1] & 0x7f);
            let (len, header) = match short {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => {
                    (usize::try_from(u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"))).expect("len"), 10)
                }
                126 | 127 => break,
                len => (len, 2),
            };
            let masked = buf[1] & 0x80 != 0;
            let total = header + if masked { 4 } else { 0 } + len;
            if buf.len() < total {
                break;
            }
            let mut payload = buf[header + if masked { 4 } else { 0 }..total].to_vec();
            if masked {
                let key = [buf[header], buf[header + 1], buf[header + 2], buf[header + 3]];
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            let text = String::from_utf8_lossy(&payload);
            if text.contains("pusher:ping") || text.contains("heartbeat") {
                pings.fetch_add(1, Ordering::SeqCst);
            }
            buf.drain(..total);
        }
    }
}

/// Backpressure with a short stall limit, so the policy is met within a test.
fn stalls_after(ms: u64, on_stall: StallAction) -> SlowConsumer {
    SlowConsumer::Backpressure { stall_limit: Duration::from_millis(ms), on_stall }
}

fn pusher_options(server: &StreamServer) -> switchboard::ClientOptionsBuilder {
    ClientOptions::builder("bench").host("127.0.0.1").port(server.addr.port()).tls(false)
}

fn phoenix_options(server: &StreamServer) -> SocketOptions {
    SocketOptions::new(format!("ws://{}/socket", server.addr))
}

fn number(event: &Event) -> u64 {
    let value: serde_json::Value = event.json().unwrap_or_else(|e| panic!("{event:?}: {e}"));
    value["n"].as_u64().unwrap_or_else(|| panic!("no n in {event:?}"))
}

/// Read `count` ticks from `stream`, asserting they are 0, 1, 2, … with nothing lagged;
/// `pause` runs after each one (a slow consumer).
async fn expect_every_tick(stream: &mut EventStream, count: u64, mut pause: impl AsyncFnMut(u64)) {
    let mut expected = 0;
    let run = async {
        while expected < count {
            let event = stream.recv().await.expect("stream open");
            assert_ne!(event.name(), LAGGED_EVENT, "events were dropped before #{expected}: {event:?}");
            if event.name() != "tick" {
                continue;
            }
            assert_eq!(number(&event), expected, "out of order or lost");
            expected += 1;
            pause(expected).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.unwrap_or_else(|_| panic!("stuck at #{expected}"));
}

// The README's pattern, in `main` of a multi-thread runtime (`#[tokio::test]`'s body runs on
// the test thread, as `#[tokio::main]`'s does, not on a worker), default options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_events_at_once_all_reach_a_consumer_in_main() {
    let server = stream_server(Protocol::Pusher, MANY, 2_000).await;
    let client = Client::connect(pusher_options(&server).build().expect("options")).await.expect("connect");
    let channel = client.subscribe("bench").await.expect("subscribed");
    let mut events = channel.events();
    expect_every_tick(&mut events, MANY, async |_| {}).await;
    assert_eq!(client.dropped_events(), 0);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "no reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_sleeps_every_thousand_events_loses_nothing() {
    let server = stream_server(Protocol::Pusher, 100_000, 0).await;
    let client = Client::connect(pusher_options(&server).build().expect("options")).await.expect("connect");
    let mut events = client.subscribe("bench").await.expect("subscribed").events();
    expect_every_tick(&mut events, 100_000, async |n| {
        if n.is_multiple_of(1_000) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_loses_nothing_either() {
    let server = stream_server(Protocol::Pusher, MANY, 2_000).await;
    let client = Client::connect(pusher_options(&server).build().expect("options")).await.expect("connect");
    let mut events = client.subscribe("bench").await.expect("subscribed").events();
    expect_every_tick(&mut events, MANY, async |_| {}).await;
}

// Every listening pattern the docs show, each attached after `subscribe(..).await`, while the
// server wrote the confirmation and the first 500 events in one TCP write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_attached_after_subscribe_get_the_events_sent_with_the_confirmation() {
    const SENT: u64 = 5_000;
    let server = stream_server(Protocol::Pusher, SENT, 500).await;
    let connect =
        || async { Client::connect(pusher_options(&server).build().expect("options")).await.expect("connect") };

    // subscribe, then events()
    let client = connect().await;
    let mut all = client.subscribe("bench").await.expect("subscribed").events();
    expect_every_tick(&mut all, SENT, async |_| {}).await;

    // subscribe, then events_named()
    let client = connect().await;
    let mut ticks = client.subscribe("bench").await.expect("subscribed").events_named("tick");
    expect_every_tick(&mut ticks, SENT, async |_| {}).await;

    // subscribe, then bind() twice (both handlers see everything)
    let client = connect().await;
    let channel = client.subscribe("bench").await.expect("subscribed");
    let (first, second) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let log = first.clone();
    channel.bind("tick", move |e| log.lock().expect("lock").push(number(e)));
    let log = second.clone();
    channel.bind("*", move |e| {
        if e.name() == "tick" {
            log.lock().expect("lock").push(number(e));
        }
    });
    let expected: Vec<u64> = (0..SENT).collect();
    eventually(|| {
        first.lock().expect("lock").len() as u64 == SENT && second.lock().expect("lock").len() as u64 == SENT
    })
    .await;
    assert_eq!(*first.lock().expect("lock"), expected);
    assert_eq!(*second.lock().expect("lock"), expected);

    // subscribe, then the client's global stream (the listener example's order)
    let client = connect().await;
    client.subscribe("bench").await.expect("subscribed");
    let mut global = client.events();
    expect_every_tick(&mut global, SENT, async |_| {}).await;

    // subscribe, then a global handler
    let client = connect().await;
    client.subscribe("bench").await.expect("subscribed");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    client.bind_global("tick", move |e| log.lock().expect("lock").push(number(e)));
    eventually(|| seen.lock().expect("lock").len() as u64 == SENT).await;
    assert_eq!(*seen.lock().expect("lock"), expected);

    // Echo: channel(), then listen() (Echo's `.` prefix means the raw name)
    let client = connect().await;
    let echo = Echo::new(client.clone());
    let channel = echo.channel("bench").await.expect("subscribed");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    channel.listen(".tick", move |e| log.lock().expect("lock").push(number(e)));
    eventually(|| seen.lock().expect("lock").len() as u64 == SENT).await;
    assert_eq!(*seen.lock().expect("lock"), expected);
}

async fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached within 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bound_handlers_slow_the_socket_instead_of_losing_events() {
    const SENT: u64 = 30_000;
    let server = stream_server(Protocol::Pusher, SENT, 0).await;
    let client = Client::connect(pusher_options(&server).build().expect("options")).await.expect("connect");
    let channel = client.subscribe("bench").await.expect("subscribed");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    // An async handler that yields to the timer now and then: far slower than the socket.
    channel.bind_async("tick", move |e| {
        let log = log.clone();
        async move {
            let n = number(&e);
            if n.is_multiple_of(5_000) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            log.lock().expect("lock").push(n);
        }
    });
    eventually(|| seen.lock().expect("lock").len() as u64 == SENT).await;
    assert_eq!(*seen.lock().expect("lock"), (0..SENT).collect::<Vec<_>>());
    assert_eq!(client.dropped_events(), 0);
}

// While a consumer is slow within the stall limit the socket is not read, so the server's
// pings wait unread; the client keeps writing its own pings (the server sees it alive), and
// does not take the unread replies for a dead connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_slow_within_the_limit_keeps_the_connection_alive() {
    const SENT: u64 = 20_000;
    let server = stream_server(Protocol::Pusher, SENT, 0).await;
    let options = pusher_options(&server)
        .activity_timeout(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(1))
        .event_queue(64)
        .build()
        .expect("options");
    let client = Client::connect(options).await.expect("connect");
    let mut events = client.subscribe("bench").await.expect("subscribed").events();
    let pings_before = server.pings.load(Ordering::SeqCst);
    expect_every_tick(&mut events, SENT, async |n| {
        if n == 100 {
            // 3.5 s: past activity + pong timeouts (2 s), within the 10 s stall limit.
            tokio::time::sleep(Duration::from_millis(3_500)).await;
        }
    })
    .await;
    assert!(server.pings.load(Ordering::SeqCst) > pings_before, "the client pinged while it was not reading");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "no reconnect");
    assert!(matches!(client.state(), ConnectionState::Connected { .. }));
}

// A stream that takes nothing for the stall limit is dropped for, and told how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stalled_past_the_limit_is_dropped_for_and_told_how_many() {
    const SENT: u64 = 50_000;
    let server = stream_server(Protocol::Pusher, SENT, 0).await;
    let policy = stalls_after(300, StallAction::DropAndReport);
    let options = pusher_options(&server).event_queue(64).slow_consumer(policy).build().expect("options");
    let client = Client::connect(options).await.expect("connect");
    let channel = client.subscribe("bench").await.expect("subscribed");
    let mut stalled = channel.events_named("tick");
    let mut healthy = channel.events_named("tick");
    // The healthy stream reads everything, meanwhile the stalled one is not read at all.
    let reader = tokio::spawn(async move {
        expect_every_tick(&mut healthy, SENT, async |_| {}).await;
    });
    tokio::time::timeout(Duration::from_secs(60), reader).await.expect("in time").expect("healthy stream complete");
    // Then the stalled one: what it kept, then a report, then (nothing more was sent).
    let (mut received, mut dropped, mut last) = (0u64, 0u64, None);
    while received + dropped < SENT {
        let event = tokio::time::timeout(Duration::from_secs(5), stalled.recv()).await.expect("in time").expect("open");
        if event.name() == LAGGED_EVENT {
            dropped += event.json::<serde_json::Value>().expect("json")["dropped"].as_u64().expect("count");
            continue;
        }
        let n = number(&event);
        assert!(last.is_none_or(|l| n > l), "order kept");
        last = Some(n);
        received += 1;
    }
    assert!(dropped > 0, "the stalled stream was dropped for");
    assert_eq!(received + dropped, SENT, "every event either delivered or reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reconnect_on_stall_a_stalled_stream_keeps_what_it_got_and_gets_a_gap() {
    let server = stream_server(Protocol::Pusher, 20_000, 0).await;
    let policy = stalls_after(300, StallAction::Reconnect);
    let options = pusher_options(&server)
        .event_queue(64)
        .slow_consumer(policy)
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .expect("options");
    let client = Client::connect(options).await.expect("connect");
    let mut events = client.subscribe("bench").await.expect("subscribed").events();
    tokio::time::sleep(Duration::from_millis(800)).await; // stalled past the limit
    // What the first connection delivered comes in order with nothing dropped, then the gap,
    // then the new connection's stream from its start.
    let run = async {
        let mut expected = 0;
        loop {
            let event = events.recv().await.expect("open");
            match event.name() {
                "tick" => {
                    assert_eq!(number(&event), expected, "in order, nothing dropped before the gap");
                    expected += 1;
                }
                GAP_EVENT => return expected,
                LAGGED_EVENT => panic!("nothing received is dropped under Reconnect: {event:?}"),
                _ => {}
            }
        }
    };
    let before_gap = tokio::time::timeout(Duration::from_secs(30), run).await.expect("a gap after the reconnect");
    assert!(before_gap >= 64, "the queue's events were kept: {before_gap}");
    assert!(server.connections.load(Ordering::SeqCst) >= 2, "reconnected");
    let first_tick = async {
        loop {
            let event = events.recv().await.expect("open");
            if event.name() == "tick" {
                return number(&event);
            }
        }
    };
    let after = tokio::time::timeout(Duration::from_secs(5), first_tick).await.expect("in time");
    assert_eq!(after, 0, "the new connection's stream, from its start");
}

// Subscribed, but nothing listens for longer than the stall limit: the hold gives up and the
// next listener is told how many events it missed; the socket goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_nobody_listens_to_pauses_only_until_the_stall_limit() {
    const SENT: u64 = 5_000;
    let server = stream_server(Protocol::Pusher, SENT, 0).await;
    let policy = stalls_after(300, StallAction::DropAndReport);
    let options = pusher_options(&server).event_queue(100).slow_consumer(policy).build().expect("options");
    let client = Client::connect(options).await.expect("connect");
    let channel = client.subscribe("bench").await.expect("subscribed");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let mut events = channel.events();
    let first = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("in time").expect("open");
    assert_eq!(first.name(), LAGGED_EVENT, "{first:?}");
    let dropped = first.json::<serde_json::Value>().expect("json")["dropped"].as_u64().expect("count");
    assert!(dropped >= 100, "the held events and the one that waited: {dropped}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

// The Phoenix client: the same mechanism.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenix_two_hundred_thousand_events_at_once_all_reach_a_consumer_in_main() {
    let server = stream_server(Protocol::Phoenix, MANY, 2_000).await;
    let socket = Socket::connect(phoenix_options(&server)).await.expect("connect");
    let channel = socket.channel("bench", serde_json::json!({}));
    channel.join().await.expect("joined");
    let mut events = channel.events(); // after the join: the hold keeps what came with the reply
    expect_every_tick(&mut events, MANY, async |_| {}).await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "no reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenix_a_consumer_that_sleeps_every_thousand_events_loses_nothing() {
    let server = stream_server(Protocol::Phoenix, 100_000, 500).await;
    let socket = Socket::connect(phoenix_options(&server)).await.expect("connect");
    let channel = socket.channel("bench", serde_json::json!({}));
    channel.join().await.expect("joined");
    let mut events = channel.events();
    expect_every_tick(&mut events, 100_000, async |n| {
        if n.is_multiple_of(1_000) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenix_handlers_bound_after_join_get_the_events_sent_with_the_reply() {
    const SENT: u64 = 5_000;
    let server = stream_server(Protocol::Phoenix, SENT, 500).await;
    let socket = Socket::connect(phoenix_options(&server)).await.expect("connect");
    let channel = socket.channel("bench", serde_json::json!({}));
    channel.join().await.expect("joined");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    channel.on("tick", move |e| log.lock().expect("lock").push(number(e)));
    eventually(|| seen.lock().expect("lock").len() as u64 == SENT).await;
    assert_eq!(*seen.lock().expect("lock"), (0..SENT).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenix_a_consumer_slow_within_the_limit_keeps_heartbeating() {
    const SENT: u64 = 20_000;
    let server = stream_server(Protocol::Phoenix, SENT, 0).await;
    let options = phoenix_options(&server).heartbeat(Duration::from_secs(1)).event_queue(64);
    let socket = Socket::connect(options).await.expect("connect");
    let channel = socket.channel("bench", serde_json::json!({}));
    let mut events = channel.events();
    channel.join().await.expect("joined");
    let before = server.pings.load(Ordering::SeqCst);
    expect_every_tick(&mut events, SENT, async |n| {
        if n == 100 {
            tokio::time::sleep(Duration::from_millis(3_500)).await; // past 2 heartbeats
        }
    })
    .await;
    assert!(server.pings.load(Ordering::SeqCst) >= before + 2, "heartbeats went on while not reading");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "no reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenix_a_stream_stalled_past_the_limit_is_dropped_for_and_told_how_many() {
    const SENT: u64 = 30_000;
    let server = stream_server(Protocol::Phoenix, SENT, 0).await;
    let policy = stalls_after(300, StallAction::DropAndReport);
    let socket =
        Socket::connect(phoenix_options(&server).event_queue(64).slow_consumer(policy)).await.expect("connect");
    let channel = socket.channel("bench", serde_json::json!({}));
    let mut stalled = channel.events();
    channel.join().await.expect("joined");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (mut received, mut dropped) = (0u64, 0u64);
    let run = async {
        while received + dropped < SENT {
            let event = stalled.recv().await.expect("open");
            match event.name() {
                LAGGED_EVENT => {
                    dropped += event.json::<serde_json::Value>().expect("json")["dropped"].as_u64().expect("count")
                }
                "tick" => received += 1,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("in time");
    assert!(dropped > 0);
    assert_eq!(received + dropped, SENT);
}

// Slow but steady: it takes an event every 20 ms, so freeing half its queue takes longer
// than the stall limit; it is still making progress and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_consumer_is_not_taken_for_a_stalled_one() {
    let server = stream_server(Protocol::Pusher, 2_000, 0).await;
    let policy = stalls_after(300, StallAction::DropAndReport);
    let options = pusher_options(&server).event_queue(64).slow_consumer(policy).build().expect("options");
    let client = Client::connect(options).await.expect("connect");
    let mut events = client.subscribe("bench").await.expect("subscribed").events();
    expect_every_tick(&mut events, 80, async |_| tokio::time::sleep(Duration::from_millis(20)).await).await;
}

// The consumer awaits an answer that sits behind the events it has not read: the client
// reads on (boundedly) for it instead of waiting for the stall limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_awaited_while_another_stream_is_full_completes() {
    let mut config = crate::common::config(0, crate::common::app());
    config.max_queued_messages = 10_000; // the server keeps them all for the slow socket
    let server = switchboard_server::Server::start(config).await.expect("server");
    let options = crate::common::options_for(server.local_addr()).event_queue(64).build().expect("options");
    let client = Client::connect(options).await.expect("connect");
    let mut unread = client.subscribe("firehose").await.expect("subscribed").events();
    let publisher = crate::common::publisher(&server);
    for start in (0..500).step_by(10) {
        let batch: Vec<switchboard::pusher::publisher::BatchEvent> = (start..start + 10)
            .map(|n| switchboard::pusher::publisher::BatchEvent {
                channel: "firehose".into(),
                name: "tick".into(),
                data: format!(r#"{{"n":{n}}}"#),
                socket_id: None,
            })
            .collect();
        publisher.trigger_batch(&batch).await.expect("publish");
    }
    // `unread` is full (64) and not read; this subscription's answer comes after 500 events.
    let started = tokio::time::Instant::now();
    client.subscribe("other").await.expect("subscribed while the first stream was full");
    assert!(started.elapsed() < Duration::from_secs(8), "not held until the stall limit");
    expect_every_tick(&mut unread, 500, async |_| {}).await;
    server.shutdown().await;
}

// Left and subscribed again: what the first subscription held is not replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscribed_channel_does_not_replay_an_old_hold() {
    let server = crate::common::server().await;
    let client = crate::common::connect(&server).await;
    let publisher = crate::common::publisher(&server);
    let channel = client.subscribe("news").await.expect("subscribed");
    for n in 0..3 {
        publisher.trigger(&["news"], "tick", &format!(r#"{{"n":{n}}}"#), None).await.expect("publish");
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // held: nobody listens
    channel.unsubscribe().await;
    let channel = client.subscribe("news").await.expect("subscribed again");
    publisher.trigger(&["news"], "tick", &r#"{"n":100}"#, None).await.expect("publish");
    let mut events = channel.events_named("tick");
    let first = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("in time").expect("open");
    assert_eq!(number(&first), 100, "only what came after the new subscription");
    server.shutdown().await;
}

// A hold that gave up is reported to a stream or a handler of every event, not to a handler
// bound to one name (which would get an event it never asked for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lag_report_goes_only_to_listeners_of_every_event() {
    let server = stream_server(Protocol::Pusher, 500, 0).await;
    let policy = stalls_after(200, StallAction::DropAndReport);
    let options = pusher_options(&server).event_queue(100).slow_consumer(policy).build().expect("options");
    let client = Client::connect(options).await.expect("connect");
    let channel = client.subscribe("bench").await.expect("subscribed");
    tokio::time::sleep(Duration::from_millis(800)).await; // the hold filled and gave up
    let named = Arc::new(Mutex::new(Vec::new()));
    let log = named.clone();
    channel.bind("tick", move |e| log.lock().expect("lock").push(e.name().to_owned()));
    let every = Arc::new(Mutex::new(Vec::new()));
    let log = every.clone();
    channel.bind("*", move |e| log.lock().expect("lock").push(e.name().to_owned()));
    eventually(|| every.lock().expect("lock").iter().any(|n| n == LAGGED_EVENT)).await;
    assert!(named.lock().expect("lock").iter().all(|n| n == "tick"), "{:?}", named.lock().expect("lock"));
}
