//! `quiver bench w1|w2|w3|w4|w6|w7|w8`: BENCH.md workloads against a running broker. Prints
//! a table (or one JSON document) with throughput, latency percentiles and the broker's
//! flush mode.

mod e2e;
mod functions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use quiver_client::{Admin, AutoBatch, ErrorCode, Message, Producer, PullConsumer};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::connect::{Context, Output};
use crate::output::table;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Workload: w1 sync 1 KiB sends, w2 many sync sends in flight (--connections,
    /// --per-connection), w3 durable 1000-message batches, w4 the same against an
    /// async-flush broker, w6 catch-up consume of a backlog, w7 end-to-end latency through
    /// a push consumer at fixed rates (--rates), w8 fan-out to push consumer groups
    /// (--groups), w9 a backlog (--messages) through in-broker functions (10 % kept by body
    /// or by tag, and a pass-through), fn-latency send-to-handler latency of an in-broker
    /// function beside a remote push consumer (--rates).
    #[arg(value_enum)]
    workload: Workload,
    /// Topic (created when missing).
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Queues of the topic when it is created.
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024, value_parser = crate::flags::body_bytes)]
    size: usize,
    /// w2: connections (each with its own QUIC connection).
    #[arg(long, default_value_t = 1, value_parser = crate::flags::count)]
    connections: usize,
    /// w2: sync sends in flight per connection.
    #[arg(long, default_value_t = 64, value_parser = crate::flags::count)]
    per_connection: usize,
    /// w2: coalesce each connection's concurrent sends into batch requests (the producer's
    /// auto-batch; every send still waits for its own ack).
    #[arg(long)]
    auto_batch: bool,
    /// w1/w2: messages to send.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// w3/w4: batches to send.
    #[arg(long, default_value_t = 1000)]
    batches: u64,
    /// w3/w4: messages per batch.
    #[arg(long, default_value_t = 1000, value_parser = crate::flags::count)]
    batch_len: usize,
    /// w3/w4: batches in flight.
    #[arg(long, default_value_t = 4, value_parser = crate::flags::count)]
    inflight: usize,
    /// w6: backlog to build (if the topic holds less) and read, in MiB.
    #[arg(long, default_value_t = 2048)]
    backlog_mib: u64,
    /// w7: send rates (msg/s), one cell each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    rates: Vec<u64>,
    /// w8: the fixed send rate (msg/s) every group reads.
    #[arg(long, default_value_t = 20_000)]
    fanout_rate: u64,
    /// w7/w8: measured seconds per cell (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// w7/w8: seconds sent before measuring (leases taken, connections warm).
    #[arg(long, default_value_t = 1.0)]
    warm_up_secs: f64,
    /// w7: send delayed messages (this many ms) and measure how late each arrives.
    #[arg(long)]
    delay_ms: Option<u64>,
    /// w8: consumer group counts, one cell each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    groups: Vec<usize>,
    /// w8: messages of the burst every group reads after the fixed-rate phase.
    #[arg(long, default_value_t = 100_000)]
    burst: u64,
    /// fn-latency/w9: the benchmark function (`cargo xtask guests` builds it).
    #[arg(
        long,
        default_value = "target/wasm-guests/wasm32-wasip2/release/benchfn.wasm"
    )]
    wasm: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    W1,
    W2,
    W3,
    W4,
    W6,
    W7,
    W8,
    W9,
    FnLatency,
}

pub async fn run(args: BenchArgs, ctx: &Context) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone());
    match admin.create_topic(&args.topic, args.queues).await {
        Ok(_) => {}
        Err(err) if err.code() == Some(ErrorCode::TopicExists) => {}
        Err(err) => return Err(err.into()),
    }
    // Every broker of the cluster (the standalone lists itself): flush mode and fsyncs.
    let brokers: Vec<String> = admin.cluster().await?.into_iter().map(|b| b.addr).collect();
    let first = brokers
        .first()
        .ok_or_else(|| anyhow!("the name servers list no broker: start one first"))?;
    let flush_mode = admin.stats(first).await?.flush_mode;
    wait_for_route(ctx, &args.topic, brokers.len()).await?;
    let report = match args.workload {
        Workload::W1 => w1(&args, ctx).await?,
        Workload::W2 => w2(&args, ctx).await?,
        Workload::W3 => batches(&args, ctx, "w3").await?,
        Workload::W4 => {
            if flush_mode != "async" {
                bail!(
                    "w4 measures ack-after-write (P): start the broker with --flush async (it runs with {flush_mode})"
                );
            }
            batches(&args, ctx, "w4").await?
        }
        Workload::W6 => w6(&args, ctx).await?,
        Workload::W7 => e2e::w7(&args, ctx).await?,
        Workload::W8 => e2e::w8(&args, ctx).await?,
        Workload::W9 => functions::w9(&args, ctx).await?,
        Workload::FnLatency => functions::fn_latency(&args, ctx).await?,
    };
    let mut fsyncs = 0;
    for broker in &brokers {
        fsyncs += admin.stats(broker).await?.fsyncs;
    }
    let mut report = report;
    report["brokers"] = json!(brokers.len());
    report["flush_mode"] = json!(flush_mode);
    report["durability"] = json!(if flush_mode == "sync" {
        "DG (group commit, fdatasync before ack)"
    } else {
        "P (ack after write)"
    });
    report["broker_fsyncs"] = json!(fsyncs);
    report["message_bytes"] = json!(args.size);
    match ctx.output {
        Output::Json => println!("{report}"),
        Output::Text => {
            let rows = report
                .as_object()
                .expect("report is an object")
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string().trim_matches('"').to_owned()])
                .collect();
            println!("{}", table(&["metric", "value"], rows));
        }
    }
    Ok(())
}

/// Waits until the name servers route `topic` to `brokers` brokers (a new topic reaches them
/// with the brokers' next heartbeats, sent at once on a topic change).
async fn wait_for_route(ctx: &Context, topic: &str, brokers: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served = match ctx.client.refresh_route(topic).await {
            Ok(route) => route.brokers.len(),
            Err(err) if err.code() == Some(ErrorCode::TopicNotFound) => 0,
            Err(err) => return Err(err.into()),
        };
        if served >= brokers {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "topic {topic} is routed to {served} of {brokers} brokers after 30 s: are the brokers heartbeating to these name servers?"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn body(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| b'a' + (i % 26) as u8).collect::<Vec<_>>())
}

fn micros(hist: &Histogram<u64>, quantile: f64) -> f64 {
    hist.value_at_quantile(quantile) as f64 / 1000.0
}

async fn w1(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Value> {
    let producer = Producer::new(ctx.client.clone());
    let message = Message::new(body(args.size));
    // Warm up the connection and route.
    for _ in 0..100 {
        producer.send(&args.topic, message.clone()).await?;
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for _ in 0..args.messages {
        let sent = Instant::now();
        producer.send(&args.topic, message.clone()).await?;
        hist.record(sent.elapsed().as_nanos() as u64)?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "workload": "w1 sync send, 1 producer, 1 in flight",
        "messages": args.messages,
        "msg_per_s": (args.messages as f64 / secs).round(),
        "p50_ms": micros(&hist, 0.5) / 1000.0,
        "p99_ms": micros(&hist, 0.99) / 1000.0,
        "p999_ms": micros(&hist, 0.999) / 1000.0,
    }))
}

/// W2: `connections` QUIC connections, each with `per_connection` sync sends in flight.
async fn w2(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Value> {
    let mut producers = Vec::new();
    for _ in 0..args.connections.max(1) {
        let client = quiver_client::Client::new(ctx.client.options().clone())?;
        let mut producer = Producer::new(client);
        if args.auto_batch {
            producer = producer.with_auto_batch(AutoBatch::default());
        }
        let producer = Arc::new(producer);
        producer
            .send(&args.topic, Message::new(body(args.size)))
            .await?;
        producers.push(producer);
    }
    let senders = producers.len() * args.per_connection.max(1);
    let per_sender = args.messages / senders as u64 + 1;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for producer in &producers {
        for _ in 0..args.per_connection.max(1) {
            let (producer, topic, size) = (producer.clone(), args.topic.clone(), args.size);
            tasks.spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("3 significant digits is valid");
                let message = Message::new(body(size));
                for _ in 0..per_sender {
                    let sent = Instant::now();
                    producer.send(&topic, message.clone()).await?;
                    hist.record(sent.elapsed().as_nanos() as u64)?;
                }
                Ok::<_, anyhow::Error>(hist)
            });
        }
    }
    let mut hist = Histogram::<u64>::new(3)?;
    while let Some(done) = tasks.join_next().await {
        hist.add(done??)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let n_msgs = per_sender * senders as u64;
    Ok(json!({
        "workload": format!("w2 sync sends, {} connections x {} in flight{}", producers.len(), args.per_connection, if args.auto_batch { ", auto-batch" } else { "" }),
        "messages": n_msgs,
        "msg_per_s": (n_msgs as f64 / secs).round(),
        "p50_ms": micros(&hist, 0.5) / 1000.0,
        "p99_ms": micros(&hist, 0.99) / 1000.0,
    }))
}

async fn batches(args: &BenchArgs, ctx: &Context, name: &str) -> anyhow::Result<Value> {
    let producer = Arc::new(Producer::new(ctx.client.clone()));
    let batch: Vec<Message> = (0..args.batch_len)
        .map(|_| Message::new(body(args.size)))
        .collect();
    producer.send_batch(&args.topic, batch.clone()).await?;
    let mut hist = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut sent = 0u64;
    while sent < args.batches || !tasks.is_empty() {
        while sent < args.batches && tasks.len() < args.inflight.max(1) {
            let (producer, topic, batch) = (producer.clone(), args.topic.clone(), batch.clone());
            tasks.spawn(async move {
                let began = Instant::now();
                producer
                    .send_batch(&topic, batch)
                    .await
                    .map(|_| began.elapsed())
            });
            sent += 1;
        }
        if let Some(done) = tasks.join_next().await {
            hist.record(done??.as_nanos() as u64)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = args.batches as f64 * args.batch_len as f64 * args.size as f64;
    Ok(json!({
        "workload": format!("{name} batch send {} x {} B, {} batches in flight", args.batch_len, args.size, args.inflight),
        "batches": args.batches,
        "mb_per_s": (bytes / secs / 1e6 * 10.0).round() / 10.0,
        "msg_per_s": (args.batches as f64 * args.batch_len as f64 / secs).round(),
        "batch_p50_ms": micros(&hist, 0.5) / 1000.0,
        "batch_p99_ms": micros(&hist, 0.99) / 1000.0,
    }))
}

async fn w6(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Value> {
    let consumer = Arc::new(PullConsumer::new(ctx.client.clone()));
    let target = args.backlog_mib << 20;
    let offsets = consumer.offsets(&args.topic).await?;
    // Offsets come from the brokers: saturate rather than trust them to be ordered.
    let held: u64 = offsets
        .iter()
        .map(|q| q.max_offset.saturating_sub(q.min_offset))
        .fold(0u64, u64::saturating_add)
        .saturating_mul(args.size as u64);
    if held < target {
        let batch_bytes = (args.size as u64 * args.batch_len as u64).max(1);
        let missing = (target - held) / batch_bytes + 1;
        let fill = BenchArgs {
            batches: missing,
            workload: Workload::W3,
            topic: args.topic.clone(),
            rates: Vec::new(),
            groups: Vec::new(),
            wasm: args.wasm.clone(),
            ..*args
        };
        batches(&fill, ctx, "w6-fill").await?;
    }
    let offsets = consumer.offsets(&args.topic).await?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for queue in offsets {
        let consumer = consumer.clone();
        tasks.spawn(async move {
            let mut offset = queue.min_offset;
            let (mut n_msgs, mut bytes) = (0u64, 0u64);
            while offset < queue.max_offset {
                let response = consumer
                    .pull(&queue.queue, offset, 4096, Duration::ZERO)
                    .await?;
                if response.messages.is_empty() {
                    return Err(anyhow!(
                        "queue {} returned nothing at offset {offset}",
                        queue.queue
                    ));
                }
                for msg in &response.messages {
                    if !msg.checksum_ok() {
                        return Err(anyhow!(
                            "checksum mismatch at queue {} offset {}",
                            queue.queue,
                            msg.offset
                        ));
                    }
                    bytes += msg.body.len() as u64;
                }
                n_msgs += response.messages.len() as u64;
                offset = response.next_offset;
            }
            Ok::<_, anyhow::Error>((n_msgs, bytes))
        });
    }
    let (mut n_msgs, mut bytes) = (0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        let (m, b) = done??;
        n_msgs += m;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "workload": "w6 catch-up consume, 1 consumer, all queues",
        "messages": n_msgs,
        "bytes": bytes,
        "mb_per_s": (bytes as f64 / secs / 1e6 * 10.0).round() / 10.0,
        "msg_per_s": (n_msgs as f64 / secs).round(),
    }))
}
