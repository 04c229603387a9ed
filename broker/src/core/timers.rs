//! Delayed messages. A send whose messages carry `%DELIVER_AT` in the future is stored once,
//! in the system topic `%SCHEDULE%`, with its real topic and queue as properties; its index
//! entry arms a timer (`store::index::timers`). `run_timers` delivers each when due: it
//! appends the message (same id, body, tag, keys, properties) to its real queue with `%TIMER`
//! naming the scheduled record, whose indexing ends the timer, so a crash or a replay never
//! delivers it twice.

use std::collections::BTreeMap;
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
use crate::store::log::record::Record;
use crate::store::{Appended, Refusal, StoreError, check_queue};

/// Pause after a failed delivery before the next try.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Most due timers one round delivers.
const TIMERS_PER_ROUND: usize = 1024;
/// Most messages in one delivery append.
const DELIVERY_MSGS_MAX: usize = 256;
/// Body bytes after which a delivery append is cut.
const DELIVERY_BYTES_MAX: usize = 4 << 20;

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
            let now = now_ms();
            let store = self.store.clone();
            let due = blocking(move || store.due_timers(now, TIMERS_PER_ROUND)).await;
            let wait = match due {
                Ok(timers) if !timers.is_empty() => match self.deliver(timers).await {
                    Ok(()) => continue,
                    Err(err) => {
                        warn!(cause = %err, "cannot deliver every due delayed message yet; retrying");
                        Some(RETRY_PAUSE)
                    }
                },
                Ok(_) => {
                    let store = self.store.clone();
                    match blocking(move || store.first_timer()).await {
                        // Saturating: it may have fallen due since `now`.
                        Ok(Some(timer)) => {
                            Some(Duration::from_millis(timer.due_ms.saturating_sub(now_ms())))
                        }
                        Ok(None) => None,
                        Err(err) => {
                            warn!(cause = %err, "cannot read the timers; retrying");
                            Some(RETRY_PAUSE)
                        }
                    }
                }
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

    /// Appends due messages to their real queues, one append per queue (and chunk); a
    /// message whose queue is gone gets a marker in the schedule topic instead. A scheduled
    /// record that cannot be read is left for the next try and holds back nothing else.
    /// Returns once the index has ended the timers of what was appended.
    async fn deliver(&self, timers: Vec<Timer>) -> Result<(), StoreError> {
        let store = self.store.clone();
        let read = blocking(move || {
            Ok(timers
                .into_iter()
                .map(|timer| (timer, store.read_record(timer.pos, timer.size)))
                .collect::<Vec<_>>())
        })
        .await?;
        let mut first_err = None;
        let mut queues: BTreeMap<(String, u32), Vec<SendMessage>> = BTreeMap::new();
        let mut markers = Vec::new();
        let mut latest_due = 0;
        for (timer, record) in read {
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    warn!(pos = timer.pos, cause = %err, "cannot read a delayed message; retrying it later");
                    first_err.get_or_insert(err);
                    continue;
                }
            };
            latest_due = latest_due.max(timer.due_ms);
            let (msg, topic, queue) = delivery_of(&record, timer.pos);
            let exists = self
                .store
                .topic(&topic)
                .is_ok_and(|meta| check_queue(&topic, &meta, queue).is_ok());
            if exists {
                queues.entry((topic, queue)).or_default().push(msg);
            } else {
                warn!(
                    pos = timer.pos,
                    topic, queue, "a delayed message's queue is gone; it is dropped"
                );
                let mut marker =
                    SendMessage::new(Some(record.msg_id), bytes::Bytes::new(), record.born_ms);
                marker
                    .properties
                    .push((PROP_TIMER.into(), timer.pos.to_string()));
                markers.push(marker);
            }
        }
        let mut delivered = 0;
        for ((topic, queue), messages) in queues {
            for chunk in chunks(messages) {
                let n = chunk.len();
                match self.store.append(&topic, queue, chunk).await {
                    Ok(_) => delivered += n,
                    Err(err) => {
                        first_err.get_or_insert(err);
                    }
                }
            }
        }
        for chunk in chunks(markers) {
            if let Err(err) = self.store.append(SCHEDULE_TOPIC, 0, chunk).await {
                first_err.get_or_insert(err);
            }
        }
        if delivered > 0 {
            debug!(
                delivered,
                late_ms = now_ms().saturating_sub(latest_due),
                "delivered delayed messages"
            );
        }
        // What was appended ends its timers once indexed: wait for that before the timers
        // are read again, so nothing is delivered twice.
        self.store.catch_up().await?;
        first_err.map_or(Ok(()), Err)
    }
}

/// The copy of a scheduled record for its real queue: same id, body, tag, keys and user
/// properties, with `%TIMER` naming the scheduled record; and the real topic and queue.
fn delivery_of(record: &Record, pos: u64) -> (SendMessage, String, u32) {
    let property = |name: &str| {
        record
            .properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let topic = property(PROP_REAL_TOPIC).unwrap_or_default();
    let queue: u32 = property(PROP_REAL_QUEUE)
        .and_then(|q| q.parse().ok())
        .unwrap_or(u32::MAX);
    let mut msg = SendMessage::new(Some(record.msg_id), record.body.clone(), record.born_ms);
    msg.tag = record.tag.clone();
    msg.keys = record.keys.clone();
    msg.properties = record
        .properties
        .iter()
        .filter(|(k, _)| ![PROP_DELIVER_AT, PROP_REAL_TOPIC, PROP_REAL_QUEUE].contains(&k.as_str()))
        .cloned()
        .collect();
    msg.properties.push((PROP_TIMER.into(), pos.to_string()));
    (msg, topic, queue)
}

/// Splits messages into appends of at most [`DELIVERY_MSGS_MAX`] messages and about
/// [`DELIVERY_BYTES_MAX`] body bytes (a larger message goes alone), in order.
fn chunks(messages: Vec<SendMessage>) -> Vec<Vec<SendMessage>> {
    let mut out: Vec<Vec<SendMessage>> = Vec::new();
    let mut bytes = 0;
    for msg in messages {
        let full = out.last().is_none_or(|chunk| {
            chunk.len() >= DELIVERY_MSGS_MAX || bytes + msg.body.len() > DELIVERY_BYTES_MAX
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += msg.body.len();
        out.last_mut().expect("a chunk was pushed").push(msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_order_and_limits() {
        let msg = |n: usize| SendMessage::new(None, bytes::Bytes::from(vec![0; n]), 0);
        let many: Vec<SendMessage> = (0..DELIVERY_MSGS_MAX + 3).map(|_| msg(1)).collect();
        let sizes: Vec<usize> = chunks(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![DELIVERY_MSGS_MAX, 3]);
        let big = vec![
            msg(DELIVERY_BYTES_MAX),
            msg(1),
            msg(DELIVERY_BYTES_MAX / 2),
            msg(DELIVERY_BYTES_MAX / 2),
        ];
        let sizes: Vec<usize> = chunks(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 2, 1]);
        assert!(chunks(Vec::new()).is_empty());
    }
}
