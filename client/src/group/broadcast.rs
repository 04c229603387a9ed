//! [`BroadcastConsumer`]: every member of a broadcasting group receives every message of
//! its subscription. The brokers keep nothing for it: each member reads every queue (with
//! the tag filter applied on the broker) and keeps its own offsets in a local state file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quiver_proto::RequestCode;
use quiver_proto::StoredMessage;
use quiver_proto::requests::group::{GroupPullResponse, StartFrom};
use quiver_proto::requests::msg::{
    FilteredPullRequest, OffsetAtTimeRequest, OffsetAtTimeResponse, PULL_WAIT_MS_MAX,
    QueueOffsetsRequest, QueueOffsetsResponse,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::state_file::StateFile;
use super::{Delivery, GroupOptions, Incoming};
use crate::client::Client;
use crate::consumer::PULL_BYTES_DEFAULT;
use crate::error::ClientError;
use crate::queue::MessageQueue;

/// Batches fetched ahead of `poll`, over all queues.
const FETCHED_BATCHES_MAX: usize = 16;
/// Pause after a failed pull before the next.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

struct Fetched {
    queue: MessageQueue,
    messages: Vec<StoredMessage>,
    next_offset: u64,
}

struct Shared {
    client: Client,
    options: GroupOptions,
    file: StateFile,
    /// Next offset per queue the application is done up to.
    done: Mutex<BTreeMap<MessageQueue, u64>>,
    saved: Mutex<BTreeMap<MessageQueue, u64>>,
    fetchers: Mutex<BTreeMap<MessageQueue, JoinHandle<()>>>,
    tx: mpsc::Sender<Fetched>,
}

/// A broadcasting group member.
pub struct BroadcastConsumer {
    shared: Arc<Shared>,
    batches: tokio::sync::Mutex<Incoming<Fetched>>,
    returned: Mutex<Vec<(MessageQueue, u64)>>,
    stop: watch::Sender<bool>,
    saver: Mutex<Option<JoinHandle<()>>>,
}

impl BroadcastConsumer {
    /// Starts reading every queue of the subscribed topics, from the offsets saved in
    /// `state_dir` (or the options' start position for queues without one).
    pub async fn start(
        client: Client,
        options: GroupOptions,
        state_dir: &Path,
    ) -> Result<Self, ClientError> {
        if options.subscriptions.is_empty() {
            return Err(ClientError::Invalid(
                "a group member needs at least one subscription (topic and tags)".into(),
            ));
        }
        let file = StateFile::new(state_dir, &options.group)?;
        let saved = file.load()?;
        let (tx, rx) = mpsc::channel(FETCHED_BATCHES_MAX);
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            client,
            options,
            file,
            done: Mutex::new(saved.clone()),
            saved: Mutex::new(saved),
            fetchers: Mutex::new(BTreeMap::new()),
            tx,
        });
        shared.discover().await?;
        let saver = tokio::spawn(shared.clone().keep_saving(stopped));
        Ok(BroadcastConsumer {
            shared,
            batches: tokio::sync::Mutex::new(Incoming::new(rx)),
            returned: Mutex::new(Vec::new()),
            stop,
            saver: Mutex::new(Some(saver)),
        })
    }

    /// The queues being read.
    pub fn queues(&self) -> Vec<MessageQueue> {
        lock(&self.shared.fetchers).keys().cloned().collect()
    }

    /// Marks what the last `poll` returned as done, then waits up to `wait` for messages.
    pub async fn poll(&self, wait: Duration) -> Result<Vec<Delivery>, ClientError> {
        self.mark_done();
        let mut incoming = self.batches.lock().await;
        Ok(incoming
            .poll(wait, |b| &b.queue, |batch, out| self.take(batch, out))
            .await)
    }

    fn take(&self, batch: Fetched, out: &mut Vec<Delivery>) {
        lock(&self.returned).push((batch.queue.clone(), batch.next_offset));
        out.extend(batch.messages.into_iter().map(|message| Delivery {
            queue: batch.queue.clone(),
            message,
        }));
    }

    fn mark_done(&self) {
        let returned = std::mem::take(&mut *lock(&self.returned));
        let mut done = lock(&self.shared.done);
        for (queue, next) in returned {
            let entry = done.entry(queue).or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// Saves what `poll` returned so far to the state file, now.
    pub async fn commit(&self) -> Result<(), ClientError> {
        self.mark_done();
        self.shared.save()
    }

    /// Stops reading and saves the offsets.
    pub async fn close(&self) -> Result<(), ClientError> {
        let _ = self.stop.send(true);
        let saver = lock(&self.saver).take();
        if let Some(saver) = saver {
            let _ = saver.await;
        }
        self.shared.abort_fetchers();
        self.commit().await
    }
}

impl Drop for BroadcastConsumer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.shared.abort_fetchers();
        if let Some(saver) = lock(&self.saver).take() {
            saver.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn abort_fetchers(&self) {
        for fetcher in lock(&self.fetchers).values() {
            fetcher.abort();
        }
    }

    fn save(&self) -> Result<(), ClientError> {
        let done = lock(&self.done).clone();
        if *lock(&self.saved) == done {
            return Ok(());
        }
        self.file.save(&done)?;
        *lock(&self.saved) = done;
        Ok(())
    }

    /// Saves every commit interval and looks for new queues, until stopped.
    async fn keep_saving(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let every = self.options.auto_commit.unwrap_or(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
            if self.options.auto_commit.is_some()
                && let Err(err) = self.save()
            {
                warn!(cause = %err, "cannot save the broadcast offsets");
            }
            if let Err(err) = self.discover().await {
                debug!(cause = %err, "queue discovery failed; retrying next round");
            }
        }
    }

    /// Starts a fetcher for every queue of the subscribed topics not read yet.
    async fn discover(self: &Arc<Self>) -> Result<(), ClientError> {
        for (topic, tags) in &self.options.subscriptions {
            let route = self.client.route(topic).await?;
            for broker in &route.brokers {
                let ranges: QueueOffsetsResponse = self
                    .client
                    .call(
                        &broker.addr,
                        RequestCode::QueueOffsets,
                        &QueueOffsetsRequest {
                            topic: topic.clone(),
                        },
                    )
                    .await?;
                let at_time = match self.options.start {
                    StartFrom::Time(time_ms) => {
                        let answer: OffsetAtTimeResponse = self
                            .client
                            .call(
                                &broker.addr,
                                RequestCode::QueueOffsetAtTime,
                                &OffsetAtTimeRequest {
                                    topic: topic.clone(),
                                    time_ms,
                                },
                            )
                            .await?;
                        answer.queues.into_iter().collect()
                    }
                    _ => BTreeMap::new(),
                };
                for range in ranges.queues {
                    let queue = MessageQueue {
                        topic: topic.clone(),
                        broker_name: broker.broker_name.clone(),
                        queue_id: range.queue_id,
                    };
                    if lock(&self.fetchers).contains_key(&queue) {
                        continue;
                    }
                    let start = match (lock(&self.done).get(&queue), self.options.start) {
                        (Some(saved), _) => *saved,
                        (None, StartFrom::Last) => range.max_offset,
                        (None, StartFrom::First) => range.min_offset,
                        (None, StartFrom::Time(_)) => at_time
                            .get(&range.queue_id)
                            .copied()
                            .unwrap_or(range.max_offset),
                    }
                    .max(range.min_offset);
                    let fetcher = tokio::spawn(self.clone().fetch(
                        queue.clone(),
                        broker.addr.clone(),
                        tags.clone(),
                        start,
                    ));
                    lock(&self.fetchers).insert(queue, fetcher);
                }
            }
        }
        Ok(())
    }

    async fn min_offset(&self, addr: &str, queue: &MessageQueue) -> Result<u64, ClientError> {
        let ranges: QueueOffsetsResponse = self
            .client
            .call(
                addr,
                RequestCode::QueueOffsets,
                &QueueOffsetsRequest {
                    topic: queue.topic.clone(),
                },
            )
            .await?;
        ranges
            .queues
            .iter()
            .find(|r| r.queue_id == queue.queue_id)
            .map(|r| r.min_offset)
            .ok_or_else(|| ClientError::Invalid(format!("queue {queue} is gone")))
    }

    /// Long-polls one queue from `offset` into the channel.
    async fn fetch(
        self: Arc<Self>,
        queue: MessageQueue,
        addr: String,
        tags: String,
        mut offset: u64,
    ) {
        let wait_ms = u32::try_from(self.options.pull_wait.as_millis())
            .unwrap_or(u32::MAX)
            .min(PULL_WAIT_MS_MAX);
        loop {
            let request = FilteredPullRequest {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                offset,
                max_msgs: self.options.pull_msgs,
                max_bytes: PULL_BYTES_DEFAULT,
                wait_ms,
                tags: tags.clone(),
            };
            let deadline =
                self.client.options().timeout + Duration::from_millis(u64::from(wait_ms));
            let answer: Result<GroupPullResponse, ClientError> = self
                .client
                .call_within(&addr, RequestCode::MsgPullFiltered, &request, deadline)
                .await;
            match answer {
                Ok(response) if response.next_offset >= offset => {
                    let moved = response.next_offset != offset;
                    offset = response.next_offset;
                    if response.messages.is_empty() && !moved {
                        continue;
                    }
                    let batch = Fetched {
                        queue: queue.clone(),
                        messages: response.messages,
                        next_offset: response.next_offset,
                    };
                    if self.tx.send(batch).await.is_err() {
                        return;
                    }
                }
                Ok(response) => {
                    warn!(%queue, offset, next = response.next_offset, "a pull answer went backwards; ignored");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(err) if err.code() == Some(quiver_proto::ErrorCode::OffsetRemoved) => {
                    // Retention removed what this member had not read: go on from the
                    // oldest message still stored.
                    match self.min_offset(&addr, &queue).await {
                        Ok(min) => {
                            warn!(%queue, offset, min, "messages removed by retention before this member read them were skipped");
                            offset = min;
                        }
                        Err(err) => {
                            debug!(%queue, cause = %err, "cannot read the queue's offsets; retrying");
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                    }
                }
                Err(err) => {
                    debug!(%queue, cause = %err, "broadcast pull failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}
