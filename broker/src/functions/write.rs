//! Writing what a settled batch produced, before its offset moves: the emits (to this
//! broker's queues, or through the cluster's producer), then retries and dead letters.
//! Writes of one step go out together, so they share one group commit.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use futures_util::future::try_join_all;
use quiver_fnhost::Emit;
use quiver_proto::SendMessage;
use quiver_proto::message::{DLQ_PREFIX, StoredMessage};

use super::runner::RunCtx;
use super::settle::{Fate, Settled};
use crate::clock::now_ms;
use crate::store::{Refusal, StoreError};

/// Whether a settled batch has anything to write (emits, retries, dead letters).
pub fn needs_write(settled: &Settled<Emit>) -> bool {
    !settled.emits.is_empty() || settled.fates.iter().any(|f| *f != Fate::Ack)
}

/// Counts `n` messages acknowledged with nothing to write.
pub fn count_acked(ctx: &RunCtx, n: usize) {
    let stats = &ctx.shared.stats;
    super::stats::add(&stats.acked, n as u64);
    super::stats::add(&stats.handled, n as u64);
}

/// Writes what `batch` produced: emits first, then retries and dead letters. Any write
/// error leaves the offset where it was (the batch is handled again).
pub async fn write_settled(
    ctx: &RunCtx,
    batch: &[StoredMessage],
    settled: Settled<Emit>,
) -> Result<(), StoreError> {
    write_emits(ctx, settled.emits).await?;
    let group = ctx.group();
    let stats = &ctx.shared.stats;
    let mut back = Vec::new();
    for (msg, fate) in batch.iter().zip(settled.fates) {
        match fate {
            Fate::Ack => super::stats::add(&stats.acked, 1),
            Fate::DeadLetter(reason) => back.push((msg, None, Err(reason))),
            Fate::Retry(delay) => back.push((msg, delay, Ok(None))),
            Fate::Failed(why) => back.push((msg, None, Ok(Some(why)))),
        }
    }
    let group = &group;
    try_join_all(back.into_iter().map(|(msg, delay, why)| async move {
        match why {
            Err(reason) => {
                ctx.core.dead_letter(group, msg, &reason).await?;
                super::stats::add(&stats.dead_lettered, 1);
            }
            Ok(failure) => count_back(
                ctx,
                ctx.core
                    .send_back(group, msg, delay, failure.as_deref())
                    .await?,
            ),
        }
        Ok::<(), StoreError>(())
    }))
    .await?;
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
    try_join_all(
        local
            .into_iter()
            .map(|((topic, queue), messages)| async move {
                ctx.core.send(&topic, queue, messages).await
            }),
    )
    .await?;
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
