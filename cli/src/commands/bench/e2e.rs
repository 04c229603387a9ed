//! W7 and W8: end-to-end latency through push consumers at a fixed send rate, and fan-out
//! to several groups. The generator is open loop: message `i` is due at `start + i / rate`
//! and carries that time in its first 8 bytes, so a late send shows in the latency (no
//! coordinated omission). Latency is measured from that due time to the handler call, in
//! this process (one clock). With `--delay-ms`, messages are delayed messages and the
//! figure is how late each arrives past its delivery time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use quiver_client::group::{Handler, HandlerFuture};
use quiver_client::{
    AutoBatch, Delivery, GroupOptions, GroupStart, Message, Outcome, Producer, PushConsumer,
    PushOptions,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::BenchArgs;
use crate::connect::Context;

/// Sends in flight before the generator waits (it then falls behind, which the latency
/// shows, rather than queueing without bound).
const IN_FLIGHT_MAX: usize = 20_000;
/// How long the consumers may take to catch up after the last send.
const DRAIN_MAX: Duration = Duration::from_secs(60);

/// What one group saw.
struct Seen {
    /// Microseconds from each message's due time to its handler call.
    hist: Mutex<Histogram<u64>>,
    count: AtomicU64,
}

impl Seen {
    fn new() -> Arc<Self> {
        Arc::new(Seen {
            hist: Mutex::new(Histogram::new(3).expect("3 significant digits is valid")),
            count: AtomicU64::new(0),
        })
    }

    fn summary(&self) -> Value {
        let hist = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        json!({
            "measured": hist.len(),
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "p999_ms": ms(0.999),
            "max_ms": hist.max() as f64 / 1000.0,
        })
    }
}

pub(super) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A push consumer of a new group that records, per message, how long after its due time
/// (microseconds since the Unix epoch in its first 8 bytes) it was handled. Messages due
/// before `measure_from_us` (the warm-up) are counted, not measured.
async fn member(
    ctx: &Context,
    group: &str,
    topic: &str,
    measure_from_us: u64,
    seen: Arc<Seen>,
) -> anyhow::Result<PushConsumer> {
    let mut options = GroupOptions::new(group, topic, "*");
    options.start = GroupStart::Time(unix_us() / 1000);
    options.pull_msgs = 256;
    let mut push = PushOptions::new(options);
    push.handlers = 64;
    let handler: Handler = Arc::new(move |delivery: Delivery| -> HandlerFuture {
        let seen = seen.clone();
        Box::pin(async move {
            let now = unix_us();
            let body = &delivery.message.body;
            if body.len() >= 8 {
                let due = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                if due >= measure_from_us {
                    let mut hist = seen.hist.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = hist.record(now.saturating_sub(due).max(1));
                }
            }
            seen.count.fetch_add(1, Ordering::Relaxed);
            Outcome::Success
        })
    });
    Ok(PushConsumer::start(ctx.client.clone(), push, handler).await?)
}

/// Sends `total` messages at `rate` per second (open loop), or as fast as they go without
/// one; returns the achieved rate. Each body starts with its due time (µs since the
/// epoch): when it was scheduled to go, or with `delay_ms` its delivery time.
pub(super) async fn generate(
    producer: Arc<Producer>,
    topic: &str,
    size: usize,
    total: u64,
    rate: Option<u64>,
    delay_ms: Option<u64>,
    acks: Option<Arc<Acks>>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let start_us = unix_us();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let failures = Arc::new(AtomicU64::new(0));
    let filler = vec![b'x'; size.saturating_sub(8)];
    let mut i = 0u64;
    while i < total {
        let due_now = match rate {
            Some(rate) => {
                let due_offset = Duration::from_secs_f64(i as f64 / rate as f64);
                let now = start.elapsed();
                if due_offset > now {
                    tokio::time::sleep(due_offset - now).await;
                }
                // Every message due by now goes (a burst after a coarse timer wake-up).
                let elapsed = start.elapsed().as_secs_f64();
                ((elapsed * rate as f64) as u64 + 1).min(total)
            }
            None => total,
        };
        while i < due_now {
            let sent_due_us = match rate {
                Some(rate) => start_us + (i as f64 * 1e6 / rate as f64) as u64,
                None => unix_us(),
            };
            let due_us = sent_due_us + delay_ms.unwrap_or(0) * 1000;
            let mut body = BytesMut::with_capacity(size.max(8));
            body.put_u64_le(due_us);
            body.put_slice(&filler);
            let mut message = Message::new(Bytes::from(body));
            if let Some(ms) = delay_ms {
                message = message.with_delay(Duration::from_millis(ms));
            }
            let slot = slots.clone().acquire_owned().await?;
            let (producer, topic, failures, acks) = (
                producer.clone(),
                topic.to_owned(),
                failures.clone(),
                acks.clone(),
            );
            tokio::spawn(async move {
                match producer.send(&topic, message).await {
                    Ok(sent) => {
                        if let Some(acks) = acks {
                            let now = unix_us();
                            acks.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(sent.msg_id, now);
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(slot);
            });
            i += 1;
        }
    }
    // Every send answered.
    let _all = slots.acquire_many(IN_FLIGHT_MAX as u32).await?;
    let secs = start.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {total} sends failed");
    }
    Ok(total as f64 / secs)
}

/// When each send was acknowledged (µs since the epoch), by message id.
pub(super) type Acks = Mutex<std::collections::HashMap<quiver_client::MessageId, u64>>;

/// Waits until every group handled `want` messages.
async fn drain(groups: &[Arc<Seen>], want: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let behind: Vec<u64> = groups
            .iter()
            .map(|g| g.count.load(Ordering::Relaxed))
            .filter(|n| *n < want)
            .collect();
        if behind.is_empty() {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > DRAIN_MAX {
            bail!(
                "consumers handled {behind:?} of {want} messages within {DRAIN_MAX:?} of the last send"
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) fn producer(ctx: &Context) -> Arc<Producer> {
    Arc::new(Producer::new(ctx.client.clone()).with_auto_batch(AutoBatch::default()))
}

pub(super) fn run_id() -> String {
    format!("{}-{}", std::process::id(), unix_us() % 1_000_000_000)
}

/// W7: for each rate, one push consumer group; end-to-end latency per message.
pub async fn w7(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Value> {
    let producer = producer(ctx);
    let mut cells = Vec::new();
    for rate in &args.rates {
        let seen = Seen::new();
        let warm_up = Duration::from_secs_f64(args.warm_up_secs);
        let measure_from = unix_us() + warm_up.as_micros() as u64;
        let group = format!("w7-{rate}-{}", run_id());
        let consumer = member(ctx, &group, &args.topic, measure_from, seen.clone()).await?;
        let sent = (*rate as f64 * (args.seconds + args.warm_up_secs)) as u64;
        let achieved = generate(
            producer.clone(),
            &args.topic,
            args.size,
            sent,
            Some(*rate),
            args.delay_ms,
            None,
        )
        .await?;
        let drained = drain(std::slice::from_ref(&seen), sent).await?;
        consumer.close().await?;
        let mut cell = seen.summary();
        cell["rate"] = json!(rate);
        cell["sent"] = json!(sent);
        cell["achieved_msg_per_s"] = json!(achieved.round());
        cell["drain_after_last_send_s"] = json!((drained * 1000.0).round() / 1000.0);
        cells.push(cell);
    }
    Ok(json!({
        "workload": match args.delay_ms {
            None => "w7 end-to-end latency, open-loop producer (auto-batch) -> push consumer".to_string(),
            Some(ms) => format!("w7 delayed messages ({ms} ms): lateness past the delivery time"),
        },
        "seconds": args.seconds,
        "cells": cells,
    }))
}

/// W8: for each group count, that many push consumer groups on one topic; per-group
/// latency at a fixed rate, then the fan-out of a burst sent as fast as it goes.
pub async fn w8(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Value> {
    let producer = producer(ctx);
    let rate = args.fanout_rate;
    let mut cells = Vec::new();
    for n in &args.groups {
        let id = run_id();
        let measure_from = unix_us() + (args.warm_up_secs * 1e6) as u64;
        let seen: Vec<Arc<Seen>> = (0..*n).map(|_| Seen::new()).collect();
        let mut consumers = Vec::new();
        for (g, seen) in seen.iter().enumerate() {
            let group = format!("w8-{n}-{g}-{id}");
            consumers.push(member(ctx, &group, &args.topic, measure_from, seen.clone()).await?);
        }
        let sent = (rate as f64 * (args.seconds + args.warm_up_secs)) as u64;
        let achieved = generate(
            producer.clone(),
            &args.topic,
            args.size,
            sent,
            Some(rate),
            None,
            None,
        )
        .await?;
        drain(&seen, sent).await?;
        let p99s: Vec<f64> = seen
            .iter()
            .map(|s| s.summary()["p99_ms"].as_f64().unwrap_or_default())
            .collect();
        // The burst: as fast as the producer goes, every group reading it.
        let burst = args.burst;
        let burst_started = Instant::now();
        generate(
            producer.clone(),
            &args.topic,
            args.size,
            burst,
            None,
            None,
            None,
        )
        .await?;
        let sent_secs = burst_started.elapsed().as_secs_f64();
        drain(&seen, sent + burst).await?;
        let fanout_secs = burst_started.elapsed().as_secs_f64();
        for consumer in &consumers {
            consumer.close().await?;
        }
        let mut sorted = p99s.clone();
        sorted.sort_by(f64::total_cmp);
        cells.push(json!({
            "groups": n,
            "rate": rate,
            "achieved_msg_per_s": achieved.round(),
            "per_group_p99_ms_median": sorted[sorted.len() / 2],
            "per_group_p99_ms_worst": sorted[sorted.len() - 1],
            "burst_messages": burst,
            "burst_send_msg_per_s": (burst as f64 / sent_secs).round(),
            "burst_deliveries_per_s": ((burst * *n as u64) as f64 / fanout_secs).round(),
            "burst_per_group_msg_per_s": (burst as f64 / fanout_secs).round(),
        }));
    }
    Ok(json!({
        "workload": "w8 fan-out to N push consumer groups: per-group latency at a fixed rate, then a burst",
        "seconds": args.seconds,
        "cells": cells,
    }))
}
