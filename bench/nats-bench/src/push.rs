//! W7 and W8 on NATS JetStream: push consumers (ack policy none, as Quiver's push consumer
//! commits offsets in batches rather than acking each message) fed by an open-loop
//! publisher. Each payload starts with its due time (µs since the Unix epoch, little
//! endian); latency runs from that time to the message's arrival in this process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer};
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

const IN_FLIGHT_MAX: usize = 20_000;
const WARM_UP_SECS: u64 = 1;

/// A fixed-rate cell.
pub struct Run {
    pub rate: u64,
    pub seconds: u64,
    pub size: usize,
}

struct Seen {
    hist: Mutex<hdrhistogram::Histogram<u64>>,
    count: AtomicU64,
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A push consumer delivering new messages of the stream to its own inbox; records each
/// message's latency (those due from `measure_from`) in `seen`.
async fn member(
    js: &jetstream::Context,
    client: &async_nats::Client,
    name: String,
    measure_from: u64,
) -> Result<Arc<Seen>, Error> {
    let stream = js.get_stream("BENCH").await?;
    let consumer = stream
        .create_consumer(consumer::push::Config {
            deliver_subject: client.new_inbox(),
            durable_name: Some(name),
            deliver_policy: consumer::DeliverPolicy::New,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let seen = Arc::new(Seen {
        hist: Mutex::new(hdrhistogram::Histogram::new(3)?),
        count: AtomicU64::new(0),
    });
    let mut messages = consumer.messages().await?;
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            let now = unix_us();
            if msg.payload.len() >= 8 {
                let due = u64::from_le_bytes(msg.payload[..8].try_into().expect("8 bytes"));
                if due >= measure_from {
                    let _ = sink.hist.lock().unwrap().record(now.saturating_sub(due).max(1));
                }
            }
            sink.count.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(seen)
}

/// Publishes `total` messages at `rate` per second (or as fast as they go), each ack
/// awaited in its own task; returns the achieved rate.
async fn publish(js: &jetstream::Context, total: u64, rate: Option<u64>, size: usize) -> Result<f64, Error> {
    let start = Instant::now();
    let start_us = unix_us();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let failed = Arc::new(AtomicU64::new(0));
    let filler = vec![b'x'; size.saturating_sub(8)];
    let mut i = 0u64;
    while i < total {
        let due_now = match rate {
            Some(rate) => {
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                let now = start.elapsed();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
                ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total)
            }
            None => total,
        };
        while i < due_now {
            let due_us = match rate {
                Some(rate) => start_us + (i as f64 * 1e6 / rate as f64) as u64,
                None => unix_us(),
            };
            let mut body = BytesMut::with_capacity(size.max(8));
            body.put_u64_le(due_us);
            body.put_slice(&filler);
            let slot = slots.clone().acquire_owned().await?;
            let ack = js.publish("bench", body.freeze()).await?;
            let failed = failed.clone();
            tokio::spawn(async move {
                if ack.await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                drop(slot);
            });
            i += 1;
        }
    }
    let _all = slots.acquire_many(IN_FLIGHT_MAX as u32).await?;
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} of {total} publishes were not acknowledged").into());
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn drain(groups: &[Arc<Seen>], want: u64) -> Result<(), Error> {
    let started = Instant::now();
    while groups.iter().any(|g| g.count.load(Ordering::Relaxed) < want) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("consumers did not catch up within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn summary(seen: &Seen) -> serde_json::Value {
    let hist = seen.hist.lock().unwrap();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    serde_json::json!({
        "measured": hist.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": hist.max() as f64 / 1000.0,
    })
}

pub async fn w7(js: &jetstream::Context, run: Run) -> Result<serde_json::Value, Error> {
    let client = js_client(js).await?;
    let measure_from = unix_us() + WARM_UP_SECS * 1_000_000;
    let seen = member(js, &client, format!("w7-{}", run.rate), measure_from).await?;
    let total = run.rate * (run.seconds + WARM_UP_SECS);
    let achieved = publish(js, total, Some(run.rate), run.size).await?;
    drain(std::slice::from_ref(&seen), total).await?;
    let mut out = summary(&seen);
    out["workload"] = format!("w7 end-to-end latency at {} msg/s, push consumer (ack none)", run.rate).into();
    out["durability"] = "P (ack after the write to the OS; JetStream fsyncs on its sync_interval)".into();
    out["rate"] = run.rate.into();
    out["achieved_msg_per_s"] = achieved.round().into();
    Ok(out)
}

pub async fn w8(
    js: &jetstream::Context,
    run: Run,
    groups: u64,
    burst: u64,
) -> Result<serde_json::Value, Error> {
    match fan_out(js, &run, groups, burst).await {
        Ok(result) => Ok(result),
        // Overloaded: say so in the result instead of failing the sitting.
        Err(err) => Ok(serde_json::json!({
            "workload": format!("w8 fan-out to {groups} push consumers (ack none) at {} msg/s, then a burst of {burst}", run.rate),
            "groups": groups,
            "rate": run.rate,
            "failed": err.to_string(),
        })),
    }
}

async fn fan_out(
    js: &jetstream::Context,
    run: &Run,
    groups: u64,
    burst: u64,
) -> Result<serde_json::Value, Error> {
    let client = js_client(js).await?;
    let measure_from = unix_us() + WARM_UP_SECS * 1_000_000;
    let mut seen = Vec::new();
    for g in 0..groups {
        seen.push(member(js, &client, format!("w8-{groups}-{g}"), measure_from).await?);
    }
    let total = run.rate * (run.seconds + WARM_UP_SECS);
    let achieved = publish(js, total, Some(run.rate), run.size).await?;
    drain(&seen, total).await?;
    let mut p99s: Vec<f64> = seen.iter().map(|s| summary(s)["p99_ms"].as_f64().unwrap_or_default()).collect();
    p99s.sort_by(f64::total_cmp);
    let started = Instant::now();
    publish(js, burst, None, run.size).await?;
    let sent_secs = started.elapsed().as_secs_f64();
    drain(&seen, total + burst).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "workload": format!("w8 fan-out to {groups} push consumers (ack none) at {} msg/s, then a burst of {burst}", run.rate),
        "durability": "P (ack after the write to the OS; JetStream fsyncs on its sync_interval)",
        "groups": groups,
        "rate": run.rate,
        "achieved_msg_per_s": achieved.round(),
        "per_group_p99_ms_median": p99s[p99s.len() / 2],
        "per_group_p99_ms_worst": p99s[p99s.len() - 1],
        "burst_messages": burst,
        "burst_send_msg_per_s": (burst as f64 / sent_secs).round(),
        "burst_deliveries_per_s": ((burst * groups) as f64 / secs).round(),
        "burst_per_group_msg_per_s": (burst as f64 / secs).round(),
    }))
}

/// A second connection for the consumers, as a separate consumer process would have.
async fn js_client(_js: &jetstream::Context) -> Result<async_nats::Client, Error> {
    let url = std::env::args()
        .skip_while(|a| a != "--url")
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    Ok(async_nats::connect(&url).await?)
}
