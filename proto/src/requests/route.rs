//! `route.*` bodies (name server).

use serde::{Deserialize, Serialize};

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
    /// Brokers serving it.
    pub brokers: Vec<BrokerAddr>,
    /// Queues per broker.
    pub queues: Vec<QueueRoute>,
}
