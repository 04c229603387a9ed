//! Running a broker process: open the store, bind QUIC, announce the bound address (one
//! stderr line and `<data-dir>/ports.json`), serve until shutdown, then flush.

use std::sync::Arc;

use quiver_net::Service;
use quiver_net::tls::{ClientTls, ServerTls};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::BrokerConfig;
use crate::core::{Core, CoreConfig};
use crate::functions::Functions;
use crate::registration::{Identity, NamesrvLink, Registrar};
use crate::remoting::{Broker, RemotingConfig, advertise_addr};
use crate::store::Store;

/// How a process puts a front on the broker's request handlers: the broker alone, or (the
/// standalone) a name server and the broker behind one endpoint.
pub trait Front: Send + Sync + 'static {
    /// The service the endpoint serves.
    type Service: Service;
    /// Wraps the broker's handlers.
    fn front(self, broker: Arc<Broker>, shutdown: &CancellationToken) -> Arc<Self::Service>;
    /// The name server in this front, if it has one: the broker then registers with it
    /// (and only it), and a topic change returns once that name server has it.
    fn namesrv(&self) -> Option<Arc<dyn NamesrvLink>>;
}

/// The broker alone (`quiver-broker`).
pub struct BrokerOnly;

impl Front for BrokerOnly {
    type Service = Broker;

    fn front(self, broker: Arc<Broker>, _: &CancellationToken) -> Arc<Broker> {
        broker
    }

    fn namesrv(&self) -> Option<Arc<dyn NamesrvLink>> {
        None
    }
}

/// Serves until `shutdown` fires, then stops accepting, finishes in-flight requests, syncs
/// the log and makes the index durable.
pub async fn run(
    role: &str,
    config: BrokerConfig,
    tls: ServerTls,
    shutdown: CancellationToken,
) -> Result<(), String> {
    run_with(role, config, tls, shutdown, BrokerOnly).await
}

/// [`run`] behind `front`.
pub async fn run_with<F: Front>(
    role: &str,
    config: BrokerConfig,
    tls: ServerTls,
    shutdown: CancellationToken,
    front: F,
) -> Result<(), String> {
    let data_dir = config.broker.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|err| format!("cannot create data directory {}: {err}", data_dir.display()))?;
    let store = open_store(&config).await?;
    let endpoint =
        quiver_net::endpoint::server(config.broker.listen, &tls).map_err(|err| err.to_string())?;
    let bound = endpoint
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    let advertise = advertise_addr(bound, config.broker.advertise.as_deref())?;
    let embedded = front.namesrv();
    let remoting = RemotingConfig {
        cluster: config.broker.cluster.clone(),
        broker_name: config.broker.name.clone(),
        advertise,
        access: quiver_net::server::AccessPolicy {
            allow_anonymous: config.broker.allow_anonymous,
        },
    };
    remoting.access.log_start(role);
    let identity = Identity {
        cluster: remoting.cluster.clone(),
        broker_name: remoting.broker_name.clone(),
        addr: remoting.advertise.clone(),
    };
    let mut core = Core::new(
        store.clone(),
        CoreConfig {
            auto_create_topics: config.broker.auto_create_topics,
            default_queues: config.broker.default_queues,
            long_polls_max: config.broker.long_polls_max,
            broker_name: config.broker.name.clone(),
            group_session: config.broker.group_session,
        },
        shutdown.clone(),
    )
    .map_err(|err| format!("cannot start the broker core: {err}"))?;
    let registrar = match embedded {
        // The broker registers with the name server in its own process, the normal way
        // (its registrar, the same requests), and topic changes wait for it.
        Some(link) => {
            let registrar = Registrar::with_links(
                identity,
                vec![link],
                store.clone(),
                config.broker.heartbeat_interval,
                core.topics_changed(),
            );
            core.wait_for_registration(registrar.acked());
            Some(registrar)
        }
        None if config.broker.namesrv.is_empty() => None,
        None => {
            let client_tls = ClientTls {
                ca: tls.ca.clone(),
                identity: Some((tls.cert.clone(), tls.key.clone())),
            };
            Some(Registrar::new(
                identity,
                &config.broker.namesrv,
                client_tls,
                store.clone(),
                config.broker.heartbeat_interval,
                core.topics_changed(),
            )?)
        }
    };
    if let Some(registrar) = &registrar {
        // A name conflict stops the broker before it serves anything.
        registrar.register().await?;
    }
    let core = Arc::new(core);
    let timers = tokio::spawn(core.clone().run_timers());
    // A function's emits to topics this broker does not serve go through a producer of the
    // cluster, with the broker's node certificate.
    let peers = if config.broker.namesrv.is_empty() {
        None
    } else {
        let options = quiver_client::ClientOptions {
            namesrv: config.broker.namesrv.clone(),
            ca: tls.ca.clone(),
            identity: Some((tls.cert.clone(), tls.key.clone())),
            timeout: std::time::Duration::from_secs(10),
            route_refresh: quiver_client::client::ROUTE_REFRESH_DEFAULT,
        };
        let client = quiver_client::Client::new(options)
            .map_err(|err| format!("cannot make the client for function emits: {err}"))?;
        Some(Arc::new(quiver_client::Producer::new(client)))
    };
    let functions = Functions::start(core.clone(), config.functions.clone(), peers).await?;
    let broker = Arc::new(Broker::new(core, functions.clone(), remoting));
    let service = front.front(broker, &shutdown);
    let serving = {
        let (shutdown, limits) = (shutdown.clone(), config.limits.clone());
        tokio::spawn(quiver_net::server::serve(
            endpoint, service, shutdown, limits,
        ))
    };
    let heartbeats = registrar.map(|registrar| tokio::spawn(registrar.run(shutdown.clone())));
    quiver_net::process::announce(role, &data_dir, bound)?;
    let _ = serving.await;
    if let Some(heartbeats) = heartbeats {
        let _ = heartbeats.await;
    }
    // Ends at shutdown (the core's token); a delivery in progress finishes first.
    let _ = timers.await;
    // Each function commits what it finished.
    functions.shutdown().await;
    store.shutdown().await;
    info!("stopped");
    Ok(())
}

async fn open_store(config: &BrokerConfig) -> Result<Arc<Store>, String> {
    let data_dir = config.broker.data_dir.clone();
    let store_config = config.store.clone();
    let dir = data_dir.clone();
    let (store, report) = tokio::task::spawn_blocking(move || Store::open(&dir, store_config))
        .await
        .map_err(|err| format!("store open task failed: {err}"))?
        .map_err(|err| format!("cannot open the store in {}: {err}", data_dir.display()))?;
    info!(
        replayed = report.replayed,
        truncated_bytes = report.truncated_bytes,
        flush = store.flush_mode().name(),
        "store opened"
    );
    Ok(Arc::new(store))
}
