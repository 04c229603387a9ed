//! `quiver topic create|update|delete|list|describe`.

use quiver_client::Admin;
use quiver_proto::requests::topic::{QUEUES_DEFAULT, TopicDescription};
use serde_json::json;

use crate::connect::{Context, Output};
use crate::output::table;

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: [A-Za-z0-9_.-], 1 to 127 characters.
        topic: String,
        /// Number of queues.
        #[arg(long, default_value_t = QUEUES_DEFAULT)]
        queues: u32,
    },
    /// Raise a topic's queue count.
    Update {
        /// Topic name.
        topic: String,
        /// New number of queues (can only grow).
        #[arg(long)]
        queues: u32,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        topic: String,
    },
    /// List topics.
    List,
    /// Show a topic's queues and offsets.
    Describe {
        /// Topic name.
        topic: String,
    },
}

pub async fn run(command: TopicCommand, ctx: &Context) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone());
    match command {
        TopicCommand::Create { topic, queues } => {
            print_description(ctx, &admin.create_topic(&topic, queues).await?)
        }
        TopicCommand::Update { topic, queues } => {
            print_description(ctx, &admin.update_topic(&topic, queues).await?)
        }
        TopicCommand::Describe { topic } => {
            print_description(ctx, &admin.describe_topic(&topic).await?)
        }
        TopicCommand::Delete { topic } => {
            let deleted = admin.delete_topic(&topic).await?;
            match ctx.output {
                Output::Json => println!("{}", json!({ "deleted": deleted.topic })),
                Output::Text => println!("deleted topic {}", deleted.topic),
            }
        }
        TopicCommand::List => {
            let topics = admin.list_topics().await?;
            match ctx.output {
                Output::Json => println!(
                    "{}",
                    json!(topics.iter().map(|t| json!({"topic": t.topic, "queues": t.queues, "created_ms": t.created_ms})).collect::<Vec<_>>())
                ),
                Output::Text => println!(
                    "{}",
                    table(&["topic", "queues"], topics.iter().map(|t| vec![t.topic.clone(), t.queues.to_string()]).collect())
                ),
            }
        }
    }
    Ok(())
}

fn print_description(ctx: &Context, description: &TopicDescription) {
    match ctx.output {
        Output::Json => println!(
            "{}",
            json!({
                "topic": description.info.topic,
                "queues": description.info.queues,
                "created_ms": description.info.created_ms,
                "offsets": description.queues.iter().map(|q| json!({"queue_id": q.queue_id, "min_offset": q.min_offset, "max_offset": q.max_offset})).collect::<Vec<_>>(),
            })
        ),
        Output::Text => {
            println!(
                "topic {} ({} queues)",
                description.info.topic, description.info.queues
            );
            let rows = description
                .queues
                .iter()
                .map(|q| {
                    vec![
                        q.queue_id.to_string(),
                        q.min_offset.to_string(),
                        q.max_offset.to_string(),
                    ]
                })
                .collect();
            println!("{}", table(&["queue", "min offset", "max offset"], rows));
        }
    }
}
