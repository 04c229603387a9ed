//! Delayed messages. A send whose messages carry `%DELIVER_AT` in the future is stored once,
//! in the system topic `%SCHEDULE%`, with its real topic and queue as properties; its index
//! entry arms a timer (`store::index::timers`). `run_timers` delivers each when due: it
//! appends the message (same id, body, tag, keys, properties) to its real queue with `%TIMER`
//! naming the scheduled record, whose indexing ends the timer, so a crash or a replay never
//! delivers it twice.

use std::sync::Arc;
use std::time::Duration;

use quiver_proto::SendMessage;
use quiver_proto::message::{DELAY_MS_MAX, PROP_DELIVER_AT};
use tracing::{debug, warn};

use super::Core;
use super::topics::blocking;
use crate::clock::now_ms;
use crate::store::index::timers::{
    PROP_REAL_QUEUE, PROP_REAL_TOPIC, PROP_TIMER, SCHEDULE_TOPIC, Timer,
};
use crate::store::{Appended, Refusal, StoreError, check_queue};

/// Pause after a failed delivery before the next try.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

fn deliver_at(msg: &SendMessage) -> Option<u64> {
    msg.properties
        .iter()
        .find(|(k, _)| k == PROP_DELIVER_AT)
        .and_then(|(_, v)| v.parse().ok())
}

impl Core {
    /// Sends a batch that may be delayed: all its messages due in the future go to the
    /// schedule topic; none does, it is sent as is (a due time already past is delivered
    /// now). A batch that mixes both is refused.
    pub(super) async fn send_maybe_delayed(
        &self,
        topic: &str,
        queue_id: u32,
        mut messages: Vec<SendMessage>,
    ) -> Result<Appended, StoreError> {
        let now = now_ms();
        let due: Vec<Option<u64>> = messages.iter().map(deliver_at).collect();
        let delayed = due.iter().filter(|d| d.is_some_and(|d| d > now)).count();
        if delayed == 0 {
            for msg in &mut messages {
                msg.properties.retain(|(k, _)| k != PROP_DELIVER_AT);
            }
            return self.store.append(topic, queue_id, messages).await;
        }
        if delayed != messages.len() {
            return Err(StoreError::invalid(
                Refusal::InvalidArgument,
                "a batch's messages must all be delayed or none: send delayed messages in their own batch",
            ));
        }
        if let Some(far) = due.iter().flatten().find(|d| **d > now + DELAY_MS_MAX) {
            return Err(StoreError::invalid(
                Refusal::InvalidArgument,
                format!(
                    "delivery time {far} is {} s away: the longest delay is {} days",
                    (far - now) / 1000,
                    DELAY_MS_MAX / 86_400_000
                ),
            ));
        }
        let meta = self.store.topic(topic)?;
        check_queue(topic, &meta, queue_id)?;
        self.ensure_schedule_topic().await?;
        for msg in &mut messages {
            msg.properties.push((PROP_REAL_TOPIC.into(), topic.into()));
            msg.properties
                .push((PROP_REAL_QUEUE.into(), queue_id.to_string()));
        }
        self.store.append(SCHEDULE_TOPIC, 0, messages).await
    }

    async fn ensure_schedule_topic(&self) -> Result<(), StoreError> {
        if self.store.topic(SCHEDULE_TOPIC).is_ok() {
            return Ok(());
        }
        let store = self.store.clone();
        match blocking(move || store.create_topic(SCHEDULE_TOPIC, 1)).await {
            Ok(_) => Ok(()),
            Err(_) if self.store.topic(SCHEDULE_TOPIC).is_ok() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Delivers delayed messages when due, until shutdown.
    pub async fn run_timers(self: Arc<Self>) {
        let mut changes = self.store.timers_armed();
        loop {
            changes.borrow_and_update();
            let store = self.store.clone();
            let next = blocking(move || store.first_timer()).await;
            // One reading of the clock for both arms: read twice, a timer due between the
            // readings would make the wait negative.
            let now = now_ms();
            let wait = match next {
                Ok(Some(timer)) if timer.due_ms <= now => {
                    if let Err(err) = self.deliver(timer).await {
                        warn!(pos = timer.pos, cause = %err, "cannot deliver a delayed message yet; retrying");
                        Some(RETRY_PAUSE)
                    } else {
                        continue;
                    }
                }
                Ok(Some(timer)) => Some(Duration::from_millis(timer.due_ms - now)),
                Ok(None) => None,
                Err(err) => {
                    warn!(cause = %err, "cannot read the timers; retrying");
                    Some(RETRY_PAUSE)
                }
            };
            let sleep = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                // A new (maybe earlier) timer was armed.
                changed = changes.changed() => if changed.is_err() { return },
                () = sleep => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Appends a due message to its real queue (or, when that queue is gone, a marker to
    /// the schedule topic), then waits until the index has ended its timer.
    async fn deliver(&self, timer: Timer) -> Result<(), StoreError> {
        let store = self.store.clone();
        let record = blocking(move || store.read_record(timer.pos, timer.size)).await?;
        let property = |name: &str| {
            record
                .properties
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let real_topic = property(PROP_REAL_TOPIC).unwrap_or_default();
        let real_queue: u32 = property(PROP_REAL_QUEUE)
            .and_then(|q| q.parse().ok())
            .unwrap_or(u32::MAX);
        let mut msg = SendMessage::new(Some(record.msg_id), record.body.clone(), record.born_ms);
        msg.tag = record.tag.clone();
        msg.keys = record.keys.clone();
        msg.properties = record
            .properties
            .iter()
            .filter(|(k, _)| {
                ![PROP_DELIVER_AT, PROP_REAL_TOPIC, PROP_REAL_QUEUE].contains(&k.as_str())
            })
            .cloned()
            .collect();
        msg.properties
            .push((PROP_TIMER.into(), timer.pos.to_string()));
        let exists = self
            .store
            .topic(&real_topic)
            .is_ok_and(|meta| check_queue(&real_topic, &meta, real_queue).is_ok());
        if exists {
            self.store
                .append(&real_topic, real_queue, vec![msg])
                .await?;
            debug!(
                pos = timer.pos,
                topic = real_topic,
                late_ms = now_ms().saturating_sub(timer.due_ms),
                "delivered a delayed message"
            );
        } else {
            warn!(
                pos = timer.pos,
                topic = real_topic,
                queue = real_queue,
                "a delayed message's queue is gone; it is dropped"
            );
            let marker = SendMessage::new(Some(record.msg_id), bytes::Bytes::new(), record.born_ms);
            let mut marker = marker;
            marker
                .properties
                .push((PROP_TIMER.into(), timer.pos.to_string()));
            self.store.append(SCHEDULE_TOPIC, 0, vec![marker]).await?;
        }
        self.store.catch_up().await
    }
}
