//! The broker's configuration: built-in defaults, then a TOML file, then
//! `QUIVER_<SECTION>__<KEY>` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::store::StoreConfig;

/// Default UDP port of a broker (RocketMQ's 10911).
pub const BROKER_PORT: u16 = 10911;
/// Default UDP port of a name server and of the standalone (RocketMQ's 9876).
pub const NAMESRV_PORT: u16 = 9876;

/// Everything a broker process reads at start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Identity, addresses and data.
    pub broker: BrokerSection,
    /// TLS material.
    pub tls: TlsSection,
    /// The store.
    pub store: StoreConfig,
    /// What peers may hold: connections, request bytes, shutdown drain.
    pub limits: quiver_net::limits::ServerLimits,
    /// WASM functions: call threads, module size, log ring, default limits.
    pub functions: crate::functions::config::FunctionsConfig,
}

/// `[broker]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// Broker name (unique in its cluster).
    pub name: String,
    /// UDP address to bind (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Address clients connect to; defaults to the bound address.
    pub advertise: Option<String>,
    /// Where the log, indexes, TLS files and `ports.json` live.
    pub data_dir: PathBuf,
    /// Create unknown topics on first send.
    pub auto_create_topics: bool,
    /// Serve sends, pulls, queries and routes to clients without a certificate (logged as a
    /// warning at start). Admin and node requests always need their certificates.
    pub allow_anonymous: bool,
    /// Long-polling pulls waiting at once; a pull beyond it is answered at once (empty if
    /// nothing is there).
    pub long_polls_max: usize,
    /// Queue count of auto-created topics.
    pub default_queues: u32,
    /// Cluster name, reported to the name servers.
    pub cluster: String,
    /// Name servers to register with (`host:port`); empty = answer routes locally only.
    pub namesrv: Vec<String>,
    /// How often the broker heartbeats to every name server.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: std::time::Duration,
    /// How long a consumer-group member, and its queue leases, last past its last
    /// heartbeat: a member silent this long is gone and its queues move. Members heartbeat
    /// every third of it.
    #[serde(with = "humantime_serde")]
    pub group_session: std::time::Duration,
}

/// `[tls]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Directory with `ca.pem`, `<node>.pem`, `<node>.key`.
    pub dir: Option<PathBuf>,
    /// Node name of this server's pair; defaults to the broker name.
    pub node: Option<String>,
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            name: "broker-a".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], BROKER_PORT)),
            advertise: None,
            data_dir: PathBuf::from("quiver-data"),
            auto_create_topics: false,
            allow_anonymous: false,
            long_polls_max: 10_000,
            default_queues: quiver_proto::requests::topic::QUEUES_DEFAULT,
            cluster: "DefaultCluster".into(),
            namesrv: Vec::new(),
            heartbeat_interval: std::time::Duration::from_secs(10),
            group_session: std::time::Duration::from_secs(5),
        }
    }
}

impl BrokerConfig {
    /// Layers `defaults`, the TOML `file` (if any) and the `QUIVER_<SECTION>__<KEY>`
    /// environment. The error names the source of a bad value.
    pub fn load(defaults: BrokerConfig, file: Option<&Path>) -> Result<Self, String> {
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(file) = file {
            if !file.exists() {
                return Err(format!("config file {} does not exist", file.display()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(
            Env::prefixed("QUIVER_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let config: BrokerConfig = figment
            .extract()
            .map_err(|err| format!("invalid configuration: {err}"))?;
        config
            .store
            .validate()
            .map_err(|err| format!("invalid configuration: {err}"))?;
        if config.broker.group_session < std::time::Duration::from_millis(30) {
            return Err(
                "invalid configuration: broker.group_session must be at least 30ms (members heartbeat every third of it)"
                    .into(),
            );
        }
        config
            .functions
            .validate()
            .map_err(|err| format!("invalid configuration: {err}"))?;
        let store = &config.store;
        let request_max = store.batch_bytes_max.as_u64() as usize
            + store.message_bytes_max.as_u64() as usize
            + (1 << 20);
        config
            .limits
            .validate(request_max)
            .map_err(|err| format!("invalid configuration: {err}"))?;
        Ok(config)
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|err| format!("# cannot render config: {err}\n"))
    }
}
