//! Typed payloads of the protocol's events and of the HTTP API bodies.
//!
//! These are the `data` objects inside frames (`pusher:subscribe`, `pusher:signin`, …) and
//! the JSON the HTTP API and webhooks exchange. Field names follow the wire exactly.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `pusher:connection_established` data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionEstablished {
    /// The socket id, `\d+\.\d+`.
    pub socket_id: String,
    /// Seconds of inbound silence after which the client should ping. Optional on the wire
    /// for leniency (pusher-js throws without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_timeout: Option<u64>,
}

/// `pusher:error` data. Pusher and Reverb send it as a string, Soketi and Sockudo as an
/// object; [`crate::Data::parse`] reads both.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorData {
    /// The error code, when there is one (poxa sends `null`).
    pub code: Option<u16>,
    /// What went wrong.
    pub message: String,
}

/// `pusher:subscribe` data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscribeData {
    /// The channel name.
    pub channel: String,
    /// `key:signature` for private and presence channels; `""` or absent for public ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Presence: the exact JSON string that was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
}

/// `pusher:unsubscribe` data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnsubscribeData {
    /// The channel name.
    pub channel: String,
}

/// `pusher:signin` data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigninData {
    /// `key:signature` over `socket_id::user::user_data`.
    pub auth: String,
    /// JSON string with at least a string `id`.
    pub user_data: String,
}

/// The decoded presence `channel_data`: `{user_id, user_info?}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelData {
    /// The member's id; numbers are normalised to strings by [`ChannelData::user_id`].
    pub user_id: Box<RawValue>,
    /// Free-form member info.
    #[serde(default)]
    pub user_info: Option<Box<RawValue>>,
}

impl ChannelData {
    /// The user id as a string (Laravel sends integers).
    pub fn user_id(&self) -> Option<String> {
        crate::frame::id_of(&self.user_id).filter(|id| !id.is_empty())
    }
}

/// The decoded sign-in `user_data`: `{id, user_info?, watchlist?}`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserData {
    /// The user's id; must be a non-empty string.
    pub id: String,
    /// Ids whose online state this user watches.
    #[serde(default)]
    pub watchlist: Vec<String>,
}

/// `POST /apps/{id}/events` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerRequest {
    /// Event name.
    pub name: String,
    /// Event data: a string, delivered verbatim.
    pub data: String,
    /// Target channels (≤100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Single target channel (alternative to `channels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Socket id to exclude from delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    /// Comma-separated attributes to return per channel (`user_count`, `subscription_count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

/// `POST /apps/{id}/batch_events` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The events (≤10).
    pub batch: Vec<TriggerRequest>,
}
