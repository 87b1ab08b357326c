//! `fanout`: K subscribers of one channel on any Pusher-protocol server,
//! events published through its signed HTTP API, measured from the outside.
//!
//! Reports deliveries per second, publish-to-receive latency (p50/p99/max) and the server's
//! resident memory per idle subscribed connection (from `/proc/{pid}/status`). The same
//! harness runs against `switchboard serve` and Sockudo in one run (see BENCHMARKS.md), so
//! the client's own cost — it shares the machine — is the same for both.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use switchboard_protocol::Frame;
use switchboard_protocol::http_auth::sign_request;
use tokio::sync::Semaphore;
use tokio_websockets::{ClientBuilder, Message};

/// The server a benchmark runs against, and the app it uses (shared by `fanout` and `soak`).
#[derive(Debug, clap::Args)]
pub struct Server {
    /// host:port of the server (WebSocket and HTTP API on the same port).
    #[arg(long)]
    pub addr: String,
    /// App id for the HTTP API.
    #[arg(long)]
    pub app_id: String,
    /// App key.
    #[arg(long)]
    pub key: String,
    /// App secret (signs HTTP API calls and presence subscriptions).
    #[arg(long)]
    pub secret: String,
    /// PID of the server, to read its RSS (and descriptors).
    #[arg(long)]
    pub server_pid: u32,
}

/// Fan-out benchmark against a Pusher-protocol server.
#[derive(Debug, Parser)]
pub struct Args {
    /// Name printed with the results.
    #[arg(long)]
    label: String,
    #[command(flatten)]
    server: Server,
    /// Subscribers of the channel.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Events to publish.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Bytes of padding in each event's data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Publish rate in events per second (0 = as fast as the API answers). Use a rate for
    /// latency, 0 for throughput.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// More nodes of the same cluster (host:port, repeatable): subscribers are spread over
    /// `--addr` and these in turn; events are published through `--addr`.
    #[arg(long = "also-addr")]
    also_addr: Vec<String>,
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

struct Subscriber {
    latencies: Histogram<u64>,
    received: usize,
    last_receive: Option<Instant>,
}

async fn subscriber(
    url: String,
    events: usize,
    subscribed: Arc<Semaphore>,
    connect_slots: Arc<Semaphore>,
    deadline: Instant,
) -> Result<Subscriber, String> {
    let mut slot = Some(connect_slots.acquire_owned().await.map_err(|e| e.to_string())?);
    let builder = ClientBuilder::new().uri(&url).map_err(|e| e.to_string())?;
    let (mut ws, _) = builder.connect().await.map_err(|e| format!("connect: {e}"))?;
    let mut next_text = async || -> Result<String, String> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, ws.next()).await {
                Err(_) => return Err("timed out".into()),
                Ok(None) => return Err("socket closed".into()),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(m))) => {
                    if let Some(text) = m.as_text() {
                        return Ok(text.to_owned());
                    }
                }
            }
        }
    };
    let hello = next_text().await?;
    if !hello.contains("pusher:connection_established") {
        return Err(format!("unexpected handshake {hello}"));
    }
    ws.send(Message::text(r#"{"event":"pusher:subscribe","data":{"channel":"bench","auth":""}}"#))
        .await
        .map_err(|e| e.to_string())?;
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    let mut received = 0;
    let mut last_receive = None;
    let mut confirmed = false;
    while received < events {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(remaining, ws.next()).await {
            Err(_) => break,
            Ok(None) | Ok(Some(Err(_))) => return Err("socket ended during the run".into()),
            Ok(Some(Ok(m))) => m,
        };
        let Some(text) = message.as_text() else { continue };
        let now = unix_micros();
        let frame = Frame::decode(text).map_err(|e| e.to_string())?;
        match frame.event.as_str() {
            "pusher_internal:subscription_succeeded" if !confirmed => {
                confirmed = true;
                subscribed.add_permits(1);
                slot = None; // let the next connection start
            }
            "bench" => {
                let sent: u64 = frame
                    .data
                    .as_text()
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                    .and_then(|v| v["t"].as_u64())
                    .ok_or("event without timestamp")?;
                latencies.record(now.saturating_sub(sent).max(1)).map_err(|e| e.to_string())?;
                received += 1;
                last_receive = Some(Instant::now());
            }
            "pusher:ping" => {
                let _ = ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#)).await;
            }
            _ => {}
        }
    }
    drop(slot);
    Ok(Subscriber { latencies, received, last_receive })
}

pub async fn run(args: Args) -> Result<(), String> {
    let urls: Vec<String> = std::iter::once(&args.server.addr)
        .chain(&args.also_addr)
        .map(|addr| format!("ws://{addr}/app/{}?protocol=7&client=switchboard-bench&version=0.1", args.server.key))
        .collect();
    let rss_before = rss_kib(args.server.server_pid);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let subscribed = Arc::new(Semaphore::new(0));
    // Connect in waves so the accept backlog never overflows; a slot frees once subscribed.
    let connect_slots = Arc::new(Semaphore::new(args.connect_concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        tasks.push(tokio::spawn(subscriber(
            urls[i % urls.len()].clone(),
            args.events,
            subscribed.clone(),
            connect_slots.clone(),
            deadline,
        )));
    }
    let all = u32::try_from(args.subscribers).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(args.timeout), subscribed.acquire_many(all))
        .await
        .map_err(|_| "not every subscriber was confirmed in time".to_string())?
        .map_err(|e| e.to_string())?
        .forget();
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the server settle before measuring
    let rss_idle = rss_kib(args.server.server_pid);
    let per_conn_kib = (rss_idle.saturating_sub(rss_before)) as f64 / args.subscribers as f64;

    let http = reqwest::Client::new();
    let path = format!("/apps/{}/events", args.server.app_id);
    let padding = "x".repeat(args.payload);
    let publish_start = Instant::now();
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    for seq in 0..args.events {
        if let Some(interval) = interval {
            tokio::time::sleep_until((publish_start + interval * seq as u32).into()).await;
        }
        let data = format!(r#"{{"seq":{seq},"t":{},"pad":"{padding}"}}"#, unix_micros());
        let mut body = String::from(r#"{"name":"bench","channel":"bench","data":"#);
        switchboard_protocol::frame::push_json_string(&mut body, &data);
        body.push('}');
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let params = sign_request(&args.server.key, &args.server.secret, "POST", &path, &[], Some(body.as_bytes()), ts);
        let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let response = http
            .post(format!("http://{}{path}?{query}", args.server.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("publish: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("publish refused: {}", response.status()));
        }
    }
    let publish_secs = publish_start.elapsed().as_secs_f64();

    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    let mut delivered = 0usize;
    let mut last = publish_start;
    let mut failures = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(sub)) => {
                latencies.add(&sub.latencies).map_err(|e| e.to_string())?;
                delivered += sub.received;
                if let Some(t) = sub.last_receive {
                    last = last.max(t);
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("subscriber failed: {e}");
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let expected = args.subscribers * args.events;
    let deliver_secs = last.duration_since(publish_start).as_secs_f64();
    let per_sec = delivered as f64 / deliver_secs.max(1e-9);
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{label:<12} K={k:<6} events={n:<5} rate={rate:<5} payload={p}B  delivered {delivered}/{expected}  {per_sec:>10.0} deliveries/s  \
         p50 {p50:>8.2} ms  p99 {p99:>8.2} ms  max {max:>8.2} ms  RSS/idle conn {per_conn_kib:>6.1} KiB  \
         (connect+subscribe {connect_secs:.1} s, publish {publish_secs:.2} s, failures {failures})",
        label = args.label,
        k = args.subscribers,
        n = args.events,
        rate = if args.rate == 0 { "max".to_string() } else { format!("{}/s", args.rate) },
        p = args.payload,
        p50 = ms(latencies.value_at_quantile(0.50)),
        p99 = ms(latencies.value_at_quantile(0.99)),
        max = ms(latencies.max()),
    );
    if delivered != expected {
        return Err(format!("lost deliveries: {delivered} of {expected}"));
    }
    Ok(())
}
