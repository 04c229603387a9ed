//! A member's session with the brokers: heartbeats (which bring the leases), the fetchers
//! of leased queues, and offset commits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_proto::requests::group::{
    GroupCommit, GroupHeartbeat, GroupHeartbeatResponse, GroupLeave, GroupSendBack,
    GroupSendBackResponse, OffsetCommit, QueueLease,
};
use quiver_proto::{ErrorCode, RequestCode, StoredMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{GroupOptions, Leases, fetch};
use crate::client::Client;
use crate::error::ClientError;
use crate::queue::MessageQueue;

/// How soon to heartbeat again while a queue assigned to this member is still held by
/// another (it lets go on its next heartbeat).
const PENDING_RETRY: Duration = Duration::from_millis(100);

/// Messages fetched from one queue, in offset order.
pub(crate) struct Batch {
    pub(crate) queue: MessageQueue,
    pub(crate) epoch: u64,
    pub(crate) messages: Vec<StoredMessage>,
    /// Where the next read starts: done once the application finished these messages.
    pub(crate) next_offset: u64,
    /// The queue's buffer budget these messages hold (push consumers), given back as each
    /// message is finished.
    pub(crate) budget: Option<Arc<QueueBudget>>,
}

/// How much of one queue a push consumer may hold fetched but unfinished: the queue's
/// fetcher pulls only while it holds less (so it overshoots by at most one pull).
pub(crate) struct QueueBudget {
    limit_msgs: usize,
    limit_bytes: usize,
    /// Messages and body bytes fetched and not yet finished.
    used: Mutex<(usize, usize)>,
    freed: tokio::sync::Notify,
}

impl QueueBudget {
    pub(crate) fn new(limit_msgs: usize, limit_bytes: usize) -> Self {
        QueueBudget {
            limit_msgs: limit_msgs.max(1),
            limit_bytes: limit_bytes.max(1),
            used: Mutex::new((0, 0)),
            freed: tokio::sync::Notify::new(),
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the queue holds less than its limits.
    pub(crate) async fn room(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let (msgs, bytes) = *self.used();
            if msgs < self.limit_msgs && bytes < self.limit_bytes {
                return;
            }
            freed.await;
        }
    }

    /// Counts fetched messages against the budget.
    pub(crate) fn take(&self, messages: &[StoredMessage]) {
        let mut used = self.used();
        used.0 += messages.len();
        used.1 += messages.iter().map(|m| m.body.len()).sum::<usize>();
    }

    /// Gives back one finished message's share.
    pub(crate) fn give(&self, msg: &StoredMessage) {
        {
            let mut used = self.used();
            used.0 = used.0.saturating_sub(1);
            used.1 = used.1.saturating_sub(msg.body.len());
        }
        self.freed.notify_waiters();
    }
}

/// A lease this member holds.
pub(crate) struct Lease {
    addr: String,
    epoch: u64,
    /// When it ends unless renewed, by this member's clock: measured from when the
    /// heartbeat was sent, so never later than the broker's end.
    expires: Instant,
    /// Offset up to which the application is done.
    done: Option<u64>,
    /// Offset last committed.
    committed: Option<u64>,
    fetcher: JoinHandle<()>,
}

pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) options: GroupOptions,
    member: String,
    pub(crate) tx: mpsc::Sender<Batch>,
    stopped: watch::Receiver<bool>,
    leases: Mutex<Leases>,
    /// Leases the brokers moved elsewhere: their last offsets are committed (still accepted
    /// under a revoking lease), then the next heartbeat lets them go.
    releasing: Mutex<Vec<(MessageQueue, Lease)>>,
    /// Messages (or poll batches) handed to the application and not finished, per queue
    /// and epoch: a moved queue is let go only when it has none.
    busy: Mutex<HashMap<(MessageQueue, u64), usize>>,
    /// Broker name → address, of the brokers heartbeaten last.
    brokers: Mutex<BTreeMap<String, String>>,
    /// Why the session stopped (a refused subscription): every poll returns it.
    failed: Mutex<Option<ClientError>>,
    lease_ms: AtomicU64,
    pub(crate) pending: AtomicBool,
    /// Wakes the heartbeat loop for a round now.
    wake: tokio::sync::Notify,
    /// Per-queue buffer limits `(messages, bytes)` of a push consumer.
    pub(crate) budget: Option<(usize, usize)>,
}

impl Session {
    pub(crate) fn new(
        client: Client,
        options: GroupOptions,
        tx: mpsc::Sender<Batch>,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        Session {
            client,
            options,
            member: uuid::Uuid::now_v7().to_string(),
            tx,
            stopped,
            leases: Mutex::new(Leases::new()),
            releasing: Mutex::new(Vec::new()),
            busy: Mutex::new(HashMap::new()),
            brokers: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(None),
            lease_ms: AtomicU64::new(u64::MAX),
            pending: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            budget: None,
        }
    }

    /// Limits each queue's fetched-but-unfinished messages (push consumers).
    pub(crate) fn with_budget(mut self, msgs: usize, bytes: usize) -> Self {
        self.budget = Some((msgs, bytes));
        self
    }

    pub(crate) fn member(&self) -> &str {
        &self.member
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn assigned(&self) -> Vec<MessageQueue> {
        let mut queues: Vec<MessageQueue> = self.leases().keys().cloned().collect();
        queues.sort_by(|a, b| {
            (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
        });
        queues
    }

    /// Whether the member still holds `queue` under `epoch`, and its lease has not ended.
    pub(crate) fn holds(&self, queue: &MessageQueue, epoch: u64) -> bool {
        self.leases()
            .get(queue)
            .is_some_and(|lease| lease.epoch == epoch && lease.expires > Instant::now())
    }

    /// True once the member is stopping (closing).
    pub(crate) fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Whether the member may still commit under `epoch` of `queue`: its lease is live, or
    /// moved away and still finishing.
    pub(crate) fn may_commit(&self, queue: &MessageQueue, epoch: u64) -> bool {
        self.lease_of(queue, Some(epoch)).is_some()
    }

    /// Records what the application finished: `(queue, epoch, next offset)`.
    pub(crate) fn done(&self, finished: Vec<(MessageQueue, u64, u64)>) {
        let mut leases = self.leases();
        let mut releasing = self.releasing();
        for (queue, epoch, next) in finished {
            let lease = match leases.get_mut(&queue) {
                Some(lease) => Some(lease),
                None => releasing
                    .iter_mut()
                    .find(|(q, l)| *q == queue && l.epoch == epoch)
                    .map(|(_, l)| l),
            };
            if let Some(lease) = lease
                && lease.epoch == epoch
            {
                lease.done = Some(lease.done.map_or(next, |d| d.max(next)));
            }
        }
    }

    /// `n` more pieces of `queue`'s work are with the application.
    pub(crate) fn hand_out(&self, queue: &MessageQueue, epoch: u64, n: usize) {
        *lock(&self.busy).entry((queue.clone(), epoch)).or_default() += n;
    }

    /// `n` pieces of `queue`'s work are finished (or abandoned).
    pub(crate) fn hand_back(&self, queue: &MessageQueue, epoch: u64, n: usize) {
        let mut busy = lock(&self.busy);
        let key = (queue.clone(), epoch);
        if let Some(count) = busy.get_mut(&key) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                busy.remove(&key);
            }
        }
    }

    fn is_busy(&self, queue: &MessageQueue, epoch: u64) -> bool {
        lock(&self.busy).contains_key(&(queue.clone(), epoch))
    }

    fn releasing(&self) -> std::sync::MutexGuard<'_, Vec<(MessageQueue, Lease)>> {
        self.releasing.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn check_failed(&self) -> Result<(), ClientError> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// The brokers serving the subscribed topics, by name.
    async fn brokers(&self) -> Result<BTreeMap<String, String>, ClientError> {
        let mut brokers = BTreeMap::new();
        for (topic, _) in &self.options.subscriptions {
            let route = self.client.route(topic).await?;
            for broker in &route.brokers {
                brokers.insert(broker.broker_name.clone(), broker.addr.clone());
            }
        }
        Ok(brokers)
    }

    fn heartbeat_request(&self) -> GroupHeartbeat {
        GroupHeartbeat {
            group: self.options.group.clone(),
            member: self.member.clone(),
            client: format!("pid {}", std::process::id()),
            subscriptions: self.options.subscriptions(),
            start: self.options.start,
            finishing: self
                .releasing()
                .iter()
                .map(|(queue, lease)| QueueLease {
                    topic: queue.topic.clone(),
                    queue_id: queue.queue_id,
                    epoch: lease.epoch,
                })
                .collect(),
        }
    }

    /// Heartbeats every broker serving the subscribed topics and takes their leases. A
    /// refusal (conflicting subscription, bad tag expression) is returned and kept; an
    /// unreachable broker is skipped (its leases end on their own).
    pub(crate) async fn heartbeat_all(self: &Arc<Self>) -> Result<(), ClientError> {
        // Queues moved elsewhere: those the application finished are committed, then this
        // heartbeat lets them go; those it still handles are listed as finishing. Which is
        // which is decided before the commit: nothing new is handed out from a moved queue.
        let idle: Vec<(MessageQueue, u64)> = self
            .releasing()
            .iter()
            .filter(|(queue, lease)| !self.is_busy(queue, lease.epoch))
            .map(|(queue, lease)| (queue.clone(), lease.epoch))
            .collect();
        if !idle.is_empty() {
            if let Err(err) = self.commit_all().await {
                debug!(cause = %err, "final commit of moved queues failed; they are re-read from the last commit");
            }
            self.releasing()
                .retain(|(queue, lease)| !idle.contains(&(queue.clone(), lease.epoch)));
        }
        let brokers = self.brokers().await?;
        *self.brokers.lock().unwrap_or_else(|p| p.into_inner()) = brokers.clone();
        self.pending.store(false, Ordering::Relaxed);
        let request = self.heartbeat_request();
        let mut calls = tokio::task::JoinSet::new();
        for (name, addr) in brokers {
            let (session, request) = (self.clone(), request.clone());
            calls.spawn(async move {
                let sent = Instant::now();
                let answer: Result<GroupHeartbeatResponse, ClientError> = session
                    .client
                    .call(&addr, RequestCode::GroupHeartbeat, &request)
                    .await;
                (name, addr, sent, answer)
            });
        }
        let mut refused = None;
        while let Some(joined) = calls.join_next().await {
            let Ok((name, addr, sent, answer)) = joined else {
                continue;
            };
            match answer {
                Ok(response) => self.take_leases(&name, &addr, sent, response),
                Err(err) if err.is_retryable() || err.code().is_none() => {
                    debug!(broker = %name, cause = %err, "group heartbeat failed; retrying next round");
                }
                Err(err) => refused = Some(err),
            }
        }
        // Leases of brokers that no longer serve the topics end now.
        let serving = self
            .brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.leases().retain(|queue, lease| {
            let keep = serving.contains_key(&queue.broker_name);
            if !keep {
                lease.fetcher.abort();
            }
            keep
        });
        if let Some(err) = refused {
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.clone());
            return Err(err);
        }
        Ok(())
    }

    fn take_leases(
        self: &Arc<Self>,
        broker: &str,
        addr: &str,
        sent: Instant,
        response: GroupHeartbeatResponse,
    ) {
        self.lease_ms.store(response.lease_ms, Ordering::Relaxed);
        if response.pending {
            self.pending.store(true, Ordering::Relaxed);
        }
        let expires = sent + Duration::from_millis(response.lease_ms);
        let granted: BTreeMap<MessageQueue, u64> = response
            .leases
            .into_iter()
            .map(|l| {
                let queue = MessageQueue {
                    topic: l.topic,
                    broker_name: broker.to_owned(),
                    queue_id: l.queue_id,
                };
                (queue, l.epoch)
            })
            .collect();
        let mut leases = self.leases();
        let moved: Vec<MessageQueue> = leases
            .iter()
            .filter(|(queue, lease)| {
                queue.broker_name == broker && granted.get(*queue) != Some(&lease.epoch)
            })
            .map(|(queue, _)| queue.clone())
            .collect();
        if !moved.is_empty() {
            // Commit them, then let go, at the next round, which comes soon.
            self.pending.store(true, Ordering::Relaxed);
        }
        let mut releasing = self.releasing();
        for queue in moved {
            if let Some(lease) = leases.remove(&queue) {
                lease.fetcher.abort();
                releasing.push((queue, lease));
            }
        }
        drop(releasing);
        for (queue, epoch) in granted {
            match leases.get_mut(&queue) {
                Some(lease) => lease.expires = expires,
                None => {
                    let fetcher = fetch::spawn(self.clone(), queue.clone(), addr.to_owned(), epoch);
                    leases.insert(
                        queue,
                        Lease {
                            addr: addr.to_owned(),
                            epoch,
                            expires,
                            done: None,
                            committed: None,
                            fetcher,
                        },
                    );
                }
            }
        }
    }

    /// Heartbeats (and commits) until stopped.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut stopped = self.stopped.clone();
        let mut last_commit = Instant::now();
        loop {
            let lease = Duration::from_millis(self.lease_ms.load(Ordering::Relaxed));
            let mut interval = self.options.heartbeat.min(lease / 3);
            if self.pending.load(Ordering::Relaxed) {
                interval = interval.min(PENDING_RETRY);
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.wake.notified() => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
            if let Some(every) = self.options.auto_commit
                && last_commit.elapsed() >= every
            {
                last_commit = Instant::now();
                if let Err(err) = self.commit_all().await {
                    debug!(cause = %err, "offset commit failed; retrying next round");
                }
            }
            if let Err(err) = self.heartbeat_all().await {
                warn!(group = %self.options.group, cause = %err, "group heartbeat refused");
                if self
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some()
                {
                    return;
                }
            }
        }
    }

    /// Offsets to commit, by broker address.
    fn due(&self) -> BTreeMap<String, Vec<OffsetCommit>> {
        let mut due: BTreeMap<String, Vec<OffsetCommit>> = BTreeMap::new();
        let leases = self.leases();
        let releasing = self.releasing();
        let all = leases
            .iter()
            .chain(releasing.iter().map(|(queue, lease)| (queue, lease)));
        for (queue, lease) in all {
            if let Some(done) = lease.done
                && lease.committed != Some(done)
            {
                due.entry(lease.addr.clone())
                    .or_default()
                    .push(OffsetCommit {
                        topic: queue.topic.clone(),
                        queue_id: queue.queue_id,
                        epoch: lease.epoch,
                        offset: done,
                    });
            }
        }
        due
    }

    fn committed(&self, offsets: &[OffsetCommit], broker_addr: &str) {
        let mut leases = self.leases();
        for commit in offsets {
            if let Some(lease) = leases
                .values_mut()
                .find(|l| l.addr == broker_addr && l.epoch == commit.epoch)
            {
                lease.committed = Some(commit.offset);
            }
        }
    }

    /// Commits every finished offset, one request per broker. A fenced commit (the queue
    /// moved) triggers an early heartbeat.
    pub(crate) async fn commit_all(&self) -> Result<(), ClientError> {
        let mut first_err = None;
        for (addr, offsets) in self.due() {
            let request = GroupCommit {
                group: self.options.group.clone(),
                member: self.member.clone(),
                offsets,
            };
            let answer: Result<(), ClientError> = self
                .client
                .call_raw(
                    &addr,
                    RequestCode::GroupCommit,
                    bytes::Bytes::from(quiver_proto::encode_body(&request)),
                )
                .await
                .map(|_| ());
            match answer {
                Ok(()) => self.committed(&request.offsets, &addr),
                Err(err) => {
                    if err.code() == Some(ErrorCode::GroupFenced) {
                        self.pending.store(true, Ordering::Relaxed);
                    }
                    first_err.get_or_insert(err);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Commits and leaves every broker heartbeaten, so the queues move at once.
    pub(crate) async fn leave_all(&self) -> Result<(), ClientError> {
        self.abort_fetchers();
        let mut due = self.due();
        let brokers = self
            .brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut first_err = None;
        for addr in brokers.values() {
            let request = GroupLeave {
                group: self.options.group.clone(),
                member: self.member.clone(),
                offsets: due.remove(addr).unwrap_or_default(),
            };
            if let Err(err) = self
                .client
                .call_raw(
                    addr,
                    RequestCode::GroupLeave,
                    bytes::Bytes::from(quiver_proto::encode_body(&request)),
                )
                .await
            {
                first_err.get_or_insert(err);
            }
        }
        self.leases().clear();
        first_err.map_or(Ok(()), Err)
    }

    /// The broker address and epoch of the lease on `queue`: the live one, or under `epoch`
    /// a revoking one the member is finishing.
    fn lease_of(&self, queue: &MessageQueue, epoch: Option<u64>) -> Option<(String, u64)> {
        let wanted = |lease: &Lease| epoch.is_none_or(|e| e == lease.epoch);
        if let Some(lease) = self.leases().get(queue).filter(|l| wanted(l)) {
            return Some((lease.addr.clone(), lease.epoch));
        }
        self.releasing()
            .iter()
            .find(|(q, l)| q == queue && wanted(l))
            .map(|(_, l)| (l.addr.clone(), l.epoch))
    }

    /// Sends a failed message back to its broker, which stores it in the group's retry
    /// topic (due after the group's back-off, or `delay`) or, past the group's retries, in
    /// its dead-letter topic. `epoch` names the lease it was read under (`None`: the
    /// queue's lease now).
    pub(crate) async fn send_back(
        &self,
        queue: &MessageQueue,
        epoch: Option<u64>,
        offset: u64,
        delay: Option<Duration>,
    ) -> Result<GroupSendBackResponse, ClientError> {
        let Some((addr, epoch)) = self.lease_of(queue, epoch) else {
            return Err(ClientError::Invalid(format!(
                "this member no longer holds {} queue {} of broker {}: the message is read again by the queue's holder",
                queue.topic, queue.queue_id, queue.broker_name
            )));
        };
        let request = GroupSendBack {
            group: self.options.group.clone(),
            member: self.member.clone(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            epoch,
            offset,
            delay_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let answer: GroupSendBackResponse = self
            .client
            .call(&addr, RequestCode::GroupSendBack, &request)
            .await?;
        // A retry topic just created on that broker: its lease comes with a heartbeat,
        // sent now.
        let leased = self
            .leases()
            .keys()
            .any(|q| q.topic == answer.topic && q.broker_name == queue.broker_name);
        if answer.deliver_at_ms > 0 && !leased {
            self.wake.notify_one();
        }
        Ok(answer)
    }

    pub(crate) fn abort_fetchers(&self) {
        for lease in self.leases().values() {
            lease.fetcher.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
