//! `msg.*` and `queue.*` handlers.

use std::time::Duration;

use bytes::Bytes;
use quiver_net::Failure;
use quiver_proto::requests::group::GroupPullResponse;
use quiver_proto::requests::msg::{
    FilteredPullRequest, OffsetAtTimeRequest, OffsetAtTimeResponse, PullRequest, PullResponse,
    QueryIdRequest, QueryKeyRequest, QueryResponse, QueueOffsets, QueueOffsetsRequest,
    QueueOffsetsResponse, SendResponse, decode_send_request,
};
use quiver_proto::{ErrorCode, StoredMessage, decode_body, encode_body_sized};

/// Room reserved per message of a pull answer beyond its body: topic, id, offsets, times,
/// a short tag and a few keys (a bigger message only costs one more growth of the buffer).
const PULL_MESSAGE_OVERHEAD_BYTES: usize = 128;

use super::{readable_topic, reply, topic_name};
use crate::core::groups::GroupPulled;
use crate::core::{PullSpec, Pulled, TagExpr, TopicChange};
use crate::remoting::Broker;

pub(crate) async fn send(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request = decode_send_request(body)?;
    let name = topic_name(&request.topic)?;
    let appended = broker
        .core
        .send(name.as_str(), request.queue_id, request.messages)
        .await?;
    reply(&SendResponse {
        queue_id: appended.queue_id,
        first_offset: appended.first_offset,
        msg_ids: appended.msg_ids,
    })
}

/// Reads what a pull request asks for, keeping the messages `tags` matches.
async fn read(broker: &Broker, request: &PullRequest, tags: TagExpr) -> Result<Pulled, Failure> {
    let name = readable_topic(&request.topic)?;
    let spec = PullSpec {
        topic: name.as_str().to_owned(),
        queue_id: request.queue_id,
        offset: request.offset,
        max_msgs: request.max_msgs,
        max_bytes: request.max_bytes,
        tags,
    };
    let wait = Duration::from_millis(u64::from(request.wait_ms));
    Ok(broker.core.pull(&spec, wait).await?)
}

pub(crate) async fn pull(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: PullRequest = decode_body(body)?;
    let pulled = read(broker, &request, TagExpr::All).await?;
    let capacity = pull_capacity(&pulled.messages);
    let response = PullResponse {
        messages: pulled.messages,
        next_offset: pulled.next_offset,
        min_offset: pulled.min_offset,
        max_offset: pulled.max_offset,
    };
    Ok(Bytes::from(encode_body_sized(&response, capacity)))
}

pub(crate) async fn query_id(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: QueryIdRequest = decode_body(body)?;
    let name = readable_topic(&request.topic)?;
    let messages = broker.core.query_id(name.as_str(), request.msg_id).await?;
    reply(&QueryResponse { messages })
}

pub(crate) async fn query_key(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: QueryKeyRequest = decode_body(body)?;
    let name = readable_topic(&request.topic)?;
    if request.key.is_empty() {
        return Err(Failure::new(ErrorCode::InvalidArgument, "the key is empty"));
    }
    let messages = broker
        .core
        .query_key(
            name.as_str(),
            &request.key,
            (request.begin_ms, request.end_ms),
            request.max_msgs,
        )
        .await?;
    reply(&QueryResponse { messages })
}

pub(crate) async fn queue_offsets(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: QueueOffsetsRequest = decode_body(body)?;
    let name = readable_topic(&request.topic)?;
    let topic = broker.core.describe_topic(name.as_str()).await?;
    reply(&QueueOffsetsResponse {
        queues: offsets_of(&topic),
    })
}

pub(crate) fn offsets_of(topic: &TopicChange) -> Vec<QueueOffsets> {
    topic
        .queues
        .iter()
        .zip(0..)
        .map(|(range, queue_id)| QueueOffsets {
            queue_id,
            min_offset: range.min,
            max_offset: range.max,
        })
        .collect()
}

pub(crate) async fn pull_filtered(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FilteredPullRequest = decode_body(body)?;
    let tags = TagExpr::parse(&request.tags)
        .map_err(|err| Failure::new(ErrorCode::InvalidArgument, err.to_string()))?;
    let plain = PullRequest {
        topic: request.topic,
        queue_id: request.queue_id,
        offset: request.offset,
        max_msgs: request.max_msgs,
        max_bytes: request.max_bytes,
        wait_ms: request.wait_ms,
    };
    let pulled = read(broker, &plain, tags).await?;
    Ok(filtered_reply(GroupPulled::of(pulled, plain.offset)))
}

/// Room for a pull answer: bodies plus what postcard adds around each message (names, keys,
/// properties, numbers).
fn pull_capacity(messages: &[StoredMessage]) -> usize {
    messages
        .iter()
        .map(|msg| msg.body.len() + PULL_MESSAGE_OVERHEAD_BYTES)
        .sum::<usize>()
        + 64
}

/// The answer of a filtered pull (`msg.pull_filtered`, `group.pull`).
pub(super) fn filtered_reply(pulled: GroupPulled) -> Bytes {
    let capacity = pull_capacity(&pulled.messages);
    let response = GroupPullResponse {
        messages: pulled.messages,
        next_offset: pulled.next_offset,
        min_offset: pulled.min_offset,
        max_offset: pulled.max_offset,
        filtered: pulled.filtered,
    };
    Bytes::from(encode_body_sized(&response, capacity))
}

pub(crate) async fn offset_at_time(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: OffsetAtTimeRequest = decode_body(body)?;
    let name = readable_topic(&request.topic)?;
    let topic = broker.core.describe_topic(name.as_str()).await?;
    let mut queues = Vec::with_capacity(topic.queues.len());
    for queue_id in 0..topic.queues.len() as u32 {
        let offset = broker
            .core
            .offset_at_time(name.as_str(), queue_id, request.time_ms)
            .await?;
        queues.push((queue_id, offset));
    }
    reply(&OffsetAtTimeResponse { queues })
}
