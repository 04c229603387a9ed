//! `quiver pull`.

use std::time::Duration;

use anyhow::bail;
use quiver_client::{MessageQueue, PullConsumer};
use quiver_proto::requests::msg::PULL_WAIT_MS_MAX;
use serde_json::json;

use crate::connect::{Context, Output};
use crate::output::{message_json, messages_table};

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Queue id.
    #[arg(long)]
    queue: u32,
    /// Broker of the queue (needed when the topic has queues on more than one broker).
    #[arg(long)]
    broker: Option<String>,
    /// First offset.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Most messages.
    #[arg(long, default_value_t = 32)]
    count: u32,
    /// Long-poll: wait up to this many milliseconds (at most 60000) for a message.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=u64::from(PULL_WAIT_MS_MAX)))]
    wait_ms: u64,
}

pub async fn run(args: PullArgs, ctx: &Context) -> anyhow::Result<()> {
    let consumer = PullConsumer::new(ctx.client.clone());
    let queue = pick_queue(&consumer, &args).await?;
    let response = consumer
        .pull(
            &queue,
            args.offset,
            args.count,
            Duration::from_millis(args.wait_ms),
        )
        .await?;
    match ctx.output {
        Output::Json => {
            for msg in &response.messages {
                println!("{}", message_json(msg));
            }
            println!(
                "{}",
                json!({ "next_offset": response.next_offset, "min_offset": response.min_offset, "max_offset": response.max_offset })
            );
        }
        Output::Text => {
            println!("{}", messages_table(&response.messages));
            println!(
                "{} messages; next offset {} (queue holds {}..{})",
                response.messages.len(),
                response.next_offset,
                response.min_offset,
                response.max_offset
            );
        }
    }
    Ok(())
}

/// The queue `--queue` (and `--broker`) name, from the topic's route.
async fn pick_queue(consumer: &PullConsumer, args: &PullArgs) -> anyhow::Result<MessageQueue> {
    let mut matching: Vec<MessageQueue> = consumer
        .queues(&args.topic)
        .await?
        .into_iter()
        .filter(|q| q.queue_id == args.queue)
        .filter(|q| args.broker.as_ref().is_none_or(|b| *b == q.broker_name))
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => bail!(
            "topic {} has no queue {}{}: see `quiver topic route {}`",
            args.topic,
            args.queue,
            args.broker
                .as_ref()
                .map(|b| format!(" on broker {b}"))
                .unwrap_or_default(),
            args.topic
        ),
        _ => {
            let brokers: Vec<&str> = matching.iter().map(|q| q.broker_name.as_str()).collect();
            bail!(
                "queue {} of topic {} is on several brokers ({}): pick one with --broker",
                args.queue,
                args.topic,
                brokers.join(", ")
            )
        }
    }
}
