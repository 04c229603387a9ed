//! `msg.*` and `queue.*` handlers.

use std::time::Duration;

use bytes::Bytes;
use quiver_proto::decode_body;
use quiver_proto::requests::msg::{
    PULL_BYTES_MAX, PULL_MSGS_MAX, PULL_WAIT_MS_MAX, PullRequest, PullResponse, QueryIdRequest,
    QueryKeyRequest, QueryResponse, QueueOffsets, QueueOffsetsRequest, QueueOffsetsResponse,
    decode_send_request,
};
use tracing::info;

use super::{blocking, reply, topic_name};
use crate::remoting::{Broker, Failure};
use crate::store::reader::PullSpec;
use crate::store::{StoreError, TopicMeta, check_queue};

pub(crate) async fn send(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request = decode_send_request(body)?;
    let name = topic_name(&request.topic)?;
    if broker.config.auto_create_topics && broker.store.topic(name.as_str()).is_err() {
        auto_create(broker, name.as_str()).await?;
    }
    let response = broker
        .store
        .append(name.as_str(), request.queue_id, request.messages)
        .await?;
    reply(&response)
}

async fn auto_create(broker: &Broker, topic: &str) -> Result<(), Failure> {
    let store = broker.store.clone();
    let (name, queues) = (topic.to_owned(), broker.config.default_queues);
    match blocking(move || Ok(store.create_topic(&name, queues)?)).await {
        Ok(meta) => {
            info!(topic, queues = meta.queues, "topic auto-created");
            broker.set_route(topic, meta.queues);
            Ok(())
        }
        // A concurrent send created it first.
        Err(_) if broker.store.topic(topic).is_ok() => Ok(()),
        Err(err) => Err(err),
    }
}

pub(crate) async fn pull(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: PullRequest = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let meta = broker.store.topic(name.as_str())?;
    check_queue(name.as_str(), &meta, request.queue_id)?;
    let spec = PullSpec {
        queue_id: request.queue_id,
        offset: request.offset,
        max_msgs: request.max_msgs.clamp(1, PULL_MSGS_MAX),
        max_bytes: request.max_bytes.clamp(1, PULL_BYTES_MAX),
    };
    broker.store.catch_up().await?;
    let wait = Duration::from_millis(u64::from(request.wait_ms.min(PULL_WAIT_MS_MAX)));
    let range = wait_for_message(broker, &meta, spec, wait).await;
    if spec.offset == range.max {
        return reply(&PullResponse {
            messages: Vec::new(),
            next_offset: spec.offset,
            min_offset: range.min,
            max_offset: range.max,
        });
    }
    let store = broker.store.clone();
    let topic = name.as_str().to_owned();
    let response = blocking(move || Ok(store.read_queue(&topic, &meta, spec)?)).await?;
    reply(&response)
}

/// Long-poll: waits until the queue has a message at `spec.offset`, the wait ends, or the
/// broker shuts down; returns the queue's range at that moment.
async fn wait_for_message(
    broker: &Broker,
    meta: &TopicMeta,
    spec: PullSpec,
    wait: Duration,
) -> crate::store::QueueRange {
    let deadline = tokio::time::Instant::now() + wait;
    // Held while waiting; past `long_polls_max` waiting pulls, a pull does not wait.
    let slot = broker.long_polls.clone().try_acquire_owned().ok();
    let wait = if slot.is_some() { wait } else { Duration::ZERO };
    let mut changes = broker.store.dispatch_watch();
    loop {
        changes.borrow_and_update();
        let range = broker.store.queue_range(meta, spec.queue_id);
        if spec.offset != range.max || wait.is_zero() {
            return range;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return range },
            () = tokio::time::sleep_until(deadline) => return range,
            () = broker.shutdown.cancelled() => return range,
        }
    }
}

pub(crate) async fn query_id(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: QueryIdRequest = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let meta = broker.store.topic(name.as_str())?;
    broker.store.catch_up().await?;
    let store = broker.store.clone();
    let messages =
        blocking(move || Ok(store.query_id(name.as_str(), &meta, request.msg_id)?)).await?;
    reply(&QueryResponse { messages })
}

pub(crate) async fn query_key(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: QueryKeyRequest = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let meta = broker.store.topic(name.as_str())?;
    if request.key.is_empty() {
        return Err(StoreError::invalid(
            quiver_proto::ErrorCode::InvalidArgument,
            "the key is empty",
        )
        .into());
    }
    broker.store.catch_up().await?;
    let store = broker.store.clone();
    let messages = blocking(move || {
        Ok(store.query_key(
            name.as_str(),
            &meta,
            &request.key,
            request.begin_ms,
            request.end_ms,
            request.max_msgs,
        )?)
    })
    .await?;
    reply(&QueryResponse { messages })
}

pub(crate) async fn queue_offsets(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: QueueOffsetsRequest = decode_body(body)?;
    let name = topic_name(&request.topic)?;
    let meta = broker.store.topic(name.as_str())?;
    broker.store.catch_up().await?;
    reply(&QueueOffsetsResponse {
        queues: offsets_of(broker, &meta),
    })
}

pub(crate) fn offsets_of(broker: &Broker, meta: &TopicMeta) -> Vec<QueueOffsets> {
    (0..meta.queues)
        .map(|queue_id| {
            let range = broker.store.queue_range(meta, queue_id);
            QueueOffsets {
                queue_id,
                min_offset: range.min,
                max_offset: range.max,
            }
        })
        .collect()
}
