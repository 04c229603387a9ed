//! A long-poll longer than the request timeout: the pull's deadline is its wait plus the
//! timeout, so it returns empty when its wait is over; and a request that does time out
//! cancels its own stream only: the connection the pull and 100 concurrent senders share stays
//! up throughout (no send fails).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quiver_client::{Admin, ClientError, Message, Producer, PullConsumer};
use quiver_net::NetError;
use quiver_proto::RequestCode;
use quiver_proto::requests::msg::{PullRequest, PullResponse};
use quiver_tests::harness::{Spec, serial};

use crate::setup;

/// The client's request timeout, shorter than the wait (the default 10 s would do too, slower).
const TIMEOUT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(15);
const SENDERS: usize = 100;
/// A request deadline shorter than its wait, to time one out on purpose.
const SHORT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_outlives_the_request_timeout_beside_concurrent_sends() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "busy", 4).await;
    Admin::new(s.client.clone())
        .create_topic("idle", 1)
        .await
        .unwrap();
    // One client for the pull and every send, so they share one connection.
    let client = s.server.client_with(true, TIMEOUT);
    let producer = Arc::new(Producer::new(client.clone()));
    producer
        .send("busy", Message::new("warm-up"))
        .await
        .unwrap();
    let consumer = PullConsumer::new(client.clone());
    let idle = consumer.queues("idle").await.unwrap().remove(0);

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (producer, stop, sent, failed) =
            (producer.clone(), stop.clone(), sent.clone(), failed.clone());
        senders.spawn(async move {
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match producer
                    .send("busy", Message::new(format!("{sender}-{i}")))
                    .await
                {
                    Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        eprintln!("send {sender}-{i} failed: {err}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
    }

    let started = Instant::now();
    let long_poll = tokio::spawn(async move {
        let pulled = consumer.pull(&idle, 0, 32, WAIT).await;
        (pulled, started.elapsed())
    });
    // Meanwhile a request times out on the same connection: it cancels its own stream only.
    let short = PullRequest {
        topic: "idle".into(),
        queue_id: 0,
        offset: 0,
        max_msgs: 1,
        max_bytes: 1 << 20,
        wait_ms: 3_000,
    };
    let timed_out = client
        .call_within::<_, PullResponse>(&s.server.addr, RequestCode::MsgPull, &short, SHORT)
        .await;
    assert!(
        matches!(timed_out, Err(ClientError::Net(NetError::Timeout { .. }))),
        "{timed_out:?}"
    );
    let (pulled, took) = long_poll.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    while senders.join_next().await.transpose().unwrap().is_some() {}
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "long-poll of {WAIT:?} (timeout {TIMEOUT:?}) returned after {took:?}; {sent} sends beside it, {failed} failed"
    );
    let pulled = pulled.expect("the long-poll answers");
    assert!(pulled.messages.is_empty(), "nothing was sent to idle");
    assert!(
        took >= WAIT - Duration::from_millis(100) && took < WAIT + TIMEOUT,
        "the long-poll returned after {took:?}, not after its wait of {WAIT:?}"
    );
    assert_eq!(failed, 0, "no send failed beside the long-poll");
    assert!(sent >= SENDERS as u64, "every sender sent: {sent}");
}
