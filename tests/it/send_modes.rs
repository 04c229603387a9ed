//! Every send mode, read back byte for byte; ordering; balance; group commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quiver_client::{Admin, Message, Producer, PullConsumer};
use quiver_tests::harness::{Spec, serial};

use crate::{read_all, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_mode_reads_back_byte_for_byte() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "modes", 4).await;
    let producer = Arc::new(Producer::new(s.client.clone()));
    let mut expected: HashMap<String, Bytes> = HashMap::new();

    // Sync, with tag, keys and properties; binary bodies of several sizes.
    for i in 0..20u32 {
        let body = Bytes::from(
            (0..(i * 997) % 5000)
                .map(|b| (b * 31 + i) as u8)
                .collect::<Vec<_>>(),
        );
        let msg = Message::new(body.clone())
            .with_tag("sync")
            .with_key(format!("sync-{i}"))
            .with_property("i", i.to_string());
        let sent = producer.send("modes", msg).await.unwrap();
        expected.insert(sent.msg_id.to_string(), body);
    }
    // Async: many in flight on one connection.
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(format!("async-{i}-{}", "z".repeat(i as usize)));
            (
                producer
                    .send("modes", Message::new(body.clone()))
                    .await
                    .unwrap(),
                body,
            )
        }));
    }
    for task in tasks {
        let (sent, body) = task.await.unwrap();
        expected.insert(sent.msg_id.to_string(), body);
    }
    // Batch: one queue, consecutive offsets.
    let batch: Vec<Message> = (0..50)
        .map(|i| Message::new(format!("batch-{i}")))
        .collect();
    let results = producer.send_batch("modes", batch).await.unwrap();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.queue, results[0].queue);
        assert_eq!(result.offset, results[0].offset + i as u64);
        expected.insert(result.msg_id.to_string(), Bytes::from(format!("batch-{i}")));
    }
    // Oneway: no ack; it shows up in the queue.
    let mut oneway_ids = Vec::new();
    for i in 0..10 {
        let id = producer
            .send_oneway("modes", Message::new(format!("oneway-{i}")))
            .await
            .unwrap();
        expected.insert(id.to_string(), Bytes::from(format!("oneway-{i}")));
        oneway_ids.push(id);
    }
    // Oneway sends have no ack: wait (with a deadline) until the broker has stored them.
    let total = expected.len();
    let consumer = PullConsumer::new(s.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for round in 0u32.. {
        let offsets = consumer.offsets("modes").await.unwrap();
        let stored: u64 = offsets.iter().map(|q| q.max_offset).sum();
        if stored as usize >= total || tokio::time::Instant::now() > deadline {
            break;
        }
        // Long-poll one queue at its end: returns as soon as a message lands there.
        let queue = &offsets[round as usize % offsets.len()];
        let _ = consumer
            .pull(
                &queue.queue,
                queue.max_offset,
                1,
                Duration::from_millis(200),
            )
            .await;
    }
    let all = read_all(&s.client, "modes").await;
    let got: HashMap<String, Bytes> = all
        .values()
        .flatten()
        .map(|m| (m.msg_id.to_string(), m.body.clone()))
        .collect();
    assert_eq!(got.len(), total, "every message stored exactly once");
    assert_eq!(got, expected, "bodies byte for byte");
    let tagged = all
        .values()
        .flatten()
        .filter(|m| m.tag.as_deref() == Some("sync"))
        .count();
    assert_eq!(tagged, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_sends_keep_each_key_on_one_queue_in_order() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "ordered", 8).await;
    let producer = Arc::new(Producer::new(s.client.clone()));
    let mut tasks = Vec::new();
    for key in 0..50 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..100 {
                let body = format!("order-{key}:{seq}");
                producer
                    .send_ordered("ordered", &format!("order-{key}"), Message::new(body))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = read_all(&s.client, "ordered").await;
    let mut queue_of: BTreeMap<String, u32> = BTreeMap::new();
    let all: BTreeMap<u32, _> = all
        .into_iter()
        .map(|(q, msgs)| (q.queue_id, msgs))
        .collect();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for (queue, msgs) in &all {
        for msg in msgs {
            let text = std::str::from_utf8(&msg.body).unwrap();
            let (key, seq) = text.split_once(':').unwrap();
            let seq: i64 = seq.parse().unwrap();
            assert_eq!(
                *queue_of.entry(key.to_owned()).or_insert(*queue),
                *queue,
                "{key} on one queue"
            );
            let last = last_seq.entry(key.to_owned()).or_insert(-1);
            assert_eq!(seq, *last + 1, "{key} in send order");
            *last = seq;
        }
    }
    assert_eq!(last_seq.len(), 50);
    assert!(last_seq.values().all(|seq| *seq == 99));
    let queues_used: HashSet<u32> = queue_of.values().copied().collect();
    assert!(
        queues_used.len() >= 6,
        "keys cover {} of 8 queues",
        queues_used.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_sends_spread_evenly_and_group_commit_batches_fsyncs() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "spread", 8).await;
    let producer = Arc::new(Producer::new(s.client.clone()));
    let admin = Admin::new(s.client.clone());
    let fsyncs_before = admin.stats(&s.server.addr).await.unwrap().fsyncs;
    // 8,000 sync sends from 16 concurrent senders (each send waits for its ack).
    let mut tasks = Vec::new();
    for task in 0..16 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                producer
                    .send("spread", Message::new(format!("{task}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let offsets = PullConsumer::new(s.client.clone())
        .offsets("spread")
        .await
        .unwrap();
    let counts: Vec<u64> = offsets.iter().map(|q| q.max_offset).collect();
    assert_eq!(counts.iter().sum::<u64>(), 8000);
    let mean = 1000.0;
    for (queue, count) in counts.iter().enumerate() {
        let off = (*count as f64 - mean).abs() / mean;
        assert!(off <= 0.2, "queue {queue} holds {count}, mean {mean}");
    }

    // Group commit: 1,000 concurrent sync sends take fewer than 1,000 fsyncs.
    let before = admin.stats(&s.server.addr).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            producer
                .send("spread", Message::new(format!("gc-{i}")))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let after = admin.stats(&s.server.addr).await.unwrap();
    let fsyncs = after.fsyncs - before.fsyncs;
    println!(
        "1000 concurrent sync sends: {fsyncs} fsyncs ({} before the burst)",
        before.fsyncs - fsyncs_before
    );
    assert_eq!(after.msgs_appended - before.msgs_appended, 1000);
    assert!(
        fsyncs < 1000,
        "{fsyncs} fsyncs for 1000 sends: no group commit"
    );
    assert_eq!(after.flush_mode, "sync");
}
