//! `switchboard-bench`: end-to-end benchmarks measured from the outside.
//!
//! - `fanout`: K subscribers of one channel on any Pusher-protocol server (ours, Sockudo).
//! - `stream-server`: a minimal server that streams one pre-encoded event as fast as each
//!   socket takes it, for client receive-rate runs.
//! - `recv`: receive from the stream server with the switchboard client, or with a bare
//!   read-and-parse loop (the floor), reporting events/s, CPU seconds and peak RSS.
//! - `idle-clients`: hold N switchboard clients subscribed in one process; memory each.
//! - `soak`: N connections with churn for minutes; the server's RSS and descriptors sampled.
//! - `gateway`: the gateway client's publish-to-receive rate and ack round trip.

mod client_bench;
mod fanout;
mod gateway_bench;
mod soak;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "switchboard-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fan-out through a server's HTTP API to K subscribers.
    Fanout(fanout::Args),
    /// Stream a pre-encoded event to every subscriber as fast as it reads.
    StreamServer(client_bench::StreamServerArgs),
    /// Receive from the stream server and report the rate.
    Recv(client_bench::RecvArgs),
    /// Hold N idle subscribed clients and report memory per client.
    IdleClients(client_bench::IdleArgs),
    /// Hold N connections with churn for minutes, sampling the server's RSS and descriptors.
    Soak(soak::Args),
    /// Gateway: publish-to-receive rate and ack round trip of our client against a server.
    Gateway(gateway_bench::Args),
}

fn main() {
    let command = Cli::parse().command;
    // A receiver may run on a current-thread runtime: one event loop, as Node runs pusher-js.
    let runtime = match &command {
        Command::Recv(args) if args.current_thread() => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = runtime.unwrap_or_else(|e| {
        eprintln!("switchboard-bench: cannot start the runtime: {e}");
        std::process::exit(1);
    });
    runtime.block_on(run(command));
}

async fn run(command: Command) {
    let result = match command {
        Command::Fanout(args) => fanout::run(args).await,
        Command::StreamServer(args) => client_bench::stream_server(args).await,
        Command::Recv(args) => client_bench::recv(args).await,
        Command::IdleClients(args) => client_bench::idle_clients(args).await,
        Command::Soak(args) => soak::run(args).await,
        Command::Gateway(args) => gateway_bench::run(args).await,
    };
    if let Err(e) = result {
        eprintln!("switchboard-bench: {e}");
        std::process::exit(1);
    }
}
