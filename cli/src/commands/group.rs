//! `quiver group list|describe|update|reset-offset`.

use std::time::Duration;

use anyhow::anyhow;
use quiver_client::Admin;
use serde_json::json;

use crate::commands::consume::parse_start;
use crate::connect::{Context, Output};
use crate::output::table;

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List the consumer groups the brokers know.
    List,
    /// Show a group: members, subscription, settings and, per queue, the broker's offset,
    /// the committed offset, the lag and the lease holder.
    Describe {
        /// Group name.
        group: String,
    },
    /// Change a group's retry settings (the group is created if new).
    Update {
        /// Group name.
        group: String,
        /// Deliveries after the first before a message is dead-lettered.
        #[arg(long)]
        max_retries: Option<u32>,
        /// Back-off before each retry, comma-separated durations (`10s,30s,1m`); the last
        /// repeats.
        #[arg(long)]
        backoff: Option<String>,
        /// Queue assignment: `average` or `consistent_hash`.
        #[arg(long)]
        strategy: Option<String>,
    },
    /// Move a group's committed offsets of a topic (its members re-read from there).
    ResetOffset {
        /// Group name.
        group: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// `first`, `last`, or a time (RFC 3339 or ms since the Unix epoch).
        #[arg(long)]
        to: String,
    },
}

pub async fn run(command: GroupCommand, ctx: &Context) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone());
    match command {
        GroupCommand::List => {
            let groups = admin.list_groups().await?;
            match ctx.output {
                Output::Json => println!("{}", json!({ "groups": groups })),
                Output::Text => {
                    for group in groups {
                        println!("{group}");
                    }
                }
            }
        }
        GroupCommand::Describe { group } => describe(&admin, &group, ctx).await?,
        GroupCommand::Update {
            group,
            max_retries,
            backoff,
            strategy,
        } => {
            let current = admin
                .describe_group(&group)
                .await
                .ok()
                .and_then(|views| views.into_iter().next())
                .map(|view| view.info.settings);
            let mut settings = current.unwrap_or_default();
            if let Some(n) = max_retries {
                settings.max_retries = n;
            }
            if let Some(list) = backoff {
                settings.backoff_ms = parse_backoff(&list)?;
            }
            if let Some(strategy) = strategy {
                settings.strategy = strategy;
            }
            admin.update_group(&group, settings).await?;
            if ctx.output == Output::Text {
                println!("group {group} updated");
            }
        }
        GroupCommand::ResetOffset { group, topic, to } => {
            let to = parse_start(&to)?;
            let moved = admin.reset_group_offset(&group, &topic, to).await?;
            match ctx.output {
                Output::Json => println!(
                    "{}",
                    json!({ "queues": moved.iter().map(|(b, q, o)| json!({"broker": b, "queue_id": q, "offset": o})).collect::<Vec<_>>() })
                ),
                Output::Text => println!(
                    "{}",
                    table(
                        &["broker", "queue", "offset"],
                        moved
                            .iter()
                            .map(|(b, q, o)| vec![b.clone(), q.to_string(), o.to_string()])
                            .collect()
                    )
                ),
            }
        }
    }
    Ok(())
}

fn parse_backoff(list: &str) -> anyhow::Result<Vec<u64>> {
    list.split(',')
        .map(|step| {
            humantime::parse_duration(step.trim())
                .map(|d: Duration| d.as_millis() as u64)
                .map_err(|err| {
                    anyhow!("--backoff step {step:?}: {err}; write durations like 10s,30s,1m")
                })
        })
        .collect()
}

async fn describe(admin: &Admin, group: &str, ctx: &Context) -> anyhow::Result<()> {
    let views = admin.describe_group(group).await?;
    match ctx.output {
        Output::Json => {
            let brokers: Vec<_> = views
                .iter()
                .map(|v| {
                    json!({
                        "broker": v.broker_name,
                        "subscriptions": v.info.subscriptions.iter().map(|s| json!({"topic": s.topic, "tags": s.tags})).collect::<Vec<_>>(),
                        "members": v.info.members.iter().map(|m| json!({"member": m.member, "client": m.client, "idle_ms": m.idle_ms})).collect::<Vec<_>>(),
                        "queues": v.info.queues.iter().map(|q| json!({
                            "topic": q.topic, "queue_id": q.queue_id, "max_offset": q.max_offset,
                            "committed": q.committed, "lag": q.lag, "holder": q.holder, "epoch": q.epoch,
                        })).collect::<Vec<_>>(),
                        "settings": {"max_retries": v.info.settings.max_retries, "backoff_ms": v.info.settings.backoff_ms, "strategy": v.info.settings.strategy},
                    })
                })
                .collect();
            println!("{}", json!({ "group": group, "brokers": brokers }));
        }
        Output::Text => {
            for view in &views {
                let info = &view.info;
                let subs: Vec<String> = info
                    .subscriptions
                    .iter()
                    .map(|s| format!("{} [{}]", s.topic, s.tags))
                    .collect();
                println!(
                    "broker {}: subscription {}; {} members; max retries {}, strategy {}",
                    view.broker_name,
                    if subs.is_empty() {
                        "-".into()
                    } else {
                        subs.join(", ")
                    },
                    info.members.len(),
                    info.settings.max_retries,
                    info.settings.strategy
                );
                println!(
                    "{}",
                    table(
                        &["member", "client", "idle ms"],
                        info.members
                            .iter()
                            .map(|m| vec![
                                m.member.clone(),
                                m.client.clone(),
                                m.idle_ms.to_string()
                            ])
                            .collect()
                    )
                );
                println!(
                    "{}",
                    table(
                        &[
                            "topic",
                            "queue",
                            "broker offset",
                            "committed",
                            "lag",
                            "holder",
                            "epoch"
                        ],
                        info.queues
                            .iter()
                            .map(|q| {
                                let mut cells = crate::output::queue_cells(q);
                                cells.push(q.holder.clone().unwrap_or_else(|| "-".into()));
                                cells.push(q.epoch.to_string());
                                cells
                            })
                            .collect()
                    )
                );
            }
        }
    }
    Ok(())
}
