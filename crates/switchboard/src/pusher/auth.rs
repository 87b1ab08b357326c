//! Channel authorization and user authentication: local signing with the app secret, a
//! Laravel-style HTTP endpoint, or your own async closure.
//!
//! Every request names the socket id it is for. The connection drops an answer whose
//! socket id is no longer current (a reconnect happened while the request was in flight),
//! so a signature for an old socket is never sent.
//!
//! ```
//! use switchboard::{ClientOptions, HttpAuthorizer};
//! let options = ClientOptions::builder("app-key")
//!     .authorizer(HttpAuthorizer::new("https://app.example.com/broadcasting/auth").bearer_token("token"))
//!     .build()?;
//! # let _ = options;
//! # Ok::<(), switchboard::Error>(())
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use switchboard_protocol::signature::{sign_channel, sign_user};

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result};

pub use crate::BoxFuture;

/// A presence member's identity: `user_id` and optional `user_info` (raw JSON).
///
/// ```
/// use switchboard::PresenceUser;
/// let bot = PresenceUser::new("moderator-bot", serde_json::json!({"role": "bot"}));
/// assert_eq!(bot.user_id, "moderator-bot");
/// assert_eq!(bot.user_info.as_deref(), Some(r#"{"role":"bot"}"#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUser {
    /// The member id.
    pub user_id: String,
    /// Free-form info as JSON text (e.g. `{"name":"Ada"}`).
    pub user_info: Option<String>,
}

impl PresenceUser {
    /// A member with `id` and `info` (JSON).
    ///
    /// ```
    /// let me = switchboard::PresenceUser::new("42", serde_json::json!({"name": "Ada"}));
    /// assert_eq!(me.channel_data(), r#"{"user_id":"42","user_info":{"name":"Ada"}}"#);
    /// ```
    pub fn new(id: impl Into<String>, info: serde_json::Value) -> Self {
        let info = if info.is_null() { None } else { Some(info.to_string()) };
        Self { user_id: id.into(), user_info: info }
    }

    /// The `channel_data` string to sign and send (compact JSON).
    ///
    /// ```
    /// let anonymous = switchboard::PresenceUser::new("7", serde_json::Value::Null);
    /// assert_eq!(anonymous.channel_data(), r#"{"user_id":"7"}"#);
    /// ```
    pub fn channel_data(&self) -> String {
        let mut out = String::from("{\"user_id\":");
        switchboard_protocol::frame::push_json_string(&mut out, &self.user_id);
        if let Some(info) = &self.user_info {
            out.push_str(",\"user_info\":");
            out.push_str(info);
        }
        out.push('}');
        out
    }
}

/// What an authorizer is asked.
///
/// ```
/// use switchboard::{AuthRequest, Authorizer, SecretAuthorizer};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let request = AuthRequest { socket_id: "1.2".into(), channel: "private-orders.1".into(), presence: None };
/// let answer = SecretAuthorizer::new("app-key", "app-secret").authorize_channel(request).await?;
/// assert!(answer.auth.starts_with("app-key:"));
/// # Ok::<(), switchboard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The socket id the signature must be for.
    pub socket_id: String,
    /// The full channel name (`private-…`, `presence-…`).
    pub channel: String,
    /// The presence identity given to `subscribe_presence`, if any.
    pub presence: Option<PresenceUser>,
}

/// The answer for a channel: `{auth, channel_data?, shared_secret?}`.
///
/// ```
/// // What Laravel's /broadcasting/auth answers for a presence channel.
/// let answer: switchboard::ChannelAuth =
///     serde_json::from_str(r#"{"auth":"key:sig","channel_data":"{\"user_id\":\"7\"}"}"#).unwrap();
/// assert_eq!(answer.channel_data.as_deref(), Some(r#"{"user_id":"7"}"#));
/// assert_eq!(answer.shared_secret, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelAuth {
    /// `key:signature`.
    pub auth: String,
    /// Presence: the exact JSON string that was signed.
    #[serde(default)]
    pub channel_data: Option<String>,
    /// Encrypted channels: base64 of the 32-byte key.
    #[serde(default)]
    pub shared_secret: Option<String>,
}

/// The answer for user sign-in: `{auth, user_data}`.
///
/// ```
/// use switchboard::{Authorizer, PresenceUser, SecretAuthorizer};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let signer = SecretAuthorizer::new("app-key", "app-secret").with_user(PresenceUser::new("42", serde_json::json!({})));
/// let user = signer.authenticate_user("1.2".into()).await?;
/// assert!(user.user_data.contains(r#""id":"42""#));
/// # Ok::<(), switchboard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserAuth {
    /// `key:signature` over `socket_id::user::user_data`.
    pub auth: String,
    /// JSON string with at least an `id`.
    pub user_data: String,
}

/// Authorizes subscriptions to private and presence channels (and user sign-in).
///
/// ```
/// use switchboard::{ClientOptions, HttpAuthorizer};
/// // Three ways to authorize: the app secret, an HTTP endpoint, or a closure (FnAuthorizer).
/// let by_secret = ClientOptions::builder("app-key").secret("app-secret").build()?;
/// let by_endpoint = ClientOptions::builder("app-key")
///     .authorizer(HttpAuthorizer::new("https://app.example.com/broadcasting/auth").bearer_token("t"))
///     .build()?;
/// # let _ = (by_secret, by_endpoint);
/// # Ok::<(), switchboard::Error>(())
/// ```
pub trait Authorizer: Send + Sync + 'static {
    /// Authorize `request.socket_id` on `request.channel`.
    fn authorize_channel(&self, request: AuthRequest) -> BoxFuture<'_, Result<ChannelAuth>>;

    /// Authenticate the user for `pusher:signin`. Not every authorizer can.
    fn authenticate_user(&self, socket_id: String) -> BoxFuture<'_, Result<UserAuth>> {
        let _ = socket_id;
        Box::pin(async { Err(Error::new(ErrorKind::Authentication, "this authorizer does not support user sign-in")) })
    }
}

/// Signs locally with the app secret, as RevPy and python-reverb do. Only for trusted
/// devices and backend services: whoever holds the secret can sign anything.
///
/// ```
/// use switchboard::{Authorizer, AuthRequest, PresenceUser, SecretAuthorizer};
/// # tokio_test_block_on(async {
/// let signer = SecretAuthorizer::new("app-key", "app-secret");
/// let auth = signer.authorize_channel(AuthRequest {
///     socket_id: "1234.5678".into(), channel: "private-orders.1".into(), presence: None,
/// }).await?;
/// assert_eq!(auth.auth, "app-key:b9db33bdf95d8b131d3a251ee3fd4c230a90419e512d374ddee11a71f579c824");
/// # Ok::<(), switchboard::Error>(()) }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) }
/// ```
#[derive(Clone)]
pub struct SecretAuthorizer {
    key: String,
    secret: String,
    user: Option<PresenceUser>,
    master_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for SecretAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretAuthorizer").field("key", &self.key).field("user", &self.user).finish_non_exhaustive()
    }
}

impl SecretAuthorizer {
    /// Sign for app `key` with `secret`.
    ///
    /// ```
    /// use switchboard::{AuthRequest, Authorizer, SecretAuthorizer};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let signer = SecretAuthorizer::new("app-key", "app-secret");
    /// let request = AuthRequest { socket_id: "1.2".into(), channel: "private-a".into(), presence: None };
    /// assert!(signer.authorize_channel(request).await?.auth.starts_with("app-key:"));
    /// # Ok::<(), switchboard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { key: key.into(), secret: secret.into(), user: None, master_key: None }
    }

    /// The encryption master key (base64 of 32 bytes) for `private-encrypted-` channels: the
    /// per-channel key is derived from it, as the server SDKs do.
    ///
    /// ```
    /// use switchboard::{AuthRequest, Authorizer, SecretAuthorizer};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let master = "rmsIPX+6hcPmFO3cmXSxeq7tUd47PoCFuHcbUabC2UU="; // base64 of 32 bytes
    /// let signer = SecretAuthorizer::new("app-key", "app-secret").with_encryption_master_key(master)?;
    /// let request = AuthRequest { socket_id: "1.2".into(), channel: "private-encrypted-vault".into(), presence: None };
    /// assert!(signer.authorize_channel(request).await?.shared_secret.is_some());
    /// assert!(SecretAuthorizer::new("k", "s").with_encryption_master_key("too short").is_err());
    /// # Ok::<(), switchboard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn with_encryption_master_key(mut self, base64_key: &str) -> Result<Self> {
        let key = switchboard_protocol::encryption::decode_shared_secret(base64_key)
            .map_err(|e| Error::new(ErrorKind::Config, format!("encryption master key: {e}")))?;
        self.master_key = Some(key.to_vec());
        Ok(self)
    }

    /// The presence identity (and sign-in user) used when `subscribe` is not given one.
    ///
    /// ```
    /// use switchboard::{AuthRequest, Authorizer, PresenceUser, SecretAuthorizer};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let signer = SecretAuthorizer::new("app-key", "app-secret").with_user(PresenceUser::new("device-7", serde_json::json!({})));
    /// let request = AuthRequest { socket_id: "1.2".into(), channel: "presence-fleet".into(), presence: None };
    /// let answer = signer.authorize_channel(request).await?;
    /// assert_eq!(answer.channel_data.as_deref(), Some(r#"{"user_id":"device-7","user_info":{}}"#));
    /// # Ok::<(), switchboard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn with_user(mut self, user: PresenceUser) -> Self {
        self.user = Some(user);
        self
    }
}

impl Authorizer for SecretAuthorizer {
    fn authorize_channel(&self, request: AuthRequest) -> BoxFuture<'_, Result<ChannelAuth>> {
        Box::pin(async move {
            let is_presence = request.channel.starts_with("presence-");
            let channel_data = if is_presence {
                let user = request.presence.or_else(|| self.user.clone()).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Authentication,
                        format!("{} is a presence channel: give a PresenceUser to subscribe_presence or SecretAuthorizer::with_user", request.channel),
                    )
                })?;
                Some(user.channel_data())
            } else {
                None
            };
            let auth =
                sign_channel(&self.key, &self.secret, &request.socket_id, &request.channel, channel_data.as_deref());
            let shared_secret = match (&self.master_key, request.channel.starts_with("private-encrypted-")) {
                (Some(master), true) => {
                    use base64::Engine as _;
                    let key = switchboard_protocol::signature::encrypted_channel_secret(&request.channel, master);
                    Some(base64::engine::general_purpose::STANDARD.encode(key))
                }
                _ => None,
            };
            Ok(ChannelAuth { auth, channel_data, shared_secret })
        })
    }

    fn authenticate_user(&self, socket_id: String) -> BoxFuture<'_, Result<UserAuth>> {
        Box::pin(async move {
            let user = self.user.as_ref().ok_or_else(|| {
                Error::new(ErrorKind::Authentication, "sign-in needs a user: use SecretAuthorizer::with_user")
            })?;
            let mut user_data = String::from("{\"id\":");
            switchboard_protocol::frame::push_json_string(&mut user_data, &user.user_id);
            if let Some(info) = &user.user_info {
                user_data.push_str(",\"user_info\":");
                user_data.push_str(info);
            }
            user_data.push('}');
            let auth = sign_user(&self.key, &self.secret, &socket_id, &user_data);
            Ok(UserAuth { auth, user_data })
        })
    }
}

/// Asks an HTTP endpoint, as pusher-js and Laravel Echo do: a form POST of `socket_id` and
/// `channel_name` (plus your params) with your headers (`Authorization: Bearer …`,
/// `X-CSRF-TOKEN`), answered with JSON `{auth, channel_data?, shared_secret?}`.
///
/// A 401/403/419/5xx answer is an authentication error carrying the status and body.
/// Network failures and timeouts are retried with backoff (3 attempts).
///
/// ```
/// use switchboard::HttpAuthorizer;
/// let auth = HttpAuthorizer::new("https://app.example.com/broadcasting/auth")
///     .bearer_token("token-123")
///     .header("X-CSRF-TOKEN", "csrf");
/// ```
#[derive(Debug, Clone)]
pub struct HttpAuthorizer {
    endpoint: String,
    user_endpoint: Option<String>,
    headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
    http: reqwest::Client,
    timeout: Duration,
    attempts: u32,
    /// Send a JSON body instead of a form (the seed RealtimeX SDK's style).
    json: bool,
}

impl HttpAuthorizer {
    /// Use `endpoint` (e.g. Laravel's `/broadcasting/auth`).
    ///
    /// ```
    /// use switchboard::HttpAuthorizer;
    /// let auth = HttpAuthorizer::new("https://app.example.com/broadcasting/auth");
    /// let options = switchboard::ClientOptions::builder("app-key").authorizer(auth).build()?;
    /// # let _ = options;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            user_endpoint: None,
            headers: Vec::new(),
            params: Vec::new(),
            http: reqwest::Client::new(),
            timeout: Duration::from_secs(10),
            attempts: 3,
            json: false,
        }
    }

    /// Send the request as JSON (`{"socket_id", "channel_name", …params}`, and for presence
    /// channels `"user_data": {"user_id", "user_info"}`) instead of a form: the style of the
    /// seed RealtimeX SDK's auth endpoints. The answer is the same `{auth, channel_data?}`.
    /// Unlike the seed, no API key is sent as a Bearer token unless you add one.
    ///
    /// ```
    /// use switchboard::{HttpAuthorizer, realtimex};
    /// let auth = HttpAuthorizer::new("https://app.example.com/realtimex/auth").json_body();
    /// let options = realtimex::options("app-key").authorizer(auth).build()?;
    /// # let _ = options;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn json_body(mut self) -> Self {
        self.json = true;
        self
    }

    /// The user sign-in endpoint (Laravel: `/broadcasting/user-auth`).
    ///
    /// ```
    /// use switchboard::HttpAuthorizer;
    /// let auth = HttpAuthorizer::new("https://app.example.com/broadcasting/auth")
    ///     .user_endpoint("https://app.example.com/broadcasting/user-auth");
    /// # let _ = auth;
    /// ```
    pub fn user_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.user_endpoint = Some(endpoint.into());
        self
    }

    /// Add a header to every request.
    ///
    /// ```
    /// use switchboard::HttpAuthorizer;
    /// let auth = HttpAuthorizer::new("https://app.example.com/broadcasting/auth").header("X-CSRF-TOKEN", "token-from-the-page");
    /// # let _ = auth;
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `Authorization: Bearer {token}` (Sanctum, Passport).
    ///
    /// ```
    /// use switchboard::HttpAuthorizer;
    /// let auth = HttpAuthorizer::new("https://api.example.com/broadcasting/auth").bearer_token("sanctum-token");
    /// # let _ = auth;
    /// ```
    pub fn bearer_token(self, token: impl AsRef<str>) -> Self {
        let value = format!("Bearer {}", token.as_ref());
        self.header("Authorization", value)
    }

    /// Add a form parameter to every request.
    ///
    /// ```
    /// use switchboard::HttpAuthorizer;
    /// let auth = HttpAuthorizer::new("https://app.example.com/broadcasting/auth").param("device_id", "sensor-7");
    /// # let _ = auth;
    /// ```
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Per-request timeout (10 s).
    ///
    /// ```
    /// use switchboard::HttpAuthorizer;
    /// let auth = HttpAuthorizer::new("https://app.example.com/broadcasting/auth").timeout(std::time::Duration::from_secs(3));
    /// # let _ = auth;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts on network failures and timeouts (3).
    ///
    /// ```
    /// use switchboard::HttpAuthorizer;
    /// // One try: a network error fails the subscription at once.
    /// let auth = HttpAuthorizer::new("https://app.example.com/broadcasting/auth").attempts(1);
    /// # let _ = auth;
    /// ```
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
        user_data: Option<serde_json::Value>,
    ) -> Result<T> {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
        let mut last_error = None;
        let json_body = self.json.then(|| {
            let mut body: serde_json::Map<String, serde_json::Value> =
                form.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            if let Some(user_data) = &user_data {
                body.insert("user_data".into(), user_data.clone());
            }
            body
        });
        for attempt in 1..=self.attempts {
            let request = self.http.post(endpoint).timeout(self.timeout).header("Accept", "application/json");
            let mut request = match &json_body {
                Some(body) => request.json(body),
                None => request.form(&form),
            };
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    if !(200..300).contains(&status) {
                        let hint = match status {
                            401 | 403 => {
                                "the endpoint refused: check the token/session and the channel's authorization callback"
                            }
                            419 => "CSRF token mismatch: send X-CSRF-TOKEN or use a Bearer token with an API route",
                            _ => "the auth endpoint failed",
                        };
                        return Err(Error::new(
                            ErrorKind::Authentication,
                            format!("{endpoint} answered {status}: {hint}"),
                        )
                        .with_http(status, body));
                    }
                    return serde_json::from_str(&body).map_err(|e| {
                        Error::new(ErrorKind::Authentication, format!("{endpoint} answered 200 with invalid JSON: {e}"))
                            .with_http(status, body.clone())
                    });
                }
                Err(e) => {
                    last_error = Some(Error::new(
                        if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Authentication },
                        format!("auth endpoint {endpoint} unreachable (attempt {attempt}/{}): {e}", self.attempts),
                    ));
                    if attempt < self.attempts {
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::new(ErrorKind::Authentication, "auth endpoint not tried")))
    }
}

impl Authorizer for HttpAuthorizer {
    fn authorize_channel(&self, request: AuthRequest) -> BoxFuture<'_, Result<ChannelAuth>> {
        Box::pin(async move {
            let user_data = request.presence.as_ref().and_then(|user| serde_json::from_str(&user.channel_data()).ok());
            let mut form =
                vec![("socket_id".to_owned(), request.socket_id), ("channel_name".to_owned(), request.channel)];
            form.extend(self.params.iter().cloned());
            self.post(&self.endpoint, form, user_data).await
        })
    }

    fn authenticate_user(&self, socket_id: String) -> BoxFuture<'_, Result<UserAuth>> {
        Box::pin(async move {
            let endpoint = self
                .user_endpoint
                .as_deref()
                .ok_or_else(|| Error::new(ErrorKind::Authentication, "sign-in needs HttpAuthorizer::user_endpoint"))?;
            let mut form = vec![("socket_id".to_owned(), socket_id)];
            form.extend(self.params.iter().cloned());
            self.post(endpoint, form, None).await
        })
    }
}

/// An authorizer from an async closure.
///
/// ```
/// use switchboard::{ChannelAuth, FnAuthorizer};
/// let auth = FnAuthorizer::new(|req| async move {
///     Ok(ChannelAuth { auth: format!("key:signature-for-{}", req.socket_id), channel_data: None, shared_secret: None })
/// });
/// ```
pub struct FnAuthorizer<F> {
    f: Arc<F>,
}

impl<F, Fut> FnAuthorizer<F>
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ChannelAuth>> + Send + 'static,
{
    /// Wrap `f`.
    ///
    /// ```
    /// use switchboard::{ChannelAuth, ClientOptions, FnAuthorizer};
    /// let auth = FnAuthorizer::new(|req| async move {
    ///     // Ask your own service for a signature for req.socket_id on req.channel.
    ///     Ok(ChannelAuth { auth: format!("key:sig-{}", req.channel), channel_data: None, shared_secret: None })
    /// });
    /// let options = ClientOptions::builder("key").authorizer(auth).build()?;
    /// # let _ = options;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn new(f: F) -> Self {
        Self { f: Arc::new(f) }
    }
}

impl<F, Fut> Authorizer for FnAuthorizer<F>
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ChannelAuth>> + Send + 'static,
{
    fn authorize_channel(&self, request: AuthRequest) -> BoxFuture<'_, Result<ChannelAuth>> {
        Box::pin((self.f)(request))
    }
}
