//! [`GroupConsumer`]: a member of a consumer group that polls for messages. The group's
//! queues are shared among its live members; the brokers assign them and fence a member
//! that lost a queue, and offsets are kept by the brokers.
//!
//! - `session.rs`: heartbeats to every broker serving the subscribed topics, the leases
//!   they grant, and offset commits.
//! - `fetch.rs`: one task per leased queue that long-polls it into a bounded channel.
//! - [`push`]: [`push::PushConsumer`], which calls a handler per message.
//! - [`broadcast`]: [`broadcast::BroadcastConsumer`]: every member gets every message;
//!   offsets in a local file (`state_file.rs`).

pub mod broadcast;
mod fetch;
pub mod push;
mod session;
mod state_file;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quiver_proto::StoredMessage;
use quiver_proto::requests::group::{StartFrom, Subscription};
use tokio::sync::{mpsc, watch};

use crate::client::Client;
use crate::error::ClientError;
use crate::queue::MessageQueue;

use self::session::{Batch, Session};

pub use broadcast::BroadcastConsumer;
pub use push::{Handler, HandlerFuture, Outcome, PushConsumer, PushOptions};
pub use quiver_proto::requests::group::StartFrom as GroupStart;

/// Default messages per pull of a group member.
pub const GROUP_PULL_MSGS_DEFAULT: u32 = 32;
/// Default interval of automatic offset commits.
pub const AUTO_COMMIT_DEFAULT: Duration = Duration::from_secs(1);
/// Default heartbeat interval (never more than a third of the brokers' lease).
pub const HEARTBEAT_DEFAULT: Duration = Duration::from_secs(1);
/// Batches fetched ahead of `poll`, over all queues.
const FETCHED_BATCHES_MAX: usize = 16;

/// How a member consumes.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// Group name.
    pub group: String,
    /// Topic → tag expression (`*`, `A`, `A || B`); every member must subscribe alike.
    pub subscriptions: Vec<(String, String)>,
    /// Where a queue the group has no offset for starts.
    pub start: StartFrom,
    /// How often to heartbeat (capped at a third of the brokers' lease).
    pub heartbeat: Duration,
    /// How often to commit what `poll` returned; `None`: only [`GroupConsumer::commit`].
    pub auto_commit: Option<Duration>,
    /// Messages per pull.
    pub pull_msgs: u32,
    /// How long a pull waits at the broker for a message.
    pub pull_wait: Duration,
}

impl GroupOptions {
    /// Options for `group` reading `topic` with tag expression `tags`.
    pub fn new(
        group: impl Into<String>,
        topic: impl Into<String>,
        tags: impl Into<String>,
    ) -> Self {
        GroupOptions {
            group: group.into(),
            subscriptions: vec![(topic.into(), tags.into())],
            start: StartFrom::Last,
            heartbeat: HEARTBEAT_DEFAULT,
            auto_commit: Some(AUTO_COMMIT_DEFAULT),
            pull_msgs: GROUP_PULL_MSGS_DEFAULT,
            pull_wait: Duration::from_secs(5),
        }
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        self.subscriptions
            .iter()
            .map(|(topic, tags)| Subscription {
                topic: topic.clone(),
                tags: tags.clone(),
            })
            .collect()
    }
}

/// A message handed out by [`GroupConsumer::poll`], with the queue it came from.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The queue.
    pub queue: MessageQueue,
    /// The message.
    pub message: StoredMessage,
}

/// A member of a consumer group (clustering: the group's members share the queues).
pub struct GroupConsumer {
    session: Arc<Session>,
    batches: tokio::sync::Mutex<Incoming<Batch>>,
    /// What the last `poll` returned, done when the next `poll` (or `commit`) is called.
    returned: Mutex<Vec<(MessageQueue, u64, u64)>>,
    tasks: Tasks,
}

impl GroupConsumer {
    /// Joins the group: the first heartbeat goes to every broker serving the subscribed
    /// topics before this returns, so a refused subscription (`group.subscription_conflict`)
    /// or a bad tag expression is an error here.
    pub async fn start(client: Client, options: GroupOptions) -> Result<Self, ClientError> {
        let joined = join(client, options, None).await?;
        Ok(GroupConsumer {
            session: joined.session,
            batches: tokio::sync::Mutex::new(Incoming::new(joined.batches)),
            returned: Mutex::new(Vec::new()),
            tasks: Tasks::new(joined.stop, vec![joined.heartbeat]),
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

    /// Marks what the last `poll` returned as done (at least once: a message is done when
    /// the application asks for more), then waits up to `wait` for messages.
    pub async fn poll(&self, wait: Duration) -> Result<Vec<Delivery>, ClientError> {
        self.mark_done();
        self.session.check_failed()?;
        let mut incoming = self.batches.lock().await;
        Ok(incoming
            .poll(wait, |b| &b.queue, |batch, out| self.take(batch, out))
            .await)
    }

    fn take(&self, batch: Batch, out: &mut Vec<Delivery>) {
        // A batch of a queue this member no longer holds is dropped: its new holder reads it.
        if !self.session.holds(&batch.queue, batch.epoch) {
            return;
        }
        self.session.hand_out(&batch.queue, batch.epoch, 1);
        self.returned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((batch.queue.clone(), batch.epoch, batch.next_offset));
        out.extend(batch.messages.into_iter().map(|message| Delivery {
            queue: batch.queue.clone(),
            message,
        }));
    }

    fn mark_done(&self) {
        let returned =
            std::mem::take(&mut *self.returned.lock().unwrap_or_else(|p| p.into_inner()));
        let handed: Vec<(MessageQueue, u64)> =
            returned.iter().map(|(q, e, _)| (q.clone(), *e)).collect();
        self.session.done(returned);
        for (queue, epoch) in handed {
            self.session.hand_back(&queue, epoch, 1);
        }
    }

    /// Sends a message this member failed back for a later try: the broker keeps it in the
    /// group's retry topic, delivered again after the group's back-off step (or `delay`),
    /// and past the group's retries in its dead-letter topic `%DLQ%<group>`. Call it before
    /// the next `poll`, which counts the message done.
    pub async fn send_back(
        &self,
        delivery: &Delivery,
        delay: Option<Duration>,
    ) -> Result<quiver_proto::requests::group::GroupSendBackResponse, ClientError> {
        let epoch = self
            .returned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(queue, _, _)| *queue == delivery.queue)
            .map(|(_, epoch, _)| *epoch);
        self.session
            .send_back(&delivery.queue, epoch, delivery.message.offset, delay)
            .await
    }

    /// Commits what `poll` returned so far, now.
    pub async fn commit(&self) -> Result<(), ClientError> {
        self.mark_done();
        self.session.commit_all().await
    }

    /// Commits, leaves the group (its queues move at once) and stops.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.mark_done();
        self.tasks.finish().await;
        self.session.leave_all().await
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.session.abort_fetchers();
    }
}

/// Fetched batches on their way to `poll`: the channel, and batches held back for the next
/// poll because this one already had a batch of their queue.
pub(crate) struct Incoming<B> {
    rx: mpsc::Receiver<B>,
    stash: std::collections::VecDeque<B>,
}

impl<B> Incoming<B> {
    pub(crate) fn new(rx: mpsc::Receiver<B>) -> Self {
        Incoming {
            rx,
            stash: std::collections::VecDeque::new(),
        }
    }

    /// Waits up to `wait` for a first batch, then takes the batches already waiting, at
    /// most one per queue (so a member killed after printing a poll's messages re-delivers
    /// at most one pull of each queue); `take` turns each into deliveries or drops it.
    pub(crate) async fn poll(
        &mut self,
        wait: Duration,
        queue_of: impl Fn(&B) -> &MessageQueue,
        mut take: impl FnMut(B, &mut Vec<Delivery>),
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut later = std::collections::VecDeque::new();
        let mut offer =
            |batch: B, out: &mut Vec<Delivery>, later: &mut std::collections::VecDeque<B>| {
                if seen.insert(queue_of(&batch).clone()) {
                    take(batch, out);
                } else {
                    later.push_back(batch);
                }
            };
        while let Some(batch) = self.stash.pop_front() {
            offer(batch, &mut out, &mut later);
        }
        let deadline = tokio::time::Instant::now() + wait;
        while out.is_empty() {
            let Ok(Some(batch)) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                break;
            };
            offer(batch, &mut out, &mut later);
        }
        // What else is waiting, as long as the held-back batches stay few.
        while later.len() < FETCHED_BATCHES_MAX {
            let Ok(batch) = self.rx.try_recv() else {
                break;
            };
            offer(batch, &mut out, &mut later);
        }
        self.stash = later;
        out
    }
}

/// A consumer's background tasks and their stop switch: `finish` stops them and waits,
/// dropping aborts them.
pub(crate) struct Tasks {
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Tasks {
    pub(crate) fn new(stop: watch::Sender<bool>, tasks: Vec<tokio::task::JoinHandle<()>>) -> Self {
        Tasks {
            stop,
            tasks: Mutex::new(tasks),
        }
    }

    /// Stops the tasks and waits for them.
    pub(crate) async fn finish(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// A member that joined: its session, the fetched batches, the stop switch and the
/// heartbeat task.
struct Joined {
    session: Arc<Session>,
    batches: mpsc::Receiver<Batch>,
    stop: watch::Sender<bool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Joins the group: the first heartbeat reaches every broker before this returns.
async fn join(
    client: Client,
    options: GroupOptions,
    budget: Option<(usize, usize)>,
) -> Result<Joined, ClientError> {
    if options.subscriptions.is_empty() {
        return Err(ClientError::Invalid(
            "a group member needs at least one subscription (topic and tags)".into(),
        ));
    }
    let (tx, batches) = mpsc::channel(FETCHED_BATCHES_MAX);
    let (stop, stopped) = watch::channel(false);
    let mut session = Session::new(client, options, tx, stopped);
    if let Some((msgs, bytes)) = budget {
        session = session.with_budget(msgs, bytes);
    }
    let session = Arc::new(session);
    session.heartbeat_all().await?;
    let heartbeat = tokio::spawn(session.clone().run());
    Ok(Joined {
        session,
        batches,
        stop,
        heartbeat,
    })
}

/// Leases this member holds, by queue.
type Leases = HashMap<MessageQueue, session::Lease>;
