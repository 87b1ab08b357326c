//! The rules of Pusher channels, apart from how any protocol spells them on the wire: who may
//! subscribe to which channel (signatures, presence `channel_data`, limits), and who may send
//! a client event. The Pusher socket task and the RealtimeX one (channels over Socket.IO)
//! both apply these, so a channel has one policy whichever protocol its subscribers speak.
//!
//! ```
//! // Crate-internal; what a refusal carries, for reference: the Soketi-shaped error both
//! // protocols send (type, status, message).
//! let (kind, status) = ("AuthError", 401);
//! assert!(["AuthError", "InvalidChannel", "LimitReached"].contains(&kind) && status == 401);
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_protocol::messages::ChannelData;
use switchboard_protocol::signature::{channel_string_to_sign, verify_channel};
use switchboard_protocol::{ChannelKind, ChannelName, ErrorCode};
use tokio::time::Instant;

use super::app::{App, Joining, SubscribeRefused, Subscribed};
use crate::adapter::{AdapterError, Publish};
use crate::config::ClientEventPolicy;
use crate::connection_handle::ConnectionHandle;
use crate::pusher::webhooks::WebhookEvent;
use crate::state::ServerState;

/// A refused subscription, in the shape of `pusher:subscription_error` (Soketi's):
/// `type` (`AuthError`, `InvalidChannel`, `LimitReached`), `status` and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) kind: &'static str,
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl Refusal {
    fn new(kind: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self { kind, status, message: message.into() }
    }
}

/// One socket's channels: each subscribed channel and the presence user id it joined as.
pub(crate) type Subscriptions = HashMap<String, Option<String>>;

/// What a subscribe asks for, whichever protocol carried it.
pub(crate) struct SubscribeRequest<'a> {
    pub(crate) channel: &'a str,
    pub(crate) auth: Option<&'a str>,
    pub(crate) channel_data: Option<&'a str>,
}

/// Check and perform a subscribe of `handle` (whose signed-in user is `signed_in`): the
/// channel name, the socket's channel limit, the signature over the socket id, presence
/// `channel_data`, then the app's own limits. On success `subscriptions` holds the channel.
/// `encrypted_allowed` is false for protocols that cannot carry end-to-end encrypted
/// channels' payloads as the Pusher clients decrypt them.
pub(crate) async fn subscribe(
    server: &ServerState,
    app: &App,
    handle: &Arc<ConnectionHandle>,
    signed_in: Option<&str>,
    subscriptions: &mut Subscriptions,
    request: &SubscribeRequest<'_>,
    encrypted_allowed: bool,
) -> Result<Subscribed, Refusal> {
    let channel = request.channel;
    let name = ChannelName::parse(channel).map_err(|e| Refusal::new("InvalidChannel", 400, e.to_string()))?;
    let max = app.config.max_channels_per_connection;
    if subscriptions.len() >= max && !subscriptions.contains_key(channel) {
        return Err(Refusal::new(
            "LimitReached",
            4301,
            format!("A connection may subscribe to at most {max} channels"),
        ));
    }
    let auth = request.auth.unwrap_or("");
    let (key, secret) = (app.config.key.as_str(), app.config.secret.as_str());
    let socket_id = &*handle.socket_id;
    let mut joining = None;
    match name.kind() {
        ChannelKind::Public => {}
        ChannelKind::PrivateEncrypted if !encrypted_allowed => {
            return Err(Refusal::new(
                "InvalidChannel",
                400,
                "private-encrypted- channels are not supported on this protocol; use a private- channel",
            ));
        }
        ChannelKind::Private | ChannelKind::PrivateEncrypted => {
            if !verify_channel(key, secret, auth, socket_id, channel, None) {
                let msg = invalid_signature(&channel_string_to_sign(socket_id, channel, None));
                return Err(Refusal::new("AuthError", 401, msg));
            }
        }
        ChannelKind::Presence => {
            let Some(channel_data) = request.channel_data else {
                return Err(Refusal::new("AuthError", 401, "Presence channels need channel_data {\"user_id\":…}"));
            };
            if !verify_channel(key, secret, auth, socket_id, channel, Some(channel_data)) {
                let msg = invalid_signature(&channel_string_to_sign(socket_id, channel, Some(channel_data)));
                return Err(Refusal::new("AuthError", 401, msg));
            }
            joining = presence_member(app, channel_data)?;
        }
        ChannelKind::ServerToUser => {
            if signed_in != name.server_to_user_id() {
                return Err(Refusal::new(
                    "AuthError",
                    4009,
                    "Only the signed-in user may subscribe to its #server-to-user- channel; send pusher:signin first",
                ));
            }
        }
    }
    if let Some(old) = subscriptions.get(channel)
        && old.as_deref() != joining.as_ref().map(|j| j.user_id.as_str())
    {
        // A socket is one member: re-joining as another user means leaving first.
        subscriptions.remove(channel);
        leave(server, app, handle, channel).await;
    }
    let user_id = joining.as_ref().map(|j| j.user_id.clone());
    let joined = server.adapter.join(app, handle, channel, name.is_cache(), joining).await;
    match joined {
        Err(e) => Err(Refusal::new("ServerUnavailable", e.status(), e.to_string())),
        Ok(Ok(subscribed)) => {
            subscriptions.insert(channel.to_owned(), user_id);
            Ok(subscribed)
        }
        Ok(Err(SubscribeRefused::PresenceFull(max))) => Err(Refusal::new(
            "LimitReached",
            4100,
            format!("Over capacity: presence channel already has the maximum of {max} members"),
        )),
    }
}

/// Leave `channel` through the adapter; a failure is logged (a cluster adapter remembers
/// it and rejoins the cluster cleanly once its backend is back).
pub(crate) async fn leave(server: &ServerState, app: &App, handle: &ConnectionHandle, channel: &str) {
    if let Err(e) = server.adapter.leave(app, handle, channel).await {
        tracing::warn!(app = %app.config.id, channel, error = %e, "leave failed");
    }
}

/// A closing socket leaves every channel and gives back its connection slot. On one node
/// this is done at once; a cluster leave is a Redis round trip, so it finishes in a task
/// the server's shutdown waits for.
pub(crate) fn leave_all(
    server: &Arc<ServerState>,
    app: &Arc<App>,
    handle: &Arc<ConnectionHandle>,
    channels: Vec<String>,
) {
    use futures_util::FutureExt as _;
    app.unregister(handle.id);
    let (server2, app, handle) = (server.clone(), app.clone(), handle.clone());
    let mut leaving = Box::pin(async move {
        for channel in &channels {
            leave(&server2, &app, &handle, channel).await;
        }
        server2.adapter.release_connection(&app);
    });
    if (&mut leaving).now_or_never().is_none() {
        server.tasks.spawn(leaving);
    }
}

/// The member a signed presence `channel_data` joins as. A JSON object without a user_id
/// (RevPy sends `{"key": …}`) joins anonymously, as Reverb accepts it: it receives the
/// channel's events and the roster, but is no member.
fn presence_member(app: &App, channel_data: &str) -> Result<Option<Joining>, Refusal> {
    let object: Option<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(channel_data).ok();
    let Some(object) = object else {
        return Err(Refusal::new("AuthError", 401, "channel_data must be a JSON object"));
    };
    if !object.contains_key("user_id") {
        tracing::debug!("a presence subscription without a user_id joins anonymously");
        return Ok(None);
    }
    // A user_id that is there must be usable (a string or a number, not empty): `null` for a
    // signed-out user is refused, not taken as anonymous.
    let parsed = serde_json::from_str::<ChannelData>(channel_data).ok();
    let Some((user_id, info)) = parsed.and_then(|d| Some((d.user_id()?, d.user_info))) else {
        return Err(Refusal::new("AuthError", 401, "channel_data has an unusable user_id"));
    };
    let user_info = info.map_or_else(|| "null".to_owned(), |raw| raw.get().to_owned());
    let max = app.config.max_presence_member_size;
    if user_info.len() > max {
        let msg = format!("user_info of {} bytes exceeds the limit of {max} bytes", user_info.len());
        return Err(Refusal::new("LimitReached", 4301, msg));
    }
    Ok(Some(Joining { user_id, user_info }))
}

fn invalid_signature(string_to_sign: &str) -> String {
    format!("Invalid signature: expected HMAC-SHA256 hex digest of {string_to_sign:?} keyed with the app secret")
}

/// A refused client event: the Pusher error code (4301 refused, 4009 not a member) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientEventRefused {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

/// One socket's client-event admission: the app's policy, channel kinds, membership and the
/// per-second rate.
pub(crate) struct ClientEventGate {
    window: (Instant, u32),
}

impl ClientEventGate {
    pub(crate) fn new() -> Self {
        Self { window: (Instant::now(), 0) }
    }

    /// May this socket send `event` on `channel`? On success, the channel and the presence
    /// user id the socket joined it as (relayed events carry it).
    pub(crate) fn admit<'c>(
        &mut self,
        app: &App,
        subscriptions: &Subscriptions,
        event: &str,
        channel: Option<&'c str>,
    ) -> Result<(&'c str, Option<String>), ClientEventRefused> {
        let refuse = |code: ErrorCode, message: &str| Err(ClientEventRefused { code, message: message.to_owned() });
        let policy = app.config.client_events;
        if policy == ClientEventPolicy::Off {
            return refuse(ErrorCode::CLIENT_EVENT_REJECTED, "The app does not have client messaging enabled.");
        }
        if event.len() > switchboard_protocol::channel::MAX_EVENT_NAME_LEN {
            return refuse(ErrorCode::CLIENT_EVENT_REJECTED, "Event names are at most 200 characters");
        }
        let Some(channel) = channel else {
            return refuse(ErrorCode::CLIENT_EVENT_REJECTED, "Client events need a channel");
        };
        let kind = match ChannelName::parse(channel) {
            Ok(name) => name.kind(),
            Err(e) => return refuse(ErrorCode::CLIENT_EVENT_REJECTED, &e.to_string()),
        };
        // Whatever the policy: a user's own channel only carries the backend's events, and
        // plaintext on an encrypted channel would defeat its purpose.
        if matches!(kind, ChannelKind::ServerToUser | ChannelKind::PrivateEncrypted) {
            return refuse(
                ErrorCode::CLIENT_EVENT_REJECTED,
                "Client events are not allowed on #server-to-user- and encrypted channels",
            );
        }
        if policy == ClientEventPolicy::Members && !matches!(kind, ChannelKind::Private | ChannelKind::Presence) {
            return refuse(
                ErrorCode::CLIENT_EVENT_REJECTED,
                "Client events are only allowed on private and presence channels",
            );
        }
        // Under every policy: only a confirmed subscriber speaks on a channel. Otherwise "all"
        // would let any socket inject events into a private channel it was never authorized for.
        let Some(member) = subscriptions.get(channel) else {
            return refuse(ErrorCode::UNAUTHORIZED, "The client is not a member of the specified channel.");
        };
        let now = Instant::now();
        let (window_start, count) = &mut self.window;
        if now.duration_since(*window_start) >= Duration::from_secs(1) {
            *window_start = now;
            *count = 0;
        }
        *count += 1;
        let rate = app.config.client_event_rate;
        if *count > rate {
            let message = format!("Client event rate limit exceeded: at most {rate} per second; event {event} dropped");
            return Err(ClientEventRefused { code: ErrorCode::CLIENT_EVENT_REJECTED, message });
        }
        Ok((channel, member.clone()))
    }
}

/// An admitted client event on its way out.
pub(crate) struct Relayed<'a> {
    pub(crate) channel: &'a str,
    pub(crate) event: String,
    /// Pusher-encoded; other protocols' subscribers get it transcoded.
    pub(crate) frame: Bytes,
    /// The event's data as text, for the webhook.
    pub(crate) data: Option<String>,
    /// The presence user id of the sender on this channel.
    pub(crate) user_id: Option<String>,
}

/// Relay an admitted client event of socket `socket_id` to the channel's other subscribers
/// through the adapter, and send the `client_event` webhook.
pub(crate) async fn relay_client_event(
    server: &ServerState,
    app: &App,
    socket_id: &str,
    relayed: Relayed<'_>,
) -> Result<(), AdapterError> {
    let publish =
        Publish { channel: relayed.channel, frame: relayed.frame, except_socket_id: Some(socket_id), remember: false };
    server.adapter.publish(app, publish).await?;
    app.client_event_webhook(WebhookEvent {
        event: Some(relayed.event),
        data: relayed.data,
        socket_id: Some(socket_id.to_owned()),
        user_id: relayed.user_id,
        ..WebhookEvent::channel(relayed.channel, "client_event")
    });
    Ok(())
}
