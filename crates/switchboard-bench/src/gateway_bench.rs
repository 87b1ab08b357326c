//! Gateway benchmarks of our client against a gateway server (ours): the publish-to-receive
//! rate (one publisher, one receiver on the same topic; every publish waits for nothing) and
//! the ack round trip (publish, await its ack, N times in a row). The same two runs exist
//! for the official JS client (`interop/bench-gateway.mjs`), so `bench/gateway.sh` prints
//! both side by side.

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::gateway::{GatewayClient, GatewayOptions, Incoming, PublishOptions};
use switchboard_protocol::gateway::jwt::{self, Algorithm};

/// `gateway` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// host:port of the server.
    #[arg(long)]
    addr: String,
    /// App id.
    #[arg(long, default_value = "1000")]
    app_id: String,
    /// App secret (signs the tokens).
    #[arg(long)]
    secret: String,
    /// Messages for the rate run.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Publish-and-ack round trips.
    #[arg(long, default_value_t = 5_000)]
    acks: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
}

fn options(args: &Args, subject: &str) -> GatewayOptions {
    let claims = json!({"sub": subject, "permissions": ["realtime:publisher:write:topic:*"]});
    let token = jwt::sign(&claims, args.secret.as_bytes(), Algorithm::Hs256);
    GatewayOptions::new(format!("ws://{}/apps/{}?access_token={token}", args.addr, args.app_id))
        .ack_timeout(Duration::from_secs(30))
}

/// Run both measurements and print one line each.
pub async fn run(args: Args) -> Result<(), String> {
    let publisher = GatewayClient::connect(options(&args, "publisher")).await.map_err(|e| e.to_string())?;
    let receiver = GatewayClient::connect(options(&args, "receiver")).await.map_err(|e| e.to_string())?;
    let filler = "x".repeat(args.payload.saturating_sub(20));
    receiver.subscribe("bench").map_err(|e| e.to_string())?;
    let mut stream = receiver.events("bench.*");
    tokio::time::sleep(Duration::from_millis(300)).await; // subscribes are not confirmed
    // Rate: the receiver counts while the publisher sends, on the same runtime (as a
    // service would run them); the clock runs from the first publish to the last receipt.
    let total = args.messages;
    let counter = tokio::spawn(async move {
        let mut received = 0u64;
        let mut bytes = 0usize;
        while received < total {
            let Some(event) = stream.recv().await else { break };
            if let Ok(incoming) = Incoming::from_event(&event) {
                bytes += incoming.payload.to_string().len();
                received += 1;
            }
        }
        std::hint::black_box(bytes);
        received
    });
    let started = Instant::now();
    for n in 0..total {
        let pending = publisher
            .publish("bench", &json!({"n": n, "f": filler}), PublishOptions::new())
            .map_err(|e| e.to_string())?;
        drop(pending); // fire and forget: the ack is not awaited
    }
    let received = tokio::time::timeout(Duration::from_secs(300), counter)
        .await
        .map_err(|_| "the receiver did not get every message within 300 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "switchboard gateway rate   payload={:<5} messages={received:<8} {:>10.0} msgs/s",
        args.payload,
        received as f64 / secs
    );
    // Ack round trips, one at a time.
    let mut rtts = Vec::with_capacity(args.acks as usize);
    for n in 0..args.acks {
        let sent = Instant::now();
        publisher
            .publish("acks", &json!({"n": n, "f": filler}), PublishOptions::new())
            .map_err(|e| e.to_string())?
            .ack()
            .await
            .map_err(|e| e.to_string())?;
        rtts.push(sent.elapsed());
    }
    rtts.sort();
    let at = |q: f64| rtts[((rtts.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    let total_secs: f64 = rtts.iter().map(Duration::as_secs_f64).sum();
    println!(
        "switchboard gateway ack    payload={:<5} acks={:<8} {:>10.0} acks/s  p50 {:.0} µs  p99 {:.0} µs",
        args.payload,
        rtts.len(),
        rtts.len() as f64 / total_secs,
        at(0.5),
        at(0.99)
    );
    publisher.disconnect().await;
    receiver.disconnect().await;
    Ok(())
}
