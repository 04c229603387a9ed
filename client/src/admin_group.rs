//! Consumer-group administration: list, describe, settings and offset resets, over every
//! live broker (each broker knows the groups of its own queues).

use quiver_proto::RequestCode;
use quiver_proto::requests::group::{
    GroupDescribe, GroupInfo, GroupList, GroupListResponse, GroupResetOffset,
    GroupResetOffsetResponse, GroupSettings, GroupUpdate, StartFrom,
};

use crate::admin::{Admin, on_broker};
use crate::error::ClientError;

/// One broker's view of a group.
#[derive(Clone, Debug)]
pub struct BrokerGroup {
    /// Broker name.
    pub broker_name: String,
    /// What the broker knows of the group.
    pub info: GroupInfo,
}

impl Admin {
    /// Every group any live broker knows, sorted.
    pub async fn list_groups(&self) -> Result<Vec<String>, ClientError> {
        let mut names = std::collections::BTreeSet::new();
        for broker in self.cluster().await? {
            let listing: GroupListResponse = self
                .client()
                .call(&broker.addr, RequestCode::GroupList, &GroupList {})
                .await
                .map_err(|err| on_broker(&broker.broker_name, err))?;
            names.extend(listing.groups);
        }
        Ok(names.into_iter().collect())
    }

    /// A group as each live broker that knows it sees it (brokers that do not know it are
    /// left out; none knowing it is `group.not_found`).
    pub async fn describe_group(&self, group: &str) -> Result<Vec<BrokerGroup>, ClientError> {
        let mut out = Vec::new();
        let mut not_found = None;
        for broker in self.cluster().await? {
            let request = GroupDescribe {
                group: group.to_owned(),
            };
            match self
                .client()
                .call::<_, GroupInfo>(&broker.addr, RequestCode::GroupDescribe, &request)
                .await
            {
                Ok(info) => out.push(BrokerGroup {
                    broker_name: broker.broker_name.clone(),
                    info,
                }),
                Err(err) if err.code() == Some(quiver_proto::ErrorCode::GroupNotFound) => {
                    not_found = Some(err);
                }
                Err(err) => return Err(on_broker(&broker.broker_name, err)),
            }
        }
        match (out.is_empty(), not_found) {
            (true, Some(err)) => Err(err),
            _ => Ok(out),
        }
    }

    /// Sets a group's settings on every live broker.
    pub async fn update_group(
        &self,
        group: &str,
        settings: GroupSettings,
    ) -> Result<(), ClientError> {
        let request = GroupUpdate {
            group: group.to_owned(),
            settings,
        };
        for broker in self.cluster().await? {
            self.client()
                .call_raw(
                    &broker.addr,
                    RequestCode::GroupUpdate,
                    bytes::Bytes::from(quiver_proto::encode_body(&request)),
                )
                .await
                .map_err(|err| on_broker(&broker.broker_name, err))?;
        }
        Ok(())
    }

    /// Moves a group's committed offsets of `topic` on every broker serving it; returns
    /// `(broker, queue, offset)`.
    pub async fn reset_group_offset(
        &self,
        group: &str,
        topic: &str,
        to: StartFrom,
    ) -> Result<Vec<(String, u32, u64)>, ClientError> {
        let route = self.client().refresh_route(topic).await?;
        let request = GroupResetOffset {
            group: group.to_owned(),
            topic: topic.to_owned(),
            to,
        };
        let mut out = Vec::new();
        for broker in &route.brokers {
            let answer: GroupResetOffsetResponse = self
                .client()
                .call(&broker.addr, RequestCode::GroupResetOffset, &request)
                .await
                .map_err(|err| on_broker(&broker.broker_name, err))?;
            out.extend(
                answer
                    .queues
                    .into_iter()
                    .map(|(q, o)| (broker.broker_name.clone(), q, o)),
            );
        }
        Ok(out)
    }
}
