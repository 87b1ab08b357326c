//! The WebSocket endpoint `/app/{key}`: checks the HTTP upgrade, answers 101, and hands the
//! upgraded stream to the Pusher socket task (refusing it with the protocol's error code
//! when the app is unknown, the server is full or shutting down).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use switchboard_protocol::ErrorCode;
use tokio_websockets::{Limits, ServerBuilder};

use super::connection;
use crate::state::ServerState;
use crate::upgrade::{MIN_TRANSPORT_LIMIT, accept_key, switching_protocols};

/// Frames larger than this are cut off at the transport (close 1009). Frames between the
/// app's `max_message_size` and this get a `pusher:error` and the socket lives on.
const TRANSPORT_LIMIT_FACTOR: usize = 4;

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
        match state.adapter.acquire_connection(&app).await {
            Ok(true) => {}
            Ok(false) => {
                state.release_connection();
                return connection::refuse(ws, ErrorCode::OVER_QUOTA, "Application is over its connection quota").await;
            }
            Err(e) => {
                state.release_connection();
                let message = format!("Server unavailable ({e}); reconnect");
                return connection::refuse(ws, ErrorCode::RECONNECT, &message).await;
            }
        }
        connection::serve(ws, app, state).await;
    });
    switching_protocols(accept, None)
}
