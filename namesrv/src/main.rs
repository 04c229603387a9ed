//! `quiver-namesrv`: a name server process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use quiver_namesrv::service::NameServer;
use quiver_net::limits::ServerLimits;
use quiver_net::tls::ServerTls;
use tokio_util::sync::CancellationToken;

/// A Quiver name server: brokers register with it; clients ask it for routes.
#[derive(Parser, Debug)]
#[command(name = "quiver-namesrv", version, about)]
struct Cli {
    /// UDP address to bind; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9876")]
    listen: SocketAddr,
    /// Directory with ca.pem and this node's pair (made by `quiver certs init --node namesrv`).
    #[arg(long, env = "QUIVER_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// Node name of the certificate pair in --tls-dir.
    #[arg(long, default_value = "namesrv")]
    tls_node: String,
    /// Where ports.json is written.
    #[arg(long, default_value = "quiver-namesrv-data")]
    data_dir: PathBuf,
    /// Drop a broker after this long without a heartbeat (e.g. 30s, 1s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    expiry: Duration,
    /// Serve routes and cluster lists to clients without a certificate (logged as a warning).
    #[arg(long, env = "QUIVER_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    quiver_net::process::limit_malloc_arenas();
    let cli = Cli::parse();
    let Some(tls_dir) = cli.tls_dir.clone() else {
        return fail(
            "no TLS directory: run `quiver certs init --dir ./tls --node namesrv` and pass --tls-dir ./tls",
        );
    };
    if cli.expiry.is_zero() {
        return fail("--expiry must be greater than zero");
    }
    quiver_net::process::init_logging(cli.log_format == LogFormat::Json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the runtime: {err}")),
    };
    let tls = ServerTls::in_dir(&tls_dir, &cli.tls_node);
    match runtime.block_on(serve(cli, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

async fn serve(cli: Cli, tls: ServerTls) -> Result<(), String> {
    std::fs::create_dir_all(&cli.data_dir).map_err(|err| {
        format!(
            "cannot create data directory {}: {err}",
            cli.data_dir.display()
        )
    })?;
    let shutdown = CancellationToken::new();
    quiver_net::process::watch_signals(shutdown.clone());
    let endpoint = quiver_net::endpoint::server(cli.listen, &tls).map_err(|err| err.to_string())?;
    let bound = endpoint
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    let policy = quiver_net::server::AccessPolicy {
        allow_anonymous: cli.allow_anonymous,
    };
    policy.log_start("namesrv");
    let server = NameServer::new(cli.expiry, policy);
    tokio::spawn(server.clone().drive_expiry(shutdown.clone()));
    quiver_net::process::announce("namesrv", &cli.data_dir, bound)?;
    quiver_net::server::serve(endpoint, server, shutdown, ServerLimits::default()).await;
    Ok(())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("quiver-namesrv: error: {message}");
    ExitCode::FAILURE
}
