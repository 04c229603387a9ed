//! `nats-bench w2|w6|w7|w8 --url URL [--messages N] [--inflight K] [--size B]
//! [--backlog-mib M] [--rate R] [--seconds S] [--groups G] [--burst B]`: JetStream publish
//! with acknowledgements (K in flight, one connection), a catch-up pull consume (fetch
//! batches of 1,000) of a backlog, end-to-end latency through a push consumer at a fixed
//! rate (open loop, like `quiver bench w7`), and fan-out to G push consumers (like `quiver
//! bench w8`), against a file-store stream with one replica. Prints one JSON object, like
//! `quiver bench --output json`.

mod push;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let url = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let workload = args.get(1).cloned().unwrap_or_default();
    let size = flag("--size", 1024) as usize;
    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench".into()],
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await?;
    let result = match workload.as_str() {
        "w2" => w2(&js, flag("--messages", 100_000), flag("--inflight", 64), size).await?,
        "w6" => w6(&js, flag("--backlog-mib", 2048), size).await?,
        "w7" => {
            let run = push::Run { rate: flag("--rate", 10_000), seconds: flag("--seconds", 5), size };
            push::w7(&js, run).await.map_err(|e| e.to_string())?
        }
        "w8" => {
            let run = push::Run { rate: flag("--rate", 20_000), seconds: flag("--seconds", 5), size };
            push::w8(&js, run, flag("--groups", 1), flag("--burst", 100_000)).await.map_err(|e| e.to_string())?
        }
        other => return Err(format!("unknown workload {other:?}: use w2, w6, w7 or w8").into()),
    };
    println!("{result}");
    Ok(())
}

/// Publishes `n` messages of `size` bytes with `inflight` awaiting their JetStream acks.
async fn w2(
    js: &jetstream::Context,
    n: u64,
    inflight: u64,
    size: usize,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let payload = Bytes::from(vec![b'x'; size]);
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    let mut sent = 0;
    while sent < n || !pending.is_empty() {
        while sent < n && (pending.len() as u64) < inflight {
            let at = Instant::now();
            let ack = js.publish("bench", payload.clone()).await?;
            pending.push(async move { ack.await.map(|_| at.elapsed()) });
            sent += 1;
        }
        if let Some(done) = pending.next().await {
            latencies.record(done?.as_micros() as u64)?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "peer": "nats-server JetStream, file store, R1",
        "workload": format!("w2 {inflight} publishes in flight, 1 connection"),
        "durability": "P (ack after the write to the OS; JetStream fsyncs on its sync_interval)",
        "messages": n,
        "msg_per_s": (n as f64 / elapsed).round(),
        "p50_ms": latencies.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": latencies.value_at_quantile(0.99) as f64 / 1000.0,
    }))
}

/// Fills the stream to `backlog_mib` (if it holds less), then reads it all with a pull
/// consumer fetching 1,000 messages at a time.
async fn w6(
    js: &jetstream::Context,
    backlog_mib: u64,
    size: usize,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let want = backlog_mib * (1 << 20) / size as u64;
    let mut stream = js.get_stream("BENCH").await?;
    let have = stream.info().await?.state.messages;
    if have < want {
        w2(js, want - have, 4096, size).await?;
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-reader".into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let (mut n_msgs, mut bytes) = (0u64, 0u64);
    while n_msgs < want {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|err| err.to_string())?;
            bytes += msg.payload.len() as u64;
            got += 1;
        }
        if got == 0 {
            return Err(format!("the consumer stopped at {n_msgs} of {want}").into());
        }
        n_msgs += got;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "peer": "nats-server JetStream, file store, R1",
        "workload": "w6 catch-up pull consume, fetch 1000",
        "messages": n_msgs,
        "msg_per_s": (n_msgs as f64 / elapsed).round(),
        "mb_per_s": (bytes as f64 / elapsed / 1e6 * 10.0).round() / 10.0,
    }))
}
