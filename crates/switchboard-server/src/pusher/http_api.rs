//! The signed HTTP API: publish events, query channels and presence users, terminate a
//! user's connections; plus `/up` and `/metrics`.
//!
//! Every `/apps/{id}/…` request is verified as `pusher-http-node` signs it (see
//! `switchboard_protocol::http_auth`), with a ±`timestamp_window` clock check. Errors are
//! JSON `{"error": "...", "code": <status>}`.
//!
//! ```
//! # // Call the HTTP API of the development app, signed as the official SDKs sign.
//! # async fn signed(
//! #     server: &switchboard_server::RunningServer,
//! #     method: &str,
//! #     path: &str,
//! #     body: Option<&str>,
//! # ) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error>> {
//! #     use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
//! #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
//! #     let body_bytes = body.map(str::as_bytes);
//! #     use switchboard_protocol::http_auth::sign_request;
//! #     let params = sign_request(DEV_APP_KEY, DEV_APP_SECRET, method, path, &[], body_bytes, now);
//! #     let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
//! #     let url = format!("http://{}{path}?{}", server.local_addr(), query.join("&"));
//! #     let client = reqwest::Client::new();
//! #     let request = match body {
//! #         Some(body) => client.post(url).header("content-type", "application/json").body(body.to_owned()),
//! #         None => client.get(url),
//! #     };
//! #     let response = request.send().await?;
//! #     Ok((response.status().as_u16(), response.json().await?))
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::time::timeout(std::time::Duration::from_secs(5), async {
//! use switchboard_server::{Server, ServerConfig};
//!
//! let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
//! let (status, body) = signed(&server, "GET", "/apps/1000/channels", None).await?;
//! assert_eq!((status, body), (200, serde_json::json!({ "channels": {} })));
//! server.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).await?
//! # }
//! ```

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use switchboard_protocol::frame::encode_server_frame;
use switchboard_protocol::http_auth::{RequestToVerify, parse_query_limited, verify_request};
use switchboard_protocol::messages::{BatchRequest, TriggerRequest};
use switchboard_protocol::{ChannelKind, ChannelName};

use crate::adapter::{AdapterError, Publish};
use crate::metrics::HttpLabels;
use crate::pusher::app::App;
use crate::state::ServerState;

/// Most channels one trigger may name.
///
/// ```
/// # // Call the HTTP API of the development app, signed as the official SDKs sign.
/// # async fn signed(
/// #     server: &switchboard_server::RunningServer,
/// #     method: &str,
/// #     path: &str,
/// #     body: Option<&str>,
/// # ) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error>> {
/// #     use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
/// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
/// #     let body_bytes = body.map(str::as_bytes);
/// #     use switchboard_protocol::http_auth::sign_request;
/// #     let params = sign_request(DEV_APP_KEY, DEV_APP_SECRET, method, path, &[], body_bytes, now);
/// #     let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
/// #     let url = format!("http://{}{path}?{}", server.local_addr(), query.join("&"));
/// #     let client = reqwest::Client::new();
/// #     let request = match body {
/// #         Some(body) => client.post(url).header("content-type", "application/json").body(body.to_owned()),
/// #         None => client.get(url),
/// #     };
/// #     let response = request.send().await?;
/// #     Ok((response.status().as_u16(), response.json().await?))
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_server::pusher::http_api::MAX_TRIGGER_CHANNELS;
/// use switchboard_server::{Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// let event_to = |n: usize| {
///     let channels: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
///     serde_json::json!({ "name": "e", "data": "{}", "channels": channels }).to_string()
/// };
/// let (status, _) = signed(&server, "POST", "/apps/1000/events", Some(&event_to(MAX_TRIGGER_CHANNELS))).await?;
/// assert_eq!(status, 200);
/// let (status, body) = signed(&server, "POST", "/apps/1000/events", Some(&event_to(MAX_TRIGGER_CHANNELS + 1))).await?;
/// assert_eq!(status, 400, "{body}");
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
pub const MAX_TRIGGER_CHANNELS: usize = 100;

/// An HTTP API failure: status and a message saying what to fix.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_server::{Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// // An unsigned request is refused with 401 and a JSON body saying what is missing.
/// let url = format!("http://{}/apps/1000/channels", server.local_addr());
/// let response = reqwest::get(url).await?;
/// assert_eq!(response.status(), 401);
/// let body: serde_json::Value = response.json().await?;
/// assert_eq!(body["code"], 401);
/// assert_eq!(body["error"], "missing query parameter auth_key");
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "code": self.status.as_u16() });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        // Never a local-only answer: the caller learns the cluster could not answer.
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

type ApiResult = Result<Value, ApiError>;

fn respond(server: &ServerState, endpoint: &'static str, result: ApiResult) -> Response {
    let response = match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    };
    server.metrics.http_requests.get_or_create(&HttpLabels { endpoint, status: response.status().as_u16() }).inc();
    response
}

/// Check the signature of a request to app `app_id` and return the app.
fn authorize(
    server: &ServerState,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<Arc<App>, ApiError> {
    let app = server
        .apps_by_id
        .get(app_id)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("No app with id {app_id:?}")))?;
    let raw_path = uri.path().strip_prefix(server.config.path.as_str()).unwrap_or(uri.path());
    let path = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    let params = query_params(uri, server.config.http_max_query_params)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let req = RequestToVerify { method: method.as_str(), path: &path, params: &params, body };
    verify_request(&req, &app.config.key, &app.config.secret, now, server.config.timestamp_window)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    Ok(app)
}

/// The decoded query parameters (see [`parse_query_limited`]); more than `max` is a 400.
fn query_params(uri: &Uri, max: usize) -> Result<Vec<(String, String)>, ApiError> {
    parse_query_limited(uri.query().unwrap_or(""), max).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    // Only after `authorize`, which applied the cap.
    query_params(uri, usize::MAX).ok()?.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn info_fields(info: Option<&str>) -> Vec<String> {
    info.map(|i| i.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

fn is_socket_id(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    s.split_once('.').is_some_and(|(a, b)| digits(a) && digits(b))
}

/// An event that passed every check: delivering it cannot fail any more.
struct ValidEvent<'a> {
    name: &'a str,
    data: &'a str,
    channels: Vec<ChannelName<'a>>,
    except: Option<&'a str>,
    info: Vec<String>,
}

/// Check one event completely before anything of the request is delivered, so a 4xx never
/// follows a partial publish (SDKs retry on errors, which would duplicate events).
fn validate<'a>(app: &App, event: &'a TriggerRequest) -> Result<ValidEvent<'a>, ApiError> {
    if event.name.is_empty() || event.name.len() > switchboard_protocol::channel::MAX_EVENT_NAME_LEN {
        return Err(ApiError::bad_request("name must be 1 to 200 characters"));
    }
    let names: Vec<&str> = match (&event.channels, &event.channel) {
        (Some(list), _) => list.iter().map(String::as_str).collect(),
        (None, Some(one)) => vec![one.as_str()],
        (None, None) => return Err(ApiError::bad_request("give channels: [...] or channel")),
    };
    if names.is_empty() || names.len() > MAX_TRIGGER_CHANNELS {
        return Err(ApiError::bad_request(format!(
            "an event goes to 1 to {MAX_TRIGGER_CHANNELS} channels, not {}",
            names.len()
        )));
    }
    let max = app.config.max_message_size;
    if event.data.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("data of {} bytes exceeds the limit of {max} bytes", event.data.len()),
        ));
    }
    let except = event.socket_id.as_deref();
    if except.is_some_and(|s| !is_socket_id(s)) {
        return Err(ApiError::bad_request("socket_id must look like 123.456"));
    }
    let mut channels = Vec::with_capacity(names.len());
    for name in names {
        channels.push(ChannelName::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    let info = info_fields(event.info.as_deref());
    for name in &channels {
        check_info_fields(name, &info)?;
    }
    Ok(ValidEvent { name: &event.name, data: &event.data, channels, except, info })
}

/// Deliver a validated event; returns the per-channel info asked for, if any.
async fn deliver(
    server: &ServerState,
    app: &App,
    event: &ValidEvent<'_>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    for name in &event.channels {
        let frame = bytes::Bytes::from(encode_server_frame(event.name, Some(name.as_str()), Some(event.data), None));
        let publish = Publish { channel: name.as_str(), frame, except_socket_id: event.except, remember: true };
        server.adapter.publish(app, publish).await?;
    }
    if event.info.is_empty() {
        return Ok(None);
    }
    let mut info = Map::new();
    for name in &event.channels {
        info.insert(name.as_str().to_owned(), channel_info(server, app, name, &event.info).await?);
    }
    Ok(Some(info))
}

fn check_info_fields(name: &ChannelName<'_>, fields: &[String]) -> Result<(), ApiError> {
    for field in fields {
        match field.as_str() {
            "subscription_count" => {}
            "user_count" if name.kind() == ChannelKind::Presence => {}
            "user_count" => return Err(ApiError::bad_request("user_count is only available for presence channels")),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown info attribute {other:?} (use user_count, subscription_count)"
                )));
            }
        }
    }
    Ok(())
}

/// The info attributes of one channel; `fields` were checked with `check_info_fields`.
async fn channel_info(
    server: &ServerState,
    app: &App,
    name: &ChannelName<'_>,
    fields: &[String],
) -> Result<Value, ApiError> {
    let counts = server.adapter.channel_counts(app, name.as_str()).await?;
    let mut out = Map::new();
    for field in fields {
        match field.as_str() {
            "subscription_count" => out.insert(field.clone(), json!(counts.subscription_count)),
            _ => out.insert(field.clone(), json!(counts.user_count.unwrap_or(0))),
        };
    }
    Ok(Value::Object(out))
}

/// `POST /apps/{id}/events`
pub(crate) async fn events(
    State(server): State<Arc<ServerState>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = async {
        let app = authorize(&server, &app_id, &method, &uri, &body)?;
        let event: TriggerRequest =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid event JSON: {e}")))?;
        let valid = validate(&app, &event)?;
        Ok(match deliver(&server, &app, &valid).await? {
            Some(info) => json!({ "channels": info }),
            None => json!({}),
        })
    }
    .await;
    respond(&server, "events", result)
}

/// `POST /apps/{id}/batch_events`
pub(crate) async fn batch_events(
    State(server): State<Arc<ServerState>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = async {
        let app = authorize(&server, &app_id, &method, &uri, &body)?;
        let batch: BatchRequest =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid batch JSON: {e}")))?;
        let max = app.config.max_batch_size;
        if batch.batch.is_empty() || batch.batch.len() > max {
            return Err(ApiError::bad_request(format!("a batch holds 1 to {max} events, not {}", batch.batch.len())));
        }
        let mut valid = Vec::with_capacity(batch.batch.len());
        for (i, event) in batch.batch.iter().enumerate() {
            if event.channels.is_some() || event.channel.is_none() {
                return Err(ApiError::bad_request(format!("batch[{i}] needs exactly one channel")));
            }
            valid.push(
                validate(&app, event).map_err(|e| ApiError { message: format!("batch[{i}]: {}", e.message), ..e })?,
            );
        }
        let mut infos = Vec::with_capacity(valid.len());
        let mut any_info = false;
        for event in &valid {
            let info = deliver(&server, &app, event).await?;
            any_info |= info.is_some();
            infos.push(info.and_then(|m| m.into_iter().next().map(|(_, v)| v)).unwrap_or_else(|| json!({})));
        }
        Ok(if any_info { json!({ "batch": infos }) } else { json!({}) })
    }
    .await;
    respond(&server, "batch_events", result)
}

/// `GET /apps/{id}/channels`
pub(crate) async fn channels(
    State(server): State<Arc<ServerState>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = async {
        let app = authorize(&server, &app_id, &method, &uri, &body)?;
        let prefix = query_param(&uri, "filter_by_prefix").unwrap_or_default();
        let fields = info_fields(query_param(&uri, "info").as_deref());
        if fields.iter().any(|f| f == "user_count") && !prefix.starts_with("presence-") {
            return Err(ApiError::bad_request("info=user_count needs filter_by_prefix=presence-"));
        }
        let mut out = Map::new();
        for (name, counts) in server.adapter.occupied_channels(&app, &prefix).await? {
            let mut info = Map::new();
            for field in &fields {
                match field.as_str() {
                    "user_count" => {
                        info.insert(field.clone(), json!(counts.user_count.unwrap_or(0)));
                    }
                    "subscription_count" => {
                        info.insert(field.clone(), json!(counts.subscription_count));
                    }
                    other => {
                        return Err(ApiError::bad_request(format!("unknown info attribute {other:?}")));
                    }
                }
            }
            out.insert(name, Value::Object(info));
        }
        Ok(json!({ "channels": out }))
    }
    .await;
    respond(&server, "channels", result)
}

/// `GET /apps/{id}/channels/{channel}`
pub(crate) async fn channel(
    State(server): State<Arc<ServerState>>,
    Path((app_id, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = async {
        let app = authorize(&server, &app_id, &method, &uri, &body)?;
        let name = ChannelName::parse(&channel).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = info_fields(query_param(&uri, "info").as_deref());
        check_info_fields(&name, &fields)?;
        let mut info = match channel_info(&server, &app, &name, &fields).await? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let occupied = server.adapter.channel_counts(&app, &channel).await?.subscription_count > 0;
        info.insert("occupied".into(), json!(occupied));
        Ok(Value::Object(info))
    }
    .await;
    respond(&server, "channel", result)
}

/// `GET /apps/{id}/channels/{channel}/users`
pub(crate) async fn channel_users(
    State(server): State<Arc<ServerState>>,
    Path((app_id, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = async {
        let app = authorize(&server, &app_id, &method, &uri, &body)?;
        let name = ChannelName::parse(&channel).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if name.kind() != ChannelKind::Presence {
            return Err(ApiError::bad_request("users are only available for presence channels"));
        }
        let users: Vec<Value> =
            server.adapter.presence_users(&app, &channel).await?.into_iter().map(|id| json!({ "id": id })).collect();
        Ok(json!({ "users": users }))
    }
    .await;
    respond(&server, "users", result)
}

/// `POST /apps/{id}/users/{user}/terminate_connections`
pub(crate) async fn terminate_connections(
    State(server): State<Arc<ServerState>>,
    Path((app_id, user_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = async {
        let app = authorize(&server, &app_id, &method, &uri, &body)?;
        server.adapter.terminate_user(&app, &user_id).await?;
        tracing::info!(app = %app.config.id, user = %user_id, "terminated user connections");
        Ok(json!({}))
    }
    .await;
    respond(&server, "terminate_connections", result)
}

/// `GET /up`
pub(crate) async fn up(State(server): State<Arc<ServerState>>) -> Response {
    respond(&server, "up", Ok(json!({ "health": "OK" })))
}

/// `GET /metrics`
pub(crate) async fn metrics(State(server): State<Arc<ServerState>>) -> Response {
    let body = server.metrics.render();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

/// Any other path.
pub(crate) async fn not_found(uri: Uri) -> Response {
    ApiError::new(StatusCode::NOT_FOUND, format!("No route for {}", uri.path())).into_response()
}
