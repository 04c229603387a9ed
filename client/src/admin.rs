//! [`Admin`]: topic administration, lookups and broker counters.

use quiver_proto::requests::admin::{BrokerStats, StatsRequest};
use quiver_proto::requests::msg::{QueryIdRequest, QueryKeyRequest, QueryResponse};
use quiver_proto::requests::route::{BrokerInfo, ClusterList, ClusterListing};
use quiver_proto::requests::topic::{
    TopicCreate, TopicDelete, TopicDeleted, TopicDescribe, TopicDescription, TopicInfo, TopicList,
    TopicListing, TopicUpdate,
};
use quiver_proto::{MessageId, RequestCode, StoredMessage};

use crate::client::Client;
use crate::error::ClientError;

/// Which brokers a topic is created on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BrokerChoice {
    /// Every broker registered with the name servers.
    #[default]
    All,
    /// These brokers, by name.
    Named(Vec<String>),
}

/// One broker's answer to a topic admin request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerTopic {
    /// Broker name.
    pub broker_name: String,
    /// Broker address.
    pub addr: String,
    /// The topic on that broker.
    pub description: TopicDescription,
}

/// Admin calls. Topic changes go to brokers directly (found through the name servers:
/// `cluster.list` for creation, the topic's route for the rest); in standalone mode the
/// standalone is both.
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin handle.
    pub fn new(client: Client) -> Self {
        Admin { client }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Every live broker, from the first name server that answers.
    pub async fn cluster(&self) -> Result<Vec<BrokerInfo>, ClientError> {
        let listing: ClusterListing = self
            .client
            .call_namesrv(RequestCode::ClusterList, &ClusterList {})
            .await?;
        Ok(listing.brokers)
    }

    /// Creates a topic with `queues` queues on each chosen broker.
    pub async fn create_topic_on(
        &self,
        topic: &str,
        queues: u32,
        choice: &BrokerChoice,
    ) -> Result<Vec<BrokerTopic>, ClientError> {
        let brokers = self.cluster().await?;
        let chosen: Vec<(String, String)> = match choice {
            BrokerChoice::All => brokers
                .into_iter()
                .map(|b| (b.broker_name, b.addr))
                .collect(),
            BrokerChoice::Named(names) => names
                .iter()
                .map(|name| {
                    brokers
                        .iter()
                        .find(|b| &b.broker_name == name)
                        .map(|b| (b.broker_name.clone(), b.addr.clone()))
                        .ok_or_else(|| {
                            ClientError::Invalid(format!(
                                "no live broker named {name}: see `quiver cluster list`"
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        if chosen.is_empty() {
            return Err(ClientError::Invalid(
                "no broker is registered with the name servers".into(),
            ));
        }
        let request = TopicCreate {
            topic: topic.into(),
            queues,
        };
        let out = self
            .on_brokers(&chosen, RequestCode::TopicCreate, &request)
            .await;
        self.client.forget_route(topic);
        out
    }

    /// Creates a topic on every broker.
    pub async fn create_topic(
        &self,
        topic: &str,
        queues: u32,
    ) -> Result<Vec<BrokerTopic>, ClientError> {
        self.create_topic_on(topic, queues, &BrokerChoice::All)
            .await
    }

    /// Raises a topic's queue count on every broker serving it.
    pub async fn update_topic(
        &self,
        topic: &str,
        queues: u32,
    ) -> Result<Vec<BrokerTopic>, ClientError> {
        let brokers = self.serving(topic).await?;
        let out = self
            .on_brokers(
                &brokers,
                RequestCode::TopicUpdate,
                &TopicUpdate {
                    topic: topic.into(),
                    queues,
                },
            )
            .await;
        self.client.forget_route(topic);
        out
    }

    /// Deletes a topic from every broker serving it; returns their names.
    pub async fn delete_topic(&self, topic: &str) -> Result<Vec<String>, ClientError> {
        let brokers = self.serving(topic).await?;
        let request = TopicDelete {
            topic: topic.into(),
        };
        for (name, addr) in &brokers {
            let _: TopicDeleted = self
                .client
                .call(addr, RequestCode::TopicDelete, &request)
                .await
                .map_err(|err| on_broker(name, err))?;
        }
        self.client.forget_route(topic);
        Ok(brokers.into_iter().map(|(name, _)| name).collect())
    }

    /// A topic on every broker serving it, with its queues' offsets.
    pub async fn describe_topic(&self, topic: &str) -> Result<Vec<BrokerTopic>, ClientError> {
        let brokers = self.serving(topic).await?;
        self.on_brokers(
            &brokers,
            RequestCode::TopicDescribe,
            &TopicDescribe {
                topic: topic.into(),
            },
        )
        .await
    }

    /// Topics over every broker, by name, with their queue counts summed.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let mut merged: std::collections::BTreeMap<String, TopicInfo> =
            std::collections::BTreeMap::new();
        for broker in self.cluster().await? {
            let listing: TopicListing = self
                .client
                .call(&broker.addr, RequestCode::TopicList, &TopicList {})
                .await
                .map_err(|err| on_broker(&broker.broker_name, err))?;
            for info in listing.topics {
                merged
                    .entry(info.topic.clone())
                    .and_modify(|seen| seen.queues = seen.queues.saturating_add(info.queues))
                    .or_insert(info);
            }
        }
        Ok(merged.into_values().collect())
    }

    /// The brokers (name, address) serving a topic, from a fresh route.
    async fn serving(&self, topic: &str) -> Result<Vec<(String, String)>, ClientError> {
        let route = self.client.refresh_route(topic).await?;
        Ok(route
            .brokers
            .iter()
            .map(|b| (b.broker_name.clone(), b.addr.clone()))
            .collect())
    }

    async fn on_brokers<Req: serde::Serialize>(
        &self,
        brokers: &[(String, String)],
        code: RequestCode,
        request: &Req,
    ) -> Result<Vec<BrokerTopic>, ClientError> {
        let mut out = Vec::with_capacity(brokers.len());
        for (name, addr) in brokers {
            let description: TopicDescription = self
                .client
                .call(addr, code, request)
                .await
                .map_err(|err| on_broker(name, err))?;
            out.push(BrokerTopic {
                broker_name: name.clone(),
                addr: addr.clone(),
                description,
            });
        }
        Ok(out)
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

    /// What pulls cost a broker since it started: records and bytes read, slots scanned.
    pub async fn read_stats(
        &self,
        addr: &str,
    ) -> Result<quiver_proto::requests::admin::ReadStats, ClientError> {
        self.client
            .call(addr, RequestCode::BrokerReadStats, &StatsRequest {})
            .await
    }
}

/// Names the broker in a failed call (a server error keeps its code).
pub(crate) fn on_broker(broker: &str, err: ClientError) -> ClientError {
    match err {
        ClientError::Net(quiver_net::NetError::Server { code, message }) => {
            ClientError::Net(quiver_net::NetError::Server {
                code,
                message: format!("broker {broker}: {message}"),
            })
        }
        other => other,
    }
}
