//! Authorization through a Laravel-style HTTP endpoint, a closure, and the local secret —
//! and every way the endpoint can fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use switchboard::{ChannelAuth, Client, ErrorKind, FnAuthorizer, HttpAuthorizer, PresenceUser};
use switchboard_protocol::signature::sign_channel;

use crate::common::*;

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(HashMapLike, Option<String>)>>,
}
type HashMapLike = Vec<(String, String)>;

async fn authorize(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Form(form): Form<HashMapLike>,
) -> impl IntoResponse {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    seen.requests.lock().expect("lock").push((form.clone(), bearer.clone()));
    if bearer.as_deref() != Some("Bearer good-token") {
        return (StatusCode::FORBIDDEN, "{\"message\":\"Unauthenticated.\"}").into_response();
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (socket_id, channel) = (get("socket_id"), get("channel_name"));
    if channel.starts_with("presence-") {
        let channel_data = json!({"user_id": 7, "user_info": {"name": "Laravel user"}}).to_string();
        let auth = sign_channel(KEY, SECRET, &socket_id, &channel, Some(&channel_data));
        axum::Json(json!({"auth": auth, "channel_data": channel_data})).into_response()
    } else {
        axum::Json(json!({"auth": sign_channel(KEY, SECRET, &socket_id, &channel, None)})).into_response()
    }
}

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "{}"
}

async fn not_json() -> &'static str {
    "<html>login</html>"
}

async fn endpoint() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let router = axum::Router::new()
        .route("/broadcasting/auth", axum::routing::post(authorize))
        .route("/hang", axum::routing::post(hang))
        .route("/html", axum::routing::post(not_json))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, seen)
}

async fn client_with(server: &switchboard_server::RunningServer, auth: HttpAuthorizer) -> Client {
    let options = options_for(server.local_addr()).authorizer(auth).build().expect("options");
    Client::connect(options).await.expect("connects")
}

#[tokio::test]
async fn laravel_endpoint_authorizes_private_and_presence() {
    let server = server().await;
    let (base, seen) = endpoint().await;
    let auth = HttpAuthorizer::new(format!("{base}/broadcasting/auth")).bearer_token("good-token").param("extra", "1");
    let client = client_with(&server, auth).await;
    client.subscribe("private-orders.1").await.expect("private");
    let presence = client.subscribe("presence-room").await.expect("presence");
    let me = presence.members().me().expect("me");
    assert_eq!(me.id, "7", "integer ids from Laravel become strings");
    assert_eq!(me.info["name"], "Laravel user");
    let requests = seen.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2);
    let (form, bearer) = &requests[0];
    assert_eq!(bearer.as_deref(), Some("Bearer good-token"));
    let socket_id = client.socket_id().expect("socket");
    assert!(form.contains(&("socket_id".into(), socket_id)));
    assert!(form.contains(&("channel_name".into(), "private-orders.1".into())));
    assert!(form.contains(&("extra".into(), "1".into())));
    server.shutdown().await;
}

#[tokio::test]
async fn a_403_is_an_authentication_error_with_status_and_body() {
    let server = server().await;
    let (base, _) = endpoint().await;
    let client =
        client_with(&server, HttpAuthorizer::new(format!("{base}/broadcasting/auth")).bearer_token("bad")).await;
    let mut global = client.events();
    let err = client.subscribe("private-secret").await.expect_err("refused");
    assert_eq!((err.kind(), err.status()), (ErrorKind::Authentication, Some(403)));
    assert!(err.body().expect("body").contains("Unauthenticated"));
    let event = next_named(&mut global, "pusher:subscription_error").await;
    assert_eq!(event.json::<serde_json::Value>().expect("json")["status"], 403);
    // The failure is not sticky: a later subscribe asks again.
    let err = client.subscribe("private-secret").await.expect_err("still refused");
    assert_eq!(err.status(), Some(403));
    assert!(matches!(client.state(), switchboard::ConnectionState::Connected { .. }));
    server.shutdown().await;
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_and_a_dead_one_is_retried_then_reported() {
    let server = server().await;
    let (base, _) = endpoint().await;
    let auth = HttpAuthorizer::new(format!("{base}/hang")).timeout(Duration::from_millis(300)).attempts(2);
    let client = client_with(&server, auth).await;
    let started = tokio::time::Instant::now();
    let err = client.subscribe("private-slow").await.expect_err("times out");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < WAIT);

    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }; // nothing listens there any more
    let client = client_with(&server, HttpAuthorizer::new(format!("http://{dead}/auth")).attempts(3)).await;
    let err = client.subscribe("private-down").await.expect_err("down");
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert!(err.to_string().contains("attempt 3/3"), "{err}");

    let client = client_with(&server, HttpAuthorizer::new(format!("{base}/html"))).await;
    let err = client.subscribe("private-html").await.expect_err("not json");
    assert_eq!((err.kind(), err.status()), (ErrorKind::Authentication, Some(200)));
    server.shutdown().await;
}

#[tokio::test]
async fn closure_authorizer_and_missing_authorizer() {
    let server = server().await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let auth = FnAuthorizer::new(move |req| {
        log.lock().expect("lock").push(req.socket_id.clone());
        async move {
            Ok(ChannelAuth {
                auth: sign_channel(KEY, SECRET, &req.socket_id, &req.channel, None),
                channel_data: None,
                shared_secret: None,
            })
        }
    });
    let options = options_for(server.local_addr()).authorizer(auth).build().expect("options");
    let client = Client::connect(options).await.expect("connects");
    client.subscribe("private-fn").await.expect("authorized by closure");
    assert_eq!(calls.lock().expect("lock").clone(), vec![client.socket_id().expect("socket")]);

    let bare = Client::connect(options_for(server.local_addr()).build().expect("options")).await.expect("connects");
    let err = bare.subscribe("private-x").await.expect_err("no authorizer");
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(err.to_string().contains("secret"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_signature_is_a_subscription_error_from_the_server() {
    let server = server().await;
    let options = options_for(server.local_addr()).secret("wrong-secret").build().expect("options");
    let client = Client::connect(options).await.expect("connects");
    let err = client.subscribe("private-x").await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Subscription);
    assert_eq!(err.code(), Some(401));
    let err = client.subscribe_presence("presence-x", PresenceUser::new("1", json!(null))).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Subscription);
    server.shutdown().await;
}
