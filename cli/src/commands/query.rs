//! `quiver query`.

use anyhow::anyhow;
use quiver_client::{Admin, MessageId};

use crate::connect::{Context, Output};
use crate::output::{message_json, messages_table};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("by").required(true).args(["id", "key"])))]
pub struct QueryArgs {
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Message id (32 hex digits).
    #[arg(long)]
    id: Option<String>,
    /// Message key.
    #[arg(long)]
    key: Option<String>,
    /// Only messages stored at or after this time (ms since the epoch).
    #[arg(long, requires = "key")]
    begin_ms: Option<u64>,
    /// Only messages stored before this time (ms since the epoch).
    #[arg(long, requires = "key")]
    end_ms: Option<u64>,
    /// Most messages.
    #[arg(long, default_value_t = 64)]
    max: u32,
}

pub async fn run(args: QueryArgs, ctx: &Context) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone());
    let messages = match (&args.id, &args.key) {
        (Some(id), _) => {
            let msg_id: MessageId = id.parse().map_err(|err: String| anyhow!(err))?;
            admin.query_id(&args.topic, msg_id).await?
        }
        (None, Some(key)) => {
            admin
                .query_key(&args.topic, key, args.begin_ms, args.end_ms, args.max)
                .await?
        }
        (None, None) => unreachable!("clap requires --id or --key"),
    };
    match ctx.output {
        Output::Json => {
            for msg in &messages {
                println!("{}", message_json(msg));
            }
        }
        Output::Text => println!("{}", messages_table(&messages)),
    }
    Ok(())
}
