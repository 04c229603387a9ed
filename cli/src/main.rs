//! `quiver`: the standalone broker, admin, send, pull, query, certificates and benchmarks.

mod commands;
mod connect;
mod flags;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::connect::GlobalArgs;

/// Quiver: a RocketMQ-style event broker over QUIC.
#[derive(Parser, Debug)]
#[command(name = "quiver", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a standalone broker (broker + name server on one endpoint), data in ./quiver-data.
    Standalone(commands::standalone::StandaloneArgs),
    /// Brokers registered with the name servers.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCommand),
    /// Create, update, delete, list, describe and route topics.
    #[command(subcommand)]
    Topic(commands::topic::TopicCommand),
    /// Send messages.
    Send(commands::send::SendArgs),
    /// Pull messages from a queue.
    Pull(commands::pull::PullArgs),
    /// Join a consumer group and print its messages as they come.
    Consume(commands::consume::ConsumeArgs),
    /// Consumer groups: list, describe, update, reset offsets.
    #[command(subcommand)]
    Group(commands::group::GroupCommand),
    /// A group's dead letters: list them, resend them to the group.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// Consumer functions (WebAssembly components): test one locally.
    #[command(subcommand, name = "fn")]
    Fn(commands::function::FnCommand),
    /// Look messages up by id or key.
    Query(commands::query::QueryArgs),
    /// Make TLS material for a cluster.
    #[command(subcommand)]
    Certs(commands::certs::CertsCommand),
    /// Show a broker's counters.
    Stats,
    /// Run a benchmark workload against a running broker (see BENCH.md).
    Bench(commands::bench::BenchArgs),
    #[command(skip)]
    FnRemote(commands::function::remote::RemoteCommand),
}

fn main() -> ExitCode {
    quiver_net::process::limit_malloc_arenas();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => commands::standalone::run(args),
        Command::Certs(command) => commands::certs::run(command, &cli.global),
        // Local: no broker involved.
        Command::Fn(commands::function::FnCommand::Remote(command)) => {
            run_client_command(Command::FnRemote(command), cli.global)
        }
        Command::Fn(command) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(commands::function::run(command, cli.global.output))),
        command => run_client_command(command, cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quiver: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn run_client_command(command: Command, global: GlobalArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let ctx = connect::Context::new(global)?;
        let result = match command {
            Command::Topic(command) => commands::topic::run(command, &ctx).await,
            Command::Cluster(command) => commands::cluster::run(command, &ctx).await,
            Command::Send(args) => commands::send::run(args, &ctx).await,
            Command::Pull(args) => commands::pull::run(args, &ctx).await,
            Command::Consume(args) => commands::consume::run(args, &ctx).await,
            Command::Group(command) => commands::group::run(command, &ctx).await,
            Command::Dlq(command) => commands::dlq::run(command, &ctx).await,
            Command::Query(args) => commands::query::run(args, &ctx).await,
            Command::Stats => commands::stats::run(&ctx).await,
            Command::Bench(args) => commands::bench::run(args, &ctx).await,
            Command::FnRemote(command) => commands::function::remote::run(command, &ctx).await,
            Command::Standalone(_) | Command::Certs(_) | Command::Fn(_) => {
                unreachable!("handled before the runtime")
            }
        };
        ctx.client.close().await;
        result.map_err(|err| ctx.explain(err))
    })
}

/// The error chain on one line.
fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
