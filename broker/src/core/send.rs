//! Sends, with topic auto-creation.

use quiver_proto::SendMessage;
use tracing::info;

use super::Core;
use crate::store::{Appended, Refusal, StoreError};

impl Core {
    /// Appends a send batch to one queue of `topic` (created first when unknown and
    /// auto-creation is on); returns once it is durable in the store's flush mode.
    pub async fn send(
        &self,
        topic: &str,
        queue_id: u32,
        messages: Vec<SendMessage>,
    ) -> Result<Appended, StoreError> {
        for (idx, msg) in messages.iter().enumerate() {
            msg.check_reserved_properties().map_err(|reason| {
                StoreError::invalid(Refusal::InvalidArgument, format!("message {idx}: {reason}"))
            })?;
        }
        if self.config.auto_create_topics && self.store.topic(topic).is_err() {
            self.auto_create(topic).await?;
        }
        self.send_maybe_delayed(topic, queue_id, messages).await
    }

    async fn auto_create(&self, topic: &str) -> Result<(), StoreError> {
        let queues = self.config.default_queues;
        match self.create_topic(topic, queues).await {
            Ok(meta) => {
                info!(topic, queues = meta.queues, "topic auto-created");
                Ok(())
            }
            // A concurrent send created it first.
            Err(_) if self.store.topic(topic).is_ok() => Ok(()),
            Err(err) => Err(err),
        }
    }
}
