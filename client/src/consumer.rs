//! [`PullConsumer`]: the application asks for messages of a queue from an offset.

use std::time::Duration;

use quiver_proto::RequestCode;
use quiver_proto::requests::msg::{
    PullRequest, PullResponse, QueueOffsets, QueueOffsetsRequest, QueueOffsetsResponse,
};

use crate::client::Client;
use crate::error::ClientError;

/// Default most messages per pull.
pub const PULL_MSGS_DEFAULT: u32 = 32;
/// Default most bytes per pull.
pub const PULL_BYTES_DEFAULT: u32 = 4 << 20;

/// Reads queues by offset.
pub struct PullConsumer {
    client: Client,
}

impl PullConsumer {
    /// A pull consumer.
    pub fn new(client: Client) -> Self {
        PullConsumer { client }
    }

    /// Pulls up to `max_msgs` messages of `queue_id` from `offset`, waiting up to `wait` for
    /// the first one (long-poll). An empty answer means nothing arrived in time.
    pub async fn pull(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
        max_msgs: u32,
        wait: Duration,
    ) -> Result<PullResponse, ClientError> {
        let addr = self.broker_of(topic, queue_id).await?;
        let request = PullRequest {
            topic: topic.to_owned(),
            queue_id,
            offset,
            max_msgs,
            max_bytes: PULL_BYTES_DEFAULT,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        };
        self.client
            .call(&addr, RequestCode::MsgPull, &request)
            .await
    }

    /// Min and max offsets of every queue of a topic.
    pub async fn offsets(&self, topic: &str) -> Result<Vec<QueueOffsets>, ClientError> {
        let addr = self.broker_of(topic, 0).await?;
        let response: QueueOffsetsResponse = self
            .client
            .call(
                &addr,
                RequestCode::QueueOffsets,
                &QueueOffsetsRequest {
                    topic: topic.to_owned(),
                },
            )
            .await?;
        Ok(response.queues)
    }

    async fn broker_of(&self, topic: &str, queue_id: u32) -> Result<String, ClientError> {
        let route = self.client.route(topic).await?;
        let queues = route
            .queues
            .iter()
            .find(|q| queue_id < q.queues)
            .ok_or_else(|| {
                ClientError::Invalid(format!("topic {topic} has no queue {queue_id}"))
            })?;
        route
            .brokers
            .iter()
            .find(|b| b.broker_name == queues.broker_name)
            .map(|b| b.addr.clone())
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "route of {topic} names no address for {}",
                    queues.broker_name
                ))
            })
    }
}
