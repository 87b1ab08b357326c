//! A minimal listener: print every event of the channels given on the command line.
//!
//! ```sh
//! REVERB_APP_KEY=switchboard-key REVERB_HOST=127.0.0.1 REVERB_PORT=8080 REVERB_SCHEME=http \
//!   cargo run -p switchboard --example listener -- news private-orders.1
//! ```
//! Private channels are signed locally when `REVERB_APP_SECRET` is set.

use futures_util::StreamExt;
use switchboard::{Client, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), switchboard::Error> {
    let channels: Vec<String> = std::env::args().skip(1).collect();
    if channels.is_empty() {
        eprintln!("usage: listener CHANNEL...");
        std::process::exit(2);
    }
    let client = Client::connect(ClientOptions::from_env()?.build()?).await?;
    client.on_state_change(|_, now| eprintln!("state: {}", now.name()));
    for name in &channels {
        client.subscribe(name).await?;
    }
    let mut events = client.events();
    while let Some(event) = events.next().await {
        println!("{} {} {}", event.channel().unwrap_or("-"), event.name(), event.data().unwrap_or(""));
    }
    Ok(())
}
