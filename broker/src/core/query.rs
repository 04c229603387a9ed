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
}
