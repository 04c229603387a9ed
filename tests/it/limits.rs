//! Bounded resources per peer and overall: connections, long-polls, request bytes.

use std::time::{Duration, Instant};

use quiver_client::{Client, ClientOptions, Message, Producer, PullConsumer};
use quiver_tests::harness::{Server, Spec, serial};

use crate::setup;

fn fresh_client(server: &Server) -> Client {
    let mut options = ClientOptions::new(server.addr.clone(), server.tls_dir().join("ca.pem"));
    options.timeout = Duration::from_secs(3);
    Client::new(options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_past_the_limit_are_answered_at_once() {
    let _serial = serial();
    let spec = Spec::standalone(&[]).env("QUIVER_BROKER__LONG_POLLS_MAX", "2");
    let s = setup(spec, "polls", 1).await;
    let consumer = PullConsumer::new(s.client.clone());
    let queue = consumer.queues("polls").await.unwrap().remove(0);
    let wait = Duration::from_secs(30);
    let started = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..3 {
        let consumer = PullConsumer::new(s.client.clone());
        let queue = queue.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let response = consumer.pull(&queue, 0, 1, wait).await.unwrap();
            let _ = done.send((started.elapsed(), response.messages.len()));
        });
    }
    // Two pulls take the two slots and wait; the third is answered at once, empty.
    let (early, n_msgs) = tokio::time::timeout(wait / 2, done_rx.recv())
        .await
        .expect("a pull past the limit does not wait")
        .unwrap();
    println!("a pull past the long-poll limit returned after {early:?}");
    assert_eq!(n_msgs, 0);
    // A message wakes the two waiting ones.
    Producer::new(s.client.clone())
        .send("polls", Message::new("wake"))
        .await
        .unwrap();
    for _ in 0..2 {
        let (_, n_msgs) = tokio::time::timeout(wait, done_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n_msgs, 1, "a waiting pull gets the message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused() {
    let _serial = serial();
    let spec = Spec::standalone(&[]).env("QUIVER_LIMITS__CONNECTIONS_MAX", "2");
    let s = setup(spec, "conns", 1).await;
    let second = fresh_client(&s.server);
    Producer::new(second.clone())
        .send("conns", Message::new("two"))
        .await
        .unwrap();
    let third = fresh_client(&s.server);
    let err = Producer::new(third.clone())
        .send("conns", Message::new("three"))
        .await
        .unwrap_err();
    println!("third connection: {err}");
    second.close().await;
    // The freed slot is taken by the next connection attempt.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let retry = fresh_client(&s.server);
        match Producer::new(retry)
            .send("conns", Message::new("later"))
            .await
        {
            Ok(_) => break,
            Err(err) => assert!(Instant::now() < deadline, "never admitted: {err}"),
        }
    }
    let stored = PullConsumer::new(s.client.clone())
        .offsets("conns")
        .await
        .unwrap()[0]
        .max_offset;
    assert_eq!(stored, 2, "the refused connection stored nothing");
}
