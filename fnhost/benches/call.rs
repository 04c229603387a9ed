//! What a call costs (`cargo xtask guests`, then `cargo bench -p quiver-fnhost --bench
//! call`): calling the benchmark function (`bench/fn-guest`) with one message in a fresh
//! instance and in a kept one, a 256-message batch (in a kept instance, as the broker calls)
//! through its `filter` mode (10 % of the bodies kept and emitted) and `pass` mode, and the
//! same filter as native Rust over the same messages, building the same emits: W9's
//! VM-to-native ratio at the handler.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use divan::Bencher;
use quiver_fnhost::{Emit, FnEngine, FnModule, Limits, Message};

fn main() {
    divan::main();
}

fn module() -> (FnEngine, FnModule) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release/benchfn.wasm");
    let wasm = std::fs::read(&path).expect("benchfn.wasm: run `cargo xtask guests` first");
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &wasm).unwrap();
    (engine, module)
}

fn batch(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let mut body = if i % 10 == 0 {
                br#"{"keep":true}"#.to_vec()
            } else {
                br#"{"keep":false}"#.to_vec()
            };
            body.resize(1024, b'x');
            Message {
                topic: "bench".into(),
                queue: 0,
                offset: i as u64,
                id: format!("{i:032x}"),
                tag: Some("drop".into()),
                keys: vec![],
                properties: vec![],
                body,
                born_ms: 0,
                reconsume: 0,
            }
        })
        .collect()
}

fn config(mode: &str) -> Arc<BTreeMap<String, String>> {
    Arc::new(
        [("mode", mode), ("to", "out")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The broker's limits: one instance kept between calls.
fn kept() -> Limits {
    Limits {
        keep_instances: 1,
        ..Limits::default()
    }
}

#[divan::bench]
fn instantiate_and_call_one(bencher: Bencher<'_, '_>) {
    let (_engine, module) = module();
    let (rt, msgs, conf) = (runtime(), batch(1), config("pass"));
    let limits = Limits::default();
    bencher.bench_local(|| rt.block_on(module.call(&msgs, conf.clone(), &limits)));
}

#[divan::bench]
fn kept_instance_call_one(bencher: Bencher<'_, '_>) {
    let (_engine, module) = module();
    let (rt, msgs, conf) = (runtime(), batch(1), config("pass"));
    let limits = kept();
    bencher.bench_local(|| rt.block_on(module.call(&msgs, conf.clone(), &limits)));
}

#[divan::bench(args = ["filter", "pass"])]
fn vm_batch_256(bencher: Bencher<'_, '_>, mode: &str) {
    let (_engine, module) = module();
    let (rt, msgs, conf) = (runtime(), batch(256), config(mode));
    let limits = kept();
    bencher
        .counter(divan::counter::ItemsCount::new(256usize))
        .bench_local(|| rt.block_on(module.call(&msgs, conf.clone(), &limits)));
}

/// The same filter in Rust, building the same emits (and reading the same config per
/// message, as the guest does).
#[divan::bench]
fn native_filter_256(bencher: Bencher<'_, '_>) {
    let (msgs, conf) = (batch(256), config("filter"));
    const KEEP: &[u8] = br#""keep":true"#;
    bencher
        .counter(divan::counter::ItemsCount::new(256usize))
        .bench_local(|| {
            let mut emits = Vec::new();
            for msg in divan::black_box(&msgs) {
                let to = conf.get("to").cloned().unwrap_or_default();
                if msg.body.windows(KEEP.len()).any(|w| w == KEEP) {
                    emits.push(Emit {
                        topic: to,
                        tag: msg.tag.clone(),
                        keys: msg.keys.clone(),
                        body: msg.body.clone(),
                    });
                }
            }
            emits
        });
}
