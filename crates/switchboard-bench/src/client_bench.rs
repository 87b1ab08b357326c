//! Client receive-rate and memory benchmarks.
//!
//! The stream server answers the Pusher handshake and one subscribe, then writes the same
//! pre-encoded event frame as fast as the socket takes it, so the client is the bottleneck.
//! Receivers count `events` frames of event `tick` and report events/s, CPU seconds per
//! million events and peak RSS of their own process.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::{Client, ClientOptions};
use switchboard_protocol::PackedFrame;
use switchboard_protocol::frame::encode_server_frame;
use switchboard_protocol::phoenix::{RawMessage, Vsn};
use tokio::net::TcpListener;
use tokio_websockets::{ClientBuilder, Message, ServerBuilder};

/// `stream-server` options.
#[derive(Debug, clap::Args)]
pub struct StreamServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Bytes of payload in each event's data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Events to send to each connection, then stop.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// `pusher` (default), `phoenix` (V2 frames on room:bench after a phx_join) or
    /// `realtimex` (Socket.IO `server-event`s on bench after the CONNECT and a subscribe).
    #[arg(long, default_value = "pusher")]
    protocol: String,
}

/// The Phoenix broadcast every phoenix stream-server event uses.
pub fn phoenix_frame(payload: usize) -> String {
    let overhead = r#"{"id":123456,"note":""}"#.len();
    let data = json!({ "id": 123456, "note": "x".repeat(payload.saturating_sub(overhead)) });
    json!([null, null, "room:bench", "tick", data]).to_string()
}

/// The RealtimeX `server-event` every realtimex stream-server event uses: the same data as
/// `bench_frame`'s, embedded as JSON (as `switchboard serve` sends a published JSON string).
pub fn realtimex_frame(payload: usize) -> String {
    let overhead = r#"{"id":123456,"note":""}"#.len();
    let data = json!({ "id": 123456, "note": "x".repeat(payload.saturating_sub(overhead)) });
    format!("42{}", json!(["server-event", { "channel": "bench", "event": "tick", "data": data }]))
}

/// The frame every stream-server event uses: a JSON-string `data` of about `payload` bytes,
/// as Reverb and Pusher send app events.
pub fn bench_frame(payload: usize) -> String {
    let overhead = r#"{"id":123456,"note":""}"#.len();
    let data = format!(r#"{{"id":123456,"note":"{}"}}"#, "x".repeat(payload.saturating_sub(overhead)));
    encode_server_frame("tick", Some("bench"), Some(&data), None)
}

/// Run the stream server until killed. Prints `listening on ADDR` first.
pub async fn stream_server(args: StreamServerArgs) -> Result<(), String> {
    let listener = TcpListener::bind(&args.listen).await.map_err(|e| e.to_string())?;
    println!("listening on {}", listener.local_addr().map_err(|e| e.to_string())?);
    let phoenix = args.protocol == "phoenix";
    let realtimex = args.protocol == "realtimex";
    let frame = Bytes::from(match args.protocol.as_str() {
        "phoenix" => phoenix_frame(args.payload),
        "realtimex" => realtimex_frame(args.payload),
        _ => bench_frame(args.payload),
    });
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let frame = frame.clone();
        let events = args.events;
        tokio::spawn(async move {
            let Ok((_, mut ws)) = ServerBuilder::new().accept(stream).await else { return };
            if phoenix {
                // Answer the phx_join (echoing its refs), then stream.
                while let Some(Ok(message)) = ws.next().await {
                    let Some(join) = message.as_text().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                    else {
                        continue;
                    };
                    if join[3] == "phx_join" {
                        let reply = json!([join[0], join[1], join[2], "phx_reply", {"status": "ok", "response": {}}]);
                        if ws.send(Message::text(reply.to_string())).await.is_err() {
                            return;
                        }
                        break;
                    }
                }
                stream_frames(ws, &frame, events).await;
                return;
            }
            if realtimex {
                // Open, answer the CONNECT and the subscribe, then stream. Long heartbeat: a
                // run is over well before the first ping would be due.
                let open =
                    r#"0{"sid":"1.1","upgrades":[],"pingInterval":300000,"pingTimeout":20000,"maxPayload":1000000}"#;
                if ws.send(Message::text(open)).await.is_err() {
                    return;
                }
                while let Some(Ok(message)) = ws.next().await {
                    let Some(text) = message.as_text() else { continue };
                    let reply = if text.starts_with("40") {
                        r#"40{"sid":"1.1"}"#
                    } else if text.contains("realtimex:subscribe") {
                        r#"42["realtimex_internal:subscription_succeeded",{"channel":"bench","socket_id":"1.1"}]"#
                    } else {
                        continue;
                    };
                    if ws.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                    if reply.contains("subscription_succeeded") {
                        break;
                    }
                }
                stream_frames(ws, &frame, events).await;
                return;
            }
            let hello = encode_server_frame(
                "pusher:connection_established",
                None,
                Some(r#"{"socket_id":"1.1","activity_timeout":120}"#),
                None,
            );
            if ws.send(Message::text(hello)).await.is_err() {
                return;
            }
            // Wait for the subscribe, answer it, then stream.
            while let Some(Ok(message)) = ws.next().await {
                if message.as_text().is_some_and(|t| t.contains("pusher:subscribe")) {
                    break;
                }
            }
            let ok = encode_server_frame("pusher_internal:subscription_succeeded", Some("bench"), Some("{}"), None);
            if ws.send(Message::text(ok)).await.is_err() {
                return;
            }
            stream_frames(ws, &frame, events).await;
        });
    }
}

/// Write `frame` `events` times as fast as the socket takes it, then wait for the client to go.
///
/// The frames are pre-encoded down to the WebSocket framing, in blocks of about 64 KiB, and
/// written straight to the TCP socket: the stream server shares the machine with the
/// receiver being measured, so it should cost as little as possible (per-message framing
/// through the WebSocket library took up to two thirds of a core at 1 KB events).
async fn stream_frames<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: tokio_websockets::WebSocketStream<S>,
    frame: &Bytes,
    events: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = ws.into_inner();
    let one = ws_text_frame(frame);
    let per_block = (64 * 1024 / one.len()).max(1);
    let block = one.repeat(per_block);
    let mut sent = 0u64;
    while sent < events {
        let frames = per_block.min(usize::try_from(events - sent).unwrap_or(per_block));
        if socket.write_all(&block[..frames * one.len()]).await.is_err() {
            return;
        }
        sent += frames as u64;
    }
    let mut sink = [0u8; 4096];
    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// One unmasked, final WebSocket text frame (server to client) carrying `payload`.
fn ws_text_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x81); // FIN + text
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

/// `recv` options.
#[derive(Debug, clap::Args)]
pub struct RecvArgs {
    /// `switchboard-main` (the client, default options, events read by the future blocked in
    /// `main`, as `#[tokio::main]` runs it), `switchboard` (the same read in a spawned task),
    /// `phoenix-main` / `phoenix` (the Phoenix client, likewise), or `bare` / `phoenix-bare`
    /// (read frames and decode them, no dispatch: the floor).
    #[arg(long)]
    mode: String,
    /// host:port of the stream server.
    #[arg(long)]
    addr: String,
    /// Events to receive.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Payload size label for the report.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// `multi` (tokio's default multi-thread runtime, one worker per core) or `current` (a
    /// current-thread runtime: one event loop, as Node runs pusher-js).
    #[arg(long, default_value = "multi")]
    runtime: String,
    /// Stream queue capacity (default: the client's default, 1,024), to measure its effect.
    #[arg(long)]
    event_queue: Option<usize>,
    /// Where the client's connection task runs: `dedicated` (the library's I/O thread, the
    /// default) or `caller` (this runtime, as before the I/O thread existed).
    #[arg(long, default_value = "dedicated")]
    io: String,
}

impl RecvArgs {
    /// True if this receiver runs on a current-thread runtime.
    pub fn current_thread(&self) -> bool {
        self.runtime == "current"
    }

    fn io_runtime(&self) -> switchboard::IoRuntime {
        if self.io == "caller" { switchboard::IoRuntime::Caller } else { switchboard::IoRuntime::Dedicated }
    }

    /// The report label: `base`, with how it runs.
    fn label(&self, base: &str, spawned: bool) -> String {
        let how = match (spawned, self.current_thread()) {
            (true, false) => "task",
            (false, false) => "main",
            (_, true) => "1 thread",
        };
        let io = if self.io == "caller" { ", caller rt" } else { "" };
        format!("{base} ({how}{io})")
    }
}

/// CPU seconds (user + system) of this process, from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn report(label: &str, payload: usize, events: u64, started: Instant, cpu_before: f64) {
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "{label:<22} payload={payload:<5} events={events:<8} {rate:>10.0} events/s  {cpu_per_m:>6.2} CPU s per million  peak RSS {rss:>7} KiB",
        rate = events as f64 / secs,
        cpu_per_m = cpu / (events as f64 / 1e6),
        rss = peak_rss_kib(),
    );
}

/// Receive `events` events from the stream server and report.
pub async fn recv(args: RecvArgs) -> Result<(), String> {
    match args.mode.as_str() {
        "switchboard" => {
            // The consumer runs as a task, as a service would run it, not on the thread
            // blocked in main (waking that thread per event costs a futex round trip).
            tokio::spawn(recv_switchboard(args, true)).await.map_err(|e| e.to_string())??;
        }
        "switchboard-main" => recv_switchboard(args, false).await?,
        "phoenix" => tokio::spawn(recv_phoenix(args, true)).await.map_err(|e| e.to_string())??,
        "realtimex" => tokio::spawn(recv_switchboard(args, true)).await.map_err(|e| e.to_string())??,
        "realtimex-main" => recv_switchboard(args, false).await?,
        "realtimex-bare" => {
            // The floor: WebSocket read plus the client's hot-path scan of each server-event
            // (its spans and event name), no dispatch.
            let url = format!("ws://{}/socket.io/?api_key=bench&EIO=4&transport=websocket", args.addr);
            let is_tick = |text: &str| {
                use switchboard_protocol::realtimex::{ServerEventSpans, json_str};
                let Some(spans) = ServerEventSpans::scan(text) else { return Ok(false) };
                Ok(json_str(spans.event).is_some_and(|event| event == "tick"))
            };
            let connect = "40";
            let subscribe = r#"42["realtimex:subscribe",{"channel":"bench"}]"#;
            bare_loop(&url, &[connect, subscribe], &args, "bare realtimex parse", is_tick).await?;
        }
        "phoenix-main" => recv_phoenix(args, false).await?,
        "phoenix-bare" => {
            let url = format!("ws://{}/socket/websocket?vsn=2.0.0", args.addr);
            let is_tick =
                |text: &str| RawMessage::decode(text, Vsn::V2).map(|m| m.event == "tick").map_err(|e| e.to_string());
            bare_loop(&url, &[r#"["1","1","room:bench","phx_join",{}]"#], &args, "bare phoenix parse", is_tick).await?;
        }
        "bare" => {
            let url = format!("ws://{}/app/bench?protocol=7", args.addr);
            let is_tick =
                |text: &str| PackedFrame::decode(text).map(|f| f.event() == "tick").map_err(|e| e.to_string());
            let subscribe = r#"{"event":"pusher:subscribe","data":{"channel":"bench"}}"#;
            bare_loop(&url, &[subscribe], &args, "bare read + parse", is_tick).await?;
        }
        other => return Err(format!("unknown mode {other:?} (switchboard or bare)")),
    }
    Ok(())
}

/// The floor: send `first` (the join or subscribe), read frames and parse them (`is_tick`
/// decodes one and says whether it is an event to count), with no dispatch. The clock starts
/// at the first event.
async fn bare_loop(
    url: &str,
    first: &[&'static str],
    args: &RecvArgs,
    label: &str,
    is_tick: impl Fn(&str) -> Result<bool, String>,
) -> Result<(), String> {
    let (mut ws, _) =
        ClientBuilder::new().uri(url).map_err(|e| e.to_string())?.connect().await.map_err(|e| e.to_string())?;
    for text in first {
        ws.send(Message::text(*text)).await.map_err(|e| e.to_string())?;
    }
    let mut received = 0u64;
    let mut clock = None;
    while received < args.events {
        let message = ws.next().await.ok_or("socket ended")?.map_err(|e| e.to_string())?;
        let Some(text) = message.as_text() else { continue };
        if is_tick(text)? {
            if clock.is_none() {
                clock = Some((Instant::now(), cpu_seconds()));
            } else {
                received += 1;
            }
        }
    }
    let (started, cpu) = clock.ok_or("no events")?;
    report(label, args.payload, received, started, cpu);
    Ok(())
}

/// The switchboard client side of `recv` (Pusher, or RealtimeX for the realtimex modes).
async fn recv_switchboard(args: RecvArgs, spawned: bool) -> Result<(), String> {
    let (host, port) = args.addr.rsplit_once(':').ok_or("addr must be host:port")?;
    let port: u16 = port.parse().map_err(|e| format!("port: {e}"))?;
    // Default options (the 1,024-event stream queue, backpressure), and the README's order:
    // subscribe, then attach the stream.
    let mut options = ClientOptions::builder("bench").host(host).port(port).tls(false);
    let realtimex = args.mode.starts_with("realtimex");
    if realtimex {
        options = options.protocol(switchboard::Protocol::RealtimeX);
    }
    if let Some(capacity) = args.event_queue {
        options = options.event_queue(capacity);
    }
    let options = options.io_runtime(args.io_runtime()).build().map_err(|e| e.to_string())?;
    let client = Client::connect(options).await.map_err(|e| e.to_string())?;
    let channel = client.subscribe("bench").await.map_err(|e| e.to_string())?;
    let mut stream = channel.events_named("tick");
    // Time from the first event, as the bare loop does.
    let first = stream.next().await.ok_or("stream ended")?;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut bytes = first.data().map_or(0, str::len);
    let (mut received, mut dropped) = (0u64, 0u64);
    while received + dropped < args.events {
        let event = stream.next().await.ok_or("stream ended")?;
        if event.name() == switchboard::LAGGED_EVENT {
            dropped += event.json::<serde_json::Value>().ok().and_then(|v| v["dropped"].as_u64()).unwrap_or(0);
            continue;
        }
        bytes += event.data().map_or(0, str::len);
        received += 1;
    }
    std::hint::black_box(bytes);
    let base = if realtimex { "switchboard realtimex" } else { "switchboard" };
    report(&args.label(base, spawned), args.payload, received, started, cpu);
    if dropped > 0 {
        println!("  (events were dropped: {dropped}, reported and not counted)");
    }
    client.disconnect().await;
    Ok(())
}

/// The switchboard Phoenix client side of `recv` (in a spawned task, or on `main`'s thread):
/// default options, join, then attach the stream.
async fn recv_phoenix(args: RecvArgs, spawned: bool) -> Result<(), String> {
    let mut options = switchboard::phoenix::SocketOptions::new(format!("ws://{}/socket", args.addr));
    if let Some(capacity) = args.event_queue {
        options = options.event_queue(capacity);
    }
    options = options.io_runtime(args.io_runtime());
    let socket = switchboard::phoenix::Socket::connect(options).await.map_err(|e| e.to_string())?;
    let channel = socket.channel("room:bench", json!({}));
    channel.join().await.map_err(|e| e.to_string())?;
    let mut stream = channel.events();
    let mut clock = None;
    let (mut received, mut dropped) = (0u64, 0u64);
    while received + dropped < args.events {
        let event = stream.next().await.ok_or("stream ended")?;
        match event.name() {
            "tick" if clock.is_none() => clock = Some((Instant::now(), cpu_seconds())),
            "tick" => {
                std::hint::black_box(event.data());
                received += 1;
            }
            switchboard::LAGGED_EVENT => {
                dropped += event.json::<serde_json::Value>().ok().and_then(|v| v["dropped"].as_u64()).unwrap_or(0);
            }
            _ => {}
        }
    }
    let (started, cpu) = clock.ok_or("no events")?;
    report(&args.label("switchboard phoenix", spawned), args.payload, received, started, cpu);
    if dropped > 0 {
        println!("  (events were dropped: {dropped}, reported and not counted)");
    }
    socket.disconnect().await;
    Ok(())
}

/// `idle-clients` options.
#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    /// Clients to hold.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
}

/// Start `switchboard serve` as a child process, connect `clients` clients each subscribed
/// to one channel from this process, and report this process's RSS growth per client.
pub async fn idle_clients(args: IdleArgs) -> Result<(), String> {
    // The server runs in a child process so only client memory is counted here.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(exe.with_file_name("switchboard"))
        .args(["serve", "--port", "0"])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start target/release/switchboard (build switchboard-cli first): {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let first = lines.next_line().await.map_err(|e| e.to_string())?.ok_or("server printed nothing")?;
    let addr = first.rsplit(' ').next().ok_or("no address")?.to_owned();
    let (host, port) = addr.rsplit_once(':').ok_or("bad address")?;
    let port: u16 = port.parse().map_err(|e| format!("{e}"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let before = status_kib("VmRSS:");
    let mut clients = Vec::with_capacity(args.clients);
    let started = Instant::now();
    for i in 0..args.clients {
        let options = ClientOptions::builder(switchboard_server::config::DEV_APP_KEY)
            .host(host)
            .port(port)
            .tls(false)
            .build()
            .map_err(|e| e.to_string())?;
        let client = Client::new(options);
        let subscribe = {
            let client = client.clone();
            async move { client.subscribe(&format!("idle-{}", i % 100)).await.map(|_| ()) }
        };
        clients.push((client, tokio::spawn(subscribe)));
        if i % 200 == 199 {
            // Pace connection setup so the accept backlog never overflows.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut failures = 0;
    for (_, pending) in &mut clients {
        match pending.await {
            Ok(Ok(())) => {}
            _ => failures += 1,
        }
    }
    let setup = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = status_kib("VmRSS:");
    println!(
        "idle clients: {} connected+subscribed in {:.1} s ({failures} failed); client process RSS {} KiB -> {} KiB = {:.1} KiB per client",
        args.clients,
        setup.as_secs_f64(),
        before,
        after,
        (after.saturating_sub(before)) as f64 / args.clients as f64
    );
    for (client, _) in &clients {
        client.disconnect().await;
    }
    let _ = child.kill().await;
    Ok(())
}
