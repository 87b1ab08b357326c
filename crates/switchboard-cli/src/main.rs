//! The `switchboard` command: `chat` (the main job), `listen`, `trigger`, `channels`,
//! `users`, the gateway's `publish`, `request`, `respond` and `token`, and `serve` (the
//! server: Pusher, Phoenix and the gateway on one port).
//!
//! Configuration precedence: flags > environment (`REVERB_*`) > a `.env` in the working
//! directory > (`serve` only) the `--config` TOML file > defaults.

// The doc comments on the argument structs are clap's `--help` text, written for a terminal
// (`[[apps]]`, bare URLs), not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::bare_urls)]

mod chat;
mod commands;
mod gateway;
mod settings;
mod tui;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard_server::{Server, ServerConfig};

/// Real-time channels: a Pusher Channels protocol v7 server and tools.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, propagate_version = true)]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(flatten)]
    connect: settings::ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Chat in a presence room (starts a local server when none is configured or running).
    #[command(
        after_help = "Examples:\n  switchboard chat\n  switchboard chat --room ops --name ada\n  switchboard chat --url wss://ws.example.com/app/KEY --auth-endpoint https://example.com/broadcasting/auth --token T\n  echo hello | switchboard chat --room lobby      (line mode)\n  switchboard chat --url ws://localhost:4000/socket   (a Hub-style Phoenix server)\n  switchboard chat --protocol phoenix              (Phoenix, embedded server)\n  switchboard chat --url http://127.0.0.1:8080?api_key=switchboard-key   (RealtimeX over Socket.IO; same rooms as Pusher)\nIn the chat: /who, /room NAME, /quit"
    )]
    Chat {
        /// Room name (channel presence-chat.ROOM).
        #[arg(long, default_value = "lobby")]
        room: String,
        /// Your display name (default: $USER).
        #[arg(long)]
        name: Option<String>,
        /// Where log lines go while the TUI is up, so none is drawn over it (default:
        /// $XDG_STATE_HOME/switchboard/chat.log, else ~/.local/state/switchboard/chat.log).
        /// In line mode they go to stderr.
        #[arg(long, value_name = "PATH")]
        log_file: Option<std::path::PathBuf>,
    },
    /// Print one JSON line per event of the channels, reconnecting forever.
    #[command(
        after_help = "Examples:\n  switchboard listen news\n  switchboard listen private-orders.1 --event OrderShipped --url wss://ws.example.com/app/KEY --secret S\n  switchboard listen news --protocol realtimex     (RealtimeX: /socket.io/?api_key=KEY)\nOutput: {\"channel\",\"event\",\"data\",\"at\"} per line on stdout; status on stderr.\nNothing is dropped when stdout reads slowly (a pipe into a slow program): listen waits for\nit, and the wait reaches the server through TCP, so events queue there instead of being\nlost. Ends with exit code 0 when stdout is closed (listen ... | head), and with exit code 3\nwhen the server ends the connection for good (4001 unknown key, 4004 over quota, 4009\nterminated): a supervisor restarts it (systemd Restart=always)."
    )]
    Listen {
        /// Channels (gateway: topics) to listen to.
        #[arg(required = true)]
        channels: Vec<String>,
        /// Only this event name (gateway: messageType pattern, `*` and `**` wildcards).
        #[arg(long)]
        event: Option<String>,
    },
    /// Gateway: publish a message to a topic.
    #[command(
        after_help = "Examples:\n  switchboard --protocol gateway publish chat '{\"text\":\"hi\"}' --type text --wait-ack\n  echo '{\"n\":1}' | switchboard --url ws://127.0.0.1:8080/apps/1000 publish sensors -\nPrints {\"id\"} on stdout. --wait-ack waits for the server's ack (exit 1 if none comes:\nthe app's gateway_inbound_ack must be on)."
    )]
    Publish {
        /// Topic.
        topic: String,
        /// Payload (JSON or text), or - to read stdin; default {}.
        data: Option<String>,
        /// messageType (default broadcast).
        #[arg(long = "type")]
        message_type: Option<String>,
        /// Ask for delivery as a binary frame.
        #[arg(long)]
        compress: bool,
        /// Wait for the ack.
        #[arg(long)]
        wait_ack: bool,
    },
    /// Gateway: send a request to the backends (secure/inbound) and print the reply.
    #[command(
        after_help = "Examples:\n  switchboard --protocol gateway request '{\"tz\":\"UTC\"}' --type gettime\nPrints {\"status\",\"data\",\"id\"}. Exit code: 0 for status ok, 1 for another status,\n4 when no reply came within --timeout."
    )]
    Request {
        /// Payload (JSON or text), or - to read stdin; default {}.
        data: Option<String>,
        /// messageType (default broadcast).
        #[arg(long = "type")]
        message_type: Option<String>,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Gateway: answer requests on secure/inbound by running a command per request.
    #[command(
        after_help = "Examples:\n  switchboard --protocol gateway respond --type gettime -- date -u +'\"%H:%M\"'\n  switchboard --protocol gateway respond -- jq '{echo: .}'\nThe command gets the payload (JSON) on stdin; its stdout (JSON, else text) is the reply,\nwith status ok when it exits 0, error otherwise. Requests are answered one at a time."
    )]
    Respond {
        /// Only requests of this messageType (wildcards allowed; default all).
        #[arg(long = "type")]
        message_type: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Gateway: print an access token (JWT) signed with the app secret.
    #[command(
        after_help = "Examples:\n  switchboard token --sub ada\n  switchboard token --sub backend --permission realtime:subscriber:read:topic:secure/inbound --permission 'realtime:publisher:write:topic:priv/*'\n  curl -H \"Authorization: Bearer $(switchboard token)\" -d '{\"topic\":\"chat\",\"message\":1}' http://127.0.0.1:8080/api/topics/1000/publish\nWithout --permission the token may do everything (subscribe, publish, admin)."
    )]
    Token {
        /// The subject (`sub`).
        #[arg(long, default_value = "switchboard-cli")]
        sub: String,
        /// A grant, e.g. realtime:publisher:write:topic:chat/* (repeat for more).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Seconds until it expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Publish an event through the signed HTTP API (or as a client event with --client).
    #[command(
        after_help = "Examples:\n  switchboard trigger news headline '{\"title\":\"hi\"}'\n  echo '{\"id\":7}' | switchboard trigger orders OrderShipped -\n  switchboard trigger private-room typing '{\"on\":true}' --client"
    )]
    Trigger {
        /// Channel.
        channel: String,
        /// Event name.
        event: String,
        /// Data (JSON or text), or - to read stdin; default {}.
        data: Option<String>,
        /// Send as a client event over a socket instead (client- is added).
        #[arg(long)]
        client: bool,
    },
    /// List occupied channels through the HTTP API.
    #[command(after_help = "Examples:\n  switchboard channels\n  switchboard channels --prefix presence-")]
    Channels {
        /// Only channels starting with this prefix.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// List the members of a presence channel through the HTTP API.
    #[command(after_help = "Example:\n  switchboard users presence-chat.lobby")]
    Users {
        /// A presence- channel.
        channel: String,
    },
    /// Run the Reverb/Pusher-compatible server.
    #[command(
        after_help = "Examples:\n  switchboard serve\n  switchboard serve --port 6001 --app-id 1 --app-key key --app-secret secret\n  REVERB_APP_ID=1 REVERB_APP_KEY=k REVERB_APP_SECRET=s switchboard serve\n  switchboard serve --config switchboard.toml"
    )]
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML file with server settings and [[apps]].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to bind (default 127.0.0.1; REVERB_SERVER_HOST).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind (default 8080; REVERB_SERVER_PORT).
    #[arg(long)]
    port: Option<u16>,
    /// Path prefix for every route, e.g. /ws (REVERB_SERVER_PATH).
    #[arg(long)]
    path: Option<String>,
    /// App id (digits; REVERB_APP_ID). With --app-key and --app-secret, replaces the apps.
    #[arg(long, requires_all = ["app_key", "app_secret"])]
    app_id: Option<String>,
    /// App key (REVERB_APP_KEY).
    #[arg(long, requires_all = ["app_id", "app_secret"])]
    app_key: Option<String>,
    /// App secret (REVERB_APP_SECRET).
    #[arg(long, requires_all = ["app_id", "app_key"])]
    app_secret: Option<String>,
    /// Scale out over this Redis (redis://, rediss:// or unix:///path): nodes sharing it act
    /// as one server. Same as REVERB_SCALING_ENABLED=true with REDIS_URL, or [scaling] in
    /// the TOML file. Without it, one process and no Redis.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_file = match &cli.command {
        Command::Chat { log_file, .. } if chat_has_a_terminal() => {
            Some(log_file.clone().unwrap_or_else(default_chat_log))
        }
        _ => None,
    };
    init_tracing(cli.verbose, log_file.as_deref());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        command => runtime.block_on(client_command(cli.connect, command)),
    }
}

async fn client_command(connect: settings::ConnectArgs, command: Command) -> ExitCode {
    let name = match &command {
        Command::Chat { .. } => "chat",
        Command::Listen { .. } => "listen",
        Command::Trigger { .. } => "trigger",
        Command::Channels { .. } => "channels",
        Command::Users { .. } => "users",
        Command::Publish { .. } => "publish",
        Command::Request { .. } => "request",
        Command::Respond { .. } => "respond",
        Command::Token { .. } => "token",
        Command::Serve(_) => "serve",
    };
    let gateway_only = matches!(command, Command::Publish { .. } | Command::Request { .. } | Command::Respond { .. });
    let settings = match settings::environment().and_then(|env| settings::Settings::resolve(&connect, &env)) {
        Ok(settings) => settings,
        Err(settings::SettingError(message)) => {
            eprintln!("switchboard {name}: {message}");
            return ExitCode::from(2);
        }
    };
    if gateway_only && settings.protocol != settings::Protocol::Gateway {
        eprintln!(
            "switchboard {name}: {name} speaks the gateway protocol: add --protocol gateway or a --url ending in /apps/ID"
        );
        return ExitCode::from(2);
    }
    let result = match command {
        Command::Chat { room, name, .. } => chat(settings, room, name).await,
        Command::Listen { channels, event } if settings.protocol == settings::Protocol::Gateway => {
            gateway::listen(settings, channels, event).await
        }
        Command::Listen { channels, event } => commands::listen(settings, channels, event).await,
        Command::Publish { topic, data, message_type, compress, wait_ack } => {
            let options = switchboard::gateway::PublishOptions { message_type, compress, ..Default::default() };
            gateway::publish(settings, topic, data, options, wait_ack).await
        }
        Command::Request { data, message_type, timeout } => {
            let options = switchboard::gateway::PublishOptions { message_type, ..Default::default() };
            gateway::request(settings, data, options, std::time::Duration::from_secs(timeout.max(1))).await
        }
        Command::Respond { message_type, command } => gateway::respond(settings, message_type, command).await,
        Command::Token { sub, permissions, ttl } => gateway::token(settings, sub, permissions, ttl),
        Command::Trigger { channel, event, data, client } => {
            commands::trigger(settings, channel, event, data, client).await
        }
        Command::Channels { prefix } => commands::channels(settings, prefix).await,
        Command::Users { channel } => commands::users(settings, channel).await,
        Command::Serve(_) => Ok(ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(commands::Failure(message, code)) => {
            eprintln!("switchboard {name}: {message}");
            ExitCode::from(code)
        }
    }
}

async fn chat(settings: settings::Settings, room: String, name: Option<String>) -> Result<ExitCode, commands::Failure> {
    let name = name.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "guest".into());
    let mut host = chat::EmbeddedHost::start(&settings).await?;
    let embedded = match &host {
        Some(host) => host.hosting().await,
        None => None,
    };
    let (session, events) = chat::ChatSession::start(&settings, &room, &name).await?;
    if let Some(host) = &mut host {
        host.keep_the_room(session.connected_probe(), session.feed());
    }
    let ended = if chat_has_a_terminal() {
        tui::run(session, events, embedded).await
    } else {
        chat::line_mode(session, events, embedded).await
    };
    // Also after a failure: a hosted server is handed over cleanly, not dropped.
    if let Some(host) = host {
        let nowhere = (settings.protocol, String::new(), None);
        host.stop(ended.as_ref().unwrap_or(&nowhere)).await;
    }
    ended.map(|_| ExitCode::SUCCESS)
}

/// The chat draws its TUI when both ends are a terminal (else: line mode).
fn chat_has_a_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// `$XDG_STATE_HOME/switchboard/chat.log`, else `~/.local/state/switchboard/chat.log`.
fn default_chat_log() -> std::path::PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
            home.join(".local/state")
        });
    state.join("switchboard/chat.log")
}

/// Logs to stderr, or appended to `file` (the TUI's terminal must not get them). A file that
/// cannot be opened means no logs, said once on stderr before the TUI starts.
fn init_tracing(verbose: u8, file: Option<&std::path::Path>) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let Some(path) = file else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
        return;
    };
    let opened = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(path));
    match opened {
        Ok(file) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        Err(e) => eprintln!("switchboard chat: no log file ({}: {e}); logs are off", path.display()),
    }
}

/// Environment lookup: the process environment, then `.env` in the working directory.
fn environment() -> Result<impl Fn(&str) -> Option<String>, String> {
    let mut dotenv = HashMap::new();
    match dotenvy::from_path_iter(".env") {
        Ok(iter) => {
            for item in iter {
                let (k, v) = item.map_err(|e| format!(".env: {e}"))?;
                dotenv.insert(k, v);
            }
        }
        Err(e) if e.not_found() => {}
        Err(e) => return Err(format!(".env: {e}")),
    }
    Ok(move |name: &str| std::env::var(name).ok().or_else(|| dotenv.get(name).cloned()))
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match build_config(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("switchboard serve: {message}");
            return ExitCode::from(2);
        }
    };
    // Caught before the first socket is accepted: a SIGTERM at any point after this closes
    // sockets with 4200 instead of killing the process with them open.
    let signal = switchboard_server::shutdown_signal();
    let running = match Server::start(config.clone()).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("switchboard serve: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = running.local_addr();
    eprintln!("switchboard serve: listening on {addr}{}", config.path);
    if config.scaling.enabled {
        eprintln!(
            "  scaling out over Redis (prefix {:?}, lease {} ms): Pusher, RealtimeX, Phoenix and gateway sockets",
            config.scaling.prefix, config.scaling.lease_ms
        );
    }
    for app in &config.apps {
        eprintln!(
            "  app id={} key={} secret={}  ws://{addr}{}/app/{}  http://{addr}{}/apps/{}",
            app.id, app.key, app.secret, config.path, app.key, config.path, app.id
        );
    }
    if config.apps == ServerConfig::default().apps {
        eprintln!("  (the built-in development app: set REVERB_APP_ID/KEY/SECRET or use --config for real apps)");
    }
    running.run_until(signal).await;
    ExitCode::SUCCESS
}

fn build_config(args: ServeArgs) -> Result<ServerConfig, String> {
    let base = match &args.config {
        Some(path) => ServerConfig::from_file(path).map_err(|e| e.to_string())?,
        None => ServerConfig::default(),
    };
    let mut config = base.with_env(environment()?).map_err(|e| e.to_string())?;
    if let Some(host) = args.host {
        config.host = host;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if let Some(path) = args.path {
        config.path = path;
    }
    if let Some(url) = args.redis {
        config.scaling.enabled = true;
        config.scaling.url = url;
    }
    if let (Some(id), Some(key), Some(secret)) = (args.app_id, args.app_key, args.app_secret) {
        config.apps = vec![switchboard_server::AppConfig { id, key, secret, ..Default::default() }];
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
