//! Typed payloads of the protocol's events and of the HTTP API bodies.
//!
//! These are the `data` objects inside frames (`pusher:subscribe`, `pusher:signin`, …) and
//! the JSON the HTTP API and webhooks exchange. Field names follow the wire exactly.
//!
//! ```
//! use switchboard_protocol::Frame;
//! use switchboard_protocol::messages::SubscribeData;
//! let frame = Frame::decode(
//!     r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":1}"}}"#,
//! )?;
//! let data: SubscribeData = frame.data.parse()?;
//! assert_eq!(data.channel, "presence-a");
//! assert_eq!(data.channel_data.as_deref(), Some(r#"{"user_id":1}"#));
//! # Ok::<(), switchboard_protocol::ProtocolError>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `pusher:connection_established` data.
///
/// ```
/// use switchboard_protocol::Frame;
/// use switchboard_protocol::messages::ConnectionEstablished;
/// let frame = Frame::decode(
///     r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#,
/// )?;
/// let data: ConnectionEstablished = frame.data.parse()?;
/// assert_eq!(data.socket_id, "123.456");
/// assert_eq!(data.activity_timeout, Some(120));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
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
///
/// ```
/// use switchboard_protocol::Frame;
/// use switchboard_protocol::messages::ErrorData;
/// let as_string = Frame::decode(r#"{"event":"pusher:error","data":"{\"code\":4001,\"message\":\"No app\"}"}"#)?;
/// let as_object = Frame::decode(r#"{"event":"pusher:error","data":{"code":4001,"message":"No app"}}"#)?;
/// let error: ErrorData = as_string.data.parse()?;
/// assert_eq!(error, as_object.data.parse::<ErrorData>()?);
/// assert_eq!((error.code, error.message.as_str()), (Some(4001), "No app"));
/// # Ok::<(), switchboard_protocol::ProtocolError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorData {
    /// The error code, when there is one (poxa sends `null`).
    pub code: Option<u16>,
    /// What went wrong.
    pub message: String,
}

/// `pusher:subscribe` data.
///
/// ```
/// use switchboard_protocol::Frame;
/// use switchboard_protocol::messages::SubscribeData;
/// let public = SubscribeData { channel: "news".into(), auth: None, channel_data: None };
/// assert_eq!(serde_json::to_string(&public)?, r#"{"channel":"news"}"#);
/// let frame = Frame::decode(r#"{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"key:sig"}}"#)?;
/// let private: SubscribeData = frame.data.parse()?;
/// assert_eq!(private.auth.as_deref(), Some("key:sig"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
///
/// ```
/// use switchboard_protocol::messages::UnsubscribeData;
/// let data = UnsubscribeData { channel: "news".into() };
/// assert_eq!(serde_json::to_string(&data)?, r#"{"channel":"news"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnsubscribeData {
    /// The channel name.
    pub channel: String,
}

/// `pusher:signin` data.
///
/// ```
/// use switchboard_protocol::messages::{SigninData, UserData};
/// use switchboard_protocol::signature::{sign_user, verify_user};
/// let user_data = r#"{"id":"42"}"#.to_string();
/// let signin = SigninData { auth: sign_user("key", "secret", "1.2", &user_data), user_data };
/// assert!(verify_user("key", "secret", &signin.auth, "1.2", &signin.user_data));
/// let user: UserData = serde_json::from_str(&signin.user_data)?;
/// assert_eq!(user.id, "42");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigninData {
    /// `key:signature` over `socket_id::user::user_data`.
    pub auth: String,
    /// JSON string with at least a string `id`.
    pub user_data: String,
}

/// The decoded presence `channel_data`: `{user_id, user_info?}`.
///
/// ```
/// use switchboard_protocol::messages::ChannelData;
/// let data: ChannelData = serde_json::from_str(r#"{"user_id":"ada","user_info":{"name":"Ada"}}"#)?;
/// assert_eq!(data.user_id().as_deref(), Some("ada"));
/// assert_eq!(data.user_info.as_deref().map(|info| info.get()), Some(r#"{"name":"Ada"}"#));
/// # Ok::<(), serde_json::Error>(())
/// ```
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
    ///
    /// ```
    /// use switchboard_protocol::messages::ChannelData;
    /// let laravel: ChannelData = serde_json::from_str(r#"{"user_id":42}"#)?;
    /// assert_eq!(laravel.user_id().as_deref(), Some("42"));
    /// let empty: ChannelData = serde_json::from_str(r#"{"user_id":""}"#)?;
    /// assert_eq!(empty.user_id(), None);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn user_id(&self) -> Option<String> {
        crate::frame::id_of(&self.user_id).filter(|id| !id.is_empty())
    }
}

/// The decoded sign-in `user_data`: `{id, user_info?, watchlist?}`.
///
/// ```
/// use switchboard_protocol::messages::UserData;
/// let user: UserData = serde_json::from_str(r#"{"id":"42","user_info":{"name":"Ada"},"watchlist":["7","9"]}"#)?;
/// assert_eq!(user.id, "42");
/// assert_eq!(user.watchlist, ["7", "9"]);
/// let plain: UserData = serde_json::from_str(r#"{"id":"43"}"#)?;
/// assert!(plain.watchlist.is_empty());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
pub struct UserData {
    /// The user's id; must be a non-empty string.
    pub id: String,
    /// Ids whose online state this user watches.
    #[serde(default)]
    pub watchlist: Vec<String>,
}

/// `POST /apps/{id}/events` body.
///
/// ```
/// use switchboard_protocol::messages::TriggerRequest;
/// let request: TriggerRequest = serde_json::from_str(r#"{"name":"price","data":"{\"v\":1}","channels":["a","b"]}"#)?;
/// assert_eq!(request.channels.as_deref().map(<[String]>::len), Some(2));
/// let one = TriggerRequest {
///     name: "greet".into(),
///     data: "{}".into(),
///     channels: None,
///     channel: Some("news".into()),
///     socket_id: None,
///     info: None,
/// };
/// assert_eq!(serde_json::to_string(&one)?, r#"{"name":"greet","data":"{}","channel":"news"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
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
///
/// ```
/// use switchboard_protocol::messages::BatchRequest;
/// let batch: BatchRequest = serde_json::from_str(
///     r#"{"batch":[{"name":"a","data":"1","channel":"x"},{"name":"b","data":"2","channel":"y"}]}"#,
/// )?;
/// assert_eq!(batch.batch.len(), 2);
/// assert_eq!(batch.batch[1].channel.as_deref(), Some("y"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The events (≤10).
    pub batch: Vec<TriggerRequest>,
}
