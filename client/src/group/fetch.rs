//! One task per leased queue: long-polls `group.pull` and hands the batches to `poll`
//! through a bounded channel (a full channel stops the pulling).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quiver_proto::requests::group::{GroupPull, GroupPullResponse};
use quiver_proto::requests::msg::PULL_WAIT_MS_MAX;
use quiver_proto::{ErrorCode, RequestCode};
use tokio::task::JoinHandle;
use tracing::debug;

use super::session::{Batch, QueueBudget, Session};
use crate::consumer::PULL_BYTES_DEFAULT;
use crate::error::ClientError;
use crate::queue::MessageQueue;

/// Pause after a failed pull before the next (the broker may be restarting).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub(super) fn spawn(
    session: Arc<Session>,
    queue: MessageQueue,
    addr: String,
    epoch: u64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let budget = session
            .budget
            .map(|(msgs, bytes)| Arc::new(QueueBudget::new(msgs, bytes)));
        let mut offset = None;
        let wait_ms = u32::try_from(session.options.pull_wait.as_millis())
            .unwrap_or(u32::MAX)
            .min(PULL_WAIT_MS_MAX);
        loop {
            if let Some(budget) = &budget {
                budget.room().await;
            }
            let request = GroupPull {
                group: session.options.group.clone(),
                member: session.member().to_owned(),
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                epoch,
                offset,
                max_msgs: session.options.pull_msgs,
                max_bytes: PULL_BYTES_DEFAULT,
                wait_ms,
            };
            let deadline =
                session.client.options().timeout + Duration::from_millis(u64::from(wait_ms));
            let answer: Result<GroupPullResponse, ClientError> = session
                .client
                .call_within(&addr, RequestCode::GroupPull, &request, deadline)
                .await;
            match answer {
                Ok(response) => {
                    if let Some(at) = offset
                        && response.next_offset < at
                    {
                        debug!(%queue, at, next = response.next_offset, "pull answer went backwards; re-reading from the committed offset");
                        offset = None;
                        continue;
                    }
                    let moved = offset != Some(response.next_offset);
                    offset = Some(response.next_offset);
                    if response.messages.is_empty() && !moved {
                        continue;
                    }
                    if let Some(budget) = &budget {
                        budget.take(&response.messages);
                    }
                    let batch = Batch {
                        queue: queue.clone(),
                        epoch,
                        messages: response.messages,
                        next_offset: response.next_offset,
                        budget: budget.clone(),
                    };
                    if session.tx.send(batch).await.is_err() {
                        return;
                    }
                }
                Err(err) if err.code() == Some(ErrorCode::GroupFenced) => {
                    // The queue moved: the next heartbeat says where; until then, stop.
                    session.pending.store(true, Ordering::Relaxed);
                    return;
                }
                Err(err) => {
                    debug!(%queue, cause = %err, "group pull failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    })
}
