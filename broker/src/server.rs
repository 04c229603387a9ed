//! Running a broker process: open the store, bind QUIC, announce the bound address (one
//! stderr line and `<data-dir>/ports.json`), serve until shutdown, then flush.

use std::sync::Arc;

use quiver_net::tls::{ClientTls, ServerTls};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::BrokerConfig;
use crate::core::{Core, CoreConfig};
use crate::registration::{Identity, Registrar};
use crate::remoting::{Broker, RemotingConfig, advertise_addr};
use crate::store::Store;

/// Serves until `shutdown` fires, then stops accepting, finishes in-flight requests, syncs
/// the log and makes the index durable.
pub async fn run(
    role: &str,
    config: BrokerConfig,
    tls: ServerTls,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let data_dir = config.broker.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|err| format!("cannot create data directory {}: {err}", data_dir.display()))?;
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
    let store = Arc::new(store);
    let endpoint =
        quiver_net::endpoint::server(config.broker.listen, &tls).map_err(|err| err.to_string())?;
    let bound = endpoint
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    let advertise = advertise_addr(bound, config.broker.advertise.as_deref())?;
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
    let core = Arc::new(Core::new(
        store.clone(),
        CoreConfig {
            auto_create_topics: config.broker.auto_create_topics,
            default_queues: config.broker.default_queues,
            long_polls_max: config.broker.long_polls_max,
        },
        shutdown.clone(),
    ));
    let broker = Arc::new(Broker::new(core.clone(), remoting));
    let registrar = if config.broker.namesrv.is_empty() {
        None
    } else {
        let client_tls = ClientTls {
            ca: tls.ca.clone(),
            identity: Some((tls.cert.clone(), tls.key.clone())),
        };
        let registrar = Registrar::new(
            identity,
            &config.broker.namesrv,
            client_tls,
            store.clone(),
            config.broker.heartbeat_interval,
            core.topics_changed(),
        )?;
        registrar.register().await?;
        Some(tokio::spawn(registrar.run(shutdown.clone())))
    };
    quiver_net::process::announce(role, &data_dir, bound)?;
    quiver_net::server::serve(endpoint, broker, shutdown, config.limits.clone()).await;
    if let Some(registrar) = registrar {
        let _ = registrar.await;
    }
    store.shutdown().await;
    info!("stopped");
    Ok(())
}
