//! Auto-batching (RocketMQ 5's `autoBatch`, Kafka's accumulator without a linger): concurrent
//! sync sends to one topic are coalesced into batch requests, so many small sends in flight
//! cost the broker one request, one log append and one index batch per batch.
//!
//! Adaptive, with no added delay: each topic has at most `max_in_flight` batch requests
//! running; a send that finds a free slot goes out at once (alone, when the producer is idle),
//! and sends that arrive while every slot is busy wait and leave together in the next batch.
//! Every send keeps its own message id and gets its own result. A batch is all or nothing on
//! the broker, so when the broker refuses one (a bad message in it), its messages are sent
//! again one by one and only the bad one fails.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use quiver_proto::{ErrorCode, SendMessage};
use tokio::sync::oneshot;

use crate::error::ClientError;
use crate::producer::{Core, SendResult};

/// How [`crate::Producer::with_auto_batch`] coalesces sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoBatch {
    /// Batch requests in flight per topic; sends beyond them wait and go in the next batch.
    pub max_in_flight: usize,
    /// Most messages per batch.
    pub max_msgs: usize,
    /// Most body bytes per batch (a larger single message still goes, alone).
    pub max_bytes: usize,
}

impl Default for AutoBatch {
    fn default() -> Self {
        AutoBatch {
            max_in_flight: 4,
            max_msgs: 256,
            max_bytes: 1 << 20,
        }
    }
}

/// A send waiting for its batch.
struct Pending {
    message: SendMessage,
    done: oneshot::Sender<Result<SendResult, ClientError>>,
}

/// One topic's waiting sends and running batch requests.
#[derive(Default)]
struct Lane {
    pending: VecDeque<Pending>,
    active: usize,
}

/// The per-producer accumulator.
pub(crate) struct Batcher {
    config: AutoBatch,
    // Mutex: held only to push or take sends, never across an await.
    lanes: Mutex<HashMap<String, Lane>>,
}

impl Batcher {
    pub(crate) fn new(config: AutoBatch) -> Self {
        Batcher {
            config: AutoBatch {
                max_in_flight: config.max_in_flight.max(1),
                max_msgs: config.max_msgs.max(1),
                max_bytes: config.max_bytes,
            },
            lanes: Mutex::new(HashMap::new()),
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `message` and waits for its result. A send whose future is dropped may still be
    /// stored (it is already in a batch).
    pub(crate) async fn send(
        self: &Arc<Self>,
        core: &Arc<Core>,
        topic: &str,
        message: SendMessage,
    ) -> Result<SendResult, ClientError> {
        let (done, result) = oneshot::channel();
        let start_driver = {
            let mut lanes = self.lanes();
            let lane = lanes.entry(topic.to_owned()).or_default();
            lane.pending.push_back(Pending { message, done });
            let free = lane.active < self.config.max_in_flight;
            lane.active += usize::from(free);
            free
        };
        if start_driver {
            let (batcher, core, topic) = (self.clone(), core.clone(), topic.to_owned());
            tokio::spawn(async move { batcher.drive(&core, &topic).await });
        }
        result.await.unwrap_or_else(|_| {
            Err(ClientError::Invalid(
                "the producer's batch task ended before answering (runtime shutting down?)".into(),
            ))
        })
    }

    /// Sends batches of `topic` while sends are waiting, then gives its slot back.
    async fn drive(&self, core: &Core, topic: &str) {
        while let Some(batch) = self.take(topic) {
            deliver(core, topic, batch).await;
        }
    }

    /// The next batch, or `None` (and the slot released) when nothing waits.
    fn take(&self, topic: &str) -> Option<Vec<Pending>> {
        let mut lanes = self.lanes();
        let lane = lanes.get_mut(topic)?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = lane.pending.front() {
            let size = next.message.body.len();
            if !batch.is_empty()
                && (batch.len() >= self.config.max_msgs || bytes + size > self.config.max_bytes)
            {
                break;
            }
            bytes += size;
            batch.extend(lane.pending.pop_front());
        }
        if batch.is_empty() {
            lane.active -= 1;
            if lane.active == 0 {
                lanes.remove(topic);
            }
            return None;
        }
        Some(batch)
    }
}

/// Sends one batch and answers each of its sends.
async fn deliver(core: &Core, topic: &str, batch: Vec<Pending>) {
    let (messages, dones): (Vec<SendMessage>, Vec<_>) =
        batch.into_iter().map(|p| (p.message, p.done)).unzip();
    let several = messages.len() > 1;
    match core.send_prepared(topic, &messages, None).await {
        Ok(results) => {
            for (done, result) in dones.into_iter().zip(results) {
                let _ = done.send(Ok(result));
            }
        }
        // The broker refused the whole batch (nothing of it is stored): one bad message must
        // not fail the others, so each goes alone and gets its own verdict.
        Err(err) if several && refused_whole(&err) => {
            for (message, done) in messages.into_iter().zip(dones) {
                let result = core
                    .send_prepared(topic, std::slice::from_ref(&message), None)
                    .await
                    .map(|mut results| results.remove(0));
                let _ = done.send(result);
            }
        }
        Err(err) => {
            for done in dones {
                let _ = done.send(Err(err.clone()));
            }
        }
    }
}

/// Whether the broker answered that it refused the batch for something in its messages (as
/// opposed to the topic, the queue, or a failure that may have stored it).
fn refused_whole(err: &ClientError) -> bool {
    err.code().is_some_and(|code| {
        !code.is_retryable()
            && !matches!(code, ErrorCode::TopicNotFound | ErrorCode::QueueOutOfRange)
    })
}
