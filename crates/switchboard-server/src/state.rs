//! State shared by every task of one running server: the apps, the adapter, metrics,
//! the shutdown signal and the server-wide connection count.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::time::timeout(std::time::Duration::from_secs(5), async {
//! use switchboard_server::{Server, ServerConfig};
//!
//! // A running server reads its shared state through `app`, `metrics` and `phoenix_rooms`.
//! let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
//! assert_eq!(server.app("1000").map(|app| app.config.id.clone()).as_deref(), Some("1000"));
//! assert_eq!(server.metrics().connections.get(), 0);
//! server.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).await?
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::adapter::Adapter;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::pusher::app::App;

/// Everything the handlers and socket tasks share.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::time::timeout(std::time::Duration::from_secs(5), async {
/// use switchboard_server::state::ServerState;
/// use switchboard_server::{Server, ServerConfig};
///
/// // Handlers and socket tasks on any thread share one `Arc<ServerState>`.
/// fn shared_between_tasks<T: Send + Sync + 'static>() {}
/// shared_between_tasks::<ServerState>();
///
/// // `RunningServer` owns the state and exposes parts of it (`app`, `metrics`, `phoenix_rooms`).
/// let server = Server::start(ServerConfig { port: 0, ..ServerConfig::default() }).await?;
/// assert!(format!("{server:?}").contains("ServerState { apps: 1, .. }"));
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).await?
/// # }
/// ```
pub struct ServerState {
    /// The configuration the server started with.
    pub config: ServerConfig,
    /// Apps by key (WebSocket path).
    pub apps_by_key: HashMap<String, Arc<App>>,
    /// Apps by id (HTTP API path).
    pub apps_by_id: HashMap<String, Arc<App>>,
    /// Where broadcasts go.
    pub adapter: Arc<dyn Adapter>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Becomes true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Socket tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Phoenix Channels rooms.
    pub phoenix: Arc<crate::phoenix::Rooms>,
    connections: AtomicUsize,
    next_id: AtomicU64,
}

impl ServerState {
    pub(crate) fn new(
        config: ServerConfig,
        apps: Vec<Arc<App>>,
        phoenix: Arc<crate::phoenix::Rooms>,
        adapter: Arc<dyn Adapter>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let apps_by_key = apps.iter().map(|a| (a.config.key.clone(), a.clone())).collect();
        let apps_by_id = apps.iter().map(|a| (a.config.id.clone(), a.clone())).collect();
        Self {
            config,
            apps_by_key,
            apps_by_id,
            adapter,
            metrics,
            shutdown,
            tasks: TaskTracker::new(),
            phoenix,
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Reserve a server-wide connection slot; false when at `max_connections`.
    pub(crate) fn try_add_connection(&self) -> bool {
        let max = self.config.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (max == 0 || n < max).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn release_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
