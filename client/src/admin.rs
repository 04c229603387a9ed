//! [`Admin`]: topic administration, lookups and broker counters.

use quiver_proto::requests::admin::{BrokerStats, StatsRequest};
use quiver_proto::requests::msg::{QueryIdRequest, QueryKeyRequest, QueryResponse};
use quiver_proto::requests::topic::{
    TopicCreate, TopicDelete, TopicDeleted, TopicDescribe, TopicDescription, TopicInfo, TopicList,
    TopicListing, TopicUpdate,
};
use quiver_proto::{MessageId, RequestCode, StoredMessage};

use crate::client::Client;
use crate::error::ClientError;

/// Admin calls, sent to the first reachable name server (in standalone mode, the broker).
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin handle.
    pub fn new(client: Client) -> Self {
        Admin { client }
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        topic: &str,
        queues: u32,
    ) -> Result<TopicDescription, ClientError> {
        let request = TopicCreate {
            topic: topic.into(),
            queues,
        };
        self.change_topic(topic, RequestCode::TopicCreate, &request)
            .await
    }

    /// Raises a topic's queue count.
    pub async fn update_topic(
        &self,
        topic: &str,
        queues: u32,
    ) -> Result<TopicDescription, ClientError> {
        let request = TopicUpdate {
            topic: topic.into(),
            queues,
        };
        self.change_topic(topic, RequestCode::TopicUpdate, &request)
            .await
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<TopicDeleted, ClientError> {
        let request = TopicDelete {
            topic: topic.into(),
        };
        self.change_topic(topic, RequestCode::TopicDelete, &request)
            .await
    }

    /// A topic admin call; the cached route is dropped whatever the outcome.
    async fn change_topic<Req, Resp>(
        &self,
        topic: &str,
        code: RequestCode,
        request: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: serde::Serialize,
        Resp: for<'a> serde::Deserialize<'a>,
    {
        let out = self.client.call_namesrv(code, request).await;
        self.client.forget_route(topic);
        out
    }

    /// Lists topics.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let listing: TopicListing = self
            .client
            .call_namesrv(RequestCode::TopicList, &TopicList {})
            .await?;
        Ok(listing.topics)
    }

    /// Describes a topic with its queues' offsets.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, ClientError> {
        self.client
            .call_namesrv(
                RequestCode::TopicDescribe,
                &TopicDescribe {
                    topic: topic.into(),
                },
            )
            .await
    }

    /// Every stored copy of a message id, from every broker serving the topic.
    pub async fn query_id(
        &self,
        topic: &str,
        msg_id: MessageId,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let request = QueryIdRequest {
            topic: topic.into(),
            msg_id,
        };
        self.query_all(topic, RequestCode::MsgQueryId, &request)
            .await
    }

    /// Messages with a key, from every broker serving the topic.
    pub async fn query_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: Option<u64>,
        end_ms: Option<u64>,
        max_msgs: u32,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let request = QueryKeyRequest {
            topic: topic.into(),
            key: key.into(),
            begin_ms,
            end_ms,
            max_msgs,
        };
        self.query_all(topic, RequestCode::MsgQueryKey, &request)
            .await
    }

    async fn query_all<Req: serde::Serialize>(
        &self,
        topic: &str,
        code: RequestCode,
        request: &Req,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let route = self.client.route(topic).await?;
        let mut found = Vec::new();
        let mut last_err = None;
        for broker in &route.brokers {
            match self
                .client
                .call::<_, QueryResponse>(&broker.addr, code, request)
                .await
            {
                Ok(response) => found.extend(response.messages),
                Err(err) => last_err = Some(err),
            }
        }
        match last_err {
            Some(err) if found.is_empty() => Err(err),
            _ => {
                found.sort_by_key(|m| (m.stored_ms, m.queue_id, m.offset));
                Ok(found)
            }
        }
    }

    /// Counters of the broker at `addr`.
    pub async fn stats(&self, addr: &str) -> Result<BrokerStats, ClientError> {
        self.client
            .call(addr, RequestCode::BrokerStats, &StatsRequest {})
            .await
    }
}
