//! Topic admin, and the version of the topic table that heartbeats carry.

use quiver_proto::requests::route::DataVersion;
use tokio::sync::watch;
use tracing::warn;

/// How long a topic change waits for the name servers to acknowledge it.
const REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

use super::Core;
use crate::store::{QueueRange, Store, StoreError, TopicMeta};

/// What a topic change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicChange {
    /// The topic's settings after the change.
    pub meta: TopicMeta,
    /// Each queue's `[min, max)` offsets.
    pub queues: Vec<QueueRange>,
}

impl Core {
    /// Creates a topic.
    pub async fn create_topic(&self, topic: &str, queues: u32) -> Result<TopicMeta, StoreError> {
        self.change_topic(topic, move |store, name| store.create_topic(name, queues))
            .await
    }

    /// Raises a topic's queue count.
    pub async fn update_topic(&self, topic: &str, queues: u32) -> Result<TopicMeta, StoreError> {
        self.change_topic(topic, move |store, name| store.update_topic(name, queues))
            .await
    }

    /// Deletes a topic and its index rows.
    pub async fn delete_topic(&self, topic: &str) -> Result<TopicMeta, StoreError> {
        self.change_topic(topic, |store, name| store.delete_topic(name))
            .await
    }

    /// Runs one topic change off the async workers (a durable commit), then moves the
    /// topic-table version.
    async fn change_topic(
        &self,
        topic: &str,
        change: impl FnOnce(&Store, &str) -> Result<TopicMeta, StoreError> + Send + 'static,
    ) -> Result<TopicMeta, StoreError> {
        let store = self.store.clone();
        let name = topic.to_owned();
        let meta = blocking(move || change(&store, &name)).await?;
        self.bump_topics().await;
        Ok(meta)
    }

    /// A topic's settings and queue offsets, covering every send acknowledged before the
    /// call (read-your-writes).
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicChange, StoreError> {
        let meta = self.store.topic(topic)?;
        self.store.catch_up().await?;
        Ok(self.change(meta))
    }

    /// The settings and offsets of a topic just changed.
    pub fn change(&self, meta: TopicMeta) -> TopicChange {
        let queues = (0..meta.queues)
            .map(|queue_id| self.store.queue_range(&meta, queue_id))
            .collect();
        TopicChange { meta, queues }
    }

    /// Every topic with its settings.
    pub fn topics(&self) -> Vec<(String, TopicMeta)> {
        self.store.topics()
    }

    /// Changes on every topic change.
    pub fn topics_changed(&self) -> watch::Receiver<DataVersion> {
        self.topics_version.subscribe()
    }

    /// Moves the topic-table version (the registrar heartbeats at once), then, when the
    /// core waits for registration, until the name servers acknowledged it.
    async fn bump_topics(&self) {
        let mut counter = 0;
        self.topics_version.send_modify(|version| {
            version.counter += 1;
            version.timestamp_ms = crate::clock::now_ms();
            counter = version.counter;
        });
        if let Some(registered) = &self.registered {
            let mut registered = registered.clone();
            let acked = registered.wait_for(|acked| *acked >= counter);
            if tokio::time::timeout(REGISTRATION_WAIT, acked)
                .await
                .is_err()
            {
                warn!(
                    counter,
                    "the name server has not acknowledged the topic change yet; routes may lag"
                );
            }
        }
    }
}

/// Runs blocking store work (a durable redb commit) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Io(std::io::Error::other(format!("store task failed: {err}"))))?
}
