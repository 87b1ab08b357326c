//! The WebSocket endpoint `/app/{key}`: checks the HTTP upgrade, answers 101 through axum,
//! and hands the upgraded stream to tokio-websockets (chosen in websocket-stack.md for its
//! strict Autobahn conformance, `Bytes` payloads and small per-socket buffers).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use switchboard_protocol::ErrorCode;
use switchboard_protocol::phoenix::Vsn;
use tokio_websockets::{Limits, ServerBuilder};

use crate::state::ServerState;
use crate::{connection, phoenix};

/// Frames larger than this are cut off at the transport (close 1009). Frames between the
/// app's `max_message_size` and this get a `pusher:error` and the socket lives on.
const TRANSPORT_LIMIT_FACTOR: usize = 4;
const MIN_TRANSPORT_LIMIT: usize = 64 * 1024;

/// `GET /app/{key}`: upgrade to a Pusher WebSocket.
pub(crate) async fn websocket(
    State(server): State<Arc<ServerState>>,
    Path(key): Path<String>,
    mut req: Request,
) -> Response {
    let accept = match accept_key(req.headers()) {
        Ok(accept) => accept,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let app = server.apps_by_key.get(&key).cloned();
    let limit = app
        .as_ref()
        .map_or(MIN_TRANSPORT_LIMIT, |a| (a.config.max_message_size * TRANSPORT_LIMIT_FACTOR).max(MIN_TRANSPORT_LIMIT));
    let state = server.clone();
    server.tasks.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!("upgrade failed: {e}");
                return;
            }
        };
        let ws =
            ServerBuilder::new().limits(Limits::default().max_payload_len(Some(limit))).serve(TokioIo::new(upgraded));
        let Some(app) = app else {
            return connection::refuse(
                ws,
                ErrorCode::APP_NOT_FOUND,
                &format!("Application does not exist: no app has key {key:?}"),
            )
            .await;
        };
        if *state.shutdown.borrow() {
            return connection::refuse(ws, ErrorCode::RECONNECT, "Server is shutting down; reconnect").await;
        }
        if !state.try_add_connection() {
            return connection::refuse(
                ws,
                ErrorCode::OVER_CAPACITY,
                "Over capacity: the server is at its connection limit",
            )
            .await;
        }
        if !app.try_add_connection() {
            state.release_connection();
            return connection::refuse(ws, ErrorCode::OVER_QUOTA, "Application is over its connection quota").await;
        }
        connection::serve(ws, app, state).await;
    });
    switching_protocols(accept, None)
}

/// `GET /socket/websocket`: upgrade to a Phoenix Channels socket (`vsn` picks the
/// serializer; none means V1, as Phoenix does). The `authToken` subprotocol is accepted and
/// answered with `phoenix`.
pub(crate) async fn phoenix_websocket(
    State(server): State<Arc<ServerState>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let accept = match accept_key(req.headers()) {
        Ok(accept) => accept,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let Some(vsn) = Vsn::from_query(query.get("vsn").map(String::as_str)) else {
        return (StatusCode::FORBIDDEN, "unsupported vsn: use 2.0.0 or 1.0.0").into_response();
    };
    if *server.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down").into_response();
    }
    // The server-wide quota covers every protocol's sockets. Phoenix has no error frame
    // for it, so it is refused before the upgrade (phoenix.js retries with its backoff).
    if !server.try_add_connection() {
        return (StatusCode::SERVICE_UNAVAILABLE, "over capacity: the server is at its connection limit")
            .into_response();
    }
    let wants_phoenix_protocol = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|p| p.trim() == "phoenix")));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state = server.clone();
    server.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            state.release_connection();
            return;
        };
        let ws = ServerBuilder::new()
            .limits(Limits::default().max_payload_len(Some(MIN_TRANSPORT_LIMIT)))
            .serve(TokioIo::new(upgraded));
        phoenix::serve(ws, vsn, state).await;
    });
    switching_protocols(accept, wants_phoenix_protocol.then_some("phoenix"))
}

fn switching_protocols(accept: HeaderValue, protocol: Option<&'static str>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(protocol) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    response
}

/// Validate the upgrade request and compute `Sec-WebSocket-Accept` (RFC 6455 §4.2.2).
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err("This endpoint speaks WebSocket: send an Upgrade: websocket request");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or("Sec-WebSocket-Key is missing")?;
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    HeaderValue::from_str(&accept).map_err(|_| "Sec-WebSocket-Key is invalid")
}
