//! Calling a function over a batch: the stored messages as the guest sees them, one call on
//! the function threads (the low-priority ones for a function whose last call failed or ran
//! long), bisection of failed calls (`settle.rs`), and the call's logs and counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quiver_fnhost::{Emit, Message, Outcome};
use quiver_proto::message::StoredMessage;
use tokio::sync::Semaphore;

use super::FnShared;
use super::pool::CallPool;
use super::runner::Deployed;
use super::settle::{Fate, Settled, settle};
use crate::clock::now_ms;

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
) -> Settled<Emit> {
    let guest: Arc<Vec<Message>> = Arc::new(batch.iter().map(to_guest).collect());
    let limits = deployed.host.clone();
    let version = deployed.version.version;
    settle(batch.len(), |range| {
        let (guest, code, config, limits) = (
            guest.clone(),
            deployed.code.clone(),
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
                let (guest, code, config, limits, range) = (
                    guest.clone(),
                    code.clone(),
                    config.clone(),
                    limits.clone(),
                    range.clone(),
                );
                pool.run(slow, async move {
                    code.call(&guest[range], config, &limits).await
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
