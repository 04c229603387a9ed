//! Micro-benchmarks of the store's hot paths: `cargo bench -p quiver-broker --bench store`
//! (release build; not part of CI). Each names the unit it measures per iteration.
//!
//! - `codec_decode_send_1000`: decoding a 1,000 × 1 KiB send request off the wire.
//! - `assemble_1000`: the writer's batch assembly (offsets, ids, record encoding, index
//!   entries) of 1,000 × 1 KiB messages, no I/O.
//! - `index_commit_1000`: one dispatcher commit of 1,000 entries (consume pages, id rows,
//!   key rows) into redb with `Durability::None`.
//! - `pull_1000`: a 1,000-message pull of a stored queue: pages, one log read, decode,
//!   checks.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use divan::Bencher;
use quiver_broker::store::index::dispatcher::{IndexEntry, insert_entries};
use quiver_broker::store::log::assemble::Assembler;
use quiver_broker::store::log::reader::PullSpec;
use quiver_broker::store::{Store, StoreConfig};
use quiver_proto::requests::msg::{SendRequest, decode_send_request};
use quiver_proto::{MessageId, SendMessage, encode_body};

fn main() {
    divan::main();
}

const BATCH: usize = 1000;

fn messages(n: usize) -> Vec<SendMessage> {
    (0..n)
        .map(|i| {
            let mut msg = SendMessage::new(None, Bytes::from(vec![b'x'; 1024]), 1);
            msg.tag = Some(if i % 10 == 0 { "paid" } else { "new" }.to_owned());
            msg.keys = vec![format!("order-{i}")];
            msg
        })
        .collect()
}

#[divan::bench]
fn codec_decode_send_1000(bencher: Bencher<'_, '_>) {
    let body = Bytes::from(encode_body(&SendRequest {
        topic: "bench".into(),
        queue_id: 0,
        messages: messages(BATCH),
    }));
    bencher
        .counter(divan::counter::ItemsCount::new(BATCH))
        .bench(|| decode_send_request(divan::black_box(&body)).expect("decodes"));
}

#[divan::bench]
fn assemble_1000(bencher: Bencher<'_, '_>) {
    let batch = messages(BATCH);
    let mut assembler = Assembler::new(HashMap::new());
    let (mut out, mut entries) = (Vec::with_capacity(2 << 20), Vec::with_capacity(BATCH));
    bencher
        .counter(divan::counter::ItemsCount::new(BATCH))
        .bench_local(|| {
            out.clear();
            entries.clear();
            assembler.place((1, 0), &batch, 1, (&mut out, 0), &mut entries)
        });
}

#[divan::bench]
fn index_commit_1000(bencher: Bencher<'_, '_>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = redb::Database::create(dir.path().join("index.redb")).expect("redb");
    let mut next_offset = 0u64;
    bencher
        .counter(divan::counter::ItemsCount::new(BATCH))
        .bench_local(|| {
            let entries: Vec<IndexEntry> = (0..BATCH as u64)
                .map(|i| IndexEntry {
                    topic_id: 1,
                    queue_id: (i % 8) as u32,
                    offset: next_offset + i / 8,
                    pos: (next_offset + i) * 1100,
                    size: 1100,
                    tag_hash: 7,
                    stored_ms: 1,
                    msg_id: MessageId(u128::from(next_offset + i) << 64),
                    keys: vec![format!("order-{}", next_offset + i)],
                    timer: None,
                })
                .collect();
            next_offset += BATCH as u64 / 8;
            let mut txn = db.begin_write().expect("txn");
            txn.set_durability(redb::Durability::None)
                .expect("durability");
            insert_entries(&txn, &entries).expect("insert");
            txn.commit().expect("commit");
        });
}

#[divan::bench]
fn pull_1000(bencher: Bencher<'_, '_>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (store, _) = Store::open(dir.path(), StoreConfig::default()).expect("store");
    let store = Arc::new(store);
    store.create_topic("bench", 1).expect("topic");
    runtime.block_on(async {
        for _ in 0..50 {
            store
                .append("bench", 0, messages(BATCH))
                .await
                .expect("append");
        }
        store.catch_up().await.expect("caught up");
    });
    let meta = store.topic("bench").expect("topic");
    let mut offset = 0u64;
    bencher
        .counter(divan::counter::ItemsCount::new(BATCH))
        .bench_local(|| {
            let spec = PullSpec {
                queue_id: 0,
                offset,
                max_msgs: BATCH as u32,
                max_bytes: u32::MAX,
            };
            offset = (offset + BATCH as u64) % 49_000;
            store.read_queue("bench", &meta, spec).expect("pull")
        });
}
