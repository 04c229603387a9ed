//! Command-line flags shared by `quiver-broker` and `quiver standalone`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::BrokerConfig;
use crate::store::FlushMode;

/// Server flags; each overrides the config file and environment.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServerArgs {
    /// TOML config file (every key optional; see --print-config).
    #[arg(long, env = "QUIVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// UDP address to bind; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address clients use to reach this server (defaults to the bound address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data directory (log, indexes, TLS files, ports.json).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Broker name.
    #[arg(long)]
    pub broker_name: Option<String>,

    /// Directory with ca.pem and this node's pair (made by `quiver certs init`).
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Node name of this server's certificate pair in --tls-dir.
    #[arg(long)]
    pub tls_node: Option<String>,
    /// When a send is acknowledged: sync = after fdatasync (default), async = after write().
    #[arg(long, value_enum)]
    pub flush: Option<FlushArg>,
    /// Create unknown topics on first send.
    #[arg(long)]
    pub auto_create_topics: bool,
    /// Serve sends, pulls, queries and routes without a client certificate (a warning).
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `--flush`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FlushArg {
    /// Ack after fdatasync.
    Sync,
    /// Ack after write().
    Async,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

impl ServerArgs {
    /// Loads defaults < file < environment, then applies the flags.
    pub fn resolve(&self, defaults: BrokerConfig) -> Result<BrokerConfig, String> {
        let mut config = BrokerConfig::load(defaults, self.config.as_deref())?;
        if let Some(listen) = self.listen {
            config.broker.listen = listen;
        }
        if let Some(advertise) = &self.advertise {
            config.broker.advertise = Some(advertise.clone());
        }
        if let Some(dir) = &self.data_dir {
            config.broker.data_dir = dir.clone();
        }
        if let Some(name) = &self.broker_name {
            config.broker.name = name.clone();
        }
        if let Some(dir) = &self.tls_dir {
            config.tls.dir = Some(dir.clone());
        }
        if let Some(node) = &self.tls_node {
            config.tls.node = Some(node.clone());
        }
        if let Some(flush) = self.flush {
            config.store.flush = match flush {
                FlushArg::Sync => FlushMode::Sync,
                FlushArg::Async => FlushMode::Async,
            };
        }
        if self.auto_create_topics {
            config.broker.auto_create_topics = true;
        }
        if self.allow_anonymous {
            config.broker.allow_anonymous = true;
        }
        Ok(config)
    }
}

/// Cluster flags of `quiver-broker` (the standalone is its own name server and has none).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClusterArgs {
    /// Cluster name.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Name servers to register with, `host:port[,host:port]`.
    #[arg(long, env = "QUIVER_NAMESRV", value_delimiter = ',')]
    pub namesrv: Vec<String>,
    /// Heartbeat interval to the name servers (e.g. 10s, 200ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<std::time::Duration>,
}

impl ClusterArgs {
    /// Applies the flags over `config`.
    pub fn apply(&self, config: &mut BrokerConfig) {
        if let Some(cluster) = &self.cluster {
            config.broker.cluster = cluster.clone();
        }
        if !self.namesrv.is_empty() {
            config.broker.namesrv = self.namesrv.clone();
        }
        if let Some(interval) = self.heartbeat_interval {
            config.broker.heartbeat_interval = interval;
        }
    }
}
