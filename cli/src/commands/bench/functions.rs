//! Function benchmarks. `fn-latency`: from a send's acknowledgement (and from its due time,
//! open loop as in W7) to the in-broker handler call, at fixed rates, beside a remote push
//! consumer of the same messages in the same sitting. `w9`: a backlog run through a function
//! keeping 10 % by a body predicate, the same kept by the host's tag filter (the rest never
//! enters the VM), and a pass-through function: msg/s each, and the deploy time.
//!
//! The function is `bench/fn-guest` (`cargo xtask guests` builds it): its `stamp` mode emits
//! each message's due time, the handler's wall-clock time and the message id, so both sides
//! are measured on this machine's one clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{BufMut, BytesMut};
use quiver_client::group::{Handler, HandlerFuture};
use quiver_client::{
    Admin, Delivery, GroupOptions, GroupStart, Message, MessageId, Outcome, PullConsumer,
    PushConsumer, PushOptions,
};
use quiver_proto::requests::function::{FnLimits, FnSpec};
use quiver_proto::requests::group::StartFrom;
use serde_json::{Value, json};

use super::BenchArgs;
use super::e2e::{Acks, generate, producer, run_id, unix_us};
use crate::connect::Context;

/// How long a function or consumer may take to catch up after the last send.
const DRAIN_MAX: Duration = Duration::from_secs(120);

/// The function stamps one message in this many (its emits are writes too: every message
/// would double the broker's write load).
const STAMP_EVERY: u64 = 10;

fn spec(topic: &str, tags: &str, mode: &str, to: &str, batch_max: u32) -> FnSpec {
    FnSpec {
        topic: topic.into(),
        tags: tags.into(),
        config: vec![
            ("mode".into(), mode.into()),
            ("to".into(), to.into()),
            ("every".into(), STAMP_EVERY.to_string()),
        ],
        max_retries: 3,
        retry_delay_ms: 1000,
        batch_max,
        batch_wait_ms: 0,
        start: StartFrom::First,
        limits: FnLimits::default(),
    }
}

/// Percentiles of signed microseconds, in ms.
fn signed_summary(mut us: Vec<i64>) -> Value {
    if us.is_empty() {
        return json!({"measured": 0});
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    json!({
        "measured": us.len(),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": at(1.0),
    })
}

/// `(message id, due µs, handler µs)` of every message handled.
type Calls = Mutex<Vec<(MessageId, u64, u64)>>;

/// From due time and from acknowledgement to handler, for the calls due after `from_us`.
fn latencies(calls: &[(MessageId, u64, u64)], acks: &Acks, from_us: u64) -> Value {
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner());
    let mut from_due = Vec::new();
    let mut from_ack = Vec::new();
    for (id, due, handled) in calls.iter().filter(|c| c.1 >= from_us) {
        from_due.push(*handled as i64 - *due as i64);
        if let Some(ack) = acks.get(id) {
            from_ack.push(*handled as i64 - *ack as i64);
        }
    }
    json!({"from_due": signed_summary(from_due), "from_ack": signed_summary(from_ack)})
}

/// A remote push consumer recording each call.
async fn push_member(
    ctx: &Context,
    group: &str,
    topic: &str,
    calls: Arc<Calls>,
    count: Arc<AtomicU64>,
) -> anyhow::Result<PushConsumer> {
    let mut options = GroupOptions::new(group, topic, "*");
    options.start = GroupStart::First;
    options.pull_msgs = 256;
    let mut push = PushOptions::new(options);
    push.handlers = 64;
    let handler: Handler = Arc::new(move |delivery: Delivery| -> HandlerFuture {
        let (calls, count) = (calls.clone(), count.clone());
        Box::pin(async move {
            let now = unix_us();
            let body = &delivery.message.body;
            let due = body
                .get(..8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            calls.lock().unwrap_or_else(|p| p.into_inner()).push((
                delivery.message.msg_id,
                due,
                now,
            ));
            count.fetch_add(1, Ordering::Relaxed);
            Outcome::Success
        })
    });
    Ok(PushConsumer::start(ctx.client.clone(), push, handler).await?)
}

/// Every message of `topic` (one queue per broker is enough here: all of them are read).
async fn read_topic(
    ctx: &Context,
    topic: &str,
) -> anyhow::Result<Vec<quiver_client::StoredMessage>> {
    let consumer = PullConsumer::new(ctx.client.clone());
    let mut all = Vec::new();
    for queue in consumer.offsets(topic).await? {
        let mut offset = queue.min_offset;
        while offset < queue.max_offset {
            let read = consumer
                .pull(&queue.queue, offset, 10_000, Duration::ZERO)
                .await?;
            if read.messages.is_empty() {
                break;
            }
            offset = read.next_offset;
            all.extend(read.messages);
        }
    }
    Ok(all)
}

fn read_wasm(args: &BenchArgs) -> anyhow::Result<Vec<u8>> {
    std::fs::read(&args.wasm).with_context(|| {
        format!(
            "cannot read the benchmark function {}: build it with `cargo xtask guests` (or pass --wasm)",
            args.wasm.display()
        )
    })
}

/// Append-to-handler latency: the in-broker function and a remote push consumer, same
/// messages, same sitting.
pub async fn fn_latency(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Value> {
    let wasm = read_wasm(args)?;
    let admin = Admin::new(ctx.client.clone());
    let producer = producer(ctx);
    let mut cells = Vec::new();
    for rate in &args.rates {
        let run = run_id();
        let topic = format!("{}-lat-{rate}-{run}", args.topic);
        let out = format!("{topic}-out");
        admin.create_topic(&topic, args.queues).await?;
        admin.create_topic(&out, 1).await?;
        let name = format!("lat-{rate}-{run}");
        admin
            .deploy_function(&name, &wasm, spec(&topic, "*", "stamp", &out, 256))
            .await?;
        let (push_calls, push_count) = (Arc::new(Calls::default()), Arc::new(AtomicU64::new(0)));
        let consumer = push_member(
            ctx,
            &format!("{name}-push"),
            &topic,
            push_calls.clone(),
            push_count.clone(),
        )
        .await?;
        let acks = Arc::new(Acks::default());
        let measure_from = unix_us() + (args.warm_up_secs * 1e6) as u64;
        let sent = (*rate as f64 * (args.seconds + args.warm_up_secs)) as u64;
        let achieved = generate(
            producer.clone(),
            &topic,
            args.size,
            sent,
            Some(*rate),
            None,
            Some(acks.clone()),
        )
        .await?;
        let started = Instant::now();
        let info = loop {
            let info = admin.describe_function(&name).await?;
            let handled: u64 = info.iter().map(|i| i.value.counters.handled).sum();
            if handled >= sent && push_count.load(Ordering::Relaxed) >= sent {
                break info;
            }
            if started.elapsed() > DRAIN_MAX {
                bail!("the function or the push consumer did not catch up within {DRAIN_MAX:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        consumer.close().await?;
        let mut fn_calls = Vec::new();
        for msg in read_topic(ctx, &out).await? {
            let b = &msg.body;
            if b.len() < 16 {
                continue;
            }
            let due = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let handled = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
            let id: MessageId = std::str::from_utf8(&b[16..])
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(MessageId(0));
            fn_calls.push((id, due, handled));
        }
        admin.undeploy_function(&name).await?;
        let push_calls = std::mem::take(&mut *push_calls.lock().unwrap_or_else(|p| p.into_inner()));
        cells.push(json!({
            "rate": rate,
            "sent": sent,
            "achieved_msg_per_s": achieved.round(),
            "function": latencies(&fn_calls, &acks, measure_from),
            "push_consumer": latencies(&push_calls, &acks, measure_from),
            "function_handler_p50_us": info.first().map(|i| i.value.handler_p50_us),
            "function_handler_p99_us": info.first().map(|i| i.value.handler_p99_us),
        }));
    }
    Ok(json!({
        "workload": "fn-latency: send acknowledged (and due, open loop) -> handler call; in-broker function vs remote push consumer on the same messages",
        "seconds": args.seconds,
        "cells": cells,
    }))
}

/// W9: a backlog through functions: 10 % kept by a body predicate, the same 10 % kept by
/// the host's tag filter, and a pass-through.
pub async fn w9(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Value> {
    let wasm = read_wasm(args)?;
    let admin = Admin::new(ctx.client.clone());
    let run = run_id();
    let topic = format!("{}-w9-{run}", args.topic);
    admin.create_topic(&topic, args.queues).await?;
    let producer = quiver_client::Producer::new(ctx.client.clone());
    let filler = vec![b'x'; args.size.saturating_sub(16)];
    let total = args.messages;
    let started = Instant::now();
    let mut i = 0u64;
    while i < total {
        let n = (total - i).min(1000);
        let batch: Vec<Message> = (i..i + n)
            .map(|k| {
                let keep = k % 10 == 0;
                let mut body = BytesMut::with_capacity(args.size);
                body.put_slice(if keep {
                    br#"{"keep":true}"#
                } else {
                    br#"{"keep":false}"#
                });
                body.put_slice(&filler);
                Message::new(body.freeze()).with_tag(if keep { "keep" } else { "drop" })
            })
            .collect();
        producer.send_batch(&topic, batch).await?;
        i += n;
    }
    let backlog_secs = started.elapsed().as_secs_f64();
    let mut cells = Vec::new();
    for (variant, tags, mode) in [
        ("filter-body", "*", "filter"),
        ("filter-tag", "keep", "filter"),
        ("pass", "*", "pass"),
    ] {
        let name = format!("w9-{variant}-{run}");
        let out = format!("{topic}-{variant}-out");
        admin.create_topic(&out, args.queues).await?;
        let deploy_started = Instant::now();
        let deployed = admin
            .deploy_function(&name, &wasm, spec(&topic, tags, mode, &out, 256))
            .await?;
        let deploy_ms = deploy_started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let want_handled = if tags == "*" {
            total
        } else {
            total.div_ceil(10)
        };
        let info = loop {
            let info = admin.describe_function(&name).await?;
            let handled: u64 = info.iter().map(|i| i.value.counters.handled).sum();
            let lag: u64 = info
                .iter()
                .flat_map(|i| i.value.queues.iter())
                .map(|q| q.lag)
                .sum();
            if handled >= want_handled && lag == 0 {
                break info;
            }
            if started.elapsed() > DRAIN_MAX {
                bail!("{variant}: handled {handled} of {want_handled} within {DRAIN_MAX:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let secs = started.elapsed().as_secs_f64();
        let counters: Vec<_> = info.iter().map(|i| &i.value.counters).collect();
        let sum = |f: fn(&quiver_proto::requests::function::FnCounters) -> u64| -> u64 {
            counters.iter().map(|c| f(c)).sum()
        };
        cells.push(json!({
            "variant": variant,
            "tags": tags,
            "msg_per_s": (total as f64 / secs).round(),
            "seconds": (secs * 1000.0).round() / 1000.0,
            "deploy_ms": (deploy_ms * 10.0).round() / 10.0,
            "compiled": deployed.iter().any(|d| d.value.compiled),
            "handled": sum(|c| c.handled),
            "filtered": sum(|c| c.filtered),
            "calls": sum(|c| c.calls),
            "emitted": sum(|c| c.emitted),
            "handler_p50_us": info.first().map(|i| i.value.handler_p50_us),
            "handler_p99_us": info.first().map(|i| i.value.handler_p99_us),
        }));
        admin.undeploy_function(&name).await?;
    }
    Ok(json!({
        "workload": "w9 backlog through in-broker functions: 10% kept by body predicate, by tag filter (host), pass-through",
        "messages": total,
        "size": args.size,
        "backlog_send_s": (backlog_secs * 1000.0).round() / 1000.0,
        "cells": cells,
    }))
}
