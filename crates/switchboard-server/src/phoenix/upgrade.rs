//! The Phoenix endpoint `/socket/websocket`: checks the upgrade and the serializer, answers
//! 101 (with the `phoenix` subprotocol when asked), and hands the stream to the socket task.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use switchboard_protocol::phoenix::Vsn;
use tokio_websockets::{Limits, ServerBuilder};

use crate::state::ServerState;
use crate::upgrade::{MIN_TRANSPORT_LIMIT, accept_key, switching_protocols};

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
        super::serve(ws, vsn, state).await;
    });
    switching_protocols(accept, wants_phoenix_protocol.then_some("phoenix"))
}
