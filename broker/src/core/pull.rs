//! The consume API: `pull(spec, wait)` reads a queue from an offset, waiting up to `wait`
//! for a message (long-poll), with an optional tag filter.

use std::time::Duration;

use quiver_proto::requests::msg::{PULL_BYTES_MAX, PULL_MSGS_MAX, PULL_WAIT_MS_MAX};

use super::Core;
use super::tags::TagExpr;
use super::topics::blocking;
use crate::store::log::reader::{self, QueueRead, TagMatch};
use crate::store::{QueueRange, StoreError, TopicMeta, check_queue};

/// What a pull reads.
#[derive(Clone, Debug)]
pub struct PullSpec {
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// First offset.
    pub offset: u64,
    /// Most messages (clamped to 1..=`PULL_MSGS_MAX`).
    pub max_msgs: u32,
    /// Most record bytes, at least one message (clamped to 1..=`PULL_BYTES_MAX`).
    pub max_bytes: u32,
    /// Which messages to return; the others are stepped over, unread.
    pub tags: TagExpr,
}

/// What a pull returned: messages, where to pull next, the queue's offsets.
pub type Pulled = QueueRead;

impl Core {
    /// Reads `spec`'s queue from its offset. Covers every send acknowledged before the call
    /// (read-your-writes); when nothing is there yet, waits up to `wait` (at most
    /// `PULL_WAIT_MS_MAX`) for a message, or a matching one with a filter. A filtered pull
    /// answers once it has looked at `FILTER_SLOTS_MAX` offsets, even with nothing matched,
    /// and its `next_offset` moves past them.
    pub async fn pull(&self, spec: &PullSpec, wait: Duration) -> Result<Pulled, StoreError> {
        let meta = self.store.topic(&spec.topic)?;
        check_queue(&spec.topic, &meta, spec.queue_id)?;
        let mut read_spec = reader::PullSpec {
            queue_id: spec.queue_id,
            offset: spec.offset,
            max_msgs: spec.max_msgs.clamp(1, PULL_MSGS_MAX),
            max_bytes: spec.max_bytes.clamp(1, PULL_BYTES_MAX),
        };
        self.store.catch_up().await?;
        let wait = wait.min(Duration::from_millis(u64::from(PULL_WAIT_MS_MAX)));
        let deadline = tokio::time::Instant::now() + wait;
        // Held while waiting; past `long_polls_max` waiting pulls, a pull does not wait.
        let slot = self.long_polls.clone().try_acquire_owned().ok();
        let deadline = if slot.is_some() {
            deadline
        } else {
            tokio::time::Instant::now()
        };
        let matcher = spec.tags.matcher();
        loop {
            let range = self
                .wait_for_message(&meta, read_spec.offset, spec.queue_id, deadline)
                .await;
            if read_spec.offset == range.max {
                return Ok(QueueRead {
                    messages: Vec::new(),
                    next_offset: read_spec.offset,
                    min_offset: range.min,
                    max_offset: range.max,
                });
            }
            let read = self
                .read(&spec.topic, &meta, read_spec, matcher.clone())
                .await?;
            // A filtered read that found nothing but reached the queue's end waits for more;
            // one that stopped at its scan budget answers, so the consumer moves on.
            let caught_up = read.next_offset >= read.max_offset;
            if !read.messages.is_empty()
                || matcher.is_none()
                || !caught_up
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(read);
            }
            read_spec.offset = read.next_offset;
        }
    }

    async fn read(
        &self,
        topic: &str,
        meta: &TopicMeta,
        spec: reader::PullSpec,
        matcher: Option<TagMatch>,
    ) -> Result<QueueRead, StoreError> {
        let store = self.store.clone();
        let (topic, meta) = (topic.to_owned(), meta.clone());
        blocking(move || store.read_queue_matching(&topic, &meta, spec, matcher.as_ref())).await
    }

    /// Waits until the queue has a message at `offset`, the deadline passes, or the broker
    /// shuts down; returns the queue's range at that moment.
    async fn wait_for_message(
        &self,
        meta: &TopicMeta,
        offset: u64,
        queue_id: u32,
        deadline: tokio::time::Instant,
    ) -> QueueRange {
        let mut changes = self.store.dispatched_upto();
        loop {
            changes.borrow_and_update();
            let range = self.store.queue_range(meta, queue_id);
            if offset != range.max || tokio::time::Instant::now() >= deadline {
                return range;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return range },
                () = tokio::time::sleep_until(deadline) => return range,
                () = self.shutdown.cancelled() => return range,
            }
        }
    }
}
