//! Test harness: start a server on a free 127.0.0.1 port, a raw Pusher WebSocket client,
//! and a signed HTTP API caller. Every wait is bounded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard_protocol::Frame;
use switchboard_protocol::http_auth::sign_request;
use switchboard_protocol::signature::sign_channel;
use switchboard_server::{AppConfig, RunningServer, Server, ServerConfig};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

/// Longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

pub const APP_ID: &str = "1000";
pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";

pub fn app() -> AppConfig {
    AppConfig { id: APP_ID.into(), key: KEY.into(), secret: SECRET.into(), ..AppConfig::default() }
}

pub fn config_with(app: AppConfig) -> ServerConfig {
    ServerConfig { port: 0, apps: vec![app], shutdown_grace: 2, ..ServerConfig::default() }
}

pub async fn start(config: ServerConfig) -> RunningServer {
    Server::start(config).await.expect("server starts")
}

pub async fn start_default() -> RunningServer {
    start(config_with(app())).await
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

pub fn ws_url(server: &RunningServer, key: &str) -> String {
    format!("ws://{}/app/{key}?protocol=7&client=switchboard-test&version=0.1", server.local_addr())
}

/// Connect without reading anything.
pub async fn connect_raw(url: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let builder = ClientBuilder::new().uri(url).expect("valid uri");
    let (ws, _) = tokio::time::timeout(WAIT, builder.connect()).await.expect("connect in time").expect("connect");
    ws
}

impl Client {
    /// Connect and read `pusher:connection_established`.
    pub async fn connect(server: &RunningServer) -> Client {
        Self::connect_url(&ws_url(server, KEY)).await
    }

    pub async fn connect_url(url: &str) -> Client {
        let ws = connect_raw(url).await;
        let mut client = Client { ws, socket_id: String::new() };
        let frame = client.expect("pusher:connection_established").await;
        let data: Value = frame.data.parse().expect("handshake data is JSON");
        client.socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
        client
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Next message of any kind, or None if the socket ended; panics after WAIT.
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next()).await.expect("a message in time") {
            Some(Ok(m)) => Some(m),
            _ => None,
        }
    }

    /// Next text frame, decoded (skips control frames).
    pub async fn next_frame(&mut self) -> Frame {
        loop {
            let message = self.next_message().await.expect("socket still open");
            if let Some(text) = message.as_text() {
                return Frame::decode(text).expect("server sends valid frames");
            }
            assert!(!message.is_close(), "unexpected close: {:?}", message.as_close());
        }
    }

    /// Read frames until one named `event` arrives; panics on anything else.
    pub async fn expect(&mut self, event: &str) -> Frame {
        let frame = self.next_frame().await;
        assert_eq!(frame.event, event, "unexpected frame {frame:?}");
        frame
    }

    /// Assert that no text frame arrives within `ms` milliseconds.
    pub async fn expect_silence(&mut self, ms: u64) {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(ms), self.ws.next()).await {
            assert!(!m.is_text(), "expected silence, got {:?}", m.as_text());
        }
    }

    /// Read until the server closes; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next_message().await {
                None => return None,
                Some(m) if m.is_close() => return m.as_close().map(|(code, _)| u16::from(code)),
                Some(_) => {}
            }
        }
    }

    /// Read a `pusher:error` and return its code.
    pub async fn expect_error(&mut self) -> (u16, String) {
        let frame = self.expect("pusher:error").await;
        let data: Value = frame.data.parse().expect("error data");
        (data["code"].as_u64().expect("code") as u16, data["message"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn subscribe(&mut self, channel: &str) -> Frame {
        let auth = if channel.starts_with("private-") {
            sign_channel(KEY, SECRET, &self.socket_id, channel, None)
        } else {
            String::new()
        };
        self.send_json(serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}})).await;
        self.expect("pusher_internal:subscription_succeeded").await
    }

    /// Join a presence channel as `user_id` with `info`; returns the succeeded frame.
    pub async fn join(&mut self, channel: &str, user_id: &str, info: Value) -> Frame {
        self.send_join(channel, user_id, info).await;
        self.expect("pusher_internal:subscription_succeeded").await
    }

    pub async fn send_join(&mut self, channel: &str, user_id: &str, info: Value) {
        let channel_data = serde_json::json!({"user_id": user_id, "user_info": info}).to_string();
        let auth = sign_channel(KEY, SECRET, &self.socket_id, channel, Some(&channel_data));
        self.send_json(serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":channel_data}}))
            .await;
    }

    /// Prove the connection still works: ping, expect pong.
    pub async fn assert_alive(&mut self) {
        self.send_json(serde_json::json!({"event":"pusher:ping","data":{}})).await;
        self.expect("pusher:pong").await;
    }
}

/// A signed HTTP API caller for the test app.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub key: String,
    pub secret: String,
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

impl Api {
    pub fn new(server: &RunningServer) -> Api {
        Api {
            base: format!("http://{}", server.local_addr()),
            http: reqwest::Client::new(),
            key: KEY.into(),
            secret: SECRET.into(),
        }
    }

    pub fn url(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: Option<&[u8]>,
        timestamp: i64,
    ) -> String {
        let extra: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let signed = sign_request(&self.key, &self.secret, method, path, &extra, body, timestamp);
        let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(signed).finish();
        format!("{}{path}?{query}", self.base)
    }

    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let url = self.url("GET", path, params, None, now());
        self.send(self.http.get(url)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let body = body.to_string();
        let url = self.url("POST", path, &[], Some(body.as_bytes()), now());
        self.send(self.http.post(url).header("content-type", "application/json").body(body)).await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = tokio::time::timeout(WAIT, request.send()).await.expect("HTTP in time").expect("HTTP response");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

/// Poll `check` every 20 ms until it is true or WAIT passes.
pub async fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
