//! Registration with the name servers: announce at start (a name conflict stops the
//! broker), heartbeat every interval and at once when topics change, leave on shutdown.

use std::future::Future;
use std::pin::Pin;
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

/// A name server the registrar talks to: over QUIC ([`RpcClient`]), or in the same process
/// (the standalone's own name server).
pub trait NamesrvLink: Send + Sync + 'static {
    /// The name server's address, for logs.
    fn addr(&self) -> &str;
    /// Sends one request; the answer's body, or why there is none.
    fn call(
        &self,
        code: RequestCode,
        body: Bytes,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, NetError>> + Send + '_>>;
}

impl NamesrvLink for RpcClient {
    fn addr(&self) -> &str {
        RpcClient::addr(self)
    }

    fn call(
        &self,
        code: RequestCode,
        body: Bytes,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, NetError>> + Send + '_>> {
        Box::pin(RpcClient::call(self, code, body, timeout))
    }
}

/// Registers one broker with every name server.
pub struct Registrar {
    identity: Identity,
    namesrvs: Vec<Arc<dyn NamesrvLink>>,
    /// The topic-table version each name server last acknowledged, by index; `acked` holds
    /// the smallest. Mutex: written once per heartbeat.
    acked_by: std::sync::Mutex<Vec<u64>>,
    acked: watch::Sender<u64>,
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
                    .map(|client| Arc::new(client) as Arc<dyn NamesrvLink>)
                    .map_err(|err| format!("name server {addr}: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with_links(
            identity,
            namesrvs,
            store,
            interval,
            topics_changed,
        ))
    }

    /// A registrar over the given name-server links.
    pub fn with_links(
        identity: Identity,
        namesrvs: Vec<Arc<dyn NamesrvLink>>,
        store: Arc<Store>,
        interval: Duration,
        topics_changed: watch::Receiver<DataVersion>,
    ) -> Self {
        Registrar {
            identity,
            acked_by: std::sync::Mutex::new(vec![0; namesrvs.len()]),
            acked: watch::channel(0).0,
            namesrvs,
            store,
            interval,
            topics_changed,
        }
    }

    /// The smallest topic-table version (`DataVersion::counter`) every name server has
    /// acknowledged, as it moves.
    pub fn acked(&self) -> watch::Receiver<u64> {
        self.acked.subscribe()
    }

    fn record_ack(&self, namesrv_idx: usize, counter: u64) {
        let mut acked_by = self.acked_by.lock().unwrap_or_else(|p| p.into_inner());
        acked_by[namesrv_idx] = acked_by[namesrv_idx].max(counter);
        let least = acked_by.iter().copied().min().unwrap_or(counter);
        self.acked.send_if_modified(|acked| {
            let moved = *acked != least;
            *acked = least;
            moved
        });
    }

    /// The first registration. A name conflict is fatal; an unreachable name server is not
    /// (it learns about this broker from a later heartbeat).
    pub async fn register(&self) -> Result<(), String> {
        let counter = self.topics_changed.borrow().counter;
        let results = self.announce(RequestCode::BrokerRegister).await;
        for (namesrv_idx, (namesrv, result)) in results.into_iter().enumerate() {
            match result {
                Ok(()) => {
                    self.record_ack(namesrv_idx, counter);
                    info!(namesrv, broker = %self.identity.broker_name, "registered")
                }
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
        for (namesrv_idx, client) in this.namesrvs.clone().into_iter().enumerate() {
            loops.spawn(
                this.clone()
                    .heartbeat_loop(namesrv_idx, client, shutdown.clone()),
            );
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

    async fn heartbeat_loop(
        self: Arc<Self>,
        namesrv_idx: usize,
        client: Arc<dyn NamesrvLink>,
        shutdown: CancellationToken,
    ) {
        let mut topics = self.topics_changed.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                changed = topics.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            let registration = self.registration();
            let counter = registration.data_version.counter;
            let body = Bytes::from(encode_body(&registration));
            let call = client.call(RequestCode::BrokerHeartbeat, body, CALL_TIMEOUT);
            let result = tokio::select! {
                result = call => result,
                () = shutdown.cancelled() => return,
            };
            match result {
                Ok(_) => self.record_ack(namesrv_idx, counter),
                Err(err) => warn!(namesrv = client.addr(), cause = %err, "heartbeat failed"),
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
    namesrvs: &[Arc<dyn NamesrvLink>],
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
