//! `route.*` bodies (name server).

use serde::{Deserialize, Serialize};

use super::topic::TOPICS_MAX;
use crate::decode::encoded_bytes_min;

/// Most brokers a route or a cluster listing names (a name server knows every broker of
/// every cluster that registers with it).
pub const BROKERS_MAX: usize = 16_384;

/// `route.get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteGet {
    /// Topic name.
    pub topic: String,
}

/// A broker in a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerAddr {
    /// Broker name, unique in its cluster.
    pub broker_name: String,
    /// Address clients connect to (`host:port`); also the TLS server name's host.
    pub addr: String,
}

/// The queues one broker serves for a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRoute {
    /// Broker name.
    pub broker_name: String,
    /// Queue ids `0..queues` on that broker.
    pub queues: u32,
    /// Whether producers may write.
    pub writable: bool,
}

/// Response to `route.get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRoute {
    /// Topic name.
    pub topic: String,
    /// Live brokers serving it.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, BROKERS_MAX>")]
    pub brokers: Vec<BrokerAddr>,
    /// Queues per broker: the topic's layout, which also lists brokers that left (expired or
    /// unregistered; absent from `brokers`, not writable), so ordered keys hash over the same
    /// queues whichever brokers are live.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, BROKERS_MAX>")]
    pub queues: Vec<QueueRoute>,
}

/// A topic's queue count on the registering broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicQueues {
    /// Topic name.
    pub topic: String,
    /// Queue ids `0..queues`.
    pub queues: u32,
}

/// A broker's role in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerRole {
    /// Takes writes.
    Master,
    /// Replicates its group's master (replication).
    Slave,
}

impl BrokerRole {
    /// Lower-case name, as the CLI shows it.
    pub fn name(self) -> &'static str {
        match self {
            BrokerRole::Master => "master",
            BrokerRole::Slave => "slave",
        }
    }
}

/// Version of a broker's topic table (RocketMQ's `DataVersion`): when it last changed (or the
/// broker started) and how many changes the running broker has made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DataVersion {
    /// Time of the last change, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Changes since the broker started.
    pub counter: u64,
}

/// `broker.register` and `broker.heartbeat`: who the broker is and what it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// Cluster name.
    pub cluster: String,
    /// Broker name, unique in the cluster.
    pub broker_name: String,
    /// Address clients connect to.
    pub addr: String,
    /// Role in its group.
    pub role: BrokerRole,
    /// Version of `topics`.
    pub data_version: DataVersion,
    /// Every topic the broker serves.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, TOPICS_MAX>")]
    pub topics: Vec<TopicQueues>,
    /// Why the broker's store refuses sends (a failed disk or index write), empty while
    /// healthy; name servers then route no sends to it.
    pub unhealthy_reason: String,
}

/// Response to `broker.register` / `broker.heartbeat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationAck {
    /// After this long without a heartbeat the name server drops the broker.
    pub expiry_ms: u64,
}

/// `broker.unregister`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerUnregister {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub broker_name: String,
    /// Address it registered with (a stale broker cannot unregister its successor).
    pub addr: String,
}

/// `cluster.list` (empty request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterList {}

/// One registered broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub broker_name: String,
    /// Client address.
    pub addr: String,
    /// Role in its group.
    pub role: BrokerRole,
    /// Version of its topic table at the last heartbeat.
    pub data_version: DataVersion,
    /// Milliseconds since the last heartbeat.
    pub heartbeat_age_ms: u64,
    /// Topics served.
    pub topics: u32,
    /// Queues served, over all topics.
    pub queues: u32,
    /// Why the broker refuses sends, from its last heartbeat; empty while healthy.
    pub unhealthy_reason: String,
}

/// Response to `cluster.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterListing {
    /// Brokers by name.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, BROKERS_MAX>")]
    pub brokers: Vec<BrokerInfo>,
}

encoded_bytes_min! {
    // broker_name, addr.
    BrokerAddr = 2;
    // broker_name, queues, writable.
    QueueRoute = 3;
    // topic, queues.
    TopicQueues = 2;
    // cluster, broker_name, addr, role, data_version (2), heartbeat_age_ms, topics, queues.
    BrokerInfo = 9;
}
