//! Lookups by message id and by key.

use quiver_proto::{MessageId, StoredMessage};

use super::Core;
use super::topics::blocking;
use crate::store::StoreError;

impl Core {
    /// Every stored copy of `msg_id` in `topic` (read-your-writes).
    pub async fn query_id(
        &self,
        topic: &str,
        msg_id: MessageId,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let meta = self.store.topic(topic)?;
        self.store.catch_up().await?;
        let store = self.store.clone();
        let topic = topic.to_owned();
        blocking(move || store.query_id(&topic, &meta, msg_id)).await
    }

    /// Messages of `topic` with `key` stored in `[begin_ms, end_ms)`, oldest first, at most
    /// `max_msgs` (read-your-writes).
    pub async fn query_key(
        &self,
        topic: &str,
        key: &str,
        (begin_ms, end_ms): (Option<u64>, Option<u64>),
        max_msgs: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let meta = self.store.topic(topic)?;
        self.store.catch_up().await?;
        let store = self.store.clone();
        let (topic, key) = (topic.to_owned(), key.to_owned());
        blocking(move || store.query_key(&topic, &meta, &key, begin_ms, end_ms, max_msgs)).await
    }

    /// The first offset of `topic`'s queue stored at or after `time_ms`, or the queue's end
    /// (read-your-writes).
    pub async fn offset_at_time(
        &self,
        topic: &str,
        queue_id: u32,
        time_ms: u64,
    ) -> Result<u64, StoreError> {
        let meta = self.store.topic(topic)?;
        crate::store::check_queue(topic, &meta, queue_id)?;
        self.store.catch_up().await?;
        let store = self.store.clone();
        blocking(move || store.offset_at_time(&meta, queue_id, time_ms)).await
    }
}
