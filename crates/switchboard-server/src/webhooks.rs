//! Webhooks: channel_occupied / channel_vacated, member_added / member_removed,
//! client_event and cache_miss, batched per app and POSTed signed with `X-Pusher-Key` and
//! `X-Pusher-Signature` (HMAC-SHA256 of the body), retried with exponential backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchboard_protocol::signature::sign_webhook;
use tokio::sync::mpsc;

use crate::config::WebhookConfig;
use crate::metrics::Metrics;

/// Events buffered per app before new ones are dropped (and logged).
const QUEUE_CAPACITY: usize = 10_000;
/// How long the sender gathers events into one batch.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events in one POST.
const MAX_BATCH: usize = 100;
/// Delivery attempts per batch and endpoint.
const ATTEMPTS: u32 = 5;

/// One webhook event, as Pusher sends it inside `{"time_ms", "events": [...]}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `channel_occupied`, `member_added`, `client_event`, …
    pub name: &'static str,
    /// The channel.
    pub channel: String,
    /// Member events and presence client events: the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Client events: the event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Client events: the data as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Client events: the sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
}

impl WebhookEvent {
    /// A channel-level event (`channel_occupied`, `channel_vacated`, `cache_miss`).
    pub fn channel(channel: &str, name: &'static str) -> Self {
        Self { name, channel: channel.to_owned(), user_id: None, event: None, data: None, socket_id: None }
    }

    /// A member event.
    pub fn member(channel: &str, name: &'static str, user_id: &str) -> Self {
        Self { user_id: Some(user_id.to_owned()), ..Self::channel(channel, name) }
    }
}

#[derive(Serialize)]
struct Batch<'a> {
    time_ms: u128,
    events: Vec<&'a WebhookEvent>,
}

/// Queues events for one app's webhook task.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    queue: mpsc::Sender<WebhookEvent>,
}

impl WebhookSender {
    /// Start the delivery task for an app's endpoints. Returns `None` when there are none.
    pub(crate) fn start(key: String, secret: String, hooks: Vec<WebhookConfig>, metrics: Arc<Metrics>) -> Option<Self> {
        if hooks.is_empty() {
            return None;
        }
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(deliver_loop(rx, key, secret, hooks, metrics));
        Some(Self { queue })
    }

    /// Queue an event; never blocks. A full queue drops the event with a warning.
    pub fn send(&self, event: WebhookEvent) {
        if let Err(e) = self.queue.try_send(event) {
            tracing::warn!("webhook queue full or closed, dropping event: {e}");
        }
    }
}

async fn deliver_loop(
    mut rx: mpsc::Receiver<WebhookEvent>,
    key: String,
    secret: String,
    hooks: Vec<WebhookConfig>,
    metrics: Arc<Metrics>,
) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("webhooks disabled: cannot build HTTP client: {e}");
            return;
        }
    };
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while events.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => events.push(event),
                _ => break,
            }
        }
        for hook in &hooks {
            let selected: Vec<&WebhookEvent> =
                events.iter().filter(|e| hook.events.is_empty() || hook.events.iter().any(|n| n == e.name)).collect();
            if selected.is_empty() {
                continue;
            }
            let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let body = match serde_json::to_vec(&Batch { time_ms, events: selected }) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!("cannot encode webhook batch: {e}");
                    continue;
                }
            };
            let signature = sign_webhook(&secret, &body);
            if post_with_retries(&client, &hook.url, &key, &signature, body).await {
                metrics.webhooks_sent.inc();
            } else {
                metrics.webhooks_failed.inc();
            }
        }
    }
}

async fn post_with_retries(client: &reqwest::Client, url: &str, key: &str, signature: &str, body: Vec<u8>) -> bool {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        let result = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-pusher-key", key)
            .header("x-pusher-signature", signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => return true,
            Ok(resp) => tracing::warn!(url, attempt, status = resp.status().as_u16(), "webhook refused"),
            Err(e) => tracing::warn!(url, attempt, "webhook failed: {e}"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    false
}
