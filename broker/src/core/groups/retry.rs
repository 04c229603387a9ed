//! Retries and dead letters. A member that fails a message sends it back: the broker reads
//! it from the queue the member leases and appends it (same id, body, tag, keys, user
//! properties) to the group's retry topic `%RETRY%<group>`, delayed by the group's back-off
//! step for its retry count, through the delay path of `core::timers`. Members read the
//! retry topic like a subscribed one (the broker adds it to every group's subscription).
//! Past the group's `max_retries` the message goes to `%DLQ%<group>` instead, where it stays
//! until an operator resends it. Both topics have one queue and are created on first use.

use quiver_proto::message::{
    DELAY_MS_MAX, PROP_DELIVER_AT, PROP_DLQ_REASON, PROP_ORIGIN_TOPIC, PROP_RECONSUME,
    PROPERTY_BYTES_MAX, StoredMessage,
};
use quiver_proto::requests::group::{GroupSendBack, GroupSendBackResponse};
use quiver_proto::{MessageId, Name, SendMessage};
use tracing::info;

use super::table::Use;
use crate::clock::now_ms;
use crate::core::topics::blocking;
use crate::core::{Core, PullSpec, TagExpr};
use crate::store::{Refusal, StoreError};

/// Dead letters one resend reads and appends at a time.
const RESEND_CHUNK: u32 = 256;

/// The copy of `msg` to store again: the user's properties, and the broker's retry count
/// and origin (`%`-properties of earlier deliveries, such as `%TIMER`, are dropped: a
/// copy must not end a timer again).
fn copy_for_retry(msg: &StoredMessage, reconsume: u32) -> SendMessage {
    let mut copy = SendMessage::new(Some(msg.msg_id), msg.body.clone(), msg.born_ms);
    copy.tag = msg.tag.clone();
    copy.keys = msg.keys.clone();
    copy.properties = msg
        .properties
        .iter()
        .filter(|(k, _)| !k.starts_with('%'))
        .cloned()
        .collect();
    copy.properties
        .push((PROP_ORIGIN_TOPIC.into(), msg.origin_topic().into()));
    copy.properties
        .push((PROP_RECONSUME.into(), reconsume.to_string()));
    copy
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn cut_to(text: &mut String, max: usize) {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
}

/// The group's wait before retry number `reconsume` (1-based; the last step repeats).
fn backoff(steps: &[u64], reconsume: u32) -> u64 {
    let idx = (reconsume.max(1) - 1) as usize;
    steps.get(idx).or(steps.last()).copied().unwrap_or_default()
}

impl Core {
    /// Stores a failed message of a queue the member leases in the group's retry topic, or
    /// past the group's retries in its dead-letter topic.
    pub async fn group_send_back(
        &self,
        req: &GroupSendBack,
    ) -> Result<GroupSendBackResponse, StoreError> {
        self.check_lease(req, Use::Commit)?;
        let msg = self.read_one(&req.topic, req.queue_id, req.offset).await?;
        self.send_back(&req.group, &msg, req.delay_ms, None).await
    }

    /// Stores `msg`, failed by `group`, in the group's retry topic (after `delay_ms` or the
    /// group's back-off), or past the group's retries in its dead-letter topic (with
    /// `failure` as the reason, when known). The caller holds the message's queue.
    pub async fn send_back(
        &self,
        group: &str,
        msg: &StoredMessage,
        delay_ms: Option<u64>,
        failure: Option<&str>,
    ) -> Result<GroupSendBackResponse, StoreError> {
        let name =
            Name::new(group).map_err(|err| StoreError::invalid(Refusal::InvalidArgument, err))?;
        let store = self.store.clone();
        let owned = group.to_owned();
        let settings = blocking(move || store.catalog().ensure_group(&owned)).await?;
        let reconsume = msg.reconsume_times().saturating_add(1);
        if reconsume > settings.max_retries {
            let reason = failure.map_or_else(
                || format!("failed {reconsume} times"),
                |why| format!("failed {reconsume} times, the last: {why}"),
            );
            let topic = self.dead_letter_as(&name, msg, reconsume, &reason).await?;
            return Ok(GroupSendBackResponse {
                topic,
                reconsume,
                deliver_at_ms: 0,
            });
        }
        let mut copy = copy_for_retry(msg, reconsume);
        let delay = delay_ms
            .unwrap_or_else(|| backoff(&settings.backoff_ms, reconsume))
            .min(DELAY_MS_MAX);
        let deliver_at_ms = now_ms() + delay;
        copy.properties
            .push((PROP_DELIVER_AT.into(), deliver_at_ms.to_string()));
        let retry = Name::retry_topic(&name);
        self.ensure_system_topic(&retry).await?;
        self.send_maybe_delayed(retry.as_str(), 0, vec![copy])
            .await?;
        Ok(GroupSendBackResponse {
            topic: retry.to_string(),
            reconsume,
            deliver_at_ms,
        })
    }

    /// Stores `msg` in `group`'s dead-letter topic at once, with `reason`.
    pub async fn dead_letter(
        &self,
        group: &str,
        msg: &StoredMessage,
        reason: &str,
    ) -> Result<(), StoreError> {
        let name =
            Name::new(group).map_err(|err| StoreError::invalid(Refusal::InvalidArgument, err))?;
        let reconsume = msg.reconsume_times().saturating_add(1);
        self.dead_letter_as(&name, msg, reconsume, reason).await?;
        Ok(())
    }

    async fn dead_letter_as(
        &self,
        group: &Name,
        msg: &StoredMessage,
        reconsume: u32,
        reason: &str,
    ) -> Result<String, StoreError> {
        let mut copy = copy_for_retry(msg, reconsume);
        let mut reason = reason.to_owned();
        cut_to(&mut reason, PROPERTY_BYTES_MAX);
        copy.properties.push((PROP_DLQ_REASON.into(), reason));
        let dlq = Name::dlq_topic(group);
        self.ensure_system_topic(&dlq).await?;
        self.store.append(dlq.as_str(), 0, vec![copy]).await?;
        info!(group = %group, msg_id = %msg.msg_id, reconsume, "message dead-lettered");
        Ok(dlq.to_string())
    }

    /// Gives the group's dead letters back to it through its retry topic, due now, their
    /// retry count starting again: the one with `msg_id`, or every one past the group's
    /// resend mark (which then moves to the end). Returns how many were resent.
    pub async fn group_dlq_resend(
        &self,
        group: &str,
        msg_id: Option<MessageId>,
    ) -> Result<u64, StoreError> {
        let group =
            Name::new(group).map_err(|err| StoreError::invalid(Refusal::InvalidArgument, err))?;
        let dlq = Name::dlq_topic(&group);
        let Ok(meta) = self.store.topic(dlq.as_str()) else {
            return Ok(0);
        };
        let retry = Name::retry_topic(&group);
        if let Some(id) = msg_id {
            let found = self.query_id(dlq.as_str(), id).await?;
            let Some(letter) = found.last() else {
                return Err(StoreError::invalid(
                    Refusal::MessageNotFound,
                    format!("no dead letter {id} in {dlq} on this broker"),
                ));
            };
            self.ensure_system_topic(&retry).await?;
            self.store
                .append(retry.as_str(), 0, vec![copy_for_retry(letter, 0)])
                .await?;
            return Ok(1);
        }
        // Created before the lock: a topic creation waits for the name servers.
        self.ensure_system_topic(&retry).await?;
        let _serial = self.groups.commits.lock().await;
        self.store.catch_up().await?;
        let range = self.store.queue_range(&meta, 0);
        let store = self.store.clone();
        let name = group.to_string();
        let mark = blocking(move || store.catalog().offset(&name, meta.id, 0)).await?;
        let mut offset = mark.unwrap_or(range.min).max(range.min);
        let mut resent = 0;
        while offset < range.max {
            let spec = PullSpec {
                topic: dlq.to_string(),
                queue_id: 0,
                offset,
                max_msgs: RESEND_CHUNK,
                max_bytes: u32::MAX,
                tags: TagExpr::All,
            };
            let read = self.pull(&spec, std::time::Duration::ZERO).await?;
            let copies: Vec<SendMessage> = read
                .messages
                .iter()
                .filter(|m| m.offset < range.max)
                .map(|m| copy_for_retry(m, 0))
                .collect();
            if !copies.is_empty() {
                resent += copies.len() as u64;
                self.store.append(retry.as_str(), 0, copies).await?;
            }
            if read.next_offset <= offset {
                break;
            }
            offset = read.next_offset.min(range.max);
            let store = self.store.clone();
            let name = group.to_string();
            blocking(move || {
                store
                    .catalog()
                    .commit_offsets(&name, &[(meta.id, 0, offset)])
            })
            .await?;
        }
        info!(group = %group, resent, "dead letters resent");
        Ok(resent)
    }

    /// The message at `offset` of a queue.
    async fn read_one(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> Result<StoredMessage, StoreError> {
        let spec = PullSpec {
            topic: topic.to_owned(),
            queue_id,
            offset,
            max_msgs: 1,
            max_bytes: u32::MAX,
            tags: TagExpr::All,
        };
        let read = self.pull(&spec, std::time::Duration::ZERO).await?;
        read.messages
            .into_iter()
            .find(|m| m.offset == offset)
            .ok_or_else(|| {
                StoreError::invalid(
                    Refusal::MessageNotFound,
                    format!(
                        "no message at offset {offset} of {topic} queue {queue_id} (removed by retention, or not stored yet)"
                    ),
                )
            })
    }

    /// Creates a group's retry or dead-letter topic (one queue) unless it exists; routes
    /// carry it once the name servers acknowledged it.
    async fn ensure_system_topic(&self, name: &Name) -> Result<(), StoreError> {
        if self.store.topic(name.as_str()).is_ok() {
            return Ok(());
        }
        match self.create_topic(name.as_str(), 1).await {
            Ok(_) => Ok(()),
            Err(_) if self.store.topic(name.as_str()).is_ok() => Ok(()),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_steps_follow_the_retry_count_and_the_last_repeats() {
        let steps = [10, 20, 40];
        let got: Vec<u64> = (1..=5).map(|n| backoff(&steps, n)).collect();
        assert_eq!(got, vec![10, 20, 40, 40, 40]);
        assert_eq!(backoff(&steps, 0), 10);
    }

    #[test]
    fn a_copy_keeps_the_message_and_replaces_the_broker_properties() {
        let msg = StoredMessage {
            topic: "%RETRY%g".into(),
            queue_id: 0,
            offset: 7,
            msg_id: MessageId(42),
            tag: Some("t".into()),
            keys: vec!["k".into()],
            properties: vec![
                ("user".into(), "v".into()),
                (PROP_ORIGIN_TOPIC.into(), "orders".into()),
                (PROP_RECONSUME.into(), "1".into()),
                ("%TIMER".into(), "99".into()),
            ],
            body: bytes::Bytes::from_static(b"body"),
            born_ms: 5,
            stored_ms: 6,
            log_pos: 8,
            body_crc: crc32c::crc32c(b"body"),
        };
        let copy = copy_for_retry(&msg, 2);
        assert_eq!(copy.msg_id, Some(MessageId(42)));
        assert_eq!(
            (copy.tag.as_deref(), copy.keys.clone()),
            (Some("t"), vec!["k".to_string()])
        );
        assert_eq!(copy.body, msg.body);
        assert!(copy.checksum_ok());
        assert_eq!(
            copy.properties,
            vec![
                ("user".to_string(), "v".to_string()),
                (PROP_ORIGIN_TOPIC.to_string(), "orders".to_string()),
                (PROP_RECONSUME.to_string(), "2".to_string()),
            ]
        );
    }
}
