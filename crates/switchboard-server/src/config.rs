//! Server configuration: a TOML file with several apps, Reverb's environment names, and
//! defaults that give one documented development app on 127.0.0.1:8080.
//!
//! Precedence (highest first): values set by the caller (CLI flags) > environment
//! (`REVERB_*`) > the TOML file > defaults. Environment names follow Laravel's `.env` and
//! Reverb's `config/reverb.php`.
//!
//! ```
//! use switchboard_server::ServerConfig;
//! let file: ServerConfig = toml::from_str("port = 6001\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"")?;
//! // The environment overrides the file.
//! let cfg = file.with_env(|name| (name == "REVERB_SERVER_PORT").then(|| "7000".to_string()))?;
//! cfg.validate()?;
//! assert_eq!(cfg.bind_addr()?.to_string(), "127.0.0.1:7000");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The development app used when nothing is configured. Documented in the README; never use
/// it in production.
///
/// ```
/// use switchboard_server::ServerConfig;
/// use switchboard_server::config::DEV_APP_ID;
/// assert_eq!(ServerConfig::default().apps[0].id, DEV_APP_ID);
/// assert!(DEV_APP_ID.bytes().all(|b| b.is_ascii_digit()), "SDKs expect a numeric app id");
/// ```
pub const DEV_APP_ID: &str = "1000";
/// Key of the development app.
///
/// ```
/// use switchboard_server::AppConfig;
/// use switchboard_server::config::DEV_APP_KEY;
/// assert_eq!(AppConfig::default().key, DEV_APP_KEY);
/// ```
pub const DEV_APP_KEY: &str = "switchboard-key";
/// Secret of the development app.
///
/// ```
/// use switchboard_protocol::signature::sign_channel;
/// use switchboard_server::AppConfig;
/// use switchboard_server::config::{DEV_APP_KEY, DEV_APP_SECRET};
/// assert_eq!(AppConfig::default().secret, DEV_APP_SECRET);
/// // An auth endpoint for the development app signs with it:
/// let auth = sign_channel(DEV_APP_KEY, DEV_APP_SECRET, "1.2", "private-orders", None);
/// assert!(auth.starts_with("switchboard-key:"));
/// ```
pub const DEV_APP_SECRET: &str = "switchboard-secret";
/// Reverb's default port.
///
/// ```
/// use switchboard_server::ServerConfig;
/// use switchboard_server::config::DEFAULT_PORT;
/// assert_eq!(ServerConfig::default().bind_addr()?.port(), DEFAULT_PORT);
/// # Ok::<(), switchboard_server::ConfigError>(())
/// ```
pub const DEFAULT_PORT: u16 = 8080;

/// Why a configuration was refused. Each names the setting to fix.
///
/// ```
/// use switchboard_server::{ConfigError, ServerConfig};
/// let no_apps = ServerConfig { apps: vec![], ..ServerConfig::default() };
/// assert!(matches!(no_apps.validate(), Err(ConfigError::Invalid { name, .. }) if name == "apps"));
/// let missing = ServerConfig::from_file(std::path::Path::new("/nonexistent/switchboard.toml"));
/// assert!(matches!(missing, Err(ConfigError::Read { .. })));
/// let bad_port = ServerConfig::default().with_env(|name| (name == "REVERB_PORT").then(|| "eighty".to_string()));
/// assert!(bad_port.unwrap_err().to_string().contains("REVERB_PORT"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// What the TOML parser said.
        message: String,
    },
    /// A setting has a value it cannot take.
    #[error("invalid setting {name}: {message}")]
    Invalid {
        /// The setting (file key or environment name).
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Who may send client events, as Reverb's `accept_client_events_from`.
///
/// ```
/// use switchboard_server::{ClientEventPolicy, ServerConfig};
/// assert_eq!("none".parse(), Ok(ClientEventPolicy::Off));
/// assert_eq!("Members".parse(), Ok(ClientEventPolicy::Members));
/// assert!("some".parse::<ClientEventPolicy>().is_err());
/// let cfg: ServerConfig = toml::from_str("[[apps]]\nclient_events = \"all\"")?;
/// assert_eq!(cfg.apps[0].client_events, ClientEventPolicy::All);
/// assert_eq!(ClientEventPolicy::default(), ClientEventPolicy::Members);
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientEventPolicy {
    /// Nobody: every client event is refused with 4301.
    Off,
    /// Members of the private or presence channel (Pusher's rule; Reverb's default).
    #[default]
    Members,
    /// Subscribers of any channel kind, public ones included (still never a connection that
    /// is not subscribed to the channel).
    All,
}

impl std::str::FromStr for ClientEventPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "none" | "false" => Ok(Self::Off),
            "members" => Ok(Self::Members),
            "all" => Ok(Self::All),
            other => Err(format!("expected off, members or all, got {other:?}")),
        }
    }
}

/// A webhook endpoint of one app.
///
/// ```
/// use switchboard_server::{ServerConfig, WebhookConfig};
/// let cfg: ServerConfig = toml::from_str(r#"
/// [[apps]]
/// id = "1"
/// key = "k"
/// secret = "s"
/// [[apps.webhooks]]
/// url = "https://example.com/pusher/webhooks"
/// events = ["member_added", "member_removed"]
/// "#)?;
/// assert_eq!(
///     cfg.apps[0].webhooks,
///     [WebhookConfig {
///         url: "https://example.com/pusher/webhooks".into(),
///         events: vec!["member_added".into(), "member_removed".into()],
///     }]
/// );
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// Which events to send (`channel_occupied`, `channel_vacated`, `member_added`,
    /// `member_removed`, `client_event`, `cache_miss`); empty means all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// One app: credentials and limits.
///
/// ```
/// use switchboard_server::{AppConfig, ClientEventPolicy, ServerConfig};
/// let app = AppConfig {
///     id: "42".into(),
///     key: "my-key".into(),
///     secret: "my-secret".into(),
///     client_events: ClientEventPolicy::Off,
///     ..AppConfig::default()
/// };
/// assert_eq!((app.activity_timeout, app.max_message_size), (30, 10_000)); // defaults for the rest
/// assert!(ServerConfig { apps: vec![app], ..ServerConfig::default() }.validate().is_ok());
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// App id (digits by default: the official Python SDK refuses anything else).
    pub id: String,
    /// Public key, used in the WebSocket URL.
    pub key: String,
    /// Secret for signatures.
    pub secret: String,
    /// Seconds of silence after which clients should ping (sent in the handshake).
    pub activity_timeout: u64,
    /// Seconds of client silence after which the server pings it.
    pub ping_interval: u64,
    /// Seconds to wait for any reply to a server ping before closing with 4201.
    pub pong_timeout: u64,
    /// Maximum simultaneous connections (0 = unlimited); over it → 4004.
    pub max_connections: usize,
    /// Largest inbound WebSocket message and largest HTTP event payload, in bytes.
    pub max_message_size: usize,
    /// Most members of one presence channel; over it → subscription error 4100.
    pub max_presence_members: usize,
    /// Largest presence `user_info`, in bytes.
    pub max_presence_member_size: usize,
    /// Who may send client events.
    pub client_events: ClientEventPolicy,
    /// Client events per second per connection; above it → 4301.
    pub client_event_rate: u32,
    /// Most events in one `batch_events` request.
    pub max_batch_size: usize,
    /// Most channels one connection may subscribe to; over it → subscription error 4301.
    pub max_channels_per_connection: usize,
    /// Webhook endpoints.
    pub webhooks: Vec<WebhookConfig>,
    /// Gateway protocol (`/apps/{id}`): the HS256/384/512 key client tokens are verified
    /// with; the app secret when unset (local development).
    pub gateway_client_key: Option<String>,
    /// Gateway protocol: the key admin tokens of its HTTP API (`/api/…`) are verified with;
    /// the app secret when unset.
    pub gateway_admin_key: Option<String>,
    /// Gateway protocol: ack every publish and message that carries an `id` (the hosted
    /// gateway's "WebSocket Inbound ACK" setting; on, since SDK callers wait for acks).
    pub gateway_inbound_ack: bool,
    /// Gateway protocol: the largest inbound frame, in bytes; larger → close 1009.
    pub gateway_max_message_size: usize,
    /// Gateway protocol: the most topics one connection subscribes to (its `main` and
    /// `priv/<id>` not counted); one more → close 1008.
    pub gateway_max_topics: usize,
    /// Gateway protocol: publishes and messages per second per connection; more → close 1008.
    pub gateway_message_rate: u32,
    /// Gateway protocol: seconds of client silence before the server pings it; a socket
    /// silent for twice this is closed as dead (a `disconnected` presence event).
    pub gateway_ping_interval: u64,
    /// Gateway protocol: the most connections of one token subject (`sub`) at once; one
    /// more is refused with HTTP 429 before the upgrade (0: no limit).
    pub gateway_max_connections_per_subject: usize,
    /// RealtimeX (`/socket.io/`): next to each canonical event, also send the forms the seed
    /// SDK's README binds to on channels (`presence:member_added|removed`,
    /// `presence:subscription_succeeded`, and `realtimex_internal:subscription_succeeded` as a
    /// `server-event`), since that SDK routes only `server-event`s to channels.
    pub realtimex_mirrors: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            id: DEV_APP_ID.into(),
            key: DEV_APP_KEY.into(),
            secret: DEV_APP_SECRET.into(),
            activity_timeout: 30,
            ping_interval: 60,
            pong_timeout: 30,
            max_connections: 0,
            max_message_size: 10_000,
            max_presence_members: 100,
            max_presence_member_size: 2_048,
            client_events: ClientEventPolicy::Members,
            client_event_rate: 10,
            max_batch_size: 10,
            max_channels_per_connection: 10_000,
            webhooks: Vec::new(),
            gateway_client_key: None,
            gateway_admin_key: None,
            gateway_inbound_ack: true,
            gateway_max_message_size: 64 * 1024,
            gateway_max_topics: 100,
            gateway_message_rate: 1_000,
            gateway_ping_interval: 30,
            gateway_max_connections_per_subject: 0,
            realtimex_mirrors: true,
        }
    }
}

impl AppConfig {
    /// How long the server waits for a ping reply.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_server::AppConfig;
    /// assert_eq!(AppConfig::default().pong_timeout(), Duration::from_secs(30));
    /// assert_eq!(AppConfig { pong_timeout: 5, ..AppConfig::default() }.pong_timeout(), Duration::from_secs(5));
    /// ```
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_secs(self.pong_timeout)
    }
}

/// The whole server configuration.
///
/// ```
/// use switchboard_server::ServerConfig;
/// let cfg = ServerConfig { port: 6001, path: "/ws".into(), ..ServerConfig::default() };
/// cfg.validate()?;
/// assert_eq!(cfg.bind_addr()?.to_string(), "127.0.0.1:6001");
/// assert_eq!(cfg.apps.len(), 1, "the development app");
/// # Ok::<(), switchboard_server::ConfigError>(())
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// Path prefix for every route (Reverb's `REVERB_SERVER_PATH`), e.g. `/ws`.
    pub path: String,
    /// Connections across all apps (0 = unlimited); over it → 4100.
    pub max_connections: usize,
    /// Allowed clock difference for HTTP API timestamps, seconds.
    pub timestamp_window: i64,
    /// Seconds to wait for sockets to close on shutdown.
    pub shutdown_grace: u64,
    /// Messages queued for one socket before it is closed as too slow (4100).
    pub max_queued_messages: usize,
    /// Seconds a Phoenix socket may stay silent before it is closed (Phoenix's 60).
    pub phoenix_idle_timeout: u64,
    /// Longest Phoenix topic and username, bytes; a longer join gets an error reply.
    pub phoenix_max_name_length: usize,
    /// Most members of one Phoenix room; a join past it gets an error reply.
    pub phoenix_max_room_members: usize,
    /// Largest Phoenix `shout` / `user:typing` frame, bytes; a larger one gets an error
    /// reply and is not broadcast.
    pub phoenix_max_payload: usize,
    /// `shout` and `user:typing` messages one Phoenix socket may send per second; past it
    /// they get an error reply and are not broadcast.
    pub phoenix_message_rate: u32,
    /// Seconds a connection may take to send its HTTP request headers, and may stay idle
    /// between requests when kept alive, before it is closed.
    pub http_header_timeout: u64,
    /// Seconds an HTTP request may take from its headers to its response (reading the body
    /// included); past it the answer is 408.
    pub http_request_timeout: u64,
    /// Connections that have not (yet) become WebSockets, at most: reading a request, or kept
    /// alive between HTTP API calls (0 = unlimited). Past it a new connection is closed at
    /// once, so idle or trickling clients cannot take every descriptor. Lowered at start to a
    /// quarter of the process's descriptor limit.
    pub max_pending_connections: usize,
    /// Query parameters one HTTP API request may carry (the SDKs send at most seven); more
    /// is a 400, checked before the query is decoded.
    pub http_max_query_params: usize,
    /// Rooms one Phoenix socket may join (Phoenix's `max_channels_per_transport`); past it a
    /// join gets an error reply.
    pub phoenix_max_channels: usize,
    /// RealtimeX: the Socket.IO path (socket.io's default `/socket.io`).
    pub realtimex_path: String,
    /// RealtimeX: milliseconds between the server's Engine.IO pings (socket.io's 25,000).
    pub realtimex_ping_interval_ms: u64,
    /// RealtimeX: milliseconds the server waits for a pong before closing (socket.io's
    /// 20,000); clients treat interval + timeout without a ping as a dead server.
    pub realtimex_ping_timeout_ms: u64,
    /// RealtimeX: milliseconds a socket may take to connect to the namespace (send `40`)
    /// after the handshake before it is closed (socket.io's 45,000).
    pub realtimex_connect_timeout_ms: u64,
    /// Scale-out over Redis (`[scaling]`; off by default).
    pub scaling: ScalingConfig,
    /// The apps.
    pub apps: Vec<AppConfig>,
}

/// Scale-out over Redis: the `[scaling]` table, `REVERB_SCALING_*` and `REDIS_*`.
///
/// ```
/// use switchboard_server::ServerConfig;
/// let env = |name: &str| match name {
///     "REVERB_SCALING_ENABLED" => Some("true".to_string()),
///     "REDIS_HOST" => Some("10.0.0.5".to_string()),
///     "REDIS_PASSWORD" => Some("p@ss".to_string()),
///     "REDIS_DB" => Some("2".to_string()),
///     _ => None,
/// };
/// let cfg = ServerConfig::default().with_env(env)?;
/// assert!(cfg.scaling.enabled);
/// assert_eq!(cfg.scaling.url, "redis://:p%40ss@10.0.0.5:6379/2");
/// assert_eq!(cfg.scaling.prefix, "reverb");
/// # Ok::<(), switchboard_server::ConfigError>(())
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// Scale out (`REVERB_SCALING_ENABLED`).
    pub enabled: bool,
    /// Redis (`REDIS_URL`, or built from `REDIS_HOST`/`PORT`/`USERNAME`/`PASSWORD`/`DB`):
    /// `redis://`, `rediss://` or `unix:///path`.
    pub url: String,
    /// Key and bus prefix (`REVERB_SCALING_CHANNEL`), so clusters can share one Redis.
    pub prefix: String,
    /// How long a node's lease lasts without a heartbeat before the others reap it
    /// (`SWITCHBOARD_SCALING_LEASE_MS`, 5,000).
    pub lease_ms: u64,
    /// How often a node renews its lease, checks its bus and looks for dead nodes
    /// (`SWITCHBOARD_SCALING_HEARTBEAT_MS`, 1,000).
    pub heartbeat_ms: u64,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "redis://127.0.0.1:6379".into(),
            prefix: "reverb".into(),
            lease_ms: 5_000,
            heartbeat_ms: 1_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            path: String::new(),
            max_connections: 0,
            timestamp_window: 600,
            shutdown_grace: 5,
            max_queued_messages: 1_000,
            phoenix_idle_timeout: 60,
            phoenix_max_name_length: 200,
            phoenix_max_room_members: 10_000,
            phoenix_max_payload: 10_000,
            phoenix_message_rate: 50,
            http_header_timeout: 10,
            http_request_timeout: 30,
            max_pending_connections: 1_024,
            http_max_query_params: switchboard_protocol::http_auth::MAX_QUERY_PARAMS,
            phoenix_max_channels: 100,
            realtimex_path: "/socket.io".into(),
            realtimex_ping_interval_ms: 25_000,
            realtimex_ping_timeout_ms: 20_000,
            realtimex_connect_timeout_ms: 45_000,
            scaling: ScalingConfig::default(),
            apps: vec![AppConfig::default()],
        }
    }
}

impl ServerConfig {
    /// Read a TOML file.
    ///
    /// ```
    /// let cfg: switchboard_server::ServerConfig = toml::from_str(r#"
    /// port = 6001
    /// [[apps]]
    /// id = "1"
    /// key = "k"
    /// secret = "s"
    /// client_events = "all"
    /// "#).unwrap();
    /// assert_eq!(cfg.apps[0].key, "k");
    /// assert_eq!(cfg.apps[0].activity_timeout, 30); // defaults fill the rest
    /// ```
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })
    }

    /// Apply Reverb's environment names, read through `var` (so tests need not touch the
    /// process environment).
    ///
    /// `REVERB_APP_ID`/`KEY`/`SECRET` define an app that replaces the app with the same id,
    /// or the development default. The bind address comes from `REVERB_SERVER_HOST` /
    /// `REVERB_SERVER_PORT`, falling back to `REVERB_HOST` / `REVERB_PORT`.
    ///
    /// ```
    /// use switchboard_server::ServerConfig;
    /// let env = |name: &str| match name {
    ///     "REVERB_APP_ID" => Some("42".to_string()),
    ///     "REVERB_APP_KEY" => Some("k".to_string()),
    ///     "REVERB_APP_SECRET" => Some("s".to_string()),
    ///     "REVERB_SERVER_PORT" => Some("9000".to_string()),
    ///     _ => None,
    /// };
    /// let cfg = ServerConfig::default().with_env(env).unwrap();
    /// assert_eq!((cfg.port, cfg.apps.len(), cfg.apps[0].id.as_str()), (9000, 1, "42"));
    /// ```
    pub fn with_env(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(host) = var("REVERB_SERVER_HOST").or_else(|| var("REVERB_HOST")) {
            self.host = host;
        }
        if let Some(port) = var("REVERB_SERVER_PORT")
            .map(|p| ("REVERB_SERVER_PORT", p))
            .or_else(|| var("REVERB_PORT").map(|p| ("REVERB_PORT", p)))
        {
            self.port = parse(port.0, &port.1)?;
        }
        if let Some(path) = var("REVERB_SERVER_PATH") {
            self.path = path;
        }
        if let Some(v) = var("REVERB_SCALING_ENABLED") {
            self.scaling.enabled = match v.trim() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "REVERB_SCALING_ENABLED".into(),
                        message: "use true or false".into(),
                    });
                }
            };
        }
        if let Some(prefix) = var("REVERB_SCALING_CHANNEL") {
            self.scaling.prefix = prefix;
        }
        if let Some(url) = var("REDIS_URL") {
            self.scaling.url = url;
        } else if ["REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB"]
            .iter()
            .any(|n| var(n).is_some())
        {
            let host = var("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port: u16 = match var("REDIS_PORT") {
                Some(p) => parse("REDIS_PORT", &p)?,
                None => 6379,
            };
            let encode =
                |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
            let auth = match (var("REDIS_USERNAME"), var("REDIS_PASSWORD")) {
                (Some(user), Some(password)) => format!("{}:{}@", encode(&user), encode(&password)),
                (Some(user), None) => format!("{}@", encode(&user)),
                (None, Some(password)) => format!(":{}@", encode(&password)),
                (None, None) => String::new(),
            };
            let db = match var("REDIS_DB") {
                Some(db) => format!("/{}", parse::<u32>("REDIS_DB", &db)?),
                None => String::new(),
            };
            self.scaling.url = format!("redis://{auth}{host}:{port}{db}");
        }
        if let Some(v) = var("SWITCHBOARD_SCALING_LEASE_MS") {
            self.scaling.lease_ms = parse("SWITCHBOARD_SCALING_LEASE_MS", &v)?;
        }
        if let Some(v) = var("SWITCHBOARD_SCALING_HEARTBEAT_MS") {
            self.scaling.heartbeat_ms = parse("SWITCHBOARD_SCALING_HEARTBEAT_MS", &v)?;
        }
        let (id, key, secret) = (var("REVERB_APP_ID"), var("REVERB_APP_KEY"), var("REVERB_APP_SECRET"));
        if id.is_some() || key.is_some() || secret.is_some() {
            let (Some(id), Some(key), Some(secret)) = (id, key, secret) else {
                return Err(ConfigError::Invalid {
                    name: "REVERB_APP_ID/REVERB_APP_KEY/REVERB_APP_SECRET".into(),
                    message: "set all three, or none".into(),
                });
            };
            let mut app = AppConfig { id, key, secret, ..AppConfig::default() };
            if let Some(v) = var("REVERB_APP_ACTIVITY_TIMEOUT") {
                app.activity_timeout = parse("REVERB_APP_ACTIVITY_TIMEOUT", &v)?;
            }
            if let Some(v) = var("REVERB_APP_PING_INTERVAL") {
                app.ping_interval = parse("REVERB_APP_PING_INTERVAL", &v)?;
            }
            if let Some(v) = var("REVERB_APP_MAX_MESSAGE_SIZE") {
                app.max_message_size = parse("REVERB_APP_MAX_MESSAGE_SIZE", &v)?;
            }
            if let Some(v) = var("REVERB_APP_MAX_CONNECTIONS") {
                app.max_connections = parse("REVERB_APP_MAX_CONNECTIONS", &v)?;
            }
            if let Some(v) = var("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM") {
                app.client_events = v.parse().map_err(|message| ConfigError::Invalid {
                    name: "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM".into(),
                    message,
                })?;
            }
            let defaults_only = self.apps == vec![AppConfig::default()];
            if defaults_only {
                self.apps.clear();
            }
            self.apps.retain(|a| a.id != app.id);
            self.apps.push(app);
        }
        Ok(self)
    }

    /// Check the configuration for contradictions.
    ///
    /// ```
    /// use switchboard_server::{AppConfig, ServerConfig};
    /// assert!(ServerConfig::default().validate().is_ok());
    /// assert!(ServerConfig { path: "ws/".into(), ..ServerConfig::default() }.validate().is_err());
    /// let twice = ServerConfig { apps: vec![AppConfig::default(), AppConfig::default()], ..ServerConfig::default() };
    /// assert!(twice.validate().unwrap_err().to_string().contains("unique"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name: &str, message: &str| ConfigError::Invalid { name: name.into(), message: message.into() };
        if self.apps.is_empty() {
            return Err(invalid("apps", "at least one app is required"));
        }
        if self.scaling.enabled && self.scaling.heartbeat_ms.saturating_mul(2) > self.scaling.lease_ms {
            return Err(invalid("scaling.lease_ms", "must be at least twice scaling.heartbeat_ms"));
        }
        if !self.path.is_empty() && (!self.path.starts_with('/') || self.path.ends_with('/')) {
            return Err(invalid("path", "must start with '/' and not end with '/' (e.g. /ws)"));
        }
        let path = self.realtimex_path.as_str();
        let plain = path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-~".contains(&b));
        if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') || path.contains("//") || !plain {
            return Err(invalid(
                "realtimex_path",
                "must start with '/', not end with '/', and hold only letters, digits and /._-~ (e.g. /socket.io)",
            ));
        }
        if ["/app", "/api"].iter().any(|taken| path.starts_with(taken))
            || ["/up", "/metrics", "/socket/websocket"].contains(&path)
        {
            return Err(invalid(
                "realtimex_path",
                "is taken by another endpoint (/app…, /api…, /up, /metrics, /socket/websocket)",
            ));
        }
        if self.realtimex_ping_interval_ms == 0
            || self.realtimex_ping_timeout_ms == 0
            || self.realtimex_connect_timeout_ms == 0
        {
            return Err(invalid(
                "realtimex_ping_interval_ms",
                "realtimex_ping_interval_ms, realtimex_ping_timeout_ms and realtimex_connect_timeout_ms must be at least 1",
            ));
        }
        for (i, app) in self.apps.iter().enumerate() {
            if app.id.is_empty() || app.key.is_empty() || app.secret.is_empty() {
                return Err(invalid(&format!("apps[{i}]"), "id, key and secret must be non-empty"));
            }
            if app.key.contains(['/', '?', '#']) {
                return Err(invalid(&format!("apps[{i}].key"), "must not contain '/', '?' or '#'"));
            }
            if self.apps[..i].iter().any(|a| a.id == app.id || a.key == app.key) {
                return Err(invalid(&format!("apps[{i}]"), "app ids and keys must be unique"));
            }
            if app.activity_timeout == 0 || app.ping_interval == 0 || app.pong_timeout == 0 {
                return Err(invalid(
                    &format!("apps[{i}]"),
                    "activity_timeout, ping_interval and pong_timeout must be at least 1 second",
                ));
            }
        }
        Ok(())
    }

    /// The address to bind.
    ///
    /// ```
    /// use switchboard_server::ServerConfig;
    /// let local = ServerConfig { host: "localhost".into(), port: 8080, ..ServerConfig::default() };
    /// assert_eq!(local.bind_addr()?.to_string(), "127.0.0.1:8080");
    /// let v6 = ServerConfig { host: "::1".into(), port: 8080, ..ServerConfig::default() };
    /// assert_eq!(v6.bind_addr()?.to_string(), "[::1]:8080");
    /// assert!(ServerConfig { host: "example.com".into(), ..ServerConfig::default() }.bind_addr().is_err());
    /// # Ok::<(), switchboard_server::ConfigError>(())
    /// ```
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        let host = if self.host == "localhost" { "127.0.0.1" } else { self.host.as_str() };
        let text = if host.contains(':') { format!("[{host}]:{}", self.port) } else { format!("{host}:{}", self.port) };
        text.parse().map_err(|_| ConfigError::Invalid {
            name: "host".into(),
            message: format!("{:?} is not an IP address", self.host),
        })
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid { name: name.into(), message: format!("{value:?}: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_are_one_dev_app_on_reverbs_port() {
        let cfg = ServerConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.bind_addr().unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!((cfg.apps[0].id.as_str(), cfg.apps[0].key.as_str()), (DEV_APP_ID, DEV_APP_KEY));
        assert!(cfg.apps[0].id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(cfg.apps[0].activity_timeout, 30);
        assert_eq!(cfg.apps[0].max_message_size, 10_000);
        assert_eq!(cfg.apps[0].client_events, ClientEventPolicy::Members);
    }

    #[test]
    fn server_host_and_port_fall_back_to_reverb_host_and_port() {
        let cfg =
            ServerConfig::default().with_env(env(&[("REVERB_HOST", "0.0.0.0"), ("REVERB_PORT", "6001")])).unwrap();
        assert_eq!(cfg.bind_addr().unwrap().to_string(), "0.0.0.0:6001");
        let cfg = ServerConfig::default()
            .with_env(env(&[
                ("REVERB_HOST", "0.0.0.0"),
                ("REVERB_PORT", "443"),
                ("REVERB_SERVER_HOST", "127.0.0.1"),
                ("REVERB_SERVER_PORT", "8081"),
                ("REVERB_SERVER_PATH", "/ws"),
            ]))
            .unwrap();
        assert_eq!(cfg.bind_addr().unwrap().to_string(), "127.0.0.1:8081");
        assert_eq!(cfg.path, "/ws");
    }

    #[test]
    fn env_app_replaces_same_id_and_keeps_others() {
        let file: ServerConfig = toml::from_str(
            r#"
            [[apps]]
            id = "1"
            key = "a"
            secret = "x"
            [[apps]]
            id = "2"
            key = "b"
            secret = "y"
            "#,
        )
        .unwrap();
        let cfg = file
            .with_env(env(&[
                ("REVERB_APP_ID", "2"),
                ("REVERB_APP_KEY", "bb"),
                ("REVERB_APP_SECRET", "yy"),
                ("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "all"),
                ("REVERB_APP_MAX_MESSAGE_SIZE", "20000"),
            ]))
            .unwrap();
        cfg.validate().unwrap();
        let keys: Vec<&str> = cfg.apps.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, vec!["a", "bb"]);
        assert_eq!(cfg.apps[1].client_events, ClientEventPolicy::All);
        assert_eq!(cfg.apps[1].max_message_size, 20_000);
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let err = ServerConfig::default().with_env(env(&[("REVERB_SERVER_PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("REVERB_SERVER_PORT"), "{err}");
        let err = ServerConfig::default().with_env(env(&[("REVERB_APP_KEY", "k")])).unwrap_err();
        assert!(err.to_string().contains("REVERB_APP_ID"), "{err}");
        let err = ServerConfig::default()
            .with_env(env(&[
                ("REVERB_APP_ID", "1"),
                ("REVERB_APP_KEY", "k"),
                ("REVERB_APP_SECRET", "s"),
                ("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "some"),
            ]))
            .unwrap_err();
        assert!(err.to_string().contains("ACCEPT_CLIENT_EVENTS_FROM"), "{err}");
        let cfg = ServerConfig { path: "ws/".into(), ..ServerConfig::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("path"));
        let cfg = ServerConfig { host: "not-an-ip".into(), ..ServerConfig::default() };
        assert!(cfg.bind_addr().unwrap_err().to_string().contains("host"));
        let dup = ServerConfig { apps: vec![AppConfig::default(), AppConfig::default()], ..ServerConfig::default() };
        assert!(dup.validate().unwrap_err().to_string().contains("unique"));
        let unknown = toml::from_str::<ServerConfig>("prot = 1");
        assert!(unknown.is_err(), "unknown keys are refused, not ignored");
    }
}
