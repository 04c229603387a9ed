//! `quiver fn new|build|test`: scaffold a function crate, build it for `wasm32-wasip2`, and
//! run the component locally with the same host the broker uses, over messages given as
//! JSON, printing each outcome, emit and log line. `remote.rs`: the commands that deploy and
//! watch functions on brokers.

pub mod remote;
mod scaffold;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use quiver_fnhost::{FnEngine, FnModule, Limits, Message, Outcome};
use serde::Deserialize;
use serde_json::json;

use crate::connect::Output;

#[derive(clap::Subcommand, Debug)]
pub enum FnCommand {
    /// Make a new function crate NAME (Cargo.toml, src/lib.rs with a handler and a test, a
    /// README) that builds as-is, anywhere.
    New {
        /// Crate name: lowercase letters, digits, '-' or '_'.
        name: String,
        /// Directory to make it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// A quiver-fn SDK checkout to depend on (default: a copy written into the crate).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a function crate for wasm32-wasip2 (adding the target when missing) and print
    /// the component's path.
    Build {
        /// The crate's directory.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Run a function component locally over messages given as JSON (the broker's host,
    /// the broker's limits) and print each outcome, emit and log line.
    #[command(group(clap::ArgGroup::new("input").required(true).args(["message", "messages"])))]
    Test {
        /// The component (`target/wasm32-wasip2/release/NAME.wasm`).
        wasm: PathBuf,
        /// One message: `{"body": "…", "tag": "…", "keys": […], "properties": {…},
        /// "topic": "…", "reconsume": 0}` (every field optional).
        #[arg(long)]
        message: Option<String>,
        /// A file of messages, one JSON object per line; they go in one batch.
        #[arg(long)]
        messages: Option<PathBuf>,
        /// A setting the function reads with `config(key)`; repeatable.
        #[arg(long = "config", value_parser = key_value)]
        config: Vec<(String, String)>,
    },
    #[command(flatten)]
    Remote(remote::RemoteCommand),
}

pub(crate) fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("--config {text:?}: write key=value"))
}

/// A message as the user writes it.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct MessageJson {
    topic: Option<String>,
    queue: u32,
    offset: Option<u64>,
    id: Option<String>,
    tag: Option<String>,
    keys: Vec<String>,
    properties: BTreeMap<String, String>,
    body: Option<String>,
    body_json: Option<serde_json::Value>,
    born_ms: u64,
    reconsume: u32,
}

impl MessageJson {
    fn into_message(self, index: usize) -> Message {
        let body = match (self.body, self.body_json) {
            (Some(text), _) => text.into_bytes(),
            (None, Some(value)) => value.to_string().into_bytes(),
            (None, None) => Vec::new(),
        };
        let offset = self.offset.unwrap_or(index as u64);
        Message {
            topic: self.topic.unwrap_or_else(|| "test".into()),
            queue: self.queue,
            offset,
            id: self.id.unwrap_or_else(|| format!("{offset:032x}")),
            tag: self.tag,
            keys: self.keys,
            properties: self.properties.into_iter().collect(),
            body,
            born_ms: self.born_ms,
            reconsume: self.reconsume,
        }
    }
}

fn parse_messages(one: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Vec<Message>> {
    let lines: Vec<(String, String)> = match (one, file) {
        (Some(text), _) => vec![("--message".into(), text)],
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| (format!("{} line {}", path.display(), n + 1), l.to_owned()))
            .collect(),
        (None, None) => bail!("give --message JSON or --messages FILE"),
    };
    lines
        .into_iter()
        .enumerate()
        .map(|(index, (what, text))| {
            serde_json::from_str::<MessageJson>(&text)
                .map(|m| m.into_message(index))
                .map_err(|err| anyhow!("{what}: {err} (fields: body, body_json, tag, keys, properties, topic, queue, offset, id, born_ms, reconsume)"))
        })
        .collect()
}

fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Ack => json!({"outcome": "ack"}),
        Outcome::Retry(delay) => json!({"outcome": "retry", "delay_ms": delay}),
        Outcome::DeadLetter(reason) => json!({"outcome": "dead-letter", "reason": reason}),
    }
}

/// Runs a local command (`new`, `build`, `test`; `Remote` ones go through [`remote::run`]).
pub async fn run(command: FnCommand, output: Output) -> anyhow::Result<()> {
    match command {
        FnCommand::Remote(_) => bail!("this command needs a broker"),
        FnCommand::New { name, dir, sdk } => {
            let root = scaffold::new(&name, &dir, sdk.as_deref())?;
            match output {
                Output::Json => println!("{}", json!({ "created": root })),
                Output::Text => println!(
                    "created {}: `quiver fn build {}` makes the component",
                    root.display(),
                    root.display()
                ),
            }
            Ok(())
        }
        FnCommand::Build { path } => {
            let wasm = scaffold::build(&path)?;
            match output {
                Output::Json => println!("{}", json!({ "component": wasm })),
                Output::Text => println!("{}", wasm.display()),
            }
            Ok(())
        }
        FnCommand::Test {
            wasm,
            message,
            messages,
            config,
        } => {
            let batch = parse_messages(message, messages)?;
            let bytes = std::fs::read(&wasm).with_context(|| {
                format!(
                    "cannot read {}: build the function first (`cargo build --release --target wasm32-wasip2`)",
                    wasm.display()
                )
            })?;
            let engine = FnEngine::new()?;
            let module = FnModule::load(&engine, &bytes)?;
            let config: BTreeMap<String, String> = config.into_iter().collect();
            let report = module
                .call(&batch, Arc::new(config), &Limits::default())
                .await;
            let emits: Vec<_> = report
                .emits
                .iter()
                .map(|e| json!({"topic": e.topic, "tag": e.tag, "keys": e.keys, "body": String::from_utf8_lossy(&e.body)}))
                .collect();
            let logs: Vec<_> = report
                .logs
                .iter()
                .map(|l| json!({"level": l.level, "text": l.text}))
                .collect();
            match output {
                Output::Json => {
                    let outcomes = match &report.settled {
                        Ok(outcomes) => {
                            json!(outcomes.iter().map(outcome_json).collect::<Vec<_>>())
                        }
                        Err(_) => json!(null),
                    };
                    println!(
                        "{}",
                        json!({
                            "outcomes": outcomes,
                            "failed": report.settled.as_ref().err(),
                            "emits": emits,
                            "logs": logs,
                            "logs_dropped": report.logs_dropped,
                            "fuel_used": report.fuel_used,
                            "elapsed_ms": report.elapsed.as_secs_f64() * 1000.0,
                        })
                    );
                }
                Output::Text => {
                    for line in &report.logs {
                        println!("log {}: {}", line.level, line.text);
                    }
                    match &report.settled {
                        Ok(outcomes) => {
                            for (msg, outcome) in batch.iter().zip(outcomes) {
                                println!(
                                    "message {} (offset {}): {}",
                                    msg.id,
                                    msg.offset,
                                    outcome_json(outcome)["outcome"]
                                        .as_str()
                                        .unwrap_or_default()
                                );
                            }
                        }
                        Err(reason) => println!("the call failed: {reason}"),
                    }
                    for emit in &report.emits {
                        println!("emit to {}: {} bytes", emit.topic, emit.body.len());
                    }
                    println!(
                        "fuel {}, {:.2} ms",
                        report.fuel_used,
                        report.elapsed.as_secs_f64() * 1000.0
                    );
                }
            }
            if let Err(reason) = report.settled {
                bail!("the function failed: {reason}");
            }
            Ok(())
        }
    }
}
