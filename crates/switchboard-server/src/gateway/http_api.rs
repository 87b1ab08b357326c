//! The gateway's admin HTTP API (`realtime-forum` demos), authenticated with a Bearer JWT
//! signed with the app's `gateway_admin_key` (the app secret when unset):
//!
//! | call | grant | body | answer |
//! |---|---|---|---|
//! | `POST /api/topics/{app}/publish` | `realtime:publisher:write:topic:<topic>` | `{topic, message, messageType?, compress?}` | `{"delivered": n, "id": …}` |
//! | `POST /api/topics/{app}/unsubscribe` | `realtime:admin:manage:subscribers` | `{topicPatterns: [≤ 50], subject}` | `{"unsubscribed": n}` |
//! | `DELETE /api/connections/{app}` | `realtime:admin:manage:connections` | — | `{"closed": n}` |
//! | `DELETE /api/connections/{app}/{id}` | same | — | `{"closed": n}` |
//!
//! Errors are JSON `{"error": …}`: 401 (no or bad token), 403 (a grant is missing), 404
//! (unknown app), 400 (bad body). A published message is delivered as messageType
//! `broadcast` unless the body names one, with `data: {client: {subject}, id, payload}`.
//! Closed connections get 1008 "Connection terminated".
//!
//! ```
//! use switchboard_protocol::gateway::jwt::{self, Algorithm};
//! // The admin token a backend sends as `Authorization: Bearer …`.
//! let admin = jwt::sign(&serde_json::json!({"permissions": ["realtime:admin:manage:connections"]}), b"app-secret", Algorithm::Hs256);
//! assert_eq!(admin.matches('.').count(), 2);
//! ```

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use switchboard_protocol::gateway::frames::{DEFAULT_MESSAGE_TYPE, Sender, delivery_frame};
use switchboard_protocol::gateway::jwt::{self, VerifiedToken};
use switchboard_protocol::gateway::{MANAGE_CONNECTIONS, MANAGE_SUBSCRIBERS};

use super::Outgoing;
use super::upgrade::unix_now;
use crate::metrics::HttpLabels;
use crate::pusher::app::App;
use crate::state::ServerState;

/// Most topic patterns one unsubscribe may name.
pub const MAX_TOPIC_PATTERNS: usize = 50;

type ApiResult = Result<serde_json::Value, (StatusCode, String)>;

/// A cluster that could not answer: 503 with the reason (never a local-only answer).
fn unavailable(e: crate::adapter::AdapterError) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn respond(server: &ServerState, endpoint: &'static str, result: ApiResult) -> Response {
    let response = match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err((status, error)) => (status, axum::Json(json!({ "error": error }))).into_response(),
    };
    server.metrics.http_requests.get_or_create(&HttpLabels { endpoint, status: response.status().as_u16() }).inc();
    response
}

/// The app and the verified admin token of a request.
fn authorize(
    server: &ServerState,
    app_id: &str,
    headers: &HeaderMap,
) -> Result<(Arc<App>, VerifiedToken), (StatusCode, String)> {
    let app =
        server.apps_by_id.get(app_id).cloned().ok_or((StatusCode::NOT_FOUND, format!("no app has id {app_id:?}")))?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or((StatusCode::UNAUTHORIZED, "send the admin token as Authorization: Bearer <JWT>".into()))?;
    let key = app.config.gateway_admin_key.as_deref().unwrap_or(&app.config.secret);
    let verified =
        jwt::verify(token.trim(), key.as_bytes(), unix_now()).map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))?;
    Ok((app, verified))
}

fn require(token: &VerifiedToken, permission: &str) -> Result<(), (StatusCode, String)> {
    if token.permissions.has(permission) {
        Ok(())
    } else {
        Err((StatusCode::FORBIDDEN, format!("the token lacks {permission}")))
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, (StatusCode, String)> {
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

#[derive(Deserialize)]
struct PublishBody<'a> {
    topic: String,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(rename = "messageType")]
    message_type: Option<String>,
    #[serde(default)]
    compress: bool,
}

/// `POST /api/topics/{app}/publish`
pub(crate) async fn publish(
    State(server): State<Arc<ServerState>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (app, token) = authorize(&server, &app_id, &headers)?;
        let body: PublishBody<'_> = parse(&body)?;
        if body.topic.is_empty() {
            return Err((StatusCode::BAD_REQUEST, "topic is empty".into()));
        }
        if !token.permissions.may_publish(&body.topic) {
            return Err((StatusCode::FORBIDDEN, format!("the token may not publish to {:?}", body.topic)));
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let sender = Sender { connection_id: None, subject: token.subject.as_deref(), permissions: None };
        let null =
            RawValue::from_string("null".into()).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let payload = body.message.unwrap_or(&null);
        let message_type = body.message_type.as_deref().unwrap_or(DEFAULT_MESSAGE_TYPE);
        let frame = delivery_frame(&body.topic, message_type, &sender, Some(&id), payload);
        let frame = Outgoing { frame: frame.into(), binary: body.compress };
        let delivered = server.adapter.gateway_publish(&app, &body.topic, &frame, None).await.map_err(unavailable)?;
        server.metrics.gateway_messages.inc();
        server.metrics.gateway_deliveries.inc_by(delivered as u64);
        Ok(json!({ "delivered": delivered, "id": id }))
    }
    .await;
    respond(&server, "gateway_publish", result)
}

#[derive(Deserialize)]
struct UnsubscribeBody {
    #[serde(rename = "topicPatterns")]
    topic_patterns: Vec<String>,
    subject: String,
}

/// `POST /api/topics/{app}/unsubscribe`
pub(crate) async fn unsubscribe(
    State(server): State<Arc<ServerState>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (app, token) = authorize(&server, &app_id, &headers)?;
        require(&token, MANAGE_SUBSCRIBERS)?;
        let body: UnsubscribeBody = parse(&body)?;
        if body.topic_patterns.is_empty() || body.topic_patterns.len() > MAX_TOPIC_PATTERNS {
            return Err((StatusCode::BAD_REQUEST, format!("topicPatterns takes 1 to {MAX_TOPIC_PATTERNS} patterns")));
        }
        let unsubscribed =
            server.adapter.gateway_unsubscribe(&app, &body.subject, &body.topic_patterns).await.map_err(unavailable)?;
        Ok(json!({ "unsubscribed": unsubscribed }))
    }
    .await;
    respond(&server, "gateway_unsubscribe", result)
}

/// `DELETE /api/connections/{app}`
pub(crate) async fn close_all(
    State(server): State<Arc<ServerState>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = close(&server, &app_id, None, &headers).await;
    respond(&server, "gateway_connections", result)
}

/// `DELETE /api/connections/{app}/{id}`
pub(crate) async fn close_one(
    State(server): State<Arc<ServerState>>,
    Path((app_id, connection_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = close(&server, &app_id, Some(&connection_id), &headers).await;
    respond(&server, "gateway_connections", result)
}

async fn close(server: &ServerState, app_id: &str, connection_id: Option<&str>, headers: &HeaderMap) -> ApiResult {
    let (app, token) = authorize(server, app_id, headers)?;
    require(&token, MANAGE_CONNECTIONS)?;
    let closed =
        server.adapter.gateway_close(&app, connection_id, 1008, "Connection terminated").await.map_err(unavailable)?;
    Ok(json!({ "closed": closed }))
}
