//! `quiver standalone`: broker + name server on one endpoint, TLS made on first start.

mod front;

use std::net::SocketAddr;

use anyhow::anyhow;
use quiver_broker::args::{LogFormat, ServerArgs};
use quiver_broker::config::{BrokerConfig, NAMESRV_PORT};
use quiver_net::tls::{CertPlan, DEFAULT_SANS, ServerTls, init_dir};
use tokio_util::sync::CancellationToken;

/// Shortest expiry of the embedded name server (a name server's default).
const NAMESRV_EXPIRY_MIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Node name of the standalone's certificate pair.
const STANDALONE_NODE: &str = "standalone";

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StandaloneArgs {
    #[command(subcommand)]
    command: Option<StandaloneCommand>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand, Debug)]
enum StandaloneCommand {
    /// Show what a repair of a corrupt log would move to quarantine; `--yes` does it.
    Repair(quiver_broker::repair::RepairArgs),
}

pub fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let mut defaults = BrokerConfig::default();
    defaults.broker.name = STANDALONE_NODE.into();
    defaults.broker.listen = SocketAddr::from(([127, 0, 0, 1], NAMESRV_PORT));
    if let Some(StandaloneCommand::Repair(repair)) = &args.command {
        let report = quiver_broker::repair::run(repair, defaults).map_err(|err| anyhow!(err))?;
        print!("{report}");
        return Ok(());
    }
    let config = args.server.resolve(defaults).map_err(|err| anyhow!(err))?;
    if !config.broker.namesrv.is_empty() {
        return Err(anyhow!(
            "broker.namesrv is set ({}), but the standalone is its own name server: remove it, or run `quiver-broker` to join name servers",
            config.broker.namesrv.join(",")
        ));
    }
    if args.server.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let tls_dir = config
        .tls
        .dir
        .clone()
        .unwrap_or_else(|| config.broker.data_dir.join("tls"));
    let node = config
        .tls
        .node
        .clone()
        .unwrap_or_else(|| STANDALONE_NODE.into());
    if config.tls.dir.is_none() && !tls_dir.join("ca.pem").exists() {
        let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
        let ip = config.broker.listen.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            sans.push(ip.to_string());
        }
        if let Some(host) = config
            .broker
            .advertise
            .as_deref()
            .and_then(|a| a.rsplit_once(':'))
            .map(|(h, _)| h.to_owned())
        {
            sans.push(host);
        }
        let plan = CertPlan {
            nodes: vec![(node.clone(), sans)],
            clients: vec![("admin".into(), true), ("client".into(), false)],
        };
        init_dir(&tls_dir, &plan)?;
        eprintln!(
            "quiver: created TLS material in {} (CA, node pair, admin and client pairs)",
            tls_dir.display()
        );
    } else if config.tls.dir.is_none()
        && tls_dir.join("ca.key").exists()
        && !tls_dir.join("client.pem").exists()
    {
        // A TLS dir from before clients needed a certificate: add the client pair.
        let plan = CertPlan {
            nodes: vec![],
            clients: vec![("client".into(), false)],
        };
        init_dir(&tls_dir, &plan)?;
        eprintln!(
            "quiver: added a client pair to {} (data-plane requests need a client certificate)",
            tls_dir.display()
        );
    }
    let tls = ServerTls::in_dir(&tls_dir, &node);
    quiver_net::process::init_logging(args.server.log_format == LogFormat::Json);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime
        .block_on(async {
            let shutdown = CancellationToken::new();
            quiver_net::process::watch_signals(shutdown.clone());
            let front = front::Standalone::new(
                // Three heartbeats may be missed before the broker drops out of its own routes.
                (config.broker.heartbeat_interval * 3).max(NAMESRV_EXPIRY_MIN),
                quiver_net::server::AccessPolicy {
                    allow_anonymous: config.broker.allow_anonymous,
                },
                &config.broker.name,
            );
            quiver_broker::server::run_with("standalone", config, tls, shutdown, front).await
        })
        .map_err(|err| anyhow!(err))
}
