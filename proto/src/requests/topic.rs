//! `topic.*` bodies.

use serde::{Deserialize, Serialize};

use crate::decode::encoded_bytes_min;

/// Default number of queues of a new topic.
pub const QUEUES_DEFAULT: u32 = 8;
/// Most queues a topic may have on one broker.
pub const QUEUES_MAX: u32 = 1024;
/// Most topics one broker serves (a listing or registration with more does not decode;
/// RocketMQ deployments run tens of thousands).
pub const TOPICS_MAX: usize = 1 << 20;

/// `topic.create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCreate {
    /// Topic name.
    pub topic: String,
    /// Number of queues.
    pub queues: u32,
}

/// `topic.update`: change the queue count (only upwards).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicUpdate {
    /// Topic name.
    pub topic: String,
    /// New number of queues.
    pub queues: u32,
}

/// `topic.delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDelete {
    /// Topic name.
    pub topic: String,
}

/// `topic.list` (empty request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicList {}

/// `topic.describe` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescribe {
    /// Topic name.
    pub topic: String,
}

/// A topic's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Topic name.
    pub topic: String,
    /// Number of queues.
    pub queues: u32,
    /// Creation time (ms since the Unix epoch).
    pub created_ms: u64,
}

/// Response to `topic.create`, `topic.update`, `topic.describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// Settings.
    pub info: TopicInfo,
    /// Offsets of every queue.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { QUEUES_MAX as usize }>")]
    pub queues: Vec<super::msg::QueueOffsets>,
}

/// Response to `topic.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicListing {
    /// Every topic, by name.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, TOPICS_MAX>")]
    pub topics: Vec<TopicInfo>,
}

/// Response to `topic.delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDeleted {
    /// Topic name.
    pub topic: String,
}

encoded_bytes_min! {
    // topic, queues, created_ms.
    TopicInfo = 3;
}
