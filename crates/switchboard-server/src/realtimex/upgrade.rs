//! `GET /socket.io/?EIO=4&transport=websocket[&api_key=KEY]`: the RealtimeX upgrade. What
//! Engine.IO refuses at the HTTP level is refused here, before the 101, with its JSON error
//! body (`{"code":…,"message":…}`, HTTP 400): a transport other than `websocket` (code 0:
//! long-polling is not served), a `sid` (code 1: there are no polling sessions to upgrade),
//! an `EIO` other than 4 (code 5), a request that is no WebSocket upgrade (code 3). A full
//! or stopping server answers 503. The API key is checked at the namespace CONNECT, where
//! Socket.IO clients expect a refusal (`44{"message":"Invalid API key",…}`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use switchboard_protocol::engineio::HandshakeError;
use tokio_websockets::{Limits, ServerBuilder};

use crate::state::ServerState;
use crate::upgrade::{accept_key, switching_protocols};

/// The largest frame a RealtimeX socket may send: Engine.IO's `maxPayload` (socket.io's
/// `maxHttpBufferSize` default), announced in the open packet. Larger → close 1009.
pub(crate) const MAX_PAYLOAD: usize = 1_000_000;

fn engine_error(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The upgrade handler.
pub(crate) async fn websocket(
    State(server): State<Arc<ServerState>>,
    Query(query): Query<HashMap<String, String>>,
    mut req: Request,
) -> Response {
    if query.get("transport").map(String::as_str) != Some("websocket") {
        return engine_error(StatusCode::BAD_REQUEST, HandshakeError::UnknownTransport.body());
    }
    if query.contains_key("sid") {
        return engine_error(StatusCode::BAD_REQUEST, HandshakeError::UnknownSid.body());
    }
    if query.get("EIO").map(String::as_str) != Some("4") {
        return engine_error(StatusCode::BAD_REQUEST, HandshakeError::UnsupportedProtocolVersion.body());
    }
    let Ok(accept) = accept_key(req.headers()) else {
        return engine_error(StatusCode::BAD_REQUEST, HandshakeError::BadRequest.body());
    };
    if *server.shutdown.borrow() {
        let body = r#"{"code":3,"message":"The server is shutting down; reconnect"}"#;
        return engine_error(StatusCode::SERVICE_UNAVAILABLE, body.into());
    }
    if !server.try_add_connection() {
        let body = r#"{"code":3,"message":"Over capacity: the server is at its connection limit"}"#;
        return engine_error(StatusCode::SERVICE_UNAVAILABLE, body.into());
    }
    let api_key = query.get("api_key").filter(|k| !k.is_empty()).cloned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state = server.clone();
    server.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            state.release_connection();
            return;
        };
        let limits = Limits::default().max_payload_len(Some(MAX_PAYLOAD));
        let ws = ServerBuilder::new().limits(limits).serve(TokioIo::new(upgraded));
        super::connection::serve(ws, state, api_key).await;
    });
    switching_protocols(accept, None)
}
