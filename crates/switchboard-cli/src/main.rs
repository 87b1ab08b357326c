//! The `switchboard` command: `serve` runs the Pusher-compatible server.
//!
//! Configuration precedence: flags > environment (`REVERB_*`) > a `.env` in the working
//! directory > the `--config` TOML file > defaults.

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
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
    let running = match Server::start(config.clone()).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("switchboard serve: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = running.local_addr();
    eprintln!("switchboard serve: listening on {addr}{}", config.path);
    for app in &config.apps {
        eprintln!(
            "  app id={} key={} secret={}  ws://{addr}{}/app/{}  http://{addr}{}/apps/{}",
            app.id, app.key, app.secret, config.path, app.key, config.path, app.id
        );
    }
    if config.apps == ServerConfig::default().apps {
        eprintln!("  (the built-in development app: set REVERB_APP_ID/KEY/SECRET or use --config for real apps)");
    }
    running.run_until_signal().await;
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
    if let (Some(id), Some(key), Some(secret)) = (args.app_id, args.app_key, args.app_secret) {
        config.apps = vec![switchboard_server::AppConfig { id, key, secret, ..Default::default() }];
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
