//! `quiver cluster list`.

use quiver_client::Admin;
use serde_json::json;

use crate::connect::{Context, Output};
use crate::output::table;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers registered with the name servers: addresses, heartbeat age, topics, queues.
    List,
}

pub async fn run(command: ClusterCommand, ctx: &Context) -> anyhow::Result<()> {
    let ClusterCommand::List = command;
    let brokers = Admin::new(ctx.client.clone()).cluster().await?;
    match ctx.output {
        Output::Json => println!(
            "{}",
            json!(brokers
                .iter()
                .map(|b| json!({
                    "cluster": b.cluster, "broker": b.broker_name, "addr": b.addr, "role": b.role.name(),
                    "data_version": { "timestamp_ms": b.data_version.timestamp_ms, "counter": b.data_version.counter },
                    "heartbeat_age_ms": b.heartbeat_age_ms, "topics": b.topics, "queues": b.queues,
                    "healthy": b.unhealthy_reason.is_empty(), "unhealthy_reason": b.unhealthy_reason,
                }))
                .collect::<Vec<_>>())
        ),
        Output::Text => {
            let rows = brokers
                .iter()
                .map(|b| {
                    vec![
                        b.cluster.clone(),
                        b.broker_name.clone(),
                        b.addr.clone(),
                        b.role.name().into(),
                        format!(
                            "{}.{}",
                            b.data_version.timestamp_ms, b.data_version.counter
                        ),
                        format!("{:.1} s", b.heartbeat_age_ms as f64 / 1000.0),
                        b.topics.to_string(),
                        b.queues.to_string(),
                        if b.unhealthy_reason.is_empty() {
                            "ok".into()
                        } else {
                            format!("unhealthy: {}", b.unhealthy_reason)
                        },
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "cluster",
                        "broker",
                        "address",
                        "role",
                        "data version",
                        "heartbeat age",
                        "topics",
                        "queues",
                        "health"
                    ],
                    rows
                )
            );
        }
    }
    Ok(())
}
