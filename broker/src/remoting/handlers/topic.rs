//! `topic.*` handlers.

use bytes::Bytes;
use quiver_proto::decode_body;
use quiver_proto::requests::topic::{
    TopicCreate, TopicDelete, TopicDeleted, TopicDescribe, TopicDescription, TopicInfo, TopicList,
    TopicListing, TopicUpdate,
};
use tracing::info;

use super::{blocking, reply, topic_name};
use crate::remoting::{Broker, Failure};
use crate::store::TopicMeta;

pub(crate) async fn create(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: TopicCreate = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let store = broker.store.clone();
    let meta = blocking(move || Ok(store.create_topic(name.as_str(), request.queues)?)).await?;
    info!(topic = %request.topic, queues = meta.queues, "topic created");
    broker.set_route(&request.topic, meta.queues);
    reply(&describe_meta(broker, &request.topic, &meta))
}

pub(crate) async fn update(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: TopicUpdate = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let store = broker.store.clone();
    let meta = blocking(move || Ok(store.update_topic(name.as_str(), request.queues)?)).await?;
    info!(topic = %request.topic, queues = meta.queues, "topic updated");
    broker.set_route(&request.topic, meta.queues);
    reply(&describe_meta(broker, &request.topic, &meta))
}

pub(crate) async fn delete(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: TopicDelete = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let store = broker.store.clone();
    blocking(move || Ok(store.delete_topic(name.as_str())?)).await?;
    info!(topic = %request.topic, "topic deleted");
    broker
        .routes
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove_topic(&broker.config.broker_name, &request.topic);
    broker.bump_topics();
    reply(&TopicDeleted {
        topic: request.topic,
    })
}

pub(crate) async fn list(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let _: TopicList = decode_body(body)?;
    let topics = broker
        .store
        .topics()
        .into_iter()
        .map(|(topic, meta)| TopicInfo {
            topic,
            queues: meta.queues,
            created_ms: meta.created_ms,
        })
        .collect();
    reply(&TopicListing { topics })
}

pub(crate) async fn describe(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: TopicDescribe = decode_body(body)?;
    topic_name(&request.topic)?;
    let meta = broker.store.topic(&request.topic)?;
    broker.store.catch_up().await?;
    reply(&describe_meta(broker, &request.topic, &meta))
}

pub(crate) fn describe_meta(broker: &Broker, topic: &str, meta: &TopicMeta) -> TopicDescription {
    TopicDescription {
        info: TopicInfo {
            topic: topic.to_owned(),
            queues: meta.queues,
            created_ms: meta.created_ms,
        },
        queues: super::msg::offsets_of(broker, meta),
    }
}

impl Broker {
    pub(crate) fn set_route(&self, topic: &str, queues: u32) {
        self.bump_topics();
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_topic(&self.config.broker_name, topic, queues);
    }
}
