//! The HTTP API client for backends: trigger events (to ≤100 channels, excluding a socket),
//! batches, channel and user queries, terminating a user's connections — signed as the
//! official SDKs sign, usable without any WebSocket. Also verifies webhooks.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! // No WebSocket needed: the seeds' webhook-relay use case.
//! let publisher = switchboard::Publisher::new("https://ws.example.com", "1000", "key", "secret")?;
//! publisher.trigger(&["orders"], "OrderShipped", &serde_json::json!({"id": 7}), None).await?;
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use switchboard_protocol::http_auth::sign_request;

use crate::error::{Error, ErrorKind, Result};

/// One event of a batch.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard::Error> {
/// let publisher = switchboard::Publisher::new("http://127.0.0.1:8080", "1000", "switchboard-key", "switchboard-secret")?;
/// use switchboard::pusher::publisher::BatchEvent;
/// let events = vec![
///     BatchEvent { channel: "orders".into(), name: "created".into(), data: r#"{"id":1}"#.into(), socket_id: None },
///     BatchEvent { channel: "orders".into(), name: "created".into(), data: r#"{"id":2}"#.into(), socket_id: None },
/// ];
/// publisher.trigger_batch(&events).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct BatchEvent {
    /// Channel.
    pub channel: String,
    /// Event name.
    pub name: String,
    /// Payload as a string (usually JSON), delivered verbatim.
    pub data: String,
    /// Socket to exclude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
}

/// A signed HTTP API client for one app.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard::Error> {
/// let publisher = switchboard::Publisher::new("http://127.0.0.1:8080", "1000", "switchboard-key", "switchboard-secret")?;
/// publisher.trigger(&["orders"], "OrderShipped", &serde_json::json!({"id": 7}), None).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    base: String,
    app_id: String,
    key: String,
    secret: String,
    http: reqwest::Client,
    master_key: Option<[u8; 32]>,
}

/// Most channels in one trigger.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard::Error> {
/// let publisher = switchboard::Publisher::new("http://127.0.0.1:8080", "1000", "switchboard-key", "switchboard-secret")?;
/// let channels: Vec<String> = (0..250).map(|i| format!("device-{i}")).collect();
/// for chunk in channels.chunks(switchboard::pusher::publisher::MAX_CHANNELS) {
///     let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
///     publisher.trigger(&names, "reboot", &serde_json::json!({}), None).await?;
/// }
/// # Ok(()) }
/// ```
pub const MAX_CHANNELS: usize = 100;

impl Publisher {
    /// A publisher for app `app_id` at `base_url` (`http[s]://host[:port][/prefix]`).
    ///
    /// ```
    /// use switchboard::Publisher;
    /// assert!(Publisher::new("https://api.example.com/reverb", "1000", "key", "secret").is_ok());
    /// assert!(Publisher::new("not a url", "1000", "key", "secret").is_err());
    /// ```
    pub fn new(base_url: &str, app_id: &str, key: &str, secret: &str) -> Result<Self> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("base URL {base_url:?} must start with http:// or https://"),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::new(ErrorKind::Config, format!("HTTP client: {e}")))?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            app_id: app_id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
            http,
            master_key: None,
        })
    }

    /// Encrypt events for `private-encrypted-` channels with this master key (base64 of 32
    /// bytes), as the official SDKs do. Such an event goes to exactly one channel.
    ///
    /// ```
    /// use switchboard::Publisher;
    /// let publisher = Publisher::new("http://127.0.0.1:8080", "1000", "key", "secret")?
    ///     .with_encryption_master_key("rmsIPX+6hcPmFO3cmXSxeq7tUd47PoCFuHcbUabC2UU=")?;
    /// # let _ = publisher;
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn with_encryption_master_key(mut self, base64_key: &str) -> Result<Self> {
        let key = switchboard_protocol::encryption::decode_shared_secret(base64_key)
            .map_err(|e| Error::new(ErrorKind::Config, format!("encryption master key: {e}")))?;
        self.master_key = Some(key);
        Ok(self)
    }

    /// The path of an API call, including any prefix of the base URL (signed as such).
    fn split_base(&self) -> (&str, &str) {
        let after_scheme = self.base.find("://").map_or(0, |i| i + 3);
        match self.base[after_scheme..].find('/') {
            Some(i) => self.base.split_at(after_scheme + i),
            None => (&self.base, ""),
        }
    }

    async fn call(&self, method: &str, path: &str, params: &[(&str, &str)], body: Option<String>) -> Result<Value> {
        let (origin, prefix) = self.split_base();
        let full_path = format!("{prefix}/apps/{}{path}", self.app_id);
        let extra: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        // The server verifies the path without its own prefix, as Reverb strips it.
        let signed_path = format!("/apps/{}{path}", self.app_id);
        let signed =
            sign_request(&self.key, &self.secret, method, &signed_path, &extra, body.as_deref().map(str::as_bytes), ts);
        let query: String = form_urlencoded_pairs(&signed);
        let url = format!("{origin}{}?{query}", encode_path(&full_path));
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).header("content-type", "application/json"),
        };
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Connection };
            Error::new(kind, format!("HTTP API {method} {full_path}: {e}"))
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let kind = if status == 401 || status == 403 { ErrorKind::Authentication } else { ErrorKind::Protocol };
            return Err(Error::new(kind, format!("HTTP API {method} {full_path} answered {status}: {text}"))
                .with_http(status, text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&text).map_err(|e| {
            Error::new(ErrorKind::Protocol, format!("HTTP API answered invalid JSON: {e}")).with_http(status, text)
        })
    }

    /// Trigger `event` on up to 100 `channels`; `data` is serialized to JSON (a `&str` is
    /// sent as it is). `except` excludes one socket (the sender's, Laravel's `toOthers`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use switchboard_server::config::{DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET};
    /// # let server = switchboard_server::Server::start(switchboard_server::ServerConfig { port: 0, ..Default::default() }).await?;
    /// # let base = format!("http://{}", server.local_addr());
    /// let publisher = switchboard::Publisher::new(&base, DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET)?;
    /// publisher.trigger(&["orders", "audit"], "OrderShipped", &serde_json::json!({"id": 7}), None).await?;
    /// // More than 100 channels is refused before anything is sent.
    /// let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    /// let names: Vec<&str> = many.iter().map(String::as_str).collect();
    /// assert!(publisher.trigger(&names, "e", &"{}", None).await.is_err());
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn trigger(
        &self,
        channels: &[&str],
        event: &str,
        data: &impl Serialize,
        except: Option<&str>,
    ) -> Result<Value> {
        if channels.is_empty() || channels.len() > MAX_CHANNELS {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("trigger to 1 to {MAX_CHANNELS} channels, not {}", channels.len()),
            ));
        }
        let mut text = data_string(data)?;
        if channels.iter().any(|c| c.starts_with("private-encrypted-")) {
            let [channel] = channels else {
                return Err(Error::new(ErrorKind::InvalidRequest, "an encrypted event goes to exactly one channel"));
            };
            let master = self.master_key.as_ref().ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    "set with_encryption_master_key to trigger on private-encrypted- channels",
                )
            })?;
            let key = switchboard_protocol::signature::encrypted_channel_secret(channel, master);
            // The plaintext is the JSON of the data (a string becomes a JSON string), as the
            // SDKs seal it.
            let plaintext = serde_json::to_value(data)
                .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("data does not serialize: {e}")))?
                .to_string();
            text = switchboard_protocol::encryption::encrypt(&key, &plaintext, rand::random());
        }
        let mut body = serde_json::json!({ "name": event, "channels": channels, "data": text });
        if let Some(socket_id) = except {
            body["socket_id"] = Value::String(socket_id.to_owned());
        }
        self.call("POST", "/events", &[], Some(body.to_string())).await
    }

    /// Trigger up to 10 events in one request.
    ///
    /// ```no_run
    /// # async fn run(publisher: switchboard::Publisher) -> Result<(), switchboard::Error> {
    /// use switchboard::pusher::publisher::BatchEvent;
    /// let events = vec![BatchEvent { channel: "orders".into(), name: "created".into(), data: "{}".into(), socket_id: None }];
    /// publisher.trigger_batch(&events).await?;
    /// # Ok(()) }
    /// ```
    pub async fn trigger_batch(&self, events: &[BatchEvent]) -> Result<Value> {
        let body = serde_json::json!({ "batch": events });
        self.call("POST", "/batch_events", &[], Some(body.to_string())).await
    }

    /// Occupied channels, optionally filtered by prefix, with `info` attributes.
    ///
    /// ```no_run
    /// # async fn run(publisher: switchboard::Publisher) -> Result<(), switchboard::Error> {
    /// let list = publisher.channels(Some("presence-"), Some("user_count")).await?;
    /// println!("{list}");
    /// # Ok(()) }
    /// ```
    pub async fn channels(&self, prefix: Option<&str>, info: Option<&str>) -> Result<Value> {
        let mut params = Vec::new();
        if let Some(prefix) = prefix {
            params.push(("filter_by_prefix", prefix));
        }
        if let Some(info) = info {
            params.push(("info", info));
        }
        self.call("GET", "/channels", &params, None).await
    }

    /// One channel's state (`occupied`, and the `info` attributes asked for).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use switchboard_server::config::{DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET};
    /// # let server = switchboard_server::Server::start(switchboard_server::ServerConfig { port: 0, ..Default::default() }).await?;
    /// # let base = format!("http://{}", server.local_addr());
    /// let publisher = switchboard::Publisher::new(&base, DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET)?;
    /// let state = publisher.channel("orders", Some("subscription_count")).await?;
    /// assert_eq!(state["occupied"], false); // nobody subscribed yet
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn channel(&self, name: &str, info: Option<&str>) -> Result<Value> {
        let params: Vec<(&str, &str)> = info.map(|i| ("info", i)).into_iter().collect();
        self.call("GET", &format!("/channels/{name}"), &params, None).await
    }

    /// The user ids of a presence channel.
    ///
    /// ```no_run
    /// # async fn run(publisher: switchboard::Publisher) -> Result<(), switchboard::Error> {
    /// for id in publisher.users("presence-room").await? {
    ///     println!("{id}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn users(&self, name: &str) -> Result<Vec<String>> {
        let v = self.call("GET", &format!("/channels/{name}/users"), &[], None).await?;
        Ok(v["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| crate::pusher::presence::id_string(&u["id"]))
            .collect())
    }

    /// Close every connection of `user_id`.
    ///
    /// ```no_run
    /// # async fn run(publisher: switchboard::Publisher) -> Result<(), switchboard::Error> {
    /// publisher.terminate_user_connections("42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn terminate_user_connections(&self, user_id: &str) -> Result<()> {
        self.call("POST", &format!("/users/{user_id}/terminate_connections"), &[], Some("{}".into())).await.map(|_| ())
    }

    /// Check a webhook: the `X-Pusher-Key` header must be this app's key and
    /// `X-Pusher-Signature` the HMAC of the raw body.
    ///
    /// ```no_run
    /// # fn run(publisher: switchboard::Publisher, key: &str, signature: &str, body: &[u8]) {
    /// if !publisher.verify_webhook(key, signature, body) {
    ///     eprintln!("forged webhook");
    /// }
    /// # }
    /// ```
    pub fn verify_webhook(&self, header_key: &str, header_signature: &str, body: &[u8]) -> bool {
        switchboard_protocol::signature::verify_webhook(&self.key, &self.secret, header_key, header_signature, body)
    }
}

fn data_string(data: &impl Serialize) -> Result<String> {
    let value = serde_json::to_value(data)
        .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("data does not serialize: {e}")))?;
    Ok(match value {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

fn form_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode_component(k));
        out.push('=');
        out.push_str(&encode_component(v));
    }
    out
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_path(path: &str) -> String {
    path.split('/').map(encode_component).collect::<Vec<_>>().join("/")
}
