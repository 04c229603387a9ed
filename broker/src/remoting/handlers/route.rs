//! `route.*` handlers (the embedded name server).

use bytes::Bytes;
use quiver_proto::requests::route::RouteGet;
use quiver_proto::{ErrorCode, decode_body};

use super::{reply, topic_name};
use crate::remoting::{Broker, Failure};

pub(crate) async fn get(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: RouteGet = decode_body(body)?;
    topic_name(&request.topic)?;
    let route = broker
        .routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .route(&request.topic);
    match route {
        Some(route) => reply(&route),
        None if broker.config.auto_create_topics => {
            // Auto-create answers with the route the first send will create.
            let mut table = quiver_namesrv::RouteTable::new();
            table.upsert_broker(&broker.config.broker_name, &broker.config.advertise);
            table.set_topic(
                &broker.config.broker_name,
                &request.topic,
                broker.config.default_queues,
            );
            reply(&table.route(&request.topic).expect("route just set"))
        }
        None => Err(Failure::new(
            ErrorCode::TopicNotFound,
            format!(
                "topic {} not found: create it with `quiver topic create {}`",
                request.topic, request.topic
            ),
        )),
    }
}

/// `cluster.list` on a broker that answers routes itself (the standalone): just itself.
pub(crate) async fn cluster_list(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    use quiver_proto::requests::route::{BrokerInfo, BrokerRole, ClusterList, ClusterListing};
    let _: ClusterList = decode_body(body)?;
    let topics = broker.store.topics();
    reply(&ClusterListing {
        brokers: vec![BrokerInfo {
            cluster: broker.config.cluster.clone(),
            broker_name: broker.config.broker_name.clone(),
            addr: broker.config.advertise.clone(),
            role: BrokerRole::Master,
            data_version: *broker.topics_changed().borrow(),
            heartbeat_age_ms: 0,
            topics: topics.len() as u32,
            queues: topics.iter().map(|(_, meta)| meta.queues).sum(),
            unhealthy_reason: broker.store.fence_reason().unwrap_or_default(),
        }],
    })
}
