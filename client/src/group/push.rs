//! [`PushConsumer`]: the application registers a handler and messages arrive as soon as
//! they exist (long-polls under the hood), with bounded buffering per queue.
//!
//! Concurrent mode runs up to `handlers` messages at once; a queue's committed offset is its
//! lowest unfinished message. A failed message is sent back to its broker, which delivers
//! it again through the group's retry topic after the group's back-off (and past the
//! group's retries moves it to the dead-letter topic), so it holds nothing up; when the
//! broker cannot take it, it is retried in place after `retry_delay`. Orderly mode handles
//! each queue's messages one at a time, in order, only while this member holds the queue's
//! lease; a failing message is retried in place after `retry_delay` and never overtaken.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::debug;

use super::session::{Batch, Session};
use super::{Delivery, GroupOptions, Tasks, join};
use crate::client::Client;
use crate::error::ClientError;
use crate::queue::MessageQueue;

/// What a handler says of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Try again later: after this delay, or else the group's back-off step (orderly:
    /// the consumer's `retry_delay`).
    Retry(Option<Duration>),
    /// Failed: retried like `Retry(None)`.
    Failure,
}

/// A message handler's future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The application's handler.
pub type Handler = Arc<dyn Fn(Delivery) -> HandlerFuture + Send + Sync>;

/// Default messages a push consumer buffers per queue before it stops pulling it.
pub const QUEUE_BUFFER_MSGS_DEFAULT: usize = 1000;
/// Default body bytes a push consumer buffers per queue before it stops pulling it.
pub const QUEUE_BUFFER_BYTES_DEFAULT: usize = 100 << 20;

/// How a push consumer runs.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Group membership, subscription, heartbeats, commits.
    pub group: GroupOptions,
    /// Handler calls running at once (concurrent mode).
    pub handlers: usize,
    /// Orderly: one message at a time per queue, in order.
    pub orderly: bool,
    /// Wait before a message is handled again after `Retry(None)` or `Failure` in orderly
    /// mode (and in concurrent mode when the broker cannot take it back).
    pub retry_delay: Duration,
    /// Messages fetched and unfinished per queue before its pulling stops.
    pub queue_buffer_msgs: usize,
    /// Body bytes fetched and unfinished per queue before its pulling stops.
    pub queue_buffer_bytes: usize,
}

impl PushOptions {
    /// Concurrent consumption with the defaults.
    pub fn new(group: GroupOptions) -> Self {
        PushOptions {
            group,
            handlers: 16,
            orderly: false,
            retry_delay: Duration::from_secs(1),
            queue_buffer_msgs: QUEUE_BUFFER_MSGS_DEFAULT,
            queue_buffer_bytes: QUEUE_BUFFER_BYTES_DEFAULT,
        }
    }
}

/// A consumer-group member that calls a handler for each message.
pub struct PushConsumer {
    session: Arc<Session>,
    tasks: Tasks,
}

impl PushConsumer {
    /// Joins the group (see [`super::GroupConsumer::start`]) and starts handling.
    pub async fn start(
        client: Client,
        mut options: PushOptions,
        handler: Handler,
    ) -> Result<Self, ClientError> {
        options.group.pull_msgs = options
            .group
            .pull_msgs
            .min(u32::try_from(options.queue_buffer_msgs).unwrap_or(u32::MAX))
            .max(1);
        let budget = (options.queue_buffer_msgs, options.queue_buffer_bytes);
        let joined = join(client, options.group.clone(), Some(budget)).await?;
        let dispatch = tokio::spawn(dispatch(
            joined.session.clone(),
            joined.batches,
            handler,
            options,
            joined.stop.subscribe(),
        ));
        Ok(PushConsumer {
            session: joined.session,
            tasks: Tasks::new(joined.stop, vec![joined.heartbeat, dispatch]),
        })
    }

    /// This member's id.
    pub fn member(&self) -> &str {
        self.session.member()
    }

    /// The queues this member holds now.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        self.session.assigned()
    }

    /// Stops pulling, lets running handlers finish, commits and leaves the group.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.session.abort_fetchers();
        self.tasks.finish().await;
        self.session.leave_all().await
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        self.session.abort_fetchers();
    }
}

/// A queue's unfinished offsets (concurrent mode): its done offset is the lowest of them,
/// or the end of what was fetched.
#[derive(Default)]
struct Tracker {
    in_flight: BTreeSet<u64>,
    fetched_to: u64,
}

impl Tracker {
    fn done(&self) -> u64 {
        self.in_flight.first().copied().unwrap_or(self.fetched_to)
    }
}

/// Handles one message until it succeeds or is sent back for a later try (`send_back`):
/// then it is finished (true). It is left unfinished (false) when the member loses its
/// queue or stops first: the queue's next holder reads it again.
async fn handle(
    session: &Session,
    handler: &Handler,
    delivery: Delivery,
    epoch: u64,
    retry: Duration,
    send_back: bool,
) -> bool {
    loop {
        let outcome = handler(delivery.clone()).await;
        let delay = match outcome {
            Outcome::Success => return true,
            Outcome::Retry(delay) => delay,
            Outcome::Failure => None,
        };
        if send_back {
            let (queue, offset) = (&delivery.queue, delivery.message.offset);
            match session.send_back(queue, Some(epoch), offset, delay).await {
                Ok(_) => return true,
                Err(err) => {
                    debug!(topic = %queue.topic, queue = queue.queue_id, offset, cause = %err,
                        "cannot send a failed message back; retrying it here");
                }
            }
        }
        tokio::time::sleep(delay.unwrap_or(retry)).await;
        if !session.holds(&delivery.queue, epoch) || session.stopping() {
            return false;
        }
    }
}

async fn dispatch(
    session: Arc<Session>,
    mut batches: mpsc::Receiver<Batch>,
    handler: Handler,
    options: PushOptions,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(options.handlers.max(1)));
    let mut running = JoinSet::new();
    let mut trackers: HashMap<(MessageQueue, u64), Arc<Mutex<Tracker>>> = HashMap::new();
    let mut orderly: HashMap<(MessageQueue, u64), mpsc::UnboundedSender<Batch>> = HashMap::new();
    loop {
        let batch = tokio::select! {
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => break,
            },
            _ = stop.changed() => break,
        };
        while running.try_join_next().is_some() {}
        // Forget queues this member can no longer commit (their epochs never come back).
        trackers.retain(|(queue, epoch), _| session.may_commit(queue, *epoch));
        orderly.retain(|_, worker| !worker.is_closed());
        if !session.holds(&batch.queue, batch.epoch) {
            if let Some(budget) = &batch.budget {
                batch.messages.iter().for_each(|m| budget.give(m));
            }
            continue;
        }
        let key = (batch.queue.clone(), batch.epoch);
        if options.orderly {
            let worker = orderly.entry(key.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                running.spawn(orderly_worker(
                    session.clone(),
                    handler.clone(),
                    key.clone(),
                    rx,
                    options.retry_delay,
                ));
                tx
            });
            session.hand_out(&key.0, key.1, batch.messages.len());
            if let Err(mpsc::error::SendError(batch)) = worker.send(batch) {
                session.hand_back(&key.0, key.1, batch.messages.len());
                // The worker stopped (its queue moved); the batch is someone else's now.
                if let Some(budget) = &batch.budget {
                    batch.messages.iter().for_each(|m| budget.give(m));
                }
                orderly.remove(&key);
            }
            continue;
        }
        let tracker = trackers.entry(key.clone()).or_default().clone();
        {
            let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
            t.in_flight.extend(batch.messages.iter().map(|m| m.offset));
            session.hand_out(&key.0, key.1, batch.messages.len());
            t.fetched_to = t.fetched_to.max(batch.next_offset);
            if batch.messages.is_empty() {
                session.done(vec![(key.0.clone(), key.1, t.done())]);
            }
        }
        for message in batch.messages {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (session, handler, tracker, budget) = (
                session.clone(),
                handler.clone(),
                tracker.clone(),
                batch.budget.clone(),
            );
            let (queue, epoch, retry) = (key.0.clone(), key.1, options.retry_delay);
            running.spawn(async move {
                let offset = message.offset;
                let delivery = Delivery {
                    queue: queue.clone(),
                    message,
                };
                if handle(&session, &handler, delivery.clone(), epoch, retry, true).await {
                    let done = {
                        let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
                        t.in_flight.remove(&offset);
                        t.done()
                    };
                    session.done(vec![(queue.clone(), epoch, done)]);
                }
                // Unfinished, it stays in flight: nothing past it is committed.
                session.hand_back(&queue, epoch, 1);
                if let Some(budget) = budget {
                    budget.give(&delivery.message);
                }
                drop(slot);
            });
        }
    }
    // Stopping: let running handlers finish, so their offsets are committed on leave.
    drop(orderly);
    while running.join_next().await.is_some() {}
}

/// One queue's messages, one at a time, in order, while the member holds the queue. The
/// message being handled when the queue moves is finished and counted done if it succeeds
/// (the member may still commit under the revoking lease); a message left unfinished and
/// the rest are left to the queue's next holder.
async fn orderly_worker(
    session: Arc<Session>,
    handler: Handler,
    (queue, epoch): (MessageQueue, u64),
    mut batches: mpsc::UnboundedReceiver<Batch>,
    retry: Duration,
) {
    while let Some(batch) = batches.recv().await {
        let mut left = batch.messages.len();
        let mut unfinished = false;
        for message in batch.messages {
            if !session.holds(&queue, epoch) {
                break;
            }
            let next = message.offset + 1;
            let delivery = Delivery {
                queue: queue.clone(),
                message,
            };
            let finished = handle(&session, &handler, delivery.clone(), epoch, retry, false).await;
            if finished {
                session.done(vec![(queue.clone(), epoch, next)]);
            }
            session.hand_back(&queue, epoch, 1);
            left -= 1;
            if let Some(budget) = &batch.budget {
                budget.give(&delivery.message);
            }
            if !finished {
                unfinished = true;
                break;
            }
        }
        if left > 0 || unfinished {
            // The queue moved: give back what will not be handled here, and stop.
            session.hand_back(&queue, epoch, left);
            batches.close();
            while let Ok(rest) = batches.try_recv() {
                session.hand_back(&queue, epoch, rest.messages.len());
            }
            return;
        }
        session.done(vec![(queue.clone(), epoch, batch.next_offset)]);
    }
}
