//! `quiver pull`.

use std::time::Duration;

use quiver_client::PullConsumer;
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
    /// First offset.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Most messages.
    #[arg(long, default_value_t = 32)]
    count: u32,
    /// Long-poll: wait up to this many milliseconds for a message.
    #[arg(long, default_value_t = 0)]
    wait_ms: u64,
}

pub async fn run(args: PullArgs, ctx: &Context) -> anyhow::Result<()> {
    let consumer = PullConsumer::new(ctx.client.clone());
    let response = consumer
        .pull(
            &args.topic,
            args.queue,
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
