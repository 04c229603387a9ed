//! `quiver topic create|update|delete|list|describe`.

use quiver_client::{Admin, BrokerChoice, BrokerTopic};
use quiver_proto::requests::topic::QUEUES_DEFAULT;
use serde_json::json;

use crate::connect::{Context, Output};
use crate::output::table;

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: [A-Za-z0-9_.-], 1 to 127 characters.
        topic: String,
        /// Number of queues on each broker.
        #[arg(long, default_value_t = QUEUES_DEFAULT)]
        queues: u32,
        /// Brokers to create it on: `all` (every registered broker) or names `B1,B2`.
        #[arg(long, default_value = "all")]
        brokers: String,
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
    /// Show which broker serves which queues of a topic.
    Route {
        /// Topic name.
        topic: String,
    },
}

pub async fn run(command: TopicCommand, ctx: &Context) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone());
    match command {
        TopicCommand::Create {
            topic,
            queues,
            brokers,
        } => {
            let choice = if brokers == "all" {
                BrokerChoice::All
            } else {
                BrokerChoice::Named(
                    brokers
                        .split(',')
                        .map(|b| b.trim().to_owned())
                        .filter(|b| !b.is_empty())
                        .collect(),
                )
            };
            print_descriptions(ctx, &admin.create_topic_on(&topic, queues, &choice).await?)
        }
        TopicCommand::Update { topic, queues } => {
            print_descriptions(ctx, &admin.update_topic(&topic, queues).await?)
        }
        TopicCommand::Describe { topic } => {
            print_descriptions(ctx, &admin.describe_topic(&topic).await?)
        }
        TopicCommand::Delete { topic } => {
            let brokers = admin.delete_topic(&topic).await?;
            match ctx.output {
                Output::Json => println!("{}", json!({ "deleted": topic, "brokers": brokers })),
                Output::Text => println!("deleted topic {topic} from {}", brokers.join(", ")),
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
        TopicCommand::Route { topic } => {
            let route = ctx.client.refresh_route(&topic).await?;
            let addr_of = |name: &str| {
                route
                    .brokers
                    .iter()
                    .find(|b| b.broker_name == name)
                    .map_or("?", |b| b.addr.as_str())
                    .to_owned()
            };
            match ctx.output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "topic": route.topic,
                        "brokers": route.queues.iter().map(|q| json!({"broker": q.broker_name, "addr": addr_of(&q.broker_name), "queues": q.queues, "writable": q.writable})).collect::<Vec<_>>(),
                    })
                ),
                Output::Text => {
                    let rows = route
                        .queues
                        .iter()
                        .map(|q| {
                            vec![
                                q.broker_name.clone(),
                                addr_of(&q.broker_name),
                                format!("0..{}", q.queues),
                                q.writable.to_string(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(&["broker", "address", "queues", "writable"], rows)
                    );
                }
            }
        }
    }
    Ok(())
}

fn print_descriptions(ctx: &Context, descriptions: &[BrokerTopic]) {
    for item in descriptions {
        let description = &item.description;
        match ctx.output {
            Output::Json => println!(
                "{}",
                json!({
                    "broker": item.broker_name,
                    "addr": item.addr,
                    "topic": description.info.topic,
                    "queues": description.info.queues,
                    "created_ms": description.info.created_ms,
                    "offsets": description.queues.iter().map(|q| json!({"queue_id": q.queue_id, "min_offset": q.min_offset, "max_offset": q.max_offset})).collect::<Vec<_>>(),
                })
            ),
            Output::Text => {
                println!(
                    "topic {} on broker {} ({}): {} queues",
                    description.info.topic, item.broker_name, item.addr, description.info.queues
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
}
