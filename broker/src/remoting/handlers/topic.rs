//! `topic.*` handlers.

use bytes::Bytes;
use quiver_net::Failure;
use quiver_proto::decode_body;
use quiver_proto::requests::topic::{
    TopicCreate, TopicDelete, TopicDeleted, TopicDescribe, TopicDescription, TopicInfo, TopicList,
    TopicListing, TopicUpdate,
};
use tracing::info;

use super::{readable_topic, reply, topic_name};
use crate::core::TopicChange;
use crate::remoting::Broker;

pub(crate) async fn create(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: TopicCreate = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let meta = broker
        .core
        .create_topic(name.as_str(), request.queues)
        .await?;
    info!(topic = %request.topic, queues = meta.queues, "topic created");
    reply(&description(&request.topic, &broker.core.change(meta)))
}

pub(crate) async fn update(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: TopicUpdate = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let meta = broker
        .core
        .update_topic(name.as_str(), request.queues)
        .await?;
    info!(topic = %request.topic, queues = meta.queues, "topic updated");
    reply(&description(&request.topic, &broker.core.change(meta)))
}

pub(crate) async fn delete(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: TopicDelete = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    broker.core.delete_topic(name.as_str()).await?;
    info!(topic = %request.topic, "topic deleted");
    reply(&TopicDeleted {
        topic: request.topic,
    })
}

pub(crate) async fn list(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let _: TopicList = decode_body(body)?;
    let topics = broker
        .core
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
    readable_topic(&request.topic)?;
    let topic = broker.core.describe_topic(&request.topic).await?;
    reply(&description(&request.topic, &topic))
}

fn description(topic: &str, change: &TopicChange) -> TopicDescription {
    TopicDescription {
        info: TopicInfo {
            topic: topic.to_owned(),
            queues: change.meta.queues,
            created_ms: change.meta.created_ms,
        },
        queues: super::msg::offsets_of(change),
    }
}
