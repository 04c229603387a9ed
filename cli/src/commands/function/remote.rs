//! `quiver fn deploy|list|describe|logs|undeploy|rollback|replay`: functions on the
//! brokers of a running cluster (or standalone).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use quiver_client::Admin;
use quiver_client::admin_fn::{ReplaySpec, module_sha256};
use quiver_proto::requests::function::{FnInfo, FnLimits, FnSpec, ReplayFrom};
use serde_json::json;

use super::key_value;
use crate::commands::consume::parse_start;
use crate::connect::{Context, Output};
use crate::output::table;

/// Function commands that talk to brokers.
#[derive(clap::Subcommand, Debug)]
pub enum RemoteCommand {
    /// Deploy a component as function NAME on every broker (a new version of a deployed
    /// function takes over at its committed offsets; admin).
    Deploy {
        /// The component (`quiver fn build` prints its path).
        wasm: PathBuf,
        /// Function name; it runs as the consumer group `fn-NAME`.
        #[arg(long)]
        name: String,
        /// Topic it consumes.
        #[arg(long)]
        topic: String,
        /// Tag expression (`*`, `A`, `A || B`): other messages never reach the function.
        #[arg(long, default_value = "*")]
        tags: String,
        /// A setting the function reads with `config(key)`; repeatable.
        #[arg(long = "config", value_parser = key_value)]
        config: Vec<(String, String)>,
        /// Failed deliveries retried before a message goes to the dead-letter topic
        /// `%DLQ%fn-NAME`.
        #[arg(long, default_value_t = 3)]
        max_retries: u32,
        /// Wait before a retry, when the function does not name one (`500ms`, `10s`, `1m`).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        retry_delay: Duration,
        /// Most messages per call.
        #[arg(long, default_value_t = 32)]
        batch_max: u32,
        /// How long a call waits for a fuller batch, in ms (0: call with what is there).
        #[arg(long, default_value_t = 0)]
        batch_wait: u32,
        /// Where a queue without a committed offset starts: `last`, `first` or a time.
        #[arg(long, default_value = "last")]
        from: String,
        /// Fuel per message (0: the broker's default).
        #[arg(long, default_value_t = 0)]
        fuel: u64,
        /// Wall-clock ms per message of a call (0: the broker's default).
        #[arg(long, default_value_t = 0)]
        deadline_ms: u64,
        /// Memory of one instance in MiB (0: the broker's default).
        #[arg(long, default_value_t = 0)]
        memory_mib: u64,
        /// Calls at once per broker (0: the broker's default).
        #[arg(long, default_value_t = 0)]
        instances: u32,
    },
    /// The functions of every broker.
    List,
    /// A function's version, settings, offsets, lag, counters and handler times.
    Describe {
        /// Function name.
        name: String,
    },
    /// A function's log lines (what it logged or printed, and the broker's notes on it).
    Logs {
        /// Function name.
        name: String,
        /// Keep printing new lines until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Stop a function on every broker (its group's offsets stay; admin).
    Undeploy {
        /// Function name.
        name: String,
    },
    /// Go back to a function's previous version, at its committed offsets (admin).
    Rollback {
        /// Function name.
        name: String,
    },
    /// Run a component over stored messages on the brokers, writing nothing: outcome
    /// counts, the emits it would make and the first failures (admin).
    Replay {
        /// The component.
        wasm: PathBuf,
        /// Topic to read.
        #[arg(long)]
        topic: String,
        /// Where to start in each queue: `first`, an offset, or a time (RFC 3339).
        #[arg(long)]
        from: String,
        /// Most messages per broker.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// One queue only.
        #[arg(long)]
        queue: Option<u32>,
        /// Tag expression.
        #[arg(long, default_value = "*")]
        tags: String,
        /// A setting the function reads with `config(key)`; repeatable.
        #[arg(long = "config", value_parser = key_value)]
        config: Vec<(String, String)>,
    },
}

fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read {}: build the function first (`quiver fn build`)",
            path.display()
        )
    })
}

fn hex(sha: &[u8]) -> String {
    sha.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_replay_from(text: &str) -> anyhow::Result<ReplayFrom> {
    if text == "first" {
        return Ok(ReplayFrom::Offset(0));
    }
    if let Ok(offset) = text.parse::<u64>() {
        return Ok(ReplayFrom::Offset(offset));
    }
    crate::flags::parse_time_ms(text)
        .map(ReplayFrom::Time)
        .ok_or_else(|| {
            anyhow!("--from {text:?}: use `first`, an offset, or an RFC 3339 time (2026-12-02T10:00:00Z)")
        })
}

pub async fn run(command: RemoteCommand, ctx: &Context) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone());
    match command {
        RemoteCommand::Deploy {
            wasm,
            name,
            topic,
            tags,
            config,
            max_retries,
            retry_delay,
            batch_max,
            batch_wait,
            from,
            fuel,
            deadline_ms,
            memory_mib,
            instances,
        } => {
            let bytes = read_wasm(&wasm)?;
            let spec = FnSpec {
                topic,
                tags,
                config,
                max_retries,
                retry_delay_ms: retry_delay.as_millis() as u64,
                batch_max,
                batch_wait_ms: batch_wait,
                start: parse_start(&from)?,
                limits: FnLimits {
                    fuel_per_message: fuel,
                    deadline_ms_per_message: deadline_ms,
                    memory_bytes: memory_mib << 20,
                    instances,
                    emits_per_message: 0,
                    emit_bytes_max: 0,
                },
            };
            let deployed = admin.deploy_function(&name, &bytes, spec).await?;
            let sha = hex(&module_sha256(&bytes));
            for d in &deployed {
                match ctx.output {
                    Output::Json => println!(
                        "{}",
                        json!({"broker": d.broker_name, "function": name, "version": d.value.version, "compiled": d.value.compiled, "sha256": sha})
                    ),
                    Output::Text => println!(
                        "{}: function {name} version {} deployed ({})",
                        d.broker_name,
                        d.value.version,
                        if d.value.compiled {
                            "compiled"
                        } else {
                            "compiled code reused"
                        }
                    ),
                }
            }
        }
        RemoteCommand::List => {
            let all = admin.list_functions().await?;
            match ctx.output {
                Output::Json => {
                    for f in &all {
                        let v = &f.value;
                        println!(
                            "{}",
                            json!({"broker": f.broker_name, "name": v.name, "version": v.version, "sha256": hex(&v.sha256), "topic": v.topic, "tags": v.tags, "state": v.state, "lag": v.lag})
                        );
                    }
                }
                Output::Text => println!(
                    "{}",
                    table(
                        &["BROKER", "NAME", "VERSION", "TOPIC", "TAGS", "STATE", "LAG"],
                        all.iter()
                            .map(|f| {
                                let v = &f.value;
                                vec![
                                    f.broker_name.clone(),
                                    v.name.clone(),
                                    v.version.to_string(),
                                    v.topic.clone(),
                                    v.tags.clone(),
                                    v.state.clone(),
                                    v.lag.to_string(),
                                ]
                            })
                            .collect()
                    )
                ),
            }
        }
        RemoteCommand::Describe { name } => {
            for f in admin.describe_function(&name).await? {
                match ctx.output {
                    Output::Json => println!("{}", info_json(&f.broker_name, &f.value)),
                    Output::Text => print_info(&f.broker_name, &f.value),
                }
            }
        }
        RemoteCommand::Logs { name, follow } => {
            let brokers = admin.function_brokers(&name).await?;
            let mut after = vec![0u64; brokers.len()];
            let mut printed = false;
            loop {
                // One broker waits for new lines; with several, each is asked in turn.
                let wait = if !follow {
                    Duration::ZERO
                } else if brokers.len() == 1 {
                    Duration::from_secs(30)
                } else {
                    Duration::from_millis(500)
                };
                for (i, (broker, addr)) in brokers.iter().enumerate() {
                    let answer = admin.function_logs(addr, &name, after[i], wait).await?;
                    for line in &answer.lines {
                        printed = true;
                        after[i] = line.seq;
                        match ctx.output {
                            Output::Json => println!(
                                "{}",
                                json!({"broker": broker, "seq": line.seq, "time_ms": line.time_ms, "version": line.version, "level": line.level, "text": line.text})
                            ),
                            Output::Text => println!(
                                "{broker} v{} {} {}: {}",
                                line.version,
                                crate::output::time(line.time_ms),
                                line.level,
                                line.text
                            ),
                        }
                    }
                }
                if !follow {
                    if !printed && matches!(ctx.output, Output::Text) {
                        eprintln!(
                            "no log lines of {name} yet (what it logs with quiver_fn::log or \
                             prints, and the broker's notes about it, show here)"
                        );
                    }
                    break;
                }
            }
        }
        RemoteCommand::Undeploy { name } => {
            for d in admin.undeploy_function(&name).await? {
                match ctx.output {
                    Output::Json => {
                        println!("{}", json!({"broker": d.broker_name, "undeployed": name}))
                    }
                    Output::Text => println!("{}: function {name} undeployed", d.broker_name),
                }
            }
        }
        RemoteCommand::Rollback { name } => {
            for d in admin.rollback_function(&name).await? {
                match ctx.output {
                    Output::Json => println!(
                        "{}",
                        json!({"broker": d.broker_name, "function": name, "version": d.value.version})
                    ),
                    Output::Text => println!(
                        "{}: function {name} rolled back to version {}",
                        d.broker_name, d.value.version
                    ),
                }
            }
        }
        RemoteCommand::Replay {
            wasm,
            topic,
            from,
            limit,
            queue,
            tags,
            config,
        } => {
            let bytes = read_wasm(&wasm)?;
            let spec = ReplaySpec {
                topic,
                queue_id: queue,
                tags,
                from: parse_replay_from(&from)?,
                limit,
                config,
            };
            if limit == 0 {
                bail!("--limit must be at least 1");
            }
            for r in admin.replay_function(&bytes, &spec).await? {
                let v = &r.value;
                match ctx.output {
                    Output::Json => println!(
                        "{}",
                        json!({
                            "broker": r.broker_name, "handled": v.handled, "acked": v.acked,
                            "retried": v.retried, "dead_lettered": v.dead_lettered,
                            "failed": v.failed, "filtered": v.filtered,
                            "emits_total": v.emits_total,
                            "emits": v.emits.iter().map(|e| json!({"topic": e.topic, "tag": e.tag, "keys": e.keys, "body": e.body, "body_len": e.body_len})).collect::<Vec<_>>(),
                            "failures": v.failures.iter().map(|f| json!({"queue": f.queue_id, "offset": f.offset, "outcome": f.outcome})).collect::<Vec<_>>(),
                            "logs": v.logs.iter().map(|l| json!({"level": l.level, "text": l.text})).collect::<Vec<_>>(),
                        })
                    ),
                    Output::Text => {
                        println!(
                            "{}: {} handled: {} acked, {} retried, {} dead-lettered, {} failed; \
                             {} filtered out; {} emits (nothing was written)",
                            r.broker_name,
                            v.handled,
                            v.acked,
                            v.retried,
                            v.dead_lettered,
                            v.failed,
                            v.filtered,
                            v.emits_total
                        );
                        for e in &v.emits {
                            println!("  emit to {}: {}", e.topic, e.body);
                        }
                        for f in &v.failures {
                            println!("  queue {} offset {}: {}", f.queue_id, f.offset, f.outcome);
                        }
                        for l in &v.logs {
                            println!("  log {}: {}", l.level, l.text);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn info_json(broker: &str, info: &FnInfo) -> serde_json::Value {
    let c = &info.counters;
    json!({
        "broker": broker,
        "name": info.name,
        "version": info.version,
        "sha256": hex(&info.sha256),
        "previous": info.previous.map(|(v, sha)| json!({"version": v, "sha256": hex(&sha)})),
        "state": info.state,
        "deployed_ms": info.deployed_ms,
        "topic": info.spec.topic,
        "tags": info.spec.tags,
        "max_retries": info.spec.max_retries,
        "retry_delay_ms": info.spec.retry_delay_ms,
        "batch_max": info.spec.batch_max,
        "batch_wait_ms": info.spec.batch_wait_ms,
        "lag": info.queues.iter().map(|q| q.lag).sum::<u64>(),
        "queues": info.queues.iter().map(|q| json!({"topic": q.topic, "queue": q.queue_id, "max_offset": q.max_offset, "committed": q.committed, "lag": q.lag})).collect::<Vec<_>>(),
        "counters": {
            "handled": c.handled, "acked": c.acked, "retried": c.retried,
            "dead_lettered": c.dead_lettered, "traps": c.traps, "compiles": c.compiles,
            "calls": c.calls, "emitted": c.emitted, "filtered": c.filtered,
        },
        "handler_p50_us": info.handler_p50_us,
        "handler_p99_us": info.handler_p99_us,
        "last_error": info.last_error,
    })
}

fn print_info(broker: &str, info: &FnInfo) {
    let c = &info.counters;
    println!(
        "{broker}: function {} version {} ({}), {}",
        info.name,
        info.version,
        &hex(&info.sha256)[..12],
        info.state
    );
    if let Some((version, sha)) = info.previous {
        println!("  previous: version {version} ({})", &hex(&sha)[..12]);
    }
    println!(
        "  reads {} tags {:?}; batch {} / {} ms; {} retries, {} ms apart",
        info.spec.topic,
        info.spec.tags,
        info.spec.batch_max,
        info.spec.batch_wait_ms,
        info.spec.max_retries,
        info.spec.retry_delay_ms
    );
    println!(
        "  handled {} (acked {}, retried {}, dead-lettered {}), traps {}, compiles {}, calls {}, emitted {}, filtered {}",
        c.handled,
        c.acked,
        c.retried,
        c.dead_lettered,
        c.traps,
        c.compiles,
        c.calls,
        c.emitted,
        c.filtered
    );
    println!(
        "  handler per message: p50 {} µs, p99 {} µs",
        info.handler_p50_us, info.handler_p99_us
    );
    if let Some(err) = &info.last_error {
        println!("  last failure: {err}");
    }
    println!(
        "{}",
        table(
            &["topic", "queue", "broker offset", "committed", "lag"],
            info.queues.iter().map(crate::output::queue_cells).collect()
        )
    );
}
