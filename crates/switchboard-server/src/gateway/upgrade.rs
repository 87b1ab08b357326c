//! `GET /apps/{app_id}?access_token=JWT`: the gateway's upgrade. Everything that can be
//! refused is refused before the 101, with an HTTP status and a JSON `{"error": …}`: an
//! unknown app (404), a missing, malformed, wrongly signed, expired or not-yet-valid token
//! (401), a subject over `gateway_max_connections_per_subject` (429), a full server or app
//! (503), a server shutting down (503). ReconnectingWebSocket
//! and the SDKs retry, re-running their URL provider, which mints a fresh token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use switchboard_protocol::gateway::jwt;
use tokio_websockets::{Limits, ServerBuilder};

use crate::state::ServerState;
use crate::upgrade::{accept_key, switching_protocols};

/// The current unix time, for token checks.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn refuse(status: StatusCode, error: String) -> Response {
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

/// The upgrade handler.
pub(crate) async fn websocket(
    State(server): State<Arc<ServerState>>,
    Path(app_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let Some(app) = server.apps_by_id.get(&app_id).cloned() else {
        return refuse(StatusCode::NOT_FOUND, format!("no app has id {app_id:?}"));
    };
    let accept = match accept_key(req.headers()) {
        Ok(accept) => accept,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why.into()),
    };
    let Some(token) = query.get("access_token").filter(|t| !t.is_empty()) else {
        server.metrics.gateway_refused_tokens.inc();
        return refuse(StatusCode::UNAUTHORIZED, "access_token is missing".into());
    };
    let key = app.config.gateway_client_key.as_deref().unwrap_or(&app.config.secret);
    let verified = match jwt::verify(token, key.as_bytes(), unix_now()) {
        Ok(verified) => verified,
        Err(e) => {
            server.metrics.gateway_refused_tokens.inc();
            return refuse(StatusCode::UNAUTHORIZED, e.to_string());
        }
    };
    if *server.shutdown.borrow() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down".into());
    }
    if !server.try_add_connection() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "over capacity: the server is at its connection limit".into());
    }
    // The app's quota, counted cluster-wide when scaling is on.
    match server.adapter.acquire_connection(&app).await {
        Ok(true) => {}
        Ok(false) => {
            server.release_connection();
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the app is over its connection quota".into());
        }
        Err(e) => {
            server.release_connection();
            return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    }
    let per_subject = app.config.gateway_max_connections_per_subject;
    match server.adapter.gateway_reserve_subject(&app, verified.subject.as_deref(), per_subject).await {
        Ok(true) => {}
        Ok(false) => {
            server.adapter.release_connection(&app);
            server.release_connection();
            return refuse(StatusCode::TOO_MANY_REQUESTS, format!("the subject already has {per_subject} connections"));
        }
        Err(e) => {
            server.adapter.release_connection(&app);
            server.release_connection();
            return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    }
    let remote = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(String::new, |c| c.0.ip().to_string());
    let limit = app.config.gateway_max_message_size.max(1);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state = server.clone();
    server.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            state.adapter.gateway_release_subject(&app, verified.subject.as_deref());
            state.adapter.release_connection(&app);
            state.release_connection();
            return;
        };
        let ws =
            ServerBuilder::new().limits(Limits::default().max_payload_len(Some(limit))).serve(TokioIo::new(upgraded));
        super::connection::serve(ws, app, state, verified, remote).await;
    });
    switching_protocols(accept, None)
}
