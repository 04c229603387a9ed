//! `quiver consume`: join a consumer group and print its messages as they come.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use std::path::PathBuf;

use quiver_client::{
    BroadcastConsumer, ClientError, Delivery, GroupConsumer, GroupOptions, GroupStart,
};

use crate::connect::{Context, Output};
use crate::output::message_json;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// Consumer group.
    #[arg(long)]
    group: String,
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Tag expression: `*`, `A`, or `A || B`.
    #[arg(long, default_value = "*")]
    tags: String,
    /// Where a queue the group has no offset for starts: `last`, `first`, or a time
    /// (RFC 3339, e.g. 2026-12-02T10:00:00Z, or milliseconds since the Unix epoch).
    #[arg(long, default_value = "last")]
    from: String,
    /// `clustering` (the group's members share the queues) or `broadcast` (every member gets
    /// every message; offsets kept in --state-dir).
    #[arg(long, default_value = "clustering", value_parser = ["clustering", "broadcast"])]
    mode: String,
    /// Broadcast mode: the directory of this member's offsets file.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Stop after this many messages (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    /// How often to heartbeat the brokers (at most a third of their group session).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// How often to commit what was printed; `0s` commits after every batch printed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    commit_interval: Duration,
    /// Messages per pull.
    #[arg(long, default_value_t = quiver_client::group::GROUP_PULL_MSGS_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
}

/// Parses `--from`.
pub fn parse_start(text: &str) -> anyhow::Result<GroupStart> {
    match text {
        "last" => Ok(GroupStart::Last),
        "first" => Ok(GroupStart::First),
        other => crate::flags::parse_time_ms(other).map(GroupStart::Time).ok_or_else(|| {
            anyhow!(
                "--from {other:?}: use `last`, `first`, an RFC 3339 time (2026-12-02T10:00:00Z) or milliseconds since the Unix epoch"
            )
        }),
    }
}

pub async fn run(args: ConsumeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut options = GroupOptions::new(&args.group, &args.topic, &args.tags);
    options.start = parse_start(&args.from)?;
    options.heartbeat = args.heartbeat;
    options.pull_msgs = args.batch;
    let commit_each_batch = args.commit_interval.is_zero();
    options.auto_commit = (!commit_each_batch).then_some(args.commit_interval);
    let consumer = if args.mode == "broadcast" {
        let Some(dir) = &args.state_dir else {
            bail!("--mode broadcast needs --state-dir DIR: where this member keeps its offsets");
        };
        Member::Broadcast(BroadcastConsumer::start(ctx.client.clone(), options, dir).await?)
    } else {
        Member::Group(GroupConsumer::start(ctx.client.clone(), options).await?)
    };
    eprintln!(
        "consuming {} [{}] as group {} ({}); Ctrl-C commits and leaves",
        args.topic,
        args.tags,
        args.group,
        consumer.describe()
    );
    let mut seen = 0u64;
    let outcome = loop {
        if args.count.is_some_and(|count| seen >= count) {
            break Ok(());
        }
        let polled = tokio::select! {
            polled = consumer.poll(Duration::from_secs(1)) => polled,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let deliveries = match polled {
            Ok(deliveries) => deliveries,
            Err(err) => break Err(err),
        };
        for delivery in deliveries {
            let msg = &delivery.message;
            match ctx.output {
                Output::Json => {
                    let mut line = message_json(msg);
                    line["broker"] = delivery.queue.broker_name.clone().into();
                    println!("{line}");
                }
                Output::Text => println!(
                    "{} {}#{} offset {} id {} tag {} {}",
                    time_text(msg.stored_ms),
                    delivery.queue.broker_name,
                    msg.queue_id,
                    msg.offset,
                    msg.msg_id,
                    msg.tag.as_deref().unwrap_or("-"),
                    String::from_utf8_lossy(&msg.body)
                ),
            }
            seen += 1;
        }
        if commit_each_batch && let Err(err) = consumer.commit().await {
            eprintln!("offset commit refused: {err}");
        }
    };
    let closed = consumer.close().await;
    if let Err(err) = outcome {
        bail!("{err}");
    }
    closed.map_err(|err| anyhow!("leaving the group: {err}"))
}

fn time_text(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A clustering or a broadcasting member.
enum Member {
    Group(GroupConsumer),
    Broadcast(BroadcastConsumer),
}

impl Member {
    fn describe(&self) -> String {
        match self {
            Member::Group(c) => format!("member {}", c.member()),
            Member::Broadcast(c) => format!("broadcast, {} queues", c.queues().len()),
        }
    }

    async fn poll(&self, wait: Duration) -> Result<Vec<Delivery>, ClientError> {
        match self {
            Member::Group(c) => c.poll(wait).await,
            Member::Broadcast(c) => c.poll(wait).await,
        }
    }

    async fn commit(&self) -> Result<(), ClientError> {
        match self {
            Member::Group(c) => c.commit().await,
            Member::Broadcast(c) => c.commit().await,
        }
    }

    async fn close(&self) -> Result<(), ClientError> {
        match self {
            Member::Group(c) => c.close().await,
            Member::Broadcast(c) => c.close().await,
        }
    }
}
