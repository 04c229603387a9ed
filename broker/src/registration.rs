//! Registration with the name servers: announce at start (a name conflict stops the
//! broker), heartbeat every interval and at once when topics change, leave on shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quiver_net::tls::ClientTls;
use quiver_net::{NetError, RpcClient};
use quiver_proto::requests::route::{
    BrokerRegistration, BrokerRole, BrokerUnregister, DataVersion, TopicQueues,
};
use quiver_proto::{ErrorCode, RequestCode, encode_body};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::Store;

/// How long one registration or heartbeat call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the name servers to acknowledge the leave.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Who this broker is, as name servers see it.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub broker_name: String,
    /// Advertised address.
    pub addr: String,
}

/// Registers one broker with every name server.
pub struct Registrar {
    identity: Identity,
    namesrvs: Vec<Arc<RpcClient>>,
    store: Arc<Store>,
    interval: Duration,
    topics_changed: watch::Receiver<DataVersion>,
}

impl Registrar {
    /// A registrar using the node's own certificate pair as its client identity (name servers
    /// accept registrations only from node certificates).
    pub fn new(
        identity: Identity,
        namesrvs: &[String],
        tls: ClientTls,
        store: Arc<Store>,
        interval: Duration,
        topics_changed: watch::Receiver<DataVersion>,
    ) -> Result<Self, String> {
        let endpoint = RpcClient::endpoint(&tls).map_err(|err| err.to_string())?;
        let namesrvs = namesrvs
            .iter()
            .map(|addr| {
                RpcClient::new(endpoint.clone(), addr)
                    .map(Arc::new)
                    .map_err(|err| format!("name server {addr}: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Registrar {
            identity,
            namesrvs,
            store,
            interval,
            topics_changed,
        })
    }

    /// The first registration. A name conflict is fatal; an unreachable name server is not
    /// (it learns about this broker from a later heartbeat).
    pub async fn register(&self) -> Result<(), String> {
        for (namesrv, result) in self.announce(RequestCode::BrokerRegister).await {
            match result {
                Ok(()) => info!(namesrv, broker = %self.identity.broker_name, "registered"),
                Err(NetError::Server {
                    code: ErrorCode::BrokerConflict | ErrorCode::PermissionDenied,
                    message,
                }) => {
                    return Err(format!(
                        "name server {namesrv} refused the registration: {message}"
                    ));
                }
                Err(err) => {
                    warn!(namesrv, cause = %err, "name server unreachable; will retry with heartbeats")
                }
            }
        }
        Ok(())
    }

    /// Heartbeats until `shutdown`, then unregisters. Each name server gets its own loop, so
    /// a dead or slow one never delays the heartbeats to the others.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut loops = tokio::task::JoinSet::new();
        for client in this.namesrvs.clone() {
            loops.spawn(this.clone().heartbeat_loop(client, shutdown.clone()));
        }
        while loops.join_next().await.is_some() {}
        let leave = Bytes::from(encode_body(&BrokerUnregister {
            cluster: this.identity.cluster.clone(),
            broker_name: this.identity.broker_name.clone(),
            addr: this.identity.addr.clone(),
        }));
        for (namesrv, result) in call_all(
            &this.namesrvs,
            RequestCode::BrokerUnregister,
            leave,
            LEAVE_TIMEOUT,
        )
        .await
        {
            match result {
                Ok(()) => info!(namesrv, "unregistered"),
                Err(err) => warn!(namesrv, cause = %err, "unregister failed"),
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, client: Arc<RpcClient>, shutdown: CancellationToken) {
        let mut topics = self.topics_changed.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                changed = topics.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            let body = Bytes::from(encode_body(&self.registration()));
            let call = client.call(RequestCode::BrokerHeartbeat, body, CALL_TIMEOUT);
            let result = tokio::select! {
                result = call => result,
                () = shutdown.cancelled() => return,
            };
            if let Err(err) = result {
                warn!(namesrv = client.addr(), cause = %err, "heartbeat failed");
            }
        }
    }

    fn registration(&self) -> BrokerRegistration {
        BrokerRegistration {
            cluster: self.identity.cluster.clone(),
            broker_name: self.identity.broker_name.clone(),
            addr: self.identity.addr.clone(),
            role: BrokerRole::Master,
            data_version: *self.topics_changed.borrow(),
            topics: self
                .store
                .topics()
                .into_iter()
                .map(|(topic, meta)| TopicQueues {
                    topic,
                    queues: meta.queues,
                })
                .collect(),
            unhealthy_reason: self.store.fence_reason().unwrap_or_default(),
        }
    }

    /// Sends this broker's registration to every name server at once.
    async fn announce(&self, code: RequestCode) -> Vec<(String, Result<(), NetError>)> {
        let body = Bytes::from(encode_body(&self.registration()));
        call_all(&self.namesrvs, code, body, CALL_TIMEOUT).await
    }
}

/// Calls every name server at once; answers in name-server order.
async fn call_all(
    namesrvs: &[Arc<RpcClient>],
    code: RequestCode,
    body: Bytes,
    timeout: Duration,
) -> Vec<(String, Result<(), NetError>)> {
    let mut calls = tokio::task::JoinSet::new();
    for (idx, client) in namesrvs.iter().enumerate() {
        let (client, body) = (client.clone(), body.clone());
        calls.spawn(async move { (idx, client.call(code, body, timeout).await.map(|_| ())) });
    }
    let mut results: Vec<Option<Result<(), NetError>>> = namesrvs.iter().map(|_| None).collect();
    while let Some(joined) = calls.join_next().await {
        if let Ok((idx, result)) = joined {
            results[idx] = Some(result);
        }
    }
    namesrvs
        .iter()
        .zip(results)
        .map(|(client, result)| {
            let result =
                result.unwrap_or_else(|| Err(NetError::Setup("registration task failed".into())));
            (client.addr().to_owned(), result)
        })
        .collect()
}
