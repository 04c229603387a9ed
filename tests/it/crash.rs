//! `kill -9` and SIGTERM under load: every acknowledged message survives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quiver_client::{Client, Message, MessageId, Producer};
use quiver_tests::harness::{Spec, campaign, serial};
use tokio::task::JoinSet;

use crate::{read_all, setup};

type Acked = Arc<Mutex<HashMap<MessageId, Bytes>>>;

/// Starts `senders` tasks that sync-send until aborted, recording every acknowledged message.
fn start_load(
    client: &Client,
    senders: usize,
    cycle: usize,
) -> (JoinSet<()>, Acked, Arc<tokio::sync::Notify>) {
    let acked: Acked = Arc::default();
    let progress = Arc::new(tokio::sync::Notify::new());
    let producer = Arc::new(Producer::new(client.clone()).with_retries(0));
    let mut tasks = JoinSet::new();
    for sender in 0..senders {
        let (producer, acked, progress) = (producer.clone(), acked.clone(), progress.clone());
        tasks.spawn(async move {
            for i in 0u64.. {
                let body = Bytes::from(format!(
                    "c{cycle}-s{sender}-{i}-{}",
                    "p".repeat((i % 300) as usize)
                ));
                match producer.send("crash", Message::new(body.clone())).await {
                    Ok(sent) => {
                        acked.lock().unwrap().insert(sent.msg_id, body);
                        progress.notify_one();
                    }
                    Err(_) => return,
                }
            }
        });
    }
    (tasks, acked, progress)
}

/// Waits until at least `n` messages were acknowledged.
async fn wait_acked(acked: &Acked, progress: &tokio::sync::Notify, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < n {
        tokio::select! {
            () = progress.notified() => {}
            () = tokio::time::sleep_until(deadline) => panic!("load made no progress"),
        }
    }
}

async fn kill9_cycles(flush: &str) {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&["--flush", flush]), "crash", 4).await;
    let mut all_acked: HashMap<MessageId, Bytes> = HashMap::new();
    // RELIABILITY.md F1: 5 cycles in CI (the count), 500 of >= 1,000 acked sends each
    // in a campaign run.
    let (cycles, per_cycle) = if campaign() { (500, 1000) } else { (5, 300) };
    for cycle in 0..cycles {
        let client = s.server.client_with(false, Duration::from_secs(3));
        let (mut tasks, acked, progress) = start_load(&client, 8, cycle);
        wait_acked(&acked, &progress, per_cycle).await;
        s.server.kill9();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        println!(
            "{flush} cycle {cycle}: {} acked before kill -9",
            acked.len()
        );
        all_acked.extend(acked);
        s.server.restart().expect("restart on the same port");
        let reader = s.server.client(false);
        let stored: HashMap<MessageId, Bytes> = read_all(&reader, "crash")
            .await
            .into_values()
            .flatten()
            .map(|m| (m.msg_id, m.body))
            .collect();
        let lost: Vec<_> = all_acked
            .keys()
            .filter(|id| !stored.contains_key(id))
            .collect();
        assert!(
            lost.is_empty(),
            "{flush} cycle {cycle}: {} acked messages lost, e.g. {}",
            lost.len(),
            lost[0]
        );
        for (id, body) in &all_acked {
            assert_eq!(&stored[id], body, "body of {id}");
        }
        reader.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_sync_load_loses_nothing_acked() {
    kill9_cycles("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_async_load_loses_nothing_acked() {
    kill9_cycles("async").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_and_loses_nothing() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "crash", 4).await;
    let client = s.server.client_with(false, Duration::from_secs(3));
    let (mut tasks, acked, progress) = start_load(&client, 8, 0);
    wait_acked(&acked, &progress, 300).await;
    let status = s.server.signal_and_wait(libc::SIGTERM).unwrap();
    assert!(status.success(), "SIGTERM exit status {status}");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    s.server.restart().unwrap();
    let stored: HashMap<MessageId, Bytes> = read_all(&s.server.client(false), "crash")
        .await
        .into_values()
        .flatten()
        .map(|m| (m.msg_id, m.body))
        .collect();
    for (id, body) in &acked {
        assert_eq!(stored.get(id), Some(body), "acked {id} lost after SIGTERM");
    }
}
