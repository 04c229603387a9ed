//! Global client flags and the connection context.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use quiver_client::{Client, ClientError, ClientOptions, DEFAULT_NAMESRV, ErrorCode};
use quiver_net::NetError;
use quiver_net::tls::{CLIENT_PAIR_SEARCH, locate_ca, locate_client_pair};

/// Flags every client command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Name servers or the standalone, `host:port[,host:port]`.
    #[arg(long, global = true, env = "QUIVER_NAMESRV", default_value = DEFAULT_NAMESRV)]
    pub namesrv: String,
    /// Cluster CA certificate (default: QUIVER_CA, then ./quiver-data/tls/ca.pem). Goes
    /// before the subcommand, like --cert and --key.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (default: QUIVER_CERT, then ./quiver-data/tls/admin.pem).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client key (default: QUIVER_KEY, then ./quiver-data/tls/admin.key).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: Output,
    /// Per-request timeout in seconds (0.001 to 86400; a long-poll adds its wait).
    #[arg(long, global = true, default_value = "10", value_parser = crate::flags::timeout)]
    pub timeout: Duration,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    Text,
    /// One JSON document (JSON lines for streams).
    Json,
}

/// A connected client and the output mode.
pub struct Context {
    pub client: Client,
    pub output: Output,
    pub namesrv: Vec<String>,
}

impl Context {
    pub fn new(global: GlobalArgs) -> anyhow::Result<Self> {
        let ca = locate_ca(global.ca.as_deref()).map_err(|err| anyhow!(err))?;
        let identity = locate_client_pair(global.cert.as_deref(), global.key.as_deref(), &ca)
            .map_err(|err| anyhow!(err))?;
        let namesrv: Vec<String> = global
            .namesrv
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let options = ClientOptions {
            namesrv: namesrv.clone(),
            ca,
            identity,
            timeout: global.timeout,
            route_refresh: quiver_client::client::ROUTE_REFRESH_DEFAULT,
        };
        let client = Client::new(options).context("cannot set up the client")?;
        Ok(Context {
            client,
            output: global.output,
            namesrv,
        })
    }

    /// Turns a client error into a message that says where it looked and how to fix it.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let Some(client_err) = err.downcast_ref::<ClientError>() else {
            return err;
        };
        match client_err {
            ClientError::Net(NetError::Connect { addr, reason }) => anyhow!(
                "no broker answered at {addr} ({reason}); name servers tried: {} (from --namesrv, QUIVER_NAMESRV or the default {DEFAULT_NAMESRV}): start one with `quiver standalone` or point --namesrv at a running one",
                self.namesrv.join(",")
            ),
            ClientError::Net(NetError::Timeout { addr, .. }) => anyhow!(
                "no answer from {addr} in time: is a quiver broker running there? (start one with `quiver standalone`; raise --timeout for slow links)"
            ),
            ClientError::Net(NetError::Server {
                code: ErrorCode::PermissionDenied,
                ..
            }) if self.client.options().identity.is_none() => {
                anyhow!("{err}; no client certificate was found (tried {CLIENT_PAIR_SEARCH})")
            }
            _ => err,
        }
    }
}
