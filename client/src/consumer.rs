//! [`PullConsumer`]: the application asks for messages of a queue from an offset.

use std::time::Duration;

use quiver_proto::RequestCode;
use quiver_proto::requests::msg::{
    PULL_WAIT_MS_MAX, PullRequest, PullResponse, QueueOffsetsRequest, QueueOffsetsResponse,
};

use crate::answer;
use crate::client::Client;
use crate::error::ClientError;
use crate::queue::{MessageQueue, routed_queues};

/// Default most messages per pull.
pub const PULL_MSGS_DEFAULT: u32 = 32;
/// Default most bytes per pull.
pub const PULL_BYTES_DEFAULT: u32 = 4 << 20;

/// The offsets a queue holds: `min_offset..max_offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRange {
    /// The queue.
    pub queue: MessageQueue,
    /// Lowest offset still stored.
    pub min_offset: u64,
    /// Offset the next message will get.
    pub max_offset: u64,
}

/// Reads queues by offset.
pub struct PullConsumer {
    client: Client,
}

impl PullConsumer {
    /// A pull consumer.
    pub fn new(client: Client) -> Self {
        PullConsumer { client }
    }

    /// Every queue of `topic` on every broker serving it (from the route).
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        let route = self.client.route(topic).await?;
        Ok(routed_queues(&route)
            .into_iter()
            .map(|routed| routed.queue)
            .collect())
    }

    /// Pulls up to `max_msgs` messages of `queue` from `offset`, waiting up to `wait` (at most
    /// [`PULL_WAIT_MS_MAX`] ms) for the first one (long-poll). An empty answer means nothing
    /// arrived in time. The request's deadline is the wait plus the request timeout.
    pub async fn pull(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max_msgs: u32,
        wait: Duration,
    ) -> Result<PullResponse, ClientError> {
        let addr = self.broker_addr(&queue.topic, &queue.broker_name).await?;
        let request = PullRequest {
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            offset,
            max_msgs,
            max_bytes: PULL_BYTES_DEFAULT,
            wait_ms: u32::try_from(wait.as_millis())
                .unwrap_or(u32::MAX)
                .min(PULL_WAIT_MS_MAX),
        };
        let deadline = (self.client.options().timeout)
            .saturating_add(Duration::from_millis(u64::from(request.wait_ms)));
        let response = self
            .client
            .call_within(&addr, RequestCode::MsgPull, &request, deadline)
            .await?;
        answer::check_pull(queue, offset, max_msgs, &response)?;
        Ok(response)
    }

    /// Min and max offsets of every queue of `topic`, asking each broker serving it.
    pub async fn offsets(&self, topic: &str) -> Result<Vec<QueueRange>, ClientError> {
        let route = self.client.route(topic).await?;
        let mut ranges = Vec::new();
        for broker in &route.brokers {
            let response: QueueOffsetsResponse = self
                .client
                .call(
                    &broker.addr,
                    RequestCode::QueueOffsets,
                    &QueueOffsetsRequest {
                        topic: topic.to_owned(),
                    },
                )
                .await?;
            ranges.extend(response.queues.into_iter().map(|q| QueueRange {
                queue: MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: broker.broker_name.clone(),
                    queue_id: q.queue_id,
                },
                min_offset: q.min_offset,
                max_offset: q.max_offset,
            }));
        }
        Ok(ranges)
    }

    async fn broker_addr(&self, topic: &str, broker_name: &str) -> Result<String, ClientError> {
        let route = self.client.route(topic).await?;
        route
            .brokers
            .iter()
            .find(|b| b.broker_name == broker_name)
            .map(|b| b.addr.clone())
            .ok_or_else(|| {
                let serving: Vec<&str> =
                    route.brokers.iter().map(|b| b.broker_name.as_str()).collect();
                ClientError::Invalid(format!(
                    "broker {broker_name} does not serve topic {topic} (brokers serving it: {}); is it down?",
                    serving.join(", ")
                ))
            })
    }
}
