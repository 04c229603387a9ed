//! Shutdown is bounded: a client that stops reading its answer cannot hold SIGTERM past the
//! drain deadline, and the store is still synced and closed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use quiver_client::{Message, Producer};
use quiver_proto::requests::msg::PullRequest;
use quiver_proto::{RequestCode, encode_body};
use quiver_tests::harness::{Spec, serial};

use crate::setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_cannot_hold_shutdown() {
    let _serial = serial();
    let drain = Duration::from_secs(1);
    let spec = Spec::standalone(&[]).env("QUIVER_LIMITS__DRAIN_TIMEOUT", "1s");
    let mut s = setup(spec, "drain", 1).await;
    let producer = Producer::new(s.client.clone());
    // 24 MiB in the queue: more than one stream's flow-control window (16 MiB).
    for _ in 0..24 {
        let batch = (0..4).map(|_| Message::new(vec![7u8; 256 << 10])).collect();
        producer.send_batch("drain", batch).await.unwrap();
    }
    let conn = s.client.connection(&s.server.addr).unwrap();
    let pull = PullRequest {
        topic: "drain".into(),
        queue_id: 0,
        offset: 0,
        max_msgs: 10_000,
        max_bytes: 32 << 20,
        wait_ms: 0,
    };
    let unread = conn
        .call_unread(RequestCode::MsgPull, Bytes::from(encode_body(&pull)))
        .await
        .unwrap();
    let started = Instant::now();
    let mut server = s.server;
    let stopping = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait(libc::SIGTERM).unwrap();
        (server, status)
    });
    // Honest deadline: 10x the drain timeout.
    let (server, status) = tokio::time::timeout(drain * 10, stopping)
        .await
        .expect("the broker exits within 10x its drain deadline")
        .unwrap();
    s.server = server;
    let took = started.elapsed();
    println!("SIGTERM to exit with an unread 24 MiB answer: {took:?} (drain {drain:?})");
    drop(unread);
    assert!(status.success(), "{status:?}");
    let log = s.server.log_tail();
    assert!(
        log.contains("outlived the drain deadline") && log.contains("stopped"),
        "{log}"
    );
    // Synced and closed: the next start replays nothing and cuts nothing.
    s.server.restart().unwrap();
    let log = s.server.log_tail();
    let opened = log
        .lines()
        .rfind(|line| line.contains("store opened"))
        .map(without_colors)
        .unwrap();
    assert!(
        opened.contains("replayed=0") && opened.contains("truncated_bytes=0"),
        "{opened}"
    );
}

/// A log line without its ANSI colour codes.
fn without_colors(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_escape = false;
    for ch in line.chars() {
        match (in_escape, ch) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, ch) => out.push(ch),
        }
    }
    out
}
