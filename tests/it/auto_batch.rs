//! The producer's auto-batch: concurrent sync sends are coalesced into fewer requests, each
//! send gets its own result, and a bad message in a batch fails alone.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use quiver_client::{AutoBatch, ErrorCode, Message, MessageId, Producer};
use quiver_tests::harness::{Spec, serial};

use crate::{read_all, setup};

const SENDERS: usize = 64;
const PER_SENDER: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_share_requests_and_a_bad_one_fails_alone() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "batched", 4).await;
    let producer = Arc::new(Producer::new(s.client.clone()).with_auto_batch(AutoBatch::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let producer = producer.clone();
        tasks.spawn(async move {
            let mut sent = Vec::new();
            for i in 0..PER_SENDER {
                let body = Bytes::from(format!("{sender}-{i}"));
                // One message in the middle has a tag the broker refuses.
                let message = if sender == 7 && i == 25 {
                    Message::new(body.clone()).with_tag("a|b")
                } else {
                    Message::new(body.clone())
                };
                sent.push((producer.send("batched", message).await, body));
            }
            sent
        });
    }
    let mut acked: HashMap<MessageId, Bytes> = HashMap::new();
    let mut refused = Vec::new();
    while let Some(done) = tasks.join_next().await {
        for (result, body) in done.unwrap() {
            match result {
                Ok(sent) => assert!(acked.insert(sent.msg_id, body).is_none()),
                Err(err) => refused.push((err, body)),
            }
        }
    }
    assert_eq!(refused.len(), 1, "only the bad message fails: {refused:?}");
    assert_eq!(refused[0].0.code(), Some(ErrorCode::InvalidArgument));
    assert_eq!(refused[0].1, "7-25".as_bytes());
    assert_eq!(acked.len(), SENDERS * PER_SENDER - 1);

    // Every acknowledged send is stored once, with its body; nothing else is.
    let stored: Vec<_> = read_all(&s.client, "batched")
        .await
        .into_values()
        .flatten()
        .collect();
    assert_eq!(stored.len(), acked.len());
    for msg in &stored {
        assert_eq!(acked.get(&msg.msg_id), Some(&msg.body));
    }
    // Fewer requests than sends: attempts are counted per request.
    let attempts: u64 = producer.counters().values().map(|c| c.attempts).sum();
    println!(
        "{} sends from {SENDERS} concurrent senders took {attempts} requests",
        SENDERS * PER_SENDER
    );
    assert!(
        attempts < (SENDERS * PER_SENDER) as u64 / 2,
        "{attempts} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_sent_again_one_by_one() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "refused", 2).await;
    let one_slot = AutoBatch {
        max_in_flight: 1,
        ..AutoBatch::default()
    };
    let producer = Producer::new(s.client.clone()).with_auto_batch(one_slot);
    // 100 sends queued in one poll pass: the first goes out alone, the other 99 (the bad one
    // among them) wait for the one slot and leave together, so the broker refuses that batch.
    let sends = (0..100).map(|i| {
        let message = Message::new(format!("m{i}"));
        let message = if i == 50 {
            message.with_tag("a|b")
        } else {
            message
        };
        producer.send("refused", message)
    });
    let results = futures_util::future::join_all(sends).await;
    for (i, result) in results.iter().enumerate() {
        if i == 50 {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
        } else {
            assert!(result.is_ok(), "send {i}: {result:?}");
        }
    }
    let stored = read_all(&s.client, "refused").await;
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), 99);
    let attempts: u64 = producer.counters().values().map(|c| c.attempts).sum();
    println!("100 sends, one refused: {attempts} requests");
}
