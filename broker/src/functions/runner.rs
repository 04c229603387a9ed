//! Running one version of a function: a supervisor that holds the group `fn-<name>`'s
//! membership on this broker (the core's own group heartbeat, so leases, epochs, fencing,
//! offsets and `group describe` are the same as for remote members), and one runner per
//! leased queue that reads through the lease with the group's tag filter, settles each batch
//! in the VM (`call.rs`), writes what the batch produced (`write.rs`: emits, retries, dead
//! letters), and only then moves and commits the offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use quiver_proto::requests::function::FnLimits;
use quiver_proto::requests::group::{
    GroupCommit, GroupHeartbeat, GroupLeave, GroupPull, OffsetCommit, QueueLease, Subscription,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::call::call_batch;
use super::code::Code;
use super::pool::CallPool;
use super::write::{count_acked, needs_write, write_settled};
use super::{FnShared, group_of};
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
    /// What it runs.
    pub code: Code,
    /// Its resolved limits.
    pub limits: FnLimits,
    /// The host's limits of its calls.
    pub host: quiver_fnhost::Limits,
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
    pub fn group(&self) -> String {
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

/// A settled batch whose writes are under way; its offsets are done when they end.
struct Writing {
    /// Where its read started: read again from here when a write fails.
    from: u64,
    /// Where the read after it starts.
    to: u64,
    task: JoinHandle<Result<(), StoreError>>,
}

impl Writing {
    /// Waits for the writes; the error, noted, when one failed.
    async fn finish(self, ctx: &RunCtx, topic: &str, queue_id: u32) -> Result<u64, ()> {
        let failed = match self.task.await {
            Ok(Ok(())) => return Ok(self.to),
            Ok(Err(err)) => err.to_string(),
            Err(err) => format!("the write task ended: {err}"),
        };
        ctx.note(format!(
            "writing the results of {topic} queue {queue_id} offsets {}..{} failed (they \
             will be handled again): {failed}",
            self.from, self.to
        ));
        Err(())
    }
}

/// One queue under one lease: read, settle, write, commit; until stopped or fenced. A
/// batch's writes run while the next batches are read and called (writes of one batch at
/// a time: they end before the next batch's writes start, so emits keep their order), and
/// the offset moves over a batch only once its writes, and those before it, are done.
async fn run_queue(
    ctx: Arc<RunCtx>,
    (topic, queue_id): (String, u32),
    epoch: u64,
    stop: CancellationToken,
    exited: Arc<Notify>,
) {
    let spec = &ctx.deployed.version.spec;
    // Where the next read starts (`None`: at the committed offset).
    let mut offset: Option<u64> = None;
    // Offsets below this are settled and written.
    let mut done: Option<u64> = None;
    let mut committed: Option<u64> = None;
    let mut writing: Option<Writing> = None;
    let mut last_commit = Instant::now();
    loop {
        if stop.is_cancelled() {
            break;
        }
        let wait = if writing.is_some() || done != committed {
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
        let from = offset.unwrap_or(batch.next_offset - batch_span(&batch));
        if offset.is_none() {
            // The first read starts at the committed offset (or the start, committed then).
            committed = Some(from);
            done = Some(from);
        }
        super::stats::add(&ctx.shared.stats.filtered, batch.filtered);
        if !batch.messages.is_empty() && spec.batch_wait_ms > 0 {
            fill(&ctx, &pull, &mut batch, &stop).await;
        }
        let settled = if batch.messages.is_empty() {
            None
        } else {
            let (pool, deployed) = (&ctx.pool, &ctx.deployed);
            Some(call_batch(pool, deployed, &ctx.instances, &ctx.shared, &batch.messages).await)
        };
        // A batch with nothing to write (all acknowledged, no emits; or only filtered
        // offsets) is done once the writes before it are: the runner reads on meanwhile.
        let quiet = settled.as_ref().is_none_or(|s| !needs_write(s));
        let idle = batch.messages.is_empty();
        if quiet {
            if let Some(settled) = &settled {
                count_acked(&ctx, settled.fates.len());
            }
            match writing.as_mut() {
                Some(previous) => previous.to = batch.next_offset,
                None => done = Some(batch.next_offset),
            }
        }
        if (!quiet || idle)
            && let Some(previous) = writing.take()
        {
            let rewind = previous.from;
            match previous.finish(&ctx, &topic, queue_id).await {
                Ok(to) => done = Some(to),
                Err(()) => {
                    offset = Some(rewind);
                    if pause(&stop).await {
                        break;
                    }
                    continue;
                }
            }
        }
        offset = Some(batch.next_offset);
        if let Some(settled) = settled.filter(|_| !quiet) {
            let (ctx, messages) = (ctx.clone(), batch.messages);
            writing = Some(Writing {
                from,
                to: batch.next_offset,
                task: tokio::spawn(async move { write_settled(&ctx, &messages, settled).await }),
            });
        }
        // Idle (nothing came within `IDLE_COMMIT`): commit now, so lag shows 0 and a
        // restart re-runs nothing.
        let idle = idle && writing.is_none();
        if let Some(at) = done.filter(|d| Some(*d) != committed)
            && (idle || last_commit.elapsed() >= ctx.commit_interval)
        {
            match commit(&ctx, &topic, queue_id, epoch, at).await {
                Ok(()) => {
                    committed = done;
                    last_commit = Instant::now();
                }
                Err(err) if is_fenced(&err) => {
                    if let Some(previous) = writing.take() {
                        let _ = previous.finish(&ctx, &topic, queue_id).await;
                    }
                    exited.notify_one();
                    return;
                }
                Err(err) => ctx.note(format!("committing {topic} queue {queue_id}: {err}")),
            }
        }
    }
    // Stopping: the writes under way end first, then what is done is committed.
    if let Some(previous) = writing.take()
        && let Ok(to) = previous.finish(&ctx, &topic, queue_id).await
    {
        done = Some(to);
    }
    if let Some(at) = done.filter(|d| Some(*d) != committed)
        && let Err(err) = commit(&ctx, &topic, queue_id, epoch, at).await
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
    let window = Duration::from_millis(u64::from(ctx.deployed.version.spec.batch_wait_ms));
    let window_end = Instant::now() + window.min(POLL_WAIT);
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
