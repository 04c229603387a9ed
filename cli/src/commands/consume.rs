//! `quiver consume`: join a consumer group and print its messages as they come.

use std::time::Duration;

use anyhow::{anyhow, bail};
use std::path::PathBuf;

use quiver_client::group::{Handler, HandlerFuture};
use quiver_client::{
    BroadcastConsumer, ClientError, Delivery, GroupConsumer, GroupOptions, GroupStart, Outcome,
    PushConsumer, PushOptions,
};
use tokio::sync::{mpsc, oneshot};

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
    /// Clustering mode: lock each queue to this member while it reads it and print its
    /// messages one at a time, in order (a queue moves only between two messages).
    #[arg(long, conflicts_with = "state_dir")]
    orderly: bool,
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
    } else if args.orderly {
        orderly(ctx, options).await?
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
                    crate::output::time(msg.stored_ms),
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

/// An orderly member: a push consumer whose handler hands each message to the printing
/// loop and finishes once it is printed, so a queue's next message waits for it.
async fn orderly(ctx: &Context, options: GroupOptions) -> anyhow::Result<Member> {
    let (tx, rx) = mpsc::channel::<(Delivery, oneshot::Sender<()>)>(1);
    let handler: Handler = std::sync::Arc::new(move |delivery: Delivery| -> HandlerFuture {
        let tx = tx.clone();
        Box::pin(async move {
            let (printed, done) = oneshot::channel();
            if tx.send((delivery, printed)).await.is_err() || done.await.is_err() {
                // Stopping: not printed, so not done; the queue's next holder reads it.
                return Outcome::Retry(None);
            }
            Outcome::Success
        })
    });
    let mut push = PushOptions::new(options);
    push.orderly = true;
    let consumer = PushConsumer::start(ctx.client.clone(), push, handler).await?;
    Ok(Member::Orderly(
        consumer,
        tokio::sync::Mutex::new(Printing { rx, printed: None }),
    ))
}

/// Messages on their way from an orderly member's handler to the printing loop.
struct Printing {
    rx: mpsc::Receiver<(Delivery, oneshot::Sender<()>)>,
    /// The message handed out last: done once the loop comes back for the next.
    printed: Option<oneshot::Sender<()>>,
}

impl Printing {
    /// The message handed out last was printed: its handler finishes.
    fn finish(&mut self) {
        if let Some(printed) = self.printed.take() {
            // A handler gone (its queue moved) has nothing left to finish.
            let _ = printed.send(());
        }
    }
}

/// A clustering, orderly or broadcasting member.
enum Member {
    Group(GroupConsumer),
    Orderly(PushConsumer, tokio::sync::Mutex<Printing>),
    Broadcast(BroadcastConsumer),
}

impl Member {
    fn describe(&self) -> String {
        match self {
            Member::Group(c) => format!("member {}", c.member()),
            Member::Orderly(c, _) => format!("orderly member {}", c.member()),
            Member::Broadcast(c) => format!("broadcast, {} queues", c.queues().len()),
        }
    }

    /// The next messages; what the last poll returned was printed (and is done).
    async fn poll(&self, wait: Duration) -> Result<Vec<Delivery>, ClientError> {
        match self {
            Member::Group(c) => c.poll(wait).await,
            Member::Orderly(_, printing) => {
                let mut printing = printing.lock().await;
                printing.finish();
                match tokio::time::timeout(wait, printing.rx.recv()).await {
                    Ok(Some((delivery, printed))) => {
                        printing.printed = Some(printed);
                        Ok(vec![delivery])
                    }
                    Ok(None) | Err(_) => Ok(Vec::new()),
                }
            }
            Member::Broadcast(c) => c.poll(wait).await,
        }
    }

    async fn commit(&self) -> Result<(), ClientError> {
        match self {
            Member::Group(c) => c.commit().await,
            Member::Orderly(..) => Ok(()),
            Member::Broadcast(c) => c.commit().await,
        }
    }

    async fn close(&self) -> Result<(), ClientError> {
        match self {
            Member::Group(c) => c.close().await,
            Member::Orderly(c, printing) => {
                printing.lock().await.finish();
                c.close().await
            }
            Member::Broadcast(c) => c.close().await,
        }
    }
}
