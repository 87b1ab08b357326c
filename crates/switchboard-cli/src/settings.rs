//! Where a client command connects and how it signs: flags > environment (`REVERB_*`) > a
//! `.env` in the working directory > defaults (the development app of `switchboard serve` on
//! 127.0.0.1:8080). A missing or wrong setting is one line naming it (exit code 2).

use std::collections::HashMap;
use std::time::Duration;

use switchboard::{ClientOptions, ClientOptionsBuilder, HttpAuthorizer, PresenceUser, Publisher, SecretAuthorizer};
use switchboard_server::config::{DEFAULT_PORT, DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET};

/// Connection flags shared by the client commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// Shorthand for scheme, host, port and key: ws://host:port[/prefix]/app/KEY.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Server host (REVERB_HOST; default 127.0.0.1).
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Server port (REVERB_PORT; default 8080).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// ws/http or wss/https (REVERB_SCHEME; default http).
    #[arg(long, global = true)]
    pub scheme: Option<String>,
    /// App key (REVERB_APP_KEY).
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// App secret, to sign private/presence channels and HTTP API calls (REVERB_APP_SECRET).
    #[arg(long, global = true)]
    pub secret: Option<String>,
    /// App id, for the HTTP API (REVERB_APP_ID).
    #[arg(long, global = true)]
    pub app_id: Option<String>,
    /// Laravel auth endpoint (e.g. https://app.test/broadcasting/auth) instead of the secret.
    #[arg(long, global = true)]
    pub auth_endpoint: Option<String>,
    /// Bearer token for the auth endpoint.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// pusher (default), realtimex, phoenix or gateway; a --url ending in /socket means
    /// phoenix, one with /apps/ID the Realtime Pub/Sub gateway, one with /socket.io or
    /// ?api_key= RealtimeX (Pusher channels over Socket.IO).
    #[arg(long, global = true)]
    pub protocol: Option<String>,
    /// Gateway: the JWT to connect with (GATEWAY_ACCESS_TOKEN; default: one minted per
    /// connect with the app secret, allowed everything, when the secret is known).
    #[arg(long, global = true)]
    pub access_token: Option<String>,
}

/// Which protocol a command speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Pusher Channels v7 (Reverb, Pusher, Soketi, Sockudo).
    Pusher,
    /// Phoenix Channels (a Hub-style `room:*` channel).
    Phoenix,
    /// The Realtime Pub/Sub gateway (`/apps/{id}?access_token=JWT`).
    Gateway,
    /// RealtimeX: Pusher channels over Socket.IO (`/socket.io/?api_key=KEY`).
    RealtimeX,
}

/// A configuration problem: the message names the setting.
#[derive(Debug)]
pub struct SettingError(pub String);

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS.
    pub tls: bool,
    /// Path prefix before /app/{key}.
    pub prefix: String,
    /// App key.
    pub key: String,
    /// App secret, if known.
    pub secret: Option<String>,
    /// App id, if known.
    pub app_id: Option<String>,
    /// Laravel auth endpoint.
    pub auth_endpoint: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// True when the target is the local development app (127.0.0.1, its key, plain ws):
    /// `chat` may start the embedded server there.
    pub server_is_default: bool,
    /// The protocol.
    pub protocol: Protocol,
    /// Gateway: the access token given (else one is minted with the secret).
    pub access_token: Option<String>,
    /// RealtimeX: the Socket.IO path (`/socket.io`).
    pub socketio_path: String,
}

/// Environment lookup: the process environment, then `.env` in the working directory.
pub fn environment() -> Result<impl Fn(&str) -> Option<String>, SettingError> {
    let mut dotenv = HashMap::new();
    match dotenvy::from_path_iter(".env") {
        Ok(iter) => {
            for item in iter {
                let (k, v) = item.map_err(|e| SettingError(format!(".env: {e}")))?;
                dotenv.insert(k, v);
            }
        }
        Err(e) if e.not_found() => {}
        Err(e) => return Err(SettingError(format!(".env: {e}"))),
    }
    Ok(move |name: &str| {
        std::env::var(name).ok().or_else(|| dotenv.get(name).cloned()).filter(|v| !v.trim().is_empty())
    })
}

impl Settings {
    /// Resolve `args` over the environment `var`.
    pub fn resolve(args: &ConnectArgs, var: &impl Fn(&str) -> Option<String>) -> Result<Settings, SettingError> {
        let mut s = Settings {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            tls: false,
            prefix: String::new(),
            key: DEV_APP_KEY.into(),
            secret: None,
            app_id: None,
            auth_endpoint: None,
            token: None,
            server_is_default: true,
            protocol: Protocol::Pusher,
            access_token: None,
            socketio_path: "/socket.io".into(),
        };
        let env_key = var("REVERB_APP_KEY");
        if let Some(host) = var("REVERB_HOST") {
            s.host = host;
        }
        if let Some(scheme) = var("REVERB_SCHEME") {
            s.tls = parse_scheme("REVERB_SCHEME", &scheme)?;
            s.port = if s.tls { 443 } else { 80 };
        }
        if let Some(port) = var("REVERB_PORT") {
            s.port =
                port.trim().parse().map_err(|_| SettingError(format!("REVERB_PORT: {port:?} is not a port number")))?;
        }
        if let Some(key) = env_key.clone() {
            s.key = key;
        }
        s.secret = var("REVERB_APP_SECRET");
        s.app_id = var("REVERB_APP_ID");
        let phoenix_url = args
            .url
            .as_deref()
            .is_some_and(|u| u.trim_end_matches('/').ends_with("/socket") || u.contains("/socket/websocket"));
        let gateway_url = args.url.as_deref().is_some_and(|u| gateway_url_parts(u).is_some());
        let realtimex_url = args.url.as_deref().is_some_and(is_realtimex_url);
        s.protocol = match args.protocol.as_deref() {
            None if phoenix_url => Protocol::Phoenix,
            None if gateway_url => Protocol::Gateway,
            None if realtimex_url => Protocol::RealtimeX,
            None | Some("pusher") => Protocol::Pusher,
            Some("realtimex") => Protocol::RealtimeX,
            Some("phoenix") => Protocol::Phoenix,
            Some("gateway") => Protocol::Gateway,
            Some(other) => {
                return Err(SettingError(format!(
                    "--protocol: {other:?} is not pusher, realtimex, phoenix or gateway"
                )));
            }
        };
        s.access_token = args.access_token.clone().or_else(|| var("GATEWAY_ACCESS_TOKEN"));
        if let (Some(url), Protocol::Gateway) = (&args.url, s.protocol) {
            let parts = gateway_url_parts(url).ok_or_else(|| {
                SettingError(format!("--url: {url:?} is not ws[s]://host[:port][/prefix]/apps/ID[?access_token=JWT]"))
            })?;
            s.tls = parts.tls;
            s.host = parts.host;
            s.port = parts.port;
            s.prefix = parts.prefix;
            s.app_id = Some(parts.app_id);
            if parts.access_token.is_some() && s.access_token.is_none() {
                s.access_token = parts.access_token;
            }
        } else if let (Some(url), Protocol::Phoenix) = (&args.url, s.protocol) {
            // ws[s]://host[:port]/prefix/socket: the Pusher parser does not apply.
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| SettingError(format!("--url: {url:?} is not ws://host:port/socket")))?;
            s.tls = parse_scheme("--url", scheme)?;
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| SettingError(format!("--url: bad port in {url:?}")))?),
                None => (authority, if s.tls { 443 } else { 80 }),
            };
            s.host = host.trim_matches(['[', ']']).to_owned();
            s.port = port;
            let path = format!("/{path}");
            s.prefix = path.trim_end_matches('/').trim_end_matches("/websocket").trim_end_matches("/socket").to_owned();
        } else if let Some(url) = &args.url {
            let opts = ClientOptions::from_url(url)
                .and_then(ClientOptionsBuilder::build)
                .map_err(|e| SettingError(format!("--url: {}", e.message())))?;
            if s.protocol == Protocol::RealtimeX && opts.protocol() != switchboard::Protocol::RealtimeX {
                return Err(SettingError(format!(
                    "--url: {url:?} is not http[s]://host:port[/socket.io]/?api_key=KEY"
                )));
            }
            s.host = opts.host().to_owned();
            s.port = opts.port();
            s.tls = opts.tls();
            s.prefix = opts.path_prefix().to_owned();
            s.key = opts.key().to_owned();
            s.socketio_path = opts.socketio_path().to_owned();
        }
        if let Some(host) = &args.host {
            s.host = host.clone();
        }
        if let Some(scheme) = &args.scheme {
            s.tls = parse_scheme("--scheme", scheme)?;
        }
        if let Some(port) = args.port {
            s.port = port;
        }
        if let Some(key) = &args.key {
            s.key = key.clone();
        }
        if args.secret.is_some() {
            s.secret = args.secret.clone();
        }
        if args.app_id.is_some() {
            s.app_id = args.app_id.clone();
        }
        s.auth_endpoint = args.auth_endpoint.clone().or_else(|| var("REVERB_AUTH_ENDPOINT"));
        s.token = args.token.clone().or_else(|| var("REVERB_AUTH_TOKEN"));
        // Talking to the local development server: its credentials are known.
        if s.key == DEV_APP_KEY && s.host == "127.0.0.1" && !s.tls {
            s.secret.get_or_insert_with(|| DEV_APP_SECRET.into());
            s.app_id.get_or_insert_with(|| DEV_APP_ID.into());
        }
        if s.protocol == Protocol::Gateway && s.host == "127.0.0.1" && !s.tls {
            // The local development app's: its id and secret are known.
            s.app_id.get_or_insert_with(|| DEV_APP_ID.into());
            if s.app_id.as_deref() == Some(DEV_APP_ID) {
                s.secret.get_or_insert_with(|| DEV_APP_SECRET.into());
            }
        }
        s.server_is_default = matches!(s.host.as_str(), "127.0.0.1" | "localhost")
            && (s.key == DEV_APP_KEY || matches!(s.protocol, Protocol::Phoenix | Protocol::Gateway))
            && !s.tls
            && s.prefix.is_empty()
            && s.socketio_path == "/socket.io"
            && s.auth_endpoint.is_none();
        if s.token.is_some() && s.auth_endpoint.is_none() {
            return Err(SettingError("--token needs --auth-endpoint (the URL the token is for)".into()));
        }
        Ok(s)
    }

    /// Client options, with the authorizer: the endpoint if given, else the secret.
    pub fn client_options(&self, user: Option<PresenceUser>) -> Result<ClientOptions, SettingError> {
        let mut builder = ClientOptions::builder(&self.key)
            .host(&self.host)
            .port(self.port)
            .tls(self.tls)
            .path_prefix(&self.prefix)
            .client_name("switchboard-cli", env!("CARGO_PKG_VERSION"));
        if self.protocol == Protocol::RealtimeX {
            builder = builder.protocol(switchboard::Protocol::RealtimeX).socketio_path(&self.socketio_path);
        }
        if self.server_is_default {
            // The local development server: when it goes (a chat that hosted it quit, and
            // another takes over) come back within a couple of seconds, not the 30 s cap.
            builder = builder.reconnect_delay(Duration::from_millis(100), Duration::from_secs(2));
        }
        if let Some(endpoint) = &self.auth_endpoint {
            let mut auth = HttpAuthorizer::new(endpoint);
            if let Some(token) = &self.token {
                auth = auth.bearer_token(token);
            }
            builder = builder.authorizer(auth);
        } else if let Some(secret) = &self.secret {
            let mut signer = SecretAuthorizer::new(&self.key, secret);
            if let Some(user) = user {
                signer = signer.with_user(user);
            }
            builder = builder.authorizer(signer);
        }
        builder.build().map_err(|e| SettingError(e.message().to_owned()))
    }

    /// The Phoenix socket endpoint (`ws://host:port[/prefix]/socket`).
    pub fn phoenix_endpoint(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}:{}{}/socket", self.host, self.port, self.prefix)
    }

    /// The gateway URL without its token: `ws[s]://host:port[/prefix]/apps/{app_id}`.
    pub fn gateway_base_url(&self) -> Result<String, SettingError> {
        let app_id = self.app_id.as_deref().ok_or_else(|| {
            SettingError("the gateway needs the app id: --app-id, REVERB_APP_ID or a /apps/ID --url".into())
        })?;
        let scheme = if self.tls { "wss" } else { "ws" };
        Ok(format!("{scheme}://{}:{}{}/apps/{app_id}", self.host, self.port, self.prefix))
    }

    /// The HTTP API publisher (needs the app id and secret).
    pub fn publisher(&self) -> Result<Publisher, SettingError> {
        let secret = self
            .secret
            .as_deref()
            .ok_or_else(|| SettingError("the HTTP API needs the app secret: --secret or REVERB_APP_SECRET".into()))?;
        let app_id = self
            .app_id
            .as_deref()
            .ok_or_else(|| SettingError("the HTTP API needs the app id: --app-id or REVERB_APP_ID".into()))?;
        let scheme = if self.tls { "https" } else { "http" };
        let base = format!("{scheme}://{}:{}{}", self.host, self.port, self.prefix);
        Publisher::new(&base, app_id, &self.key, secret).map_err(|e| SettingError(e.message().to_owned()))
    }
}

/// A RealtimeX URL: a `/socket.io` path, or an `api_key` query parameter (the seed SDK's
/// `http[s]://host:port?api_key=KEY`).
fn is_realtimex_url(url: &str) -> bool {
    let (before, query) = url.split_once('?').unwrap_or((url, ""));
    let path = before.split_once("://").map_or(before, |(_, rest)| rest);
    let path = path.split_once('/').map_or("", |(_, path)| path);
    path.trim_end_matches('/').ends_with("socket.io")
        || form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "api_key")
}

/// A gateway URL's parts.
struct GatewayUrl {
    tls: bool,
    host: String,
    port: u16,
    prefix: String,
    app_id: String,
    access_token: Option<String>,
}

/// `ws[s]://host[:port][/prefix]/apps/ID[?access_token=JWT]`, or `None`.
fn gateway_url_parts(url: &str) -> Option<GatewayUrl> {
    let (scheme, rest) = url.split_once("://")?;
    let tls = parse_scheme("--url", scheme).ok()?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let path = format!("/{}", path.trim_end_matches('/'));
    let (prefix, app_id) = path.rsplit_once("/apps/")?;
    if app_id.is_empty() || app_id.contains('/') {
        return None;
    }
    let access_token =
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned());
    Some(GatewayUrl {
        tls,
        host: host.trim_matches(['[', ']']).to_owned(),
        port,
        prefix: prefix.to_owned(),
        app_id: app_id.to_owned(),
        access_token,
    })
}

fn parse_scheme(name: &str, value: &str) -> Result<bool, SettingError> {
    match value.to_ascii_lowercase().as_str() {
        "wss" | "https" => Ok(true),
        "ws" | "http" => Ok(false),
        other => Err(SettingError(format!("{name}: {other:?} is not ws, wss, http or https"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_are_the_local_dev_app() {
        let s = Settings::resolve(&ConnectArgs::default(), &vars(&[])).unwrap();
        assert!(s.server_is_default);
        assert_eq!((s.host.as_str(), s.port, s.key.as_str()), ("127.0.0.1", 8080, DEV_APP_KEY));
        assert_eq!(s.secret.as_deref(), Some(DEV_APP_SECRET));
    }

    #[test]
    fn flags_beat_environment() {
        let env = vars(&[
            ("REVERB_HOST", "ws.example.com"),
            ("REVERB_PORT", "443"),
            ("REVERB_SCHEME", "https"),
            ("REVERB_APP_KEY", "envkey"),
        ]);
        let s = Settings::resolve(&ConnectArgs::default(), &env).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls, s.key.as_str()), ("ws.example.com", 443, true, "envkey"));
        assert!(!s.server_is_default);
        let args = ConnectArgs { url: Some("ws://127.0.0.1:6001/reverb/app/flagkey".into()), ..ConnectArgs::default() };
        let s = Settings::resolve(&args, &env).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls, s.key.as_str(), s.prefix.as_str()),
            ("127.0.0.1", 6001, false, "flagkey", "/reverb")
        );
    }

    #[test]
    fn a_socket_io_url_or_the_flag_means_realtimex() {
        for url in
            ["http://127.0.0.1:8080?api_key=switchboard-key", "ws://127.0.0.1:8080/socket.io/?api_key=switchboard-key"]
        {
            let args = ConnectArgs { url: Some(url.into()), ..ConnectArgs::default() };
            let s = Settings::resolve(&args, &vars(&[])).unwrap();
            assert_eq!((s.protocol, s.key.as_str(), s.port), (Protocol::RealtimeX, DEV_APP_KEY, 8080), "{url}");
            assert!(s.server_is_default, "the local development app: chat may host it");
            let options = s.client_options(None).unwrap();
            assert_eq!(
                options.url(),
                "ws://127.0.0.1:8080/socket.io/?api_key=switchboard-key&EIO=4&transport=websocket"
            );
        }
        let args = ConnectArgs { protocol: Some("realtimex".into()), ..ConnectArgs::default() };
        let s = Settings::resolve(&args, &vars(&[])).unwrap();
        assert_eq!(s.client_options(None).unwrap().protocol(), switchboard::Protocol::RealtimeX);
        let args = ConnectArgs {
            protocol: Some("realtimex".into()),
            url: Some("ws://127.0.0.1:8080/app/k".into()),
            ..ConnectArgs::default()
        };
        assert!(Settings::resolve(&args, &vars(&[])).is_err(), "a Pusher URL with --protocol realtimex");
        // A Phoenix socket with an api_key param stays Phoenix; x_api_key is no api_key.
        let args = ConnectArgs {
            url: Some("ws://127.0.0.1:4000/socket/websocket?api_key=T".into()),
            ..ConnectArgs::default()
        };
        assert_eq!(Settings::resolve(&args, &vars(&[])).unwrap().protocol, Protocol::Phoenix);
        let args = ConnectArgs { url: Some("ws://127.0.0.1:8080/app/k?x_api_key=1".into()), ..ConnectArgs::default() };
        assert_eq!(Settings::resolve(&args, &vars(&[])).unwrap().protocol, Protocol::Pusher);
    }

    #[test]
    fn a_gateway_url_names_its_app_and_token() {
        let args = ConnectArgs {
            url: Some("wss://gw.example.com/rt/apps/42?access_token=abc".into()),
            ..ConnectArgs::default()
        };
        let s = Settings::resolve(&args, &vars(&[])).unwrap();
        assert_eq!(s.protocol, Protocol::Gateway);
        assert_eq!((s.host.as_str(), s.port, s.tls, s.prefix.as_str()), ("gw.example.com", 443, true, "/rt"));
        assert_eq!((s.app_id.as_deref(), s.access_token.as_deref()), (Some("42"), Some("abc")));
        assert_eq!(s.gateway_base_url().unwrap(), "wss://gw.example.com:443/rt/apps/42");
        // The local development app: its secret is known, so tokens can be minted.
        let args = ConnectArgs { protocol: Some("gateway".into()), ..ConnectArgs::default() };
        let s = Settings::resolve(&args, &vars(&[])).unwrap();
        assert_eq!((s.app_id.as_deref(), s.secret.as_deref()), (Some(DEV_APP_ID), Some(DEV_APP_SECRET)));
        assert!(s.server_is_default);
        let args = ConnectArgs { protocol: Some("mqtt".into()), ..ConnectArgs::default() };
        assert!(Settings::resolve(&args, &vars(&[])).unwrap_err().0.contains("gateway"));
    }

    #[test]
    fn bad_settings_name_themselves() {
        let err = Settings::resolve(&ConnectArgs::default(), &vars(&[("REVERB_PORT", "eighty")])).unwrap_err();
        assert!(err.0.contains("REVERB_PORT"));
        let args = ConnectArgs { url: Some("http://nope".into()), ..ConnectArgs::default() };
        assert!(Settings::resolve(&args, &vars(&[])).unwrap_err().0.contains("--url"));
        let args = ConnectArgs { token: Some("t".into()), ..ConnectArgs::default() };
        assert!(Settings::resolve(&args, &vars(&[])).unwrap_err().0.contains("--auth-endpoint"));
    }
}
