//! `quiver dlq list|resend`: a group's dead letters.

use anyhow::anyhow;
use quiver_client::{Admin, MessageId};
use serde_json::json;

use crate::connect::{Context, Output};
use crate::output::{message_json, preview, table};

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Show a group's dead letters (messages that failed every retry), oldest first.
    List {
        /// Group name.
        group: String,
        /// Most dead letters shown per broker.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
    /// Give dead letters back to their group: delivered again at once through the group's
    /// retry topic, with a fresh retry count.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
    Resend {
        /// Group name.
        group: String,
        /// One dead letter, by message id.
        #[arg(long)]
        id: Option<String>,
        /// Every dead letter not resent before.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(command: DlqCommand, ctx: &Context) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone());
    match command {
        DlqCommand::List { group, max } => {
            let letters = admin.dead_letters(&group, max).await?;
            match ctx.output {
                Output::Json => {
                    for letter in &letters {
                        let mut value = message_json(&letter.message);
                        value["broker"] = json!(letter.broker_name);
                        value["origin_topic"] = json!(letter.message.origin_topic());
                        value["reconsume_times"] = json!(letter.message.reconsume_times());
                        value["resent"] = json!(letter.resent);
                        println!("{value}");
                    }
                }
                Output::Text => {
                    let rows = letters
                        .iter()
                        .map(|l| {
                            let m = &l.message;
                            vec![
                                l.broker_name.clone(),
                                m.msg_id.to_string(),
                                m.origin_topic().to_owned(),
                                m.reconsume_times().to_string(),
                                m.tag.clone().unwrap_or_default(),
                                m.keys.join(","),
                                if l.resent { "yes" } else { "no" }.into(),
                                preview(&m.body),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "broker", "msg id", "topic", "failures", "tag", "keys", "resent",
                                "body"
                            ],
                            rows
                        )
                    );
                }
            }
        }
        DlqCommand::Resend { group, id, all: _ } => {
            let msg_id = id
                .map(|id| id.parse::<MessageId>().map_err(|err| anyhow!(err)))
                .transpose()?;
            let resent = admin.resend_dead_letters(&group, msg_id).await?;
            let total: u64 = resent.iter().map(|(_, n)| n).sum();
            match ctx.output {
                Output::Json => println!(
                    "{}",
                    json!({ "resent": total, "brokers": resent.iter().map(|(b, n)| json!({"broker": b, "resent": n})).collect::<Vec<_>>() })
                ),
                Output::Text => println!("{total} dead letters of group {group} resent"),
            }
        }
    }
    Ok(())
}
