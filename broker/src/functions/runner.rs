//! Running one version of a function: a supervisor that holds the group `fn-<name>`'s
//! membership on this broker (the core's own group heartbeat, so leases, epochs, fencing,
//! offsets and `group describe` are the same as for remote members), and one runner per
//! leased queue that reads through the lease with the group's tag filter, settles each batch
//! in the VM, writes what the batch produced (emits, retries, dead letters), and only then
//! moves and commits the offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use quiver_fnhost::{Emit, FnModule, Message, Outcome};
use quiver_proto::SendMessage;
use quiver_proto::message::DLQ_PREFIX;
use quiver_proto::message::StoredMessage;
use quiver_proto::requests::function::FnLimits;
use quiver_proto::requests::group::{
    GroupCommit, GroupHeartbeat, GroupLeave, GroupPull, OffsetCommit, QueueLease, Subscription,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::host_limits;
use super::pool::CallPool;
use super::settle::{Fate, settle};
use super::{FnShared, group_of};
use crate::clock::now_ms;
use crate::core::Core;
use crate::store::catalog::FnVersion;
use crate::store::{Refusal, StoreError};

/// A long-poll of a runner waits this long before it looks at its stop token again.
const POLL_WAIT: Duration = Duration::from_secs(5);
/// With offsets to commit, a runner waits this long for more before it commits (so a busy
/// queue commits every `commit_interval`, an idle one within this of its last message).
const IDLE_COMMIT: Duration = Duration::from_millis(50);
/// Wait after a failed read or write before trying again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// Heartbeat again this soon when a queue assigned to the function is still held.
const PENDING_RETRY: Duration = Duration::from_millis(100);

/// One version of a function, loaded and ready to call.
pub struct Deployed {
    /// Function name.
    pub name: String,
    /// The version and its settings.
    pub version: FnVersion,
    /// The compiled module.
    pub module: Arc<FnModule>,
    /// Its resolved limits.
    pub limits: FnLimits,
    /// `--config` settings.
    pub config: Arc<BTreeMap<String, String>>,
}

/// What every runner of a version shares.
pub struct RunCtx {
    pub core: Arc<Core>,
    pub pool: Arc<CallPool>,
    pub deployed: Arc<Deployed>,
    pub shared: Arc<FnShared>,
    /// Calls of this function at once.
    pub instances: Arc<Semaphore>,
    pub batch_bytes_max: u32,
    pub commit_interval: Duration,
    /// This version's member id in the group.
    pub member: String,
    /// Round-robin queue choice of emits without keys.
    pub next_queue: AtomicU32,
    /// Writes emits to topics other brokers serve.
    pub peers: Option<Arc<quiver_client::Producer>>,
}

impl RunCtx {
    fn group(&self) -> String {
        group_of(&self.deployed.name)
    }

    fn note(&self, text: String) {
        self.shared.note(self.deployed.version.version, text);
    }
}

struct QueueRunner {
    epoch: u64,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Holds the group's membership until `stop`, running one runner per leased queue; then
/// stops them (each commits what it finished) and leaves the group.
pub async fn supervise(ctx: Arc<RunCtx>, stop: CancellationToken) {
    let spec = &ctx.deployed.version.spec;
    let beat = ctx.core.config().group_session / 3;
    let exited = Arc::new(Notify::new());
    let mut running: HashMap<(String, u32), QueueRunner> = HashMap::new();
    loop {
        running.retain(|_, r| !r.task.is_finished());
        let finishing = running
            .iter()
            .filter(|(_, r)| r.stop.is_cancelled())
            .map(|((topic, queue_id), r)| QueueLease {
                topic: topic.clone(),
                queue_id: *queue_id,
                epoch: r.epoch,
            })
            .collect();
        let heartbeat = GroupHeartbeat {
            group: ctx.group(),
            member: ctx.member.clone(),
            client: format!(
                "function {} v{} on this broker",
                ctx.deployed.name, ctx.deployed.version.version
            ),
            subscriptions: vec![Subscription {
                topic: spec.topic.clone(),
                tags: spec.tags.clone(),
            }],
            start: spec.start,
            finishing,
        };
        let next = match ctx.core.group_heartbeat(&heartbeat).await {
            Ok(answer) => {
                let leased: HashMap<(String, u32), u64> = answer
                    .leases
                    .into_iter()
                    .map(|l| ((l.topic, l.queue_id), l.epoch))
                    .collect();
                for (queue, runner) in &running {
                    if leased.get(queue) != Some(&runner.epoch) {
                        runner.stop.cancel();
                    }
                }
                for (queue, epoch) in leased {
                    if running.contains_key(&queue) {
                        continue;
                    }
                    let token = stop.child_token();
                    let task = tokio::spawn(run_queue(
                        ctx.clone(),
                        queue.clone(),
                        epoch,
                        token.clone(),
                        exited.clone(),
                    ));
                    running.insert(
                        queue,
                        QueueRunner {
                            epoch,
                            stop: token,
                            task,
                        },
                    );
                }
                if answer.pending { PENDING_RETRY } else { beat }
            }
            Err(err) => {
                ctx.note(format!("group heartbeat failed: {err}"));
                beat
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(next) => {}
            () = exited.notified() => {}
        }
    }
    for runner in running.values() {
        runner.stop.cancel();
    }
    for (_, runner) in running {
        let _ = runner.task.await;
    }
    let leave = GroupLeave {
        group: ctx.group(),
        member: ctx.member.clone(),
        offsets: Vec::new(),
    };
    if let Err(err) = ctx.core.group_leave(&leave).await {
        ctx.note(format!("leaving the group failed: {err}"));
    }
}

fn is_fenced(err: &StoreError) -> bool {
    err.refusal() == Some(Refusal::GroupFenced)
}

/// One queue under one lease: read, settle, write, commit; until stopped or fenced.
async fn run_queue(
    ctx: Arc<RunCtx>,
    (topic, queue_id): (String, u32),
    epoch: u64,
    stop: CancellationToken,
    exited: Arc<Notify>,
) {
    let spec = &ctx.deployed.version.spec;
    let mut offset: Option<u64> = None;
    let mut committed: Option<u64> = None;
    let mut last_commit = Instant::now();
    loop {
        if stop.is_cancelled() {
            break;
        }
        let wait = if offset != committed {
            IDLE_COMMIT
        } else {
            POLL_WAIT
        };
        let pull = GroupPull {
            group: ctx.group(),
            member: ctx.member.clone(),
            topic: topic.clone(),
            queue_id,
            epoch,
            offset,
            max_msgs: spec.batch_max,
            max_bytes: ctx.batch_bytes_max,
            wait_ms: wait.as_millis() as u32,
        };
        let pulled = tokio::select! {
            pulled = ctx.core.group_pull(&pull, wait) => pulled,
            () = stop.cancelled() => break,
        };
        let mut batch = match pulled {
            Ok(batch) => batch,
            Err(err) if is_fenced(&err) => break,
            Err(err) => {
                ctx.note(format!("reading {topic} queue {queue_id} failed: {err}"));
                if pause(&stop).await {
                    break;
                }
                continue;
            }
        };
        if offset.is_none() {
            // The first read starts at the committed offset (or the start, committed then).
            committed = Some(batch.next_offset - batch_span(&batch));
        }
        super::stats::add(&ctx.shared.stats.filtered, batch.filtered);
        if !batch.messages.is_empty() && spec.batch_wait_ms > 0 {
            fill(&ctx, &pull, &mut batch, &stop).await;
        }
        if !batch.messages.is_empty()
            && let Err(err) = handle(&ctx, &batch.messages).await
        {
            ctx.note(format!(
                "writing the results of {} messages of {topic} queue {queue_id} failed \
                 (they will be handled again): {err}",
                batch.messages.len()
            ));
            if pause(&stop).await {
                break;
            }
            continue;
        }
        offset = Some(batch.next_offset);
        // Idle (nothing came within `IDLE_COMMIT`): commit now, so lag shows 0 and a
        // restart re-runs nothing.
        let idle = batch.messages.is_empty();
        if offset != committed && (idle || last_commit.elapsed() >= ctx.commit_interval) {
            match commit(&ctx, &topic, queue_id, epoch, batch.next_offset).await {
                Ok(()) => {
                    committed = offset;
                    last_commit = Instant::now();
                }
                Err(err) if is_fenced(&err) => {
                    exited.notify_one();
                    return;
                }
                Err(err) => ctx.note(format!("committing {topic} queue {queue_id}: {err}")),
            }
        }
    }
    if let Some(offset) = offset.filter(|o| Some(*o) != committed)
        && let Err(err) = commit(&ctx, &topic, queue_id, epoch, offset).await
        && !is_fenced(&err)
    {
        ctx.note(format!(
            "committing {topic} queue {queue_id} at stop: {err}"
        ));
    }
    exited.notify_one();
}

/// Offsets one read covered: its messages and what its filter stepped over.
fn batch_span(batch: &crate::core::groups::GroupPulled) -> u64 {
    batch.messages.len() as u64 + batch.filtered
}

/// Waits the failure back-off; true when stopped meanwhile.
async fn pause(stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(FAILURE_BACKOFF) => false,
    }
}

/// Reads on until the batch is full or the function's batching window has passed.
async fn fill(
    ctx: &RunCtx,
    first: &GroupPull,
    batch: &mut crate::core::groups::GroupPulled,
    stop: &CancellationToken,
) {
    let window_end = Instant::now()
        + Duration::from_millis(u64::from(
            first.wait_ms.min(ctx.deployed.version.spec.batch_wait_ms),
        ));
    let max = first.max_msgs as usize;
    while batch.messages.len() < max {
        let left = window_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let more = GroupPull {
            offset: Some(batch.next_offset),
            max_msgs: (max - batch.messages.len()) as u32,
            ..first.clone()
        };
        let pulled = tokio::select! {
            pulled = ctx.core.group_pull(&more, left) => pulled,
            () = stop.cancelled() => return,
        };
        let Ok(mut pulled) = pulled else { return };
        super::stats::add(&ctx.shared.stats.filtered, pulled.filtered);
        batch.messages.append(&mut pulled.messages);
        batch.next_offset = pulled.next_offset;
        batch.max_offset = pulled.max_offset;
        batch.filtered += pulled.filtered;
    }
}

async fn commit(
    ctx: &RunCtx,
    topic: &str,
    queue_id: u32,
    epoch: u64,
    offset: u64,
) -> Result<(), StoreError> {
    ctx.core
        .group_commit(&GroupCommit {
            group: ctx.group(),
            member: ctx.member.clone(),
            offsets: vec![OffsetCommit {
                topic: topic.to_owned(),
                queue_id,
                epoch,
                offset,
            }],
        })
        .await
}

/// What the guest sees of a stored message.
pub fn to_guest(msg: &StoredMessage) -> Message {
    Message {
        topic: msg.topic.clone(),
        queue: msg.queue_id,
        offset: msg.offset,
        id: msg.msg_id.to_string(),
        tag: msg.tag.clone(),
        keys: msg.keys.clone(),
        properties: msg.properties.clone(),
        body: msg.body.to_vec(),
        born_ms: msg.born_ms,
        reconsume: msg.reconsume_times(),
    }
}

/// Runs `batch` through the function (bisecting failed calls), logging what the calls
/// logged; returns the fates and the settled calls' emits.
pub async fn call_batch(
    pool: &Arc<CallPool>,
    deployed: &Arc<Deployed>,
    instances: &Arc<Semaphore>,
    shared: &FnShared,
    batch: &[StoredMessage],
) -> super::settle::Settled<Emit> {
    let guest: Arc<Vec<Message>> = Arc::new(batch.iter().map(to_guest).collect());
    let limits = host_limits(&deployed.limits);
    let version = deployed.version.version;
    settle(batch.len(), |range| {
        let (guest, module, config, limits) = (
            guest.clone(),
            deployed.module.clone(),
            deployed.config.clone(),
            limits.clone(),
        );
        let instances = instances.clone();
        async move {
            let Ok(_permit) = instances.acquire_owned().await else {
                return Err("the function is stopping".into());
            };
            let n = range.len() as u64;
            let slow = shared.slow.load(Ordering::Relaxed);
            let call = |slow: bool| {
                let (guest, module, config, limits, range) = (
                    guest.clone(),
                    module.clone(),
                    config.clone(),
                    limits.clone(),
                    range.clone(),
                );
                pool.run(slow, async move {
                    module.call(&guest[range], config, &limits).await
                })
            };
            let stopped = || "the call was stopped (the broker is stopping)".to_owned();
            let mut report = call(slow).await.ok_or_else(stopped)?;
            if slow && report.timed_out {
                // The deadline counts waiting for the CPU, which the low-priority threads
                // may do for long on a busy machine: before anything is charged, the call
                // runs again at the broker's priority (a loop still ends there, by fuel).
                report = call(false).await.ok_or_else(stopped)?;
            }
            // A long call, or one that failed (a loop ends out of fuel sooner than its
            // deadline), sends the function's next call to the low-priority threads.
            let demote = report.elapsed > super::pool::SLOW_CALL || report.settled.is_err();
            shared.slow.store(demote, Ordering::Relaxed);
            let stats = &shared.stats;
            super::stats::add(&stats.calls, 1);
            shared.log.push(
                version,
                now_ms(),
                report.logs.into_iter().map(|l| (l.level, l.text)),
                report.logs_dropped as u64,
            );
            match report.settled {
                Ok(outcomes) => {
                    let us = report.elapsed.as_micros() as u64 / n.max(1);
                    stats.record_handler(us, n);
                    Ok((outcomes.into_iter().map(fate_of).collect(), report.emits))
                }
                Err(why) => {
                    super::stats::add(&stats.traps, 1);
                    stats.set_error(why.clone());
                    shared.note(version, format!("call of {n} messages failed: {why}"));
                    Err(why)
                }
            }
        }
    })
    .await
}

fn fate_of(outcome: Outcome) -> Fate {
    match outcome {
        Outcome::Ack => Fate::Ack,
        Outcome::Retry(delay) => Fate::Retry(delay),
        Outcome::DeadLetter(reason) => Fate::DeadLetter(reason),
    }
}

/// Settles a batch and writes what it produced: emits first, then retries and dead
/// letters. Any write error leaves the offset where it was (the batch is handled again).
async fn handle(ctx: &RunCtx, batch: &[StoredMessage]) -> Result<(), StoreError> {
    let settled = call_batch(&ctx.pool, &ctx.deployed, &ctx.instances, &ctx.shared, batch).await;
    write_emits(ctx, settled.emits).await?;
    let group = ctx.group();
    let stats = &ctx.shared.stats;
    for (msg, fate) in batch.iter().zip(settled.fates) {
        match fate {
            Fate::Ack => super::stats::add(&stats.acked, 1),
            Fate::DeadLetter(reason) => {
                ctx.core.dead_letter(&group, msg, &reason).await?;
                super::stats::add(&stats.dead_lettered, 1);
            }
            Fate::Retry(delay) => {
                count_back(ctx, ctx.core.send_back(&group, msg, delay, None).await?)
            }
            Fate::Failed(why) => count_back(
                ctx,
                ctx.core.send_back(&group, msg, None, Some(&why)).await?,
            ),
        }
    }
    super::stats::add(&stats.handled, batch.len() as u64);
    Ok(())
}

fn count_back(ctx: &RunCtx, answer: quiver_proto::requests::group::GroupSendBackResponse) {
    let stats = &ctx.shared.stats;
    if answer.topic.starts_with(DLQ_PREFIX) {
        super::stats::add(&stats.dead_lettered, 1);
    } else {
        super::stats::add(&stats.retried, 1);
    }
}

/// Writes emits: to this broker's queues of a topic it serves (by the hash of the first key,
/// or round robin; one append per queue, in emit order within it), else through the
/// cluster's producer (keyed ones by their key, the others in one batch per topic), else
/// (no name servers) here, where the topic is created if the broker creates topics.
async fn write_emits(ctx: &RunCtx, emits: Vec<Emit>) -> Result<(), StoreError> {
    if emits.is_empty() {
        return Ok(());
    }
    let count = emits.len() as u64;
    let mut local: BTreeMap<(String, u32), Vec<SendMessage>> = BTreeMap::new();
    let mut remote: BTreeMap<String, Vec<Emit>> = BTreeMap::new();
    let born = now_ms();
    for emit in emits {
        let queues = match ctx.core.store().topic(&emit.topic) {
            Ok(meta) => meta.queues.max(1),
            Err(_) if ctx.peers.is_some() => {
                remote.entry(emit.topic.clone()).or_default().push(emit);
                continue;
            }
            Err(_) => ctx.core.config().default_queues.max(1),
        };
        let queue = match emit.keys.first() {
            Some(key) => (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(queues)) as u32,
            None => ctx.next_queue.fetch_add(1, Ordering::Relaxed) % queues,
        };
        let mut msg = SendMessage::new(None, emit.body.into(), born);
        msg.tag = emit.tag;
        msg.keys = emit.keys;
        local.entry((emit.topic, queue)).or_default().push(msg);
    }
    for ((topic, queue), messages) in local {
        ctx.core.send(&topic, queue, messages).await?;
    }
    if let Some(peers) = &ctx.peers {
        for (topic, emits) in remote {
            send_remote(peers, &topic, emits).await?;
        }
    }
    super::stats::add(&ctx.shared.stats.emitted, count);
    Ok(())
}

async fn send_remote(
    peers: &quiver_client::Producer,
    topic: &str,
    emits: Vec<Emit>,
) -> Result<(), StoreError> {
    let failed = |err: quiver_client::ClientError| {
        StoreError::invalid(
            Refusal::InvalidArgument,
            format!("emit to {topic} on another broker: {err}"),
        )
    };
    let mut unkeyed = Vec::new();
    for emit in emits {
        let mut msg = quiver_client::Message::new(emit.body);
        if let Some(tag) = emit.tag {
            msg = msg.with_tag(tag);
        }
        for key in &emit.keys {
            msg = msg.with_key(key.clone());
        }
        match emit.keys.first() {
            Some(key) => {
                peers.send_ordered(topic, key, msg).await.map_err(failed)?;
            }
            None => unkeyed.push(msg),
        }
    }
    if !unkeyed.is_empty() {
        peers.send_batch(topic, unkeyed).await.map_err(failed)?;
    }
    Ok(())
}
