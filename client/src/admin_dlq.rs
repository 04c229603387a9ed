//! Dead letters: a group's messages that failed all their retries, kept in `%DLQ%<group>`
//! on the broker that held them. List them, and resend them to the group (through its
//! retry topic, so only that group sees them again).

use std::time::Duration;

use quiver_proto::requests::group::{DlqResend, DlqResendResponse, GroupDescribe, GroupInfo};
use quiver_proto::{ErrorCode, MessageId, Name, RequestCode, StoredMessage};

use crate::admin::{Admin, on_broker};
use crate::consumer::PullConsumer;
use crate::error::ClientError;

/// Most dead letters one pull reads.
const LIST_CHUNK: u32 = 256;

/// One dead letter, and whether `dlq resend --all` has given it back already.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Broker holding it.
    pub broker_name: String,
    /// The message (its `reconsume_times` and `origin_topic` tell its story).
    pub message: StoredMessage,
    /// Resent by an earlier `resend` of every dead letter.
    pub resent: bool,
}

fn dlq_of(group: &str) -> Result<Name, ClientError> {
    let group = Name::new(group).map_err(|err| ClientError::Invalid(format!("group {err}")))?;
    Ok(Name::dlq_topic(&group))
}

impl Admin {
    /// The first `max` dead letters of `group` on each broker, oldest first (none when the
    /// group never dead-lettered a message).
    pub async fn dead_letters(
        &self,
        group: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, ClientError> {
        let dlq = dlq_of(group)?;
        let route = match self.client().refresh_route(dlq.as_str()).await {
            Ok(route) => route,
            Err(err) if err.code() == Some(ErrorCode::TopicNotFound) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let consumer = PullConsumer::new(self.client().clone());
        let mut out = Vec::new();
        for range in consumer.offsets(dlq.as_str()).await? {
            let broker = range.queue.broker_name.clone();
            let addr = route
                .brokers
                .iter()
                .find(|b| b.broker_name == broker)
                .map(|b| b.addr.clone())
                .unwrap_or_default();
            let mark = self.resend_mark(&addr, group, &dlq).await;
            let mut offset = range.min_offset;
            let mut taken = 0;
            while offset < range.max_offset && taken < max {
                let want = u32::try_from(max - taken)
                    .unwrap_or(u32::MAX)
                    .min(LIST_CHUNK);
                let read = consumer
                    .pull(&range.queue, offset, want, Duration::ZERO)
                    .await
                    .map_err(|err| on_broker(&broker, err))?;
                if read.messages.is_empty() {
                    break;
                }
                offset = read.next_offset;
                for message in read.messages {
                    taken += 1;
                    out.push(DeadLetter {
                        broker_name: broker.clone(),
                        resent: mark.is_some_and(|m| message.offset < m),
                        message,
                    });
                }
            }
        }
        Ok(out)
    }

    /// How far `resend --all` has gone on one broker: the group's offset of its
    /// dead-letter queue.
    async fn resend_mark(&self, addr: &str, group: &str, dlq: &Name) -> Option<u64> {
        let request = GroupDescribe {
            group: group.to_owned(),
        };
        let info: GroupInfo = self
            .client()
            .call(addr, RequestCode::GroupDescribe, &request)
            .await
            .ok()?;
        info.queues
            .iter()
            .find(|q| q.topic == dlq.as_str())
            .and_then(|q| q.committed)
    }

    /// Gives dead letters back to `group`: the one with `msg_id`, or (`None`) every one not
    /// resent before, on every broker. Each is delivered again through the group's retry
    /// topic at once, its retry count starting from 0. Returns `(broker, resent)`.
    pub async fn resend_dead_letters(
        &self,
        group: &str,
        msg_id: Option<MessageId>,
    ) -> Result<Vec<(String, u64)>, ClientError> {
        let dlq = dlq_of(group)?;
        let route = match self.client().refresh_route(dlq.as_str()).await {
            Ok(route) => route,
            Err(err) if err.code() == Some(ErrorCode::TopicNotFound) => {
                return match msg_id {
                    None => Ok(Vec::new()),
                    Some(id) => Err(not_found(group, id)),
                };
            }
            Err(err) => return Err(err),
        };
        let request = DlqResend {
            group: group.to_owned(),
            msg_id,
        };
        let mut out = Vec::new();
        for broker in &route.brokers {
            let answer: Result<DlqResendResponse, ClientError> = self
                .client()
                .call(&broker.addr, RequestCode::GroupDlqResend, &request)
                .await;
            match answer {
                Ok(answer) => out.push((broker.broker_name.clone(), answer.resent)),
                Err(err) if msg_id.is_some() && err.code() == Some(ErrorCode::MessageNotFound) => {}
                Err(err) => return Err(on_broker(&broker.broker_name, err)),
            }
        }
        if let Some(id) = msg_id
            && out.iter().all(|(_, n)| *n == 0)
        {
            return Err(not_found(group, id));
        }
        Ok(out)
    }
}

fn not_found(group: &str, id: MessageId) -> ClientError {
    ClientError::Net(quiver_net::NetError::Server {
        code: ErrorCode::MessageNotFound,
        message: format!(
            "no dead letter {id} of group {group}: `quiver dlq list {group}` shows them"
        ),
    })
}
