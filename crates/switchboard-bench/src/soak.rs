//! `soak`: many connections held for minutes while some of them are replaced every second,
//! with events published throughout; the server's resident memory and open descriptors are
//! sampled, so a leak (a socket, a subscription, a roster entry or a task left behind by a
//! client that went away) shows as a line that keeps rising.
//!
//! Every tenth connection joins a presence channel (signed locally), the rest subscribe to
//! one of 100 public channels. Churn closes connections both ways — half with a close frame,
//! half by dropping the TCP connection — and opens as many new ones. At the end every
//! connection is closed and the server is sampled again: memory and descriptors should fall
//! back near where they started.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use switchboard_protocol::http_auth::sign_request;
use switchboard_protocol::signature::sign_channel;
use tokio::sync::oneshot;
use tokio_websockets::{ClientBuilder, Message};

use crate::fanout::rss_kib;

/// Soak benchmark against a Pusher-protocol server.
#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    server: crate::fanout::Server,
    /// Connections held at once.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// How long the churn runs, seconds.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Connections replaced per second.
    #[arg(long, default_value_t = 100)]
    churn: usize,
    /// Events published per second (round-robin over the public channels).
    #[arg(long, default_value_t = 20)]
    publish_rate: u32,
    /// Seconds between samples.
    #[arg(long, default_value_t = 15)]
    sample_every: u64,
}

/// What the connections did, across all of them.
#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
}

/// How a connection is told to go.
enum Leave {
    /// With a close frame.
    Close,
    /// By dropping the TCP connection.
    Drop,
}

/// Hold one connection until told to leave.
async fn connection(args: Arc<Args>, n: u64, counts: Arc<Counts>, leave: oneshot::Receiver<Leave>) {
    let url = format!("ws://{}/app/{}?protocol=7", args.server.addr, args.server.key);
    let Ok(builder) = ClientBuilder::new().uri(&url) else { return };
    let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(10), builder.connect()).await else {
        counts.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // The handshake: the socket id signs a presence subscription.
    let socket_id = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(m))) => {
                let Some(text) = m.as_text() else { continue };
                let Ok(frame) = switchboard_protocol::Frame::decode(text) else { continue };
                if let Ok(data) = frame.data.parse::<switchboard_protocol::messages::ConnectionEstablished>() {
                    break data.socket_id;
                }
            }
            _ => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    };
    let subscribe = if n.is_multiple_of(10) {
        let channel = format!("presence-soak-{}", n % 7);
        let channel_data = format!(r#"{{"user_id":"u{n}","user_info":{{"n":{n}}}}}"#);
        let auth = sign_channel(&args.server.key, &args.server.secret, &socket_id, &channel, Some(&channel_data));
        serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":channel_data}})
    } else {
        serde_json::json!({"event":"pusher:subscribe","data":{"channel":format!("soak-{}", n % 100)}})
    };
    if ws.send(Message::text(subscribe.to_string())).await.is_err() {
        counts.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    counts.opened.fetch_add(1, Ordering::Relaxed);
    let mut leave = std::pin::pin!(leave);
    loop {
        tokio::select! {
            how = &mut leave => {
                if let Ok(Leave::Close) = how {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
                }
                return; // Drop (or a dropped sender): the TCP connection goes without a word
            }
            message = ws.next() => match message {
                Some(Ok(m)) => {
                    let Some(text) = m.as_text() else { continue };
                    if text.contains("pusher:ping") {
                        let _ = ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#)).await;
                    } else if text.contains(r#""event":"soak""#) {
                        counts.events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
}

/// Open descriptors of `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Publish `rate` events per second until `until`, round-robin over the public channels.
async fn publish(args: Arc<Args>, until: Instant) -> u64 {
    let http = reqwest::Client::new();
    let path = format!("/apps/{}/events", args.server.app_id);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.publish_rate.max(1)));
    let mut published = 0u64;
    let mut next = tokio::time::Instant::now();
    while Instant::now() < until {
        next += interval;
        tokio::time::sleep_until(next).await;
        let body = serde_json::json!({"name":"soak","channel":format!("soak-{}", published % 100),"data":"{\"n\":1}"})
            .to_string();
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let params = sign_request(&args.server.key, &args.server.secret, "POST", &path, &[], Some(body.as_bytes()), ts);
        let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let sent = http
            .post(format!("http://{}{path}?{query}", args.server.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            published += 1;
        }
    }
    published
}

/// Run the soak and print one line per sample.
pub async fn run(args: Args) -> Result<(), String> {
    let args = Arc::new(args);
    let counts = Arc::new(Counts::default());
    let pid = args.server.server_pid;
    let (rss_before, fds_before) = (rss_kib(pid), descriptors(pid));
    println!(
        "soak: {} connections, {} replaced/s for {} s, {} events/s",
        args.connections, args.churn, args.seconds, args.publish_rate
    );
    println!("before: server RSS {rss_before} KiB, {fds_before} descriptors");
    let started = Instant::now();
    let mut live: Vec<oneshot::Sender<Leave>> = Vec::with_capacity(args.connections);
    let mut next_n = 0u64;
    let mut open = |live: &mut Vec<oneshot::Sender<Leave>>| {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(connection(args.clone(), next_n, counts.clone(), rx));
        next_n += 1;
        live.push(tx);
    };
    // Ramp up in steps of 500, so the server is not measured on a connect storm.
    while live.len() < args.connections {
        for _ in 0..500.min(args.connections - live.len()) {
            open(&mut live);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while counts.opened.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < args.connections as u64 {
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "ramped up in {:.1} s: {} open, {} failed; server RSS {} KiB, {} descriptors",
        started.elapsed().as_secs_f64(),
        counts.opened.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        rss_kib(pid),
        descriptors(pid)
    );
    println!("{:>6} {:>8} {:>9} {:>11} {:>12} {:>7}", "t s", "opened", "failed", "events", "RSS KiB", "fds");
    let churn_start = Instant::now();
    let until = churn_start + Duration::from_secs(args.seconds);
    let publisher = tokio::spawn(publish(args.clone(), until));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut last_sample = Instant::now();
    while Instant::now() < until {
        tick.tick().await;
        for i in 0..args.churn.min(live.len()) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % live.len() as u64) as usize;
            let leaving = live.swap_remove(at);
            let _ = leaving.send(if i % 2 == 0 { Leave::Close } else { Leave::Drop });
            open(&mut live);
        }
        if last_sample.elapsed() >= Duration::from_secs(args.sample_every) {
            last_sample = Instant::now();
            println!(
                "{:>6} {:>8} {:>9} {:>11} {:>12} {:>7}",
                churn_start.elapsed().as_secs(),
                counts.opened.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
                counts.events.load(Ordering::Relaxed),
                rss_kib(pid),
                descriptors(pid)
            );
        }
    }
    let published = publisher.await.unwrap_or(0);
    for leaving in live.drain(..) {
        let _ = leaving.send(Leave::Close);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "after: {} opened in all, {} failed, {published} events published, {} delivered; all closed: server RSS {} KiB (before {rss_before}), {} descriptors (before {fds_before})",
        counts.opened.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.events.load(Ordering::Relaxed),
        rss_kib(pid),
        descriptors(pid)
    );
    Ok(())
}
