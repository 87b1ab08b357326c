//! Client options: a builder from a URL or host/port/key (or a Pusher cluster), and
//! `from_env()` with the names python-reverb and Laravel's `.env` use.
//!
//! ```
//! let options = switchboard::ClientOptions::from_url("ws://127.0.0.1:8080/app/switchboard-key")?.build()?;
//! assert_eq!((options.host(), options.port(), options.tls()), ("127.0.0.1", 8080, false));
//! # Ok::<(), switchboard::Error>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::delivery::SlowConsumer;
use crate::error::{Error, ErrorKind, Result};
use crate::pusher::auth::{Authorizer, SecretAuthorizer};

/// Everything a [`crate::Client`] needs to connect. Build it with [`ClientOptions::builder`],
/// [`ClientOptions::from_url`] or [`ClientOptions::from_env`].
///
/// ```
/// use switchboard::ClientOptions;
/// let opts = ClientOptions::builder("app-key").host("ws.example.com").build()?;
/// assert_eq!((opts.host(), opts.port(), opts.tls()), ("ws.example.com", 443, true));
/// # Ok::<(), switchboard::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    pub(crate) key: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) path_prefix: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) client_name: String,
    pub(crate) client_version: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) activity_timeout: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) reconnect: bool,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) healthy_after: Duration,
    pub(crate) max_retries: Option<u32>,
    pub(crate) subscribe_timeout: Duration,
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
    pub(crate) event_queue: usize,
    pub(crate) slow_consumer: SlowConsumer,
    pub(crate) client_event_rate: u32,
    pub(crate) max_message_size: usize,
    pub(crate) max_presence_members: usize,
    pub(crate) io_runtime: crate::IoRuntime,
    pub(crate) protocol: Protocol,
    pub(crate) socketio_path: String,
}

/// The wire a [`crate::Client`] speaks. Both carry the same channels, presence, client
/// events and auth; only the framing, the heartbeat and the close rules differ.
///
/// ```
/// use switchboard::{ClientOptions, Protocol};
/// let pusher = ClientOptions::builder("k").build()?;
/// assert_eq!(pusher.protocol(), Protocol::Pusher);
/// let realtimex = ClientOptions::builder("k").protocol(Protocol::RealtimeX).host("127.0.0.1").port(8080).tls(false).build()?;
/// assert_eq!(realtimex.url(), "ws://127.0.0.1:8080/socket.io/?api_key=k&EIO=4&transport=websocket");
/// # Ok::<(), switchboard::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Pusher Channels protocol v7 (`/app/{key}`): Reverb, Pusher, Soketi, Sockudo.
    #[default]
    Pusher,
    /// RealtimeX: Pusher channels as Socket.IO v5 events over Engine.IO v4
    /// (`/socket.io/?api_key=…`, WebSocket transport). See [`crate::realtimex`].
    RealtimeX,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &self.url())
            .field("reconnect", &self.reconnect)
            .field("authorizer", &self.authorizer.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// Start building options for app `key`; defaults to `wss://localhost:443`.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("app-key").host("127.0.0.1").port(8080).tls(false).build()?;
    /// assert_eq!(opts.url(), "ws://127.0.0.1:8080/app/app-key?protocol=7&client=switchboard-rust&version=0.1.0");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn builder(key: impl Into<String>) -> ClientOptionsBuilder {
        ClientOptionsBuilder {
            options: ClientOptions {
                key: key.into(),
                host: "localhost".into(),
                port: 443,
                tls: true,
                path_prefix: String::new(),
                headers: Vec::new(),
                client_name: "switchboard-rust".into(),
                client_version: env!("CARGO_PKG_VERSION").into(),
                connect_timeout: Duration::from_secs(10),
                activity_timeout: Duration::from_secs(120),
                pong_timeout: Duration::from_secs(30),
                reconnect: true,
                reconnect_min: Duration::from_secs(1),
                reconnect_max: Duration::from_secs(30),
                healthy_after: crate::backoff::HEALTHY_AFTER,
                max_retries: None,
                subscribe_timeout: Duration::from_secs(10),
                authorizer: None,
                event_queue: 1024,
                slow_consumer: SlowConsumer::default(),
                client_event_rate: 10,
                max_message_size: crate::transport::DEFAULT_MAX_MESSAGE_SIZE,
                max_presence_members: crate::pusher::presence::DEFAULT_MAX_MEMBERS,
                io_runtime: crate::IoRuntime::default(),
                protocol: Protocol::Pusher,
                socketio_path: "/socket.io".into(),
            },
            port_set: false,
            error: None,
        }
    }

    /// Options from a URL: `ws[s]://host[:port][/prefix]/app/{key}` (Pusher), or
    /// `http[s]|ws[s]://host[:port][/path]/socket.io/?api_key={key}` (RealtimeX; the seed
    /// SDK's `http[s]://host:port?api_key={key}` too).
    ///
    /// ```
    /// use switchboard::{ClientOptions, Protocol};
    /// let opts = ClientOptions::from_url("wss://ws.example.com/reverb/app/my-key")?.build()?;
    /// assert_eq!(opts.url(), "wss://ws.example.com:443/reverb/app/my-key?protocol=7&client=switchboard-rust&version=0.1.0");
    /// let rtx = ClientOptions::from_url("http://127.0.0.1:8080/socket.io/?api_key=my-key")?.build()?;
    /// assert_eq!((rtx.protocol(), rtx.key()), (Protocol::RealtimeX, "my-key"));
    /// assert_eq!(rtx.url(), "ws://127.0.0.1:8080/socket.io/?api_key=my-key&EIO=4&transport=websocket");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<ClientOptionsBuilder> {
        let bad = |why: &str| Error::new(ErrorKind::Config, format!("invalid URL {url:?}: {why}"));
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("ws") | Some("http") => false,
            Some("wss") | Some("https") => true,
            _ => return Err(bad("the scheme must be ws or wss")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?.trim_matches(['[', ']']).to_owned();
        let path = uri.path();
        let api_key = uri.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "api_key")
                .map(|(_, key)| key.into_owned())
        });
        let mut builder = if let Some(key) = api_key {
            let socketio_path = path.trim_end_matches('/');
            let socketio_path = if socketio_path.is_empty() { "/socket.io" } else { socketio_path };
            Self::builder(key).protocol(Protocol::RealtimeX).socketio_path(socketio_path).host(host).tls(tls)
        } else {
            let (prefix, key) = path
                .rsplit_once("/app/")
                .ok_or_else(|| bad("the path must end in /app/{key} (or give ?api_key= for RealtimeX)"))?;
            if key.is_empty() || key.contains('/') {
                return Err(bad("the path must end in /app/{key}"));
            }
            Self::builder(key).host(host).tls(tls).path_prefix(prefix)
        };
        if let Some(port) = uri.port_u16() {
            builder = builder.port(port);
        }
        Ok(builder)
    }

    /// Options from the environment and a `.env` file in the working directory (the
    /// environment wins), with python-reverb's names: `REVERB_APP_KEY` (required),
    /// `REVERB_APP_SECRET` (signs private and presence channels locally), `REVERB_HOST`
    /// (default localhost), `REVERB_PORT` (443), `REVERB_SCHEME` (wss),
    /// `REVERB_RECONNECT_ENABLED` (true), `REVERB_RECONNECT_DELAY_MIN` (1.0 s),
    /// `REVERB_RECONNECT_DELAY_MAX` (30.0 s), `REVERB_PING_INTERVAL` (seconds of silence
    /// before a ping).
    ///
    /// ```no_run
    /// use switchboard::ClientOptions;
    /// // REVERB_APP_KEY=… REVERB_HOST=… in the environment or in ./.env
    /// let options = ClientOptions::from_env()?.build()?;
    /// println!("connecting to {}", options.url());
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn from_env() -> Result<ClientOptionsBuilder> {
        let mut dotenv = HashMap::new();
        match dotenvy::from_path_iter(".env") {
            Ok(iter) => {
                for item in iter {
                    let (k, v) = item.map_err(|e| Error::new(ErrorKind::Config, format!(".env: {e}")))?;
                    dotenv.insert(k, v);
                }
            }
            Err(e) if e.not_found() => {}
            Err(e) => return Err(Error::new(ErrorKind::Config, format!(".env: {e}"))),
        }
        Self::from_vars(|name| std::env::var(name).ok().or_else(|| dotenv.get(name).cloned()))
    }

    /// As [`ClientOptions::from_env`], reading variables through `var`.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let vars = |name: &str| match name {
    ///     "REVERB_APP_KEY" => Some("k".to_string()),
    ///     "REVERB_HOST" => Some("127.0.0.1".to_string()),
    ///     "REVERB_PORT" => Some("8080".to_string()),
    ///     "REVERB_SCHEME" => Some("http".to_string()),
    ///     _ => None,
    /// };
    /// let opts = ClientOptions::from_vars(vars)?.build()?;
    /// assert!(opts.url().starts_with("ws://127.0.0.1:8080/app/k?"));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<ClientOptionsBuilder> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let config = |name: &str, why: String| Error::new(ErrorKind::Config, format!("{name}: {why}"));
        let key = var("REVERB_APP_KEY").ok_or_else(|| config("REVERB_APP_KEY", "is not set".into()))?;
        let mut b = Self::builder(key).host(var("REVERB_HOST").unwrap_or_else(|| "localhost".into()));
        let scheme = var("REVERB_SCHEME").unwrap_or_else(|| "wss".into());
        b = match scheme.as_str() {
            "wss" | "https" => b.tls(true),
            "ws" | "http" => b.tls(false),
            other => return Err(config("REVERB_SCHEME", format!("{other:?} is not ws, wss, http or https"))),
        };
        if let Some(port) = var("REVERB_PORT") {
            b = b.port(port.trim().parse().map_err(|e| config("REVERB_PORT", format!("{port:?}: {e}")))?);
        }
        if let Some(secret) = var("REVERB_APP_SECRET") {
            let key = b.options.key.clone();
            b = b.authorizer(SecretAuthorizer::new(key, secret));
        }
        if let Some(enabled) = var("REVERB_RECONNECT_ENABLED") {
            b = b.reconnect(match enabled.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                other => return Err(config("REVERB_RECONNECT_ENABLED", format!("{other:?} is not true or false"))),
            });
        }
        let seconds = |name: &str| -> Result<Option<Duration>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| config(name, format!("{v:?} is not a number of seconds")))
                })
                .transpose()
        };
        let (min, max) = (seconds("REVERB_RECONNECT_DELAY_MIN")?, seconds("REVERB_RECONNECT_DELAY_MAX")?);
        b = b.reconnect_delay(min.unwrap_or(Duration::from_secs(1)), max.unwrap_or(Duration::from_secs(30)));
        if let Some(ping) = seconds("REVERB_PING_INTERVAL")? {
            b = b.activity_timeout(ping);
        }
        Ok(b)
    }

    /// The WebSocket URL this client connects to.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").host("127.0.0.1").port(8080).tls(false).path_prefix("/reverb").build()?;
    /// assert!(opts.url().starts_with("ws://127.0.0.1:8080/reverb/app/k?protocol=7&client="));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.protocol == Protocol::RealtimeX {
            let key: String = form_urlencoded::byte_serialize(self.key.as_bytes()).collect();
            return format!(
                "{scheme}://{host}:{}{}{}/?api_key={key}&EIO=4&transport=websocket",
                self.port, self.path_prefix, self.socketio_path
            );
        }
        format!(
            "{scheme}://{host}:{}{}/app/{}?protocol=7&client={}&version={}",
            self.port, self.path_prefix, self.key, self.client_name, self.client_version
        )
    }

    /// The wire this client speaks.
    ///
    /// ```
    /// use switchboard::{ClientOptions, Protocol};
    /// assert_eq!(ClientOptions::builder("k").build()?.protocol(), Protocol::Pusher);
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// RealtimeX: the Socket.IO path after the prefix (`/socket.io`).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::from_url("http://127.0.0.1:8080/rt/?api_key=k")?.build()?;
    /// assert_eq!(opts.socketio_path(), "/rt");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn socketio_path(&self) -> &str {
        &self.socketio_path
    }

    /// The app key.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert_eq!(ClientOptions::builder("app-key").build()?.key(), "app-key");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The server host.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert_eq!(ClientOptions::builder("k").cluster("eu").build()?.host(), "ws-eu.pusher.com");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server port.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert_eq!(ClientOptions::builder("k").tls(false).build()?.port(), 80);
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True for `wss`.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert!(ClientOptions::from_url("wss://ws.example.com/app/k")?.build()?.tls());
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The path prefix before `/app/{key}` (empty or starting with `/`).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert_eq!(ClientOptions::builder("k").path_prefix("reverb/").build()?.path_prefix(), "/reverb");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }
}

/// Builder for [`ClientOptions`].
///
/// ```
/// use switchboard::ClientOptions;
/// use std::time::Duration;
/// let opts = ClientOptions::builder("k")
///     .host("127.0.0.1")
///     .port(8080)
///     .tls(false)
///     .reconnect_delay(Duration::from_millis(500), Duration::from_secs(10))
///     .build()?;
/// assert_eq!(opts.port(), 8080);
/// # Ok::<(), switchboard::Error>(())
/// ```
pub struct ClientOptionsBuilder {
    options: ClientOptions,
    port_set: bool,
    error: Option<Error>,
}

impl ClientOptionsBuilder {
    /// The wire to speak ([`Protocol::Pusher`] by default).
    ///
    /// ```
    /// use switchboard::{ClientOptions, Protocol};
    /// let opts = ClientOptions::builder("k").protocol(Protocol::RealtimeX).build()?;
    /// assert!(opts.url().starts_with("wss://localhost:443/socket.io/?api_key=k"));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.options.protocol = protocol;
        self
    }

    /// RealtimeX: the Socket.IO path after the path prefix (`/socket.io`, socket.io's default).
    ///
    /// ```
    /// use switchboard::{ClientOptions, Protocol};
    /// let opts = ClientOptions::builder("k").protocol(Protocol::RealtimeX).socketio_path("/rt").build()?;
    /// assert!(opts.url().starts_with("wss://localhost:443/rt/?api_key=k"));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn socketio_path(mut self, path: impl Into<String>) -> Self {
        self.options.socketio_path = path.into();
        self
    }

    /// Server host name or IP address.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert_eq!(ClientOptions::builder("k").host("10.0.0.5").build()?.host(), "10.0.0.5");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.options.host = host.into();
        self
    }

    /// Server port (default 443 with TLS, 80 without).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert_eq!(ClientOptions::builder("k").port(6001).build()?.port(), 6001);
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn port(mut self, port: u16) -> Self {
        self.options.port = port;
        self.port_set = true;
        self
    }

    /// Use `wss` (true, default) or `ws`.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").tls(false).build()?;
    /// assert!(opts.url().starts_with("ws://"));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn tls(mut self, tls: bool) -> Self {
        self.options.tls = tls;
        self
    }

    /// Connect to Pusher's hosted cluster `name` (`ws-{name}.pusher.com`, TLS).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").cluster("mt1").build()?;
    /// assert!(opts.url().starts_with("wss://ws-mt1.pusher.com:443/app/k"));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn cluster(self, name: &str) -> Self {
        self.host(format!("ws-{name}.pusher.com")).tls(true)
    }

    /// Path prefix before `/app/{key}` (Reverb's `REVERB_SERVER_PATH`), e.g. `/reverb`.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").path_prefix("ws").build()?;
    /// assert!(opts.url().contains("/ws/app/k?"));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        self.options.path_prefix = prefix.trim_end_matches('/').to_owned();
        if !self.options.path_prefix.is_empty() && !self.options.path_prefix.starts_with('/') {
            self.options.path_prefix.insert(0, '/');
        }
        self
    }

    /// An extra header on the WebSocket upgrade request.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").header("X-Device", "sensor-7").build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.headers.push((name.into(), value.into()));
        self
    }

    /// Client name and version sent in the query (`client=…&version=…`).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").client_name("inventory-sync", "2.1.0").build()?;
    /// assert!(opts.url().ends_with("client=inventory-sync&version=2.1.0"));
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn client_name(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.options.client_name = name.into();
        self.options.client_version = version.into();
        self
    }

    /// How long one connection attempt (TCP, TLS, upgrade, handshake) may take (10 s).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// use std::time::Duration;
    /// let opts = ClientOptions::builder("k").connect_timeout(Duration::from_secs(3)).build()?;
    /// # let _ = opts;
    /// assert!(ClientOptions::builder("k").connect_timeout(Duration::ZERO).build().is_err());
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Inbound silence before a ping (120 s; the server's `activity_timeout` wins if lower).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// use std::time::Duration;
    /// // Ping after 30 s of silence (a NAT that drops idle flows after a minute).
    /// let opts = ClientOptions::builder("k").activity_timeout(Duration::from_secs(30)).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn activity_timeout(mut self, timeout: Duration) -> Self {
        self.options.activity_timeout = timeout;
        self
    }

    /// How long to wait for any reply to a ping before reconnecting (30 s).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// use std::time::Duration;
    /// let opts = ClientOptions::builder("k").pong_timeout(Duration::from_secs(5)).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.options.pong_timeout = timeout;
        self
    }

    /// Reconnect after a drop (default true).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// // One attempt, no reconnects: a dropped connection ends in `ConnectionState::Failed`.
    /// let opts = ClientOptions::builder("k").reconnect(false).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn reconnect(mut self, enabled: bool) -> Self {
        self.options.reconnect = enabled;
        self
    }

    /// Backoff bounds between reconnect attempts (1 s to 30 s, with jitter).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// use std::time::Duration;
    /// let opts = ClientOptions::builder("k").reconnect_delay(Duration::from_millis(200), Duration::from_secs(5)).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.options.reconnect_min = min;
        self.options.reconnect_max = max.max(min);
        self
    }

    /// How long a connection must last before the reconnect backoff starts again from its
    /// minimum (10 s). A server that accepts and then closes at once (flapping, or shedding
    /// load with 4200) is retried with a growing delay, not in a tight loop; 4200's
    /// "reconnect at once" applies to the first retry after a healthy connection only.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// use std::time::Duration;
    /// let opts = ClientOptions::builder("k").healthy_after(Duration::from_secs(30)).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn healthy_after(mut self, duration: Duration) -> Self {
        self.options.healthy_after = duration;
        self
    }

    /// Give up after this many failed attempts in a row (default: never).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").max_retries(5).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.options.max_retries = Some(retries);
        self
    }

    /// How long `subscribe` waits for the server's answer (10 s).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// use std::time::Duration;
    /// let opts = ClientOptions::builder("k").subscribe_timeout(Duration::from_secs(2)).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.options.subscribe_timeout = timeout;
        self
    }

    /// How private and presence channels (and user sign-in) are authorized.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// use switchboard::HttpAuthorizer;
    /// let auth = HttpAuthorizer::new("https://example.com/broadcasting/auth").bearer_token("api-token");
    /// let opts = ClientOptions::builder("k").authorizer(auth).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.options.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Sign channels locally with the app secret (trusted devices and services only).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("app-key").secret("app-secret").build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn secret(self, secret: impl Into<String>) -> Self {
        let key = self.options.key.clone();
        self.authorizer(SecretAuthorizer::new(key, secret))
    }

    /// Events waiting per stream before the client stops reading the socket for it (1024);
    /// see [`ClientOptionsBuilder::slow_consumer`]. Also the bound on the events a channel
    /// holds for listeners attached after its confirmation.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// assert!(ClientOptions::builder("k").event_queue(65_536).build().is_ok());
    /// assert!(ClientOptions::builder("k").event_queue(0).build().is_err());
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn event_queue(mut self, capacity: usize) -> Self {
        if capacity == 0 {
            self.error = Some(Error::new(ErrorKind::Config, "event_queue must be at least 1"));
        }
        self.options.event_queue = capacity.max(1);
        self
    }

    /// What happens when a listener reads slower than events arrive: by default the client
    /// stops reading the socket until it has room (nothing is lost), and a listener that
    /// takes nothing for 10 s is dropped for and told so (`switchboard:lagged`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::{ClientOptions, SlowConsumer, StallAction};
    /// // Wait up to 30 s for a slow listener, then reconnect (channels get switchboard:gap).
    /// let policy = SlowConsumer::Backpressure { stall_limit: Duration::from_secs(30), on_stall: StallAction::Reconnect };
    /// let opts = ClientOptions::builder("k").slow_consumer(policy).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.options.slow_consumer = policy;
        self
    }

    /// Client events sent per second before they are queued (10, Pusher's limit).
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").client_event_rate(5).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn client_event_rate(mut self, per_second: u32) -> Self {
        self.options.client_event_rate = per_second.max(1);
        self
    }

    /// The largest message accepted from the server (16 MiB). A larger one closes the
    /// connection with 1009 and a clear reason; the client reconnects and each channel gets
    /// `switchboard:gap`, so the loss is reported.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").max_message_size(1024 * 1024).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.max_message_size = bytes.max(1024);
        self
    }

    /// The most members a presence channel's roster keeps (50,000). Past it the others are
    /// not tracked, and the channel gets `switchboard:members_capped` once.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let opts = ClientOptions::builder("k").max_presence_members(1_000).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn max_presence_members(mut self, members: usize) -> Self {
        self.options.max_presence_members = members.max(1);
        self
    }

    /// Which runtime runs the connection task: the library's I/O thread (the default: the
    /// socket is read on a thread of its own, whatever runtime the application uses), or the
    /// caller's, e.g. for a test that pauses time (see [`crate::io_thread`]).
    ///
    /// ```
    /// use switchboard::{ClientOptions, IoRuntime};
    /// let opts = ClientOptions::builder("k").io_runtime(IoRuntime::Caller).build()?;
    /// # let _ = opts;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn io_runtime(mut self, runtime: crate::IoRuntime) -> Self {
        self.options.io_runtime = runtime;
        self
    }

    /// Finish.
    ///
    /// ```
    /// use switchboard::ClientOptions;
    /// let err = ClientOptions::builder("bad key").build().err().expect("refused");
    /// assert_eq!(err.kind(), switchboard::ErrorKind::Config);
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn build(mut self) -> Result<ClientOptions> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if !self.port_set {
            self.options.port = if self.options.tls { 443 } else { 80 };
        }
        let o = &self.options;
        if o.key.is_empty() || o.key.contains(['/', '?', '#', ' ']) {
            return Err(Error::new(ErrorKind::Config, format!("app key {:?} is empty or has / ? # or spaces", o.key)));
        }
        if o.host.is_empty() {
            return Err(Error::new(ErrorKind::Config, "host is empty"));
        }
        if o.protocol == Protocol::RealtimeX && (!o.socketio_path.starts_with('/') || o.socketio_path.ends_with('/')) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("socketio_path {:?} must start with '/' and not end with '/'", o.socketio_path),
            ));
        }
        if o.activity_timeout.is_zero() || o.pong_timeout.is_zero() || o.connect_timeout.is_zero() {
            return Err(Error::new(ErrorKind::Config, "activity, pong and connect timeouts must be above zero"));
        }
        Ok(self.options)
    }
}
