//! `switchboard serve`: a Pusher Channels protocol v7 server (a drop-in for Laravel Reverb
//! in development and small production).
//!
//! One port serves the WebSocket endpoint `/app/{key}` and the signed HTTP API
//! `/apps/{id}/…`, both under an optional path prefix, plus `/up` and `/metrics`.
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
pub mod app;
pub mod config;
mod connection;
pub mod connection_handle;
pub mod http_api;
pub mod metrics;
pub mod phoenix;
pub mod state;
mod upgrade;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

pub use adapter::{Adapter, LocalAdapter};
pub use app::App;
pub use config::{AppConfig, ClientEventPolicy, ConfigError, ServerConfig, WebhookConfig};
pub use metrics::Metrics;
use state::ServerState;
use webhooks::WebhookSender;

/// Largest HTTP API request body.
const MAX_HTTP_BODY: usize = 1024 * 1024;

/// Why the server could not start.
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
}

/// Entry point: builds the router and starts listening.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Validate `config`, bind, and serve in the background.
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        Self::start_with_adapter(config, Arc::new(LocalAdapter)).await
    }

    /// As [`Server::start`], with another broadcast adapter.
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
            .collect();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(ServerState::new(config, apps, adapter, metrics, shutdown_rx.clone()));
        let router = router(state.clone());
        let mut http_shutdown = shutdown_rx;
        let serve = tokio::spawn(async move {
            let stop = async move {
                let _ = http_shutdown.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                tracing::error!("HTTP server failed: {e}");
            }
        });
        Ok(RunningServer { local_addr, state, shutdown_tx, serve, webhook_tasks, webhook_stop })
    }
}

fn router(state: Arc<ServerState>) -> Router {
    let routes = Router::new()
        .route("/app/{key}", get(upgrade::websocket))
        .route("/socket/websocket", get(upgrade::phoenix_websocket))
        .route("/apps/{app_id}/events", post(http_api::events))
        .route("/apps/{app_id}/batch_events", post(http_api::batch_events))
        .route("/apps/{app_id}/channels", get(http_api::channels))
        .route("/apps/{app_id}/channels/{channel}", get(http_api::channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(http_api::channel_users))
        .route("/apps/{app_id}/users/{user_id}/terminate_connections", post(http_api::terminate_connections))
        .route("/up", get(http_api::up))
        .route("/metrics", get(http_api::metrics))
        .fallback(http_api::not_found)
        .layer(DefaultBodyLimit::max(MAX_HTTP_BODY));
    let prefix = state.config.path.clone();
    let routes = routes.with_state(state);
    if prefix.is_empty() { routes } else { Router::new().nest(&prefix, routes).fallback(http_api::not_found) }
}

/// A server running in the background.
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
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The app with id `id`, for inspecting live state.
    pub fn app(&self, id: &str) -> Option<Arc<App>> {
        self.state.apps_by_id.get(id).cloned()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The Phoenix rooms (`/socket/websocket`).
    pub fn phoenix_rooms(&self) -> Arc<phoenix::Rooms> {
        self.state.phoenix.clone()
    }

    /// Close every socket with `pusher:error` 4200 and a 4200 close (clients reconnect at
    /// once, elsewhere), stop accepting, and wait up to the grace period for sockets to end;
    /// then deliver the webhooks those closes caused (member_removed, channel_vacated),
    /// again within the grace period.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        self.state.tasks.close();
        let grace = Duration::from_secs(self.state.config.shutdown_grace);
        if tokio::time::timeout(grace, self.state.tasks.wait()).await.is_err() {
            tracing::warn!("some sockets did not close within {grace:?}");
        }
        let _ = tokio::time::timeout(grace, self.serve).await;
        let _ = self.webhook_stop.send(true);
        self.webhook_tasks.close();
        if tokio::time::timeout(grace, self.webhook_tasks.wait()).await.is_err() {
            tracing::warn!("some webhooks were not delivered within {grace:?}");
        }
    }

    /// Run until SIGTERM or Ctrl-C, then shut down as [`RunningServer::shutdown`] does.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down: closing every socket with 4200");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
