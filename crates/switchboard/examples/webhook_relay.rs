//! A webhook relay (HTTP in, channel out), the seeds' use case without any WebSocket:
//! `POST /relay/{channel}/{event}` with a JSON body publishes it through the HTTP API, and
//! `POST /pusher/webhooks` accepts the server's signed webhooks (verified with the app
//! secret) and republishes them on `WEBHOOK_CHANNEL` for dashboards.
//!
//! ```sh
//! REVERB_APP_ID=1000 REVERB_APP_KEY=switchboard-key REVERB_APP_SECRET=switchboard-secret \
//!   API_BASE=http://127.0.0.1:8080 LISTEN=127.0.0.1:9000 cargo run -p switchboard --example webhook_relay
//! curl -X POST localhost:9000/relay/orders/OrderShipped -d '{"id":7}'
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use switchboard::{Error, ErrorKind, Publisher};

struct Relay {
    publisher: Publisher,
    webhook_channel: String,
}

async fn relay(
    State(relay): State<Arc<Relay>>,
    Path((channel, event)): Path<(String, String)>,
    body: Bytes,
) -> (StatusCode, String) {
    let Ok(data) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body must be JSON".into());
    };
    match relay.publisher.trigger(&[channel.as_str()], &event, &data, None).await {
        Ok(_) => (StatusCode::ACCEPTED, "relayed".into()),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn webhooks(State(relay): State<Arc<Relay>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !relay.publisher.verify_webhook(header("x-pusher-key"), header("x-pusher-signature"), &body) {
        return (StatusCode::UNAUTHORIZED, "bad webhook signature".into());
    }
    let batch: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    for event in batch["events"].as_array().into_iter().flatten() {
        let name = event["name"].as_str().unwrap_or("webhook");
        if let Err(e) = relay.publisher.trigger(&[relay.webhook_channel.as_str()], name, event, None).await {
            return (StatusCode::BAD_GATEWAY, e.to_string());
        }
    }
    (StatusCode::OK, "ok".into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).map_err(|_| Error::new(ErrorKind::Config, format!("{name} is not set")));
    let publisher =
        Publisher::new(&env("API_BASE")?, &env("REVERB_APP_ID")?, &env("REVERB_APP_KEY")?, &env("REVERB_APP_SECRET")?)?;
    let webhook_channel = std::env::var("WEBHOOK_CHANNEL").unwrap_or_else(|_| "private-webhooks".into());
    let state = Arc::new(Relay { publisher, webhook_channel });
    let app = Router::new()
        .route("/relay/{channel}/{event}", post(relay))
        .route("/pusher/webhooks", post(webhooks))
        .with_state(state);
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:9000".into());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Error::new(ErrorKind::Config, format!("LISTEN {listen}: {e}")))?;
    eprintln!("relaying on http://{listen}");
    axum::serve(listener, app).await.map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))
}
