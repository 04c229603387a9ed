//! `quiver send`.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use quiver_client::{Message, Producer, SendResult};
use serde_json::json;
use tokio::task::JoinSet;

use crate::connect::{Context, Output};

/// Most async sends kept in flight by the CLI.
const ASYNC_WINDOW: usize = 256;

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Tag.
    #[arg(long)]
    tag: Option<String>,
    /// Key (repeatable).
    #[arg(long)]
    key: Vec<String>,
    /// Property `name=value` (repeatable).
    #[arg(long)]
    property: Vec<String>,
    /// Body text.
    #[arg(long, conflicts_with_all = ["file", "size"])]
    body: Option<String>,
    /// Read the body from a file.
    #[arg(long, conflicts_with = "size")]
    file: Option<PathBuf>,
    /// Generate a body of this many bytes (instead of --body/--file/stdin).
    #[arg(long, value_parser = crate::flags::body_bytes)]
    size: Option<usize>,
    /// Send the message this many times.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Send mode.
    #[arg(long, value_enum, default_value = "sync")]
    mode: Mode,
    /// Sharding key: messages with the same key go to the same queue, in order.
    #[arg(long, conflicts_with = "batch")]
    order_key: Option<String>,
    /// Send the --count messages as one batch (one queue, all or nothing).
    #[arg(long)]
    batch: bool,
    /// Deliver after this delay (`30s`, `5m`, up to 40 days), not before.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "deliver_at")]
    delay: Option<std::time::Duration>,
    /// Deliver at this time (RFC 3339, or ms since the Unix epoch), not before.
    #[arg(long)]
    deliver_at: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Wait for each acknowledgement.
    Sync,
    /// Keep many sends in flight; print each acknowledgement.
    Async,
    /// Do not wait for acknowledgements.
    Oneway,
}

pub async fn run(args: SendArgs, ctx: &Context) -> anyhow::Result<()> {
    if args.count == 0 {
        return Err(anyhow!("--count must be at least 1"));
    }
    if args.mode != Mode::Sync && (args.order_key.is_some() || args.batch) {
        return Err(anyhow!("--order-key and --batch need --mode sync"));
    }
    let message = build_message(&args)?;
    let producer = Arc::new(Producer::new(ctx.client.clone()));
    let started = Instant::now();
    let mut results = Vec::new();
    match args.mode {
        Mode::Sync if args.batch => {
            results = producer
                .send_batch(&args.topic, vec![message; args.count])
                .await?;
            print_results(ctx, &results);
        }
        Mode::Sync => {
            for _ in 0..args.count {
                let result = match &args.order_key {
                    Some(key) => {
                        producer
                            .send_ordered(&args.topic, key, message.clone())
                            .await?
                    }
                    None => producer.send(&args.topic, message.clone()).await?,
                };
                print_results(ctx, std::slice::from_ref(&result));
                results.push(result);
            }
        }
        Mode::Async => {
            let mut inflight = JoinSet::new();
            for _ in 0..args.count {
                if inflight.len() >= ASYNC_WINDOW {
                    let result = inflight.join_next().await.expect("non-empty")??;
                    print_results(ctx, std::slice::from_ref(&result));
                    results.push(result);
                }
                let (producer, topic, message) =
                    (producer.clone(), args.topic.clone(), message.clone());
                inflight.spawn(async move { producer.send(&topic, message).await });
            }
            while let Some(result) = inflight.join_next().await {
                let result = result??;
                print_results(ctx, std::slice::from_ref(&result));
                results.push(result);
            }
        }
        Mode::Oneway => {
            for _ in 0..args.count {
                let msg_id = producer.send_oneway(&args.topic, message.clone()).await?;
                match ctx.output {
                    Output::Json => println!(
                        "{}",
                        json!({ "msg_id": msg_id.to_string(), "mode": "oneway" })
                    ),
                    Output::Text if args.count <= 20 => {
                        println!("sent {msg_id} (oneway: not acknowledged)")
                    }
                    Output::Text => {}
                }
            }
        }
    }
    if ctx.output == Output::Text && args.count > 1 {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "sent {} messages in {secs:.3} s ({:.0} msg/s)",
            args.count,
            args.count as f64 / secs
        );
    }
    Ok(())
}

fn print_results(ctx: &Context, results: &[SendResult]) {
    for result in results {
        match ctx.output {
            Output::Json => println!(
                "{}",
                json!({ "msg_id": result.msg_id.to_string(), "broker": result.queue.broker_name, "queue_id": result.queue.queue_id, "offset": result.offset })
            ),
            Output::Text => println!(
                "sent {} broker={} queue={} offset={}",
                result.msg_id, result.queue.broker_name, result.queue.queue_id, result.offset
            ),
        }
    }
}

fn build_message(args: &SendArgs) -> anyhow::Result<Message> {
    let body = if let Some(body) = &args.body {
        Bytes::from(body.clone())
    } else if let Some(path) = &args.file {
        Bytes::from(
            std::fs::read(path)
                .with_context(|| format!("cannot read --file {}", path.display()))?,
        )
    } else if let Some(size) = args.size {
        Bytes::from((0..size).map(|i| b'a' + (i % 26) as u8).collect::<Vec<_>>())
    } else {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read the body from stdin")?;
        Bytes::from(body)
    };
    let mut message = Message::new(body);
    message.tag = args.tag.clone();
    message.keys = args.key.clone();
    for property in &args.property {
        let (name, value) = property
            .split_once('=')
            .ok_or_else(|| anyhow!("--property {property:?} is not name=value"))?;
        message.properties.push((name.to_owned(), value.to_owned()));
    }
    if let Some(delay) = args.delay {
        message = message.with_delay(delay);
    }
    if let Some(at) = &args.deliver_at {
        let ms = crate::flags::parse_time_ms(at).ok_or_else(|| {
            anyhow!("--deliver-at {at:?}: use an RFC 3339 time (2026-12-02T10:00:00Z) or milliseconds since the Unix epoch")
        })?;
        message = message.with_delivery_at(ms);
    }
    Ok(message)
}
