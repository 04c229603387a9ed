//! W9 inside the broker, without the network: `cargo xtask guests`, then
//! `taskset -c 0 cargo bench -p quiver-broker --bench w9` (release; not part of CI).
//!
//! A backlog (`W9_MESSAGES`, default 200,000 × 1 KiB over 8 queues, one in ten bodies
//! `{"keep":true}`) is stored with the default durability (fdatasync before an append
//! returns), then run through the function runner four times, each as its own group from
//! the first offset: the benchmark function (`bench/fn-guest`) as a component, and the same
//! handler in Rust through `Functions::run_native` (same runner, calls on the same threads,
//! same bisection, emit writes and commits), each in `filter` mode (emit the kept tenth to
//! `w9-out`) and `pass` mode (ack). Each is timed from its start to the last message handled
//! (its outputs written). `W9_ROUNDS` rounds (default 5) of the four, interleaved; prints
//! each run, then the medians and the VM-to-native ratios of the medians as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use quiver_broker::core::{Core, CoreConfig};
use quiver_broker::functions::config::FunctionsConfig;
use quiver_broker::functions::{Functions, NativeHandler};
use quiver_broker::store::{Store, StoreConfig};
use quiver_fnhost::{Emit, Message, Outcome};
use quiver_proto::SendMessage;
use quiver_proto::requests::function::{FnDeploy, FnLimits, FnSpec, FnUpload};
use quiver_proto::requests::group::StartFrom;
use serde_json::json;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

const QUEUES: u32 = 8;
const BODY: usize = 1024;
const SEND_BATCH: u64 = 1000;

fn main() {
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let (messages, rounds) = (setting("W9_MESSAGES", 200_000), setting("W9_ROUNDS", 5));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(messages, rounds));
}

fn spec(mode: &str) -> FnSpec {
    FnSpec {
        topic: "w9".into(),
        tags: "*".into(),
        config: vec![("mode".into(), mode.into()), ("to".into(), "w9-out".into())],
        max_retries: 3,
        retry_delay_ms: 1000,
        batch_max: 256,
        batch_wait_ms: 0,
        start: StartFrom::First,
        limits: FnLimits::default(),
    }
}

/// The benchmark function's `filter` and `pass` modes in Rust: the same search, reading the
/// same config per message, building the same emits.
fn native() -> NativeHandler {
    const KEEP: &[u8] = br#""keep":true"#;
    Arc::new(
        |msg: &Message, config: &BTreeMap<String, String>, emits: &mut Vec<Emit>| {
            let mode = config.get("mode").cloned().unwrap_or_default();
            let to = config.get("to").cloned().unwrap_or_default();
            if mode == "filter" && msg.body.windows(KEEP.len()).any(|w| w == KEEP) {
                emits.push(Emit {
                    topic: to,
                    tag: msg.tag.clone(),
                    keys: msg.keys.clone(),
                    body: msg.body.clone(),
                });
            }
            Outcome::Ack
        },
    )
}

async fn fill(core: &Core, messages: u64) {
    let filler = vec![b'x'; BODY - 16];
    let mut i = 0;
    while i < messages {
        let n = (messages - i).min(SEND_BATCH);
        let batch = (i..i + n)
            .map(|k| {
                let keep = k % 10 == 0;
                let mut body = BytesMut::with_capacity(BODY);
                body.put_slice(if keep {
                    br#"{"keep":true}"#
                } else {
                    br#"{"keep":false}"#
                });
                body.put_slice(&filler);
                let mut msg = SendMessage::new(None, body.freeze(), 0);
                msg.tag = Some(if keep { "keep" } else { "drop" }.into());
                msg
            })
            .collect();
        let queue = ((i / SEND_BATCH) % u64::from(QUEUES)) as u32;
        core.send("w9", queue, batch).await.expect("send");
        i += n;
    }
}

async fn deploy_wasm(functions: &Functions, name: &str, mode: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release/benchfn.wasm");
    let wasm = std::fs::read(&path).expect("benchfn.wasm: run `cargo xtask guests` first");
    let sha256: [u8; 32] = sha2::Sha256::digest(&wasm).into();
    functions
        .upload(FnUpload {
            sha256,
            total: wasm.len() as u64,
            offset: 0,
            chunk: Bytes::from(wasm),
        })
        .await
        .expect("upload");
    functions
        .deploy(FnDeploy {
            name: name.into(),
            sha256,
            spec: spec(mode),
        })
        .await
        .expect("deploy");
}

async fn run(messages: u64, rounds: u64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).expect("store");
    let stop = CancellationToken::new();
    let config = CoreConfig {
        auto_create_topics: false,
        default_queues: QUEUES,
        long_polls_max: 1024,
        broker_name: "w9".into(),
        group_session: Duration::from_secs(30),
    };
    let core = Arc::new(Core::new(Arc::new(store), config, stop.clone()).expect("core"));
    core.create_topic("w9", QUEUES).await.expect("topic");
    core.create_topic("w9-out", QUEUES).await.expect("topic");
    let started = Instant::now();
    fill(&core, messages).await;
    eprintln!(
        "backlog: {messages} × {BODY} B in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let functions = Functions::start(core.clone(), FunctionsConfig::default(), None)
        .await
        .expect("functions");
    let mut rates: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let variants = [
        ("wasm", "filter"),
        ("native", "filter"),
        ("wasm", "pass"),
        ("native", "pass"),
    ];
    for (round, (kind, mode)) in (0..rounds).flat_map(|r| variants.map(|v| (r, v))) {
        let variant = format!("{kind}-{mode}");
        let name = format!("{variant}-{round}");
        let started = Instant::now();
        if kind == "wasm" {
            deploy_wasm(&functions, &name, mode).await;
        } else {
            functions
                .run_native(&name, spec(mode), native())
                .await
                .expect("run");
        }
        let deployed = started.elapsed();
        while functions.counters(&name).handled < messages {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let secs = (started.elapsed() - deployed).as_secs_f64();
        let counters = functions.counters(&name);
        let rate = messages as f64 / secs;
        eprintln!(
            "{name:>13}: {rate:>9.0} msg/s ({secs:.3} s; deploy {:.1} ms; {} calls, {} emitted)",
            deployed.as_secs_f64() * 1000.0,
            counters.calls,
            counters.emitted,
        );
        rates.entry(variant).or_default().push(rate);
    }
    let medians: BTreeMap<String, f64> = rates
        .into_iter()
        .map(|(variant, mut all)| {
            all.sort_by(f64::total_cmp);
            (variant, all[all.len() / 2])
        })
        .collect();
    let ratio = |mode: &str| medians[&format!("wasm-{mode}")] / medians[&format!("native-{mode}")];
    println!(
        "{}",
        json!({
            "workload": "w9 in the broker: a stored backlog through the function runner, \
                         component vs the same handler in Rust",
            "messages": messages,
            "message_bytes": BODY,
            "queues": QUEUES,
            "rounds": rounds,
            "median_msg_per_s": medians,
            "vm_to_native_filter": ratio("filter"),
            "vm_to_native_pass": ratio("pass"),
        })
    );
    functions.shutdown().await;
    stop.cancel();
}
