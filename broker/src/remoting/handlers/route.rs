//! `route.get` and `cluster.list` asked of a broker directly (a client given a broker's
//! address instead of name servers): this broker's own queues of the topic, from its store,
//! and just itself. Cluster-wide routes are the name servers' (the standalone routes these
//! codes to its embedded name server).

use bytes::Bytes;
use quiver_net::Failure;
use quiver_proto::requests::route::{
    BrokerAddr, BrokerInfo, BrokerRole, ClusterList, ClusterListing, QueueRoute, RouteGet,
    TopicRoute,
};
use quiver_proto::{ErrorCode, decode_body};

use super::{readable_topic, reply};
use crate::remoting::Broker;

pub(crate) async fn get(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: RouteGet = decode_body(body)?;
    readable_topic(&request.topic)?;
    let queues = match broker.core.store().topic(&request.topic) {
        Ok(meta) => meta.queues,
        // Auto-create answers with the route the first send will create.
        Err(_) if broker.core.config().auto_create_topics => broker.core.config().default_queues,
        Err(_) => {
            return Err(Failure::new(
                ErrorCode::TopicNotFound,
                format!(
                    "topic {} not found: create it with `quiver topic create {}`",
                    request.topic, request.topic
                ),
            ));
        }
    };
    let name = &broker.config.broker_name;
    reply(&TopicRoute {
        topic: request.topic,
        brokers: vec![BrokerAddr {
            broker_name: name.clone(),
            addr: broker.config.advertise.clone(),
        }],
        queues: vec![QueueRoute {
            broker_name: name.clone(),
            queues,
            writable: true,
        }],
    })
}

/// `cluster.list`: just this broker.
pub(crate) async fn cluster_list(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let _: ClusterList = decode_body(body)?;
    let topics = broker.core.topics();
    reply(&ClusterListing {
        brokers: vec![BrokerInfo {
            cluster: broker.config.cluster.clone(),
            broker_name: broker.config.broker_name.clone(),
            addr: broker.config.advertise.clone(),
            role: BrokerRole::Master,
            data_version: *broker.core.topics_changed().borrow(),
            heartbeat_age_ms: 0,
            topics: topics.len() as u32,
            queues: topics.iter().map(|(_, meta)| meta.queues).sum(),
            unhealthy_reason: broker.core.store().fence_reason().unwrap_or_default(),
        }],
    })
}
