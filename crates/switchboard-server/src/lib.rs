//! `switchboard serve`: a Pusher Channels protocol v7 server (a drop-in for Laravel Reverb
//! in development and small production).
//!
//! One port serves the WebSocket endpoint `/app/{key}` and the signed HTTP API
//! `/apps/{id}/…`, both under an optional path prefix, plus `/up` and `/metrics`, and the
//! Phoenix endpoint `/socket/websocket`, and the Realtime Pub/Sub gateway's `/apps/{id}`
//! (a token in `access_token`) with its admin API under `/api/`.
//!
//! # Layout
//!
//! One module per protocol, holding only that protocol's rules: [`pusher`] (the socket
//! task, channels and presence, the HTTP API, webhooks), [`phoenix`] (rooms and Presence)
//! and [`gateway`] (topics, acks, replies, its admin API). The rest is shared by every
//! protocol: the [`adapter`] all fan-out and queries go through, [`config`], [`metrics`], the
//! server [`state`], the [`connection_handle`] other tasks hold for a socket, the HTTP accept
//! loop, and the WebSocket upgrade, write and close rules.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_server::ServerError> {
//! use switchboard_server::{Server, ServerConfig};
//! let running = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
//! println!("listening on {}", running.local_addr());
//! running.shutdown().await; // closes every socket with 4200 so clients reconnect elsewhere
//! # Ok(()) }
//! ```

pub mod adapter;
mod bus_gate;
pub mod config;
pub mod connection_handle;
mod fanout;
pub mod gateway;
mod http_server;
pub mod metrics;
pub mod phoenix;
pub mod pusher;
pub mod realtimex;
pub mod scaling;
pub mod state;
mod upgrade;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

pub use adapter::{Adapter, LocalAdapter};
pub use config::{AppConfig, ClientEventPolicy, ConfigError, ScalingConfig, ServerConfig, WebhookConfig};
pub use metrics::Metrics;
pub use pusher::app::App;
use pusher::webhooks::WebhookSender;
use state::ServerState;

/// Largest HTTP API request body.
const MAX_HTTP_BODY: usize = 1024 * 1024;

/// Why the server could not start.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_server::{Server, ServerConfig, ServerError};
///
/// let no_apps = ServerConfig { port: 0, apps: vec![], ..ServerConfig::default() };
/// assert!(matches!(Server::start(no_apps).await, Err(ServerError::Config(_))));
///
/// let first = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// let taken = ServerConfig { port: first.local_addr().port(), ..ServerConfig::default() };
/// assert!(matches!(Server::start(taken).await, Err(ServerError::Bind { .. })));
/// first.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Scaling is on and the cluster could not be joined (Redis did not answer).
    #[error("cannot join the cluster: {0}")]
    Scaling(#[from] adapter::AdapterError),
}

/// Entry point: builds the router and starts listening.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_server::{Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// let up = reqwest::get(format!("http://{}/up", server.local_addr())).await?;
/// assert!(up.status().is_success());
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Validate `config`, bind, and serve in the background.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{AppConfig, Server, ServerConfig};
    ///
    /// let app =
    ///     AppConfig { id: "7".into(), key: "my-key".into(), secret: "my-secret".into(), ..AppConfig::default() };
    /// let server = Server::start(ServerConfig { port: 0, apps: vec![app], ..ServerConfig::default() }).await?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// assert_eq!(server.app("7").map(|app| app.config.key.clone()).as_deref(), Some("my-key"));
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        let adapter: Arc<dyn Adapter> = if config.scaling.enabled {
            Arc::new(scaling::RedisAdapter::connect(&config.scaling).await?)
        } else {
            Arc::new(LocalAdapter)
        };
        Self::start_with_adapter(config, adapter).await
    }

    /// As [`Server::start`], with another broadcast adapter.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use std::sync::Arc;
    /// use switchboard_server::{Adapter, LocalAdapter, Server, ServerConfig};
    ///
    /// let adapter: Arc<dyn Adapter> = Arc::new(LocalAdapter);
    /// let config = ServerConfig { port: 0, ..ServerConfig::default() };
    /// let server = Server::start_with_adapter(config, adapter.clone()).await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// assert!(adapter.occupied_channels(&app, "").await?.is_empty());
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub async fn start_with_adapter(
        config: ServerConfig,
        adapter: Arc<dyn Adapter>,
    ) -> Result<RunningServer, ServerError> {
        config.validate()?;
        let addr = config.bind_addr()?;
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        let metrics = Arc::new(Metrics::default());
        let webhook_tasks = TaskTracker::new();
        let (webhook_stop, webhook_stop_rx) = watch::channel(false);
        let apps = config
            .apps
            .iter()
            .map(|app| {
                let hooks = WebhookSender::start(
                    app.key.clone(),
                    app.secret.clone(),
                    app.webhooks.clone(),
                    metrics.clone(),
                    &webhook_tasks,
                    webhook_stop_rx.clone(),
                );
                Arc::new(App::new(app.clone(), hooks, metrics.clone()))
            })
            .collect::<Vec<_>>();
        let rooms = Arc::new(phoenix::Rooms::default());
        adapter.start(&apps, &rooms, &metrics).await?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(ServerState::new(config, apps, rooms, adapter, metrics, shutdown_rx.clone()));
        let router = router(state.clone());
        let limits = http_server::HttpLimits::of(&state.config);
        let serve = tokio::spawn(http_server::serve(listener, router, limits, state.metrics.clone(), shutdown_rx));
        Ok(RunningServer { local_addr, state, shutdown_tx, serve, webhook_tasks, webhook_stop })
    }
}

fn router(state: Arc<ServerState>) -> Router {
    let realtimex_path = state.config.realtimex_path.clone();
    let routes = Router::new()
        .route("/app/{key}", get(pusher::upgrade::websocket))
        .route("/socket/websocket", get(phoenix::upgrade::phoenix_websocket))
        .route("/apps/{app_id}", get(gateway::upgrade::websocket))
        .route("/api/topics/{app_id}/publish", post(gateway::http_api::publish))
        .route("/api/topics/{app_id}/unsubscribe", post(gateway::http_api::unsubscribe))
        .route("/api/connections/{app_id}", delete(gateway::http_api::close_all))
        .route("/api/connections/{app_id}/{connection_id}", delete(gateway::http_api::close_one))
        .route("/apps/{app_id}/events", post(pusher::http_api::events))
        .route("/apps/{app_id}/batch_events", post(pusher::http_api::batch_events))
        .route("/apps/{app_id}/channels", get(pusher::http_api::channels))
        .route("/apps/{app_id}/channels/{channel}", get(pusher::http_api::channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(pusher::http_api::channel_users))
        .route("/apps/{app_id}/users/{user_id}/terminate_connections", post(pusher::http_api::terminate_connections))
        .route(&realtimex_path, get(realtimex::upgrade::websocket))
        .route(&format!("{realtimex_path}/"), get(realtimex::upgrade::websocket))
        .route("/up", get(pusher::http_api::up))
        .route("/metrics", get(pusher::http_api::metrics))
        .fallback(pusher::http_api::not_found)
        .layer(DefaultBodyLimit::max(MAX_HTTP_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http_server::request_deadline));
    let prefix = state.config.path.clone();
    let routes = routes.with_state(state);
    if prefix.is_empty() { routes } else { Router::new().nest(&prefix, routes).fallback(pusher::http_api::not_found) }
}

/// A server running in the background.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_server::{Server, ServerConfig};
///
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// assert!(server.local_addr().ip().is_loopback());
/// assert!(server.app("1000").is_some());
/// assert_eq!(server.metrics().connections_total.get(), 0);
/// assert!(server.phoenix_rooms().usernames("room:lobby").is_empty());
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    state: Arc<ServerState>,
    shutdown_tx: watch::Sender<bool>,
    serve: JoinHandle<()>,
    webhook_tasks: TaskTracker,
    webhook_stop: watch::Sender<bool>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState").field("apps", &self.apps_by_id.len()).finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The bound address (useful with port 0).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let addr = server.local_addr();
    /// assert_ne!(addr.port(), 0, "port 0 was replaced by the one the OS picked");
    /// let websocket_url = format!("ws://{addr}/app/switchboard-key?protocol=7");
    /// assert!(websocket_url.starts_with("ws://127.0.0.1:"));
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The app with id `id`, for inspecting live state.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let app = server.app("1000").ok_or("the development app")?;
    /// assert_eq!((app.config.key.as_str(), app.connection_count()), ("switchboard-key", 0));
    /// assert!(server.app("999").is_none());
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn app(&self, id: &str) -> Option<Arc<App>> {
        self.state.apps_by_id.get(id).cloned()
    }

    /// The server's metrics.
    ///
    /// ```
    /// # use futures_util::{SinkExt as _, StreamExt as _};
    /// # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
    /// # // The next text frame from the server ("" once the socket has ended).
    /// # async fn next_text(ws: &mut Ws) -> String {
    /// #     while let Some(Ok(message)) = ws.next().await {
    /// #         if let Some(text) = message.as_text() {
    /// #             return text.to_owned();
    /// #         }
    /// #     }
    /// #     String::new()
    /// # }
    /// # // Connect a Pusher client to the development app; returns it with its socket id.
    /// # async fn connect(
    /// #     server: &switchboard_server::RunningServer,
    /// # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
    /// #     let key = switchboard_server::config::DEV_APP_KEY;
    /// #     let url = format!("ws://{}/app/{key}?protocol=7", server.local_addr());
    /// #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
    /// #     let frame = switchboard_protocol::Frame::decode(&next_text(&mut ws).await)?;
    /// #     let data: switchboard_protocol::messages::ConnectionEstablished = frame.data.parse()?;
    /// #     Ok((ws, data.socket_id))
    /// # }
    /// # // Send `pusher:subscribe` with `data`; returns the server's answer.
    /// # async fn subscribe(ws: &mut Ws, data: serde_json::Value) -> Result<String, Box<dyn std::error::Error>> {
    /// #     let frame = serde_json::json!({ "event": "pusher:subscribe", "data": data });
    /// #     ws.send(tokio_websockets::Message::text(frame.to_string())).await?;
    /// #     Ok(next_text(ws).await)
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let (ws, _) = connect(&server).await?;
    /// let metrics = server.metrics();
    /// assert_eq!(metrics.connections_total.get(), 1);
    /// assert!(metrics.render().contains("switchboard_connections 1"));
    /// drop(ws);
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The Phoenix rooms (`/socket/websocket`).
    ///
    /// ```
    /// # use futures_util::{SinkExt as _, StreamExt as _};
    /// # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
    /// # // Connect to /socket/websocket (serializer V2) and join `topic` as `username`;
    /// # // returns the socket and the reply.
    /// # async fn phx_join(
    /// #     server: &switchboard_server::RunningServer,
    /// #     topic: &str,
    /// #     username: &str,
    /// # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
    /// #     let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.local_addr());
    /// #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
    /// #     let join = serde_json::json!(["1", "1", topic, "phx_join", { "username": username }]);
    /// #     ws.send(tokio_websockets::Message::text(join.to_string())).await?;
    /// #     while let Some(message) = ws.next().await {
    /// #         if let Some(text) = message?.as_text() {
    /// #             return Ok((ws, text.to_owned()));
    /// #         }
    /// #     }
    /// #     Err("socket closed".into())
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let (ws, reply) = phx_join(&server, "room:lobby", "ada").await?;
    /// assert!(reply.contains("phx_reply") && reply.contains(r#""status":"ok""#), "{reply}");
    /// assert_eq!(server.phoenix_rooms().usernames("room:lobby"), ["ada"]);
    /// drop(ws);
    /// server.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub fn phoenix_rooms(&self) -> Arc<phoenix::Rooms> {
        self.state.phoenix.clone()
    }

    /// Close every socket with `pusher:error` 4200 and a 4200 close (clients reconnect at
    /// once, elsewhere), stop accepting, and wait up to the grace period for sockets to end;
    /// then deliver the webhooks those closes caused (member_removed, channel_vacated),
    /// again within the grace period.
    ///
    /// ```
    /// # use futures_util::{SinkExt as _, StreamExt as _};
    /// # type Ws = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;
    /// # // The next text frame from the server ("" once the socket has ended).
    /// # async fn next_text(ws: &mut Ws) -> String {
    /// #     while let Some(Ok(message)) = ws.next().await {
    /// #         if let Some(text) = message.as_text() {
    /// #             return text.to_owned();
    /// #         }
    /// #     }
    /// #     String::new()
    /// # }
    /// # // Connect a Pusher client to the development app; returns it with its socket id.
    /// # async fn connect(
    /// #     server: &switchboard_server::RunningServer,
    /// # ) -> Result<(Ws, String), Box<dyn std::error::Error>> {
    /// #     let key = switchboard_server::config::DEV_APP_KEY;
    /// #     let url = format!("ws://{}/app/{key}?protocol=7", server.local_addr());
    /// #     let (mut ws, _) = tokio_websockets::ClientBuilder::new().uri(&url)?.connect().await?;
    /// #     let frame = switchboard_protocol::Frame::decode(&next_text(&mut ws).await)?;
    /// #     let data: switchboard_protocol::messages::ConnectionEstablished = frame.data.parse()?;
    /// #     Ok((ws, data.socket_id))
    /// # }
    /// # // Send `pusher:subscribe` with `data`; returns the server's answer.
    /// # async fn subscribe(ws: &mut Ws, data: serde_json::Value) -> Result<String, Box<dyn std::error::Error>> {
    /// #     let frame = serde_json::json!({ "event": "pusher:subscribe", "data": data });
    /// #     ws.send(tokio_websockets::Message::text(frame.to_string())).await?;
    /// #     Ok(next_text(ws).await)
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
    /// use switchboard_server::{Server, ServerConfig};
    ///
    /// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
    /// let (mut ws, _) = connect(&server).await?;
    /// // Read concurrently, as a real client does, so the close handshake completes.
    /// let client = tokio::spawn(async move {
    ///     let mut seen = Vec::new();
    ///     while let Some(Ok(message)) = ws.next().await {
    ///         if let Some(text) = message.as_text() {
    ///             seen.push(text.to_owned());
    ///         }
    ///         if let Some((code, _)) = message.as_close() {
    ///             seen.push(format!("close {}", u16::from(code)));
    ///         }
    ///     }
    ///     seen
    /// });
    /// server.shutdown().await;
    /// let seen = client.await?;
    /// assert!(seen[0].contains("pusher:error") && seen[0].contains("4200"), "{seen:?}");
    /// assert_eq!(seen.last().map(String::as_str), Some("close 4200"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).await?
    /// # }
    /// ```
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        self.state.tasks.close();
        let grace = Duration::from_secs(self.state.config.shutdown_grace);
        if tokio::time::timeout(grace, self.state.tasks.wait()).await.is_err() {
            tracing::warn!("some sockets did not close within {grace:?}");
        }
        let _ = tokio::time::timeout(grace, self.serve).await;
        match tokio::time::timeout(grace, self.state.adapter.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("leaving the cluster: {e}"),
            Err(_) => tracing::warn!("leaving the cluster took longer than {grace:?}"),
        }
        let _ = self.webhook_stop.send(true);
        self.webhook_tasks.close();
        if tokio::time::timeout(grace, self.webhook_tasks.wait()).await.is_err() {
            tracing::warn!("some webhooks were not delivered within {grace:?}");
        }
    }

    /// Run until SIGTERM or Ctrl-C, then shut down as [`RunningServer::shutdown`] does.
    /// The signals are caught from this call on; to catch them earlier (while printing a
    /// banner, say), take [`shutdown_signal`] first and use [`RunningServer::run_until`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard_server::ServerError> {
    /// use switchboard_server::{Server, ServerConfig};
    /// let config = ServerConfig::default().with_env(|name| std::env::var(name).ok())?;
    /// // Serves until SIGTERM or Ctrl-C, then closes every socket with 4200.
    /// Server::start(config).await?.run_until_signal().await;
    /// # Ok(()) }
    /// ```
    pub async fn run_until_signal(self) {
        self.run_until(shutdown_signal()).await;
    }

    /// Run until `stop` resolves, then shut down as [`RunningServer::shutdown`] does.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard_server::ServerError> {
    /// use switchboard_server::{Server, ServerConfig, shutdown_signal};
    /// // Caught from here on: a SIGTERM while the banner prints still shuts down cleanly.
    /// let signal = shutdown_signal();
    /// let server = Server::start(ServerConfig::default()).await?;
    /// eprintln!("listening on {}", server.local_addr());
    /// server.run_until(signal).await;
    /// # Ok(()) }
    /// ```
    pub async fn run_until(self, stop: impl Future<Output = ()>) {
        stop.await;
        tracing::info!("shutting down: closing every socket with 4200");
        self.shutdown().await;
    }
}

/// SIGTERM or Ctrl-C (SIGINT), caught from the moment this is called (not from its first
/// poll), so a signal that arrives before the server's loop runs is not the default action
/// that kills the process with its sockets open. Must be called inside a Tokio runtime.
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// let signal = switchboard_server::shutdown_signal();
/// signal.await; // the first SIGTERM or Ctrl-C
/// # }
/// ```
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("cannot listen for SIGTERM and SIGINT: {e}");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    }
}
