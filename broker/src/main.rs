//! `quiver-broker`: a broker process configured by file, environment and flags.

use std::process::ExitCode;

use clap::Parser;
use quiver_broker::args::{ClusterArgs, LogFormat, ServerArgs};
use quiver_broker::config::BrokerConfig;
use quiver_net::tls::ServerTls;
use tokio_util::sync::CancellationToken;

/// A Quiver broker.
#[derive(Parser, Debug)]
#[command(
    name = "quiver-broker",
    version,
    about = "A Quiver broker: stores messages and serves them over QUIC",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Show what a repair of a corrupt log would move to quarantine; `--yes` does it.
    Repair(quiver_broker::repair::RepairArgs),
}

fn main() -> ExitCode {
    quiver_net::process::limit_malloc_arenas();
    let cli = Cli::parse();
    if let Some(Command::Repair(args)) = &cli.command {
        return match quiver_broker::repair::run(args, BrokerConfig::default()) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err),
        };
    }
    let mut config = match cli.server.resolve(BrokerConfig::default()) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    cli.cluster.apply(&mut config);
    if cli.server.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    let Some(tls_dir) = config.tls.dir.clone() else {
        return fail(&format!(
            "no TLS directory: run `quiver certs init --dir ./tls --node {}` and pass --tls-dir ./tls (or set [tls] dir in the config file)",
            config.broker.name
        ));
    };
    let node = config
        .tls
        .node
        .clone()
        .unwrap_or_else(|| config.broker.name.clone());
    let tls = ServerTls::in_dir(&tls_dir, &node);
    quiver_net::process::init_logging(cli.server.log_format == LogFormat::Json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the runtime: {err}")),
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        quiver_net::process::watch_signals(shutdown.clone());
        quiver_broker::server::run("broker", config, tls, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("quiver-broker: error: {message}");
    ExitCode::FAILURE
}
