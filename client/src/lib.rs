//! The Quiver client library: what a QUIC client app links.
//!
//! # Layout
//! - [`client`]: [`Client`], the shared endpoint, connections by address, route cache, calls.
//! - [`batcher`]: [`AutoBatch`]: coalescing concurrent sends into batch requests.
//! - [`producer`]: [`Producer`]: sync, async, oneway, ordered and batch sends with retries.
//! - [`queue`]: [`MessageQueue`]: one queue of a topic on one broker.
//! - `ordered`: a sharding key's home queue, a function of the topic's route only.
//! - [`consumer`]: [`PullConsumer`]: read a queue from an offset, with long-poll.
//! - [`group`]: [`GroupConsumer`]: a consumer-group member (clustering) that polls.
//! - [`fault`]: latency fault tolerance: which brokers a producer avoids, and its counters.
//! - [`admin`]: [`Admin`]: topics, queries, offsets, broker stats; `admin_group`,
//!   `admin_dlq`, `admin_fn`: groups, dead letters, functions.
//! - `answer`: sans-IO checks of server answers before they are used.
//! - [`error`]: the error type, [`ClientError`].
#![warn(missing_docs, unreachable_pub)]

pub mod admin;
pub mod admin_dlq;
pub mod admin_fn;
pub mod admin_group;
mod answer;
pub mod batcher;
pub mod client;
pub mod consumer;
pub mod error;
pub mod fault;
pub mod group;
mod ordered;
pub mod producer;
pub mod queue;

pub use admin::{Admin, BrokerChoice, BrokerTopic};
pub use admin_dlq::DeadLetter;
pub use batcher::AutoBatch;
pub use client::{Client, ClientOptions};
pub use consumer::{PullConsumer, QueueRange};
pub use error::ClientError;
pub use group::{
    BroadcastConsumer, Delivery, GroupConsumer, GroupOptions, GroupStart, Outcome, PushConsumer,
    PushOptions,
};
pub use producer::{Message, Producer, SendResult};
pub use queue::MessageQueue;
pub use quiver_proto::{ErrorCode, MessageId, StoredMessage};

/// Default name server / standalone address.
pub const DEFAULT_NAMESRV: &str = "127.0.0.1:9876";
