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

/// A varint as postcard writes it.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A `msg.send` body of about `bytes` bytes that decodes into many tiny elements: one
/// message with only empty keys (`keys`), or only empty messages.
fn amplifying_send(bytes: usize, keys: bool) -> bytes::Bytes {
    let mut out = Vec::with_capacity(bytes + 16);
    varint(&mut out, 4);
    out.extend_from_slice(b"good");
    varint(&mut out, 0); // queue 0
    // An empty message: no id, no tag, no keys, no properties, empty body, born 0, crc 0.
    let empty_msg = [0u8; 7];
    if keys {
        varint(&mut out, 1);
        out.extend_from_slice(&[0, 0]); // no id, no tag
        let n_keys = bytes - out.len() - 8;
        varint(&mut out, n_keys as u64);
        out.resize(out.len() + n_keys, 0); // every key empty
        out.extend_from_slice(&[0, 0, 0, 0]); // no properties, empty body, born, crc
    } else {
        let n_msgs = (bytes - out.len() - 4) / empty_msg.len();
        varint(&mut out, n_msgs as u64);
        for _ in 0..n_msgs {
            out.extend_from_slice(&empty_msg);
        }
    }
    bytes::Bytes::from(out)
}

/// Peak resident memory of a process, from `/proc/<pid>/status` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_refused_while_memory_stays_bounded() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "good", 1).await;
    let frame_bytes = 20 << 20;
    let frames = [
        amplifying_send(frame_bytes, true),
        amplifying_send(frame_bytes, false),
    ];
    // Two hostile connections, five worst-case frames each, all at once.
    let mut hostile = Vec::new();
    for conn_idx in 0..2 {
        let client = fresh_client(&s.server);
        let conn = client.connection(&s.server.addr).unwrap();
        for frame_idx in 0..5 {
            let conn = conn.clone();
            let body = frames[(conn_idx + frame_idx) % 2].clone();
            hostile.push(tokio::spawn(async move {
                let started = Instant::now();
                let result = conn
                    .call(
                        quiver_proto::RequestCode::MsgSend,
                        body,
                        Duration::from_secs(60),
                    )
                    .await;
                (started.elapsed(), result)
            }));
        }
    }
    // Meanwhile a well-behaved client's sends keep succeeding.
    let producer = Producer::new(fresh_client(&s.server));
    for i in 0..100 {
        producer
            .send("good", Message::new(format!("good {i}")))
            .await
            .unwrap();
    }
    let mut codes = Vec::new();
    for frame in hostile {
        let (took, result) = frame.await.unwrap();
        let err = result.expect_err("a hostile frame is refused");
        let code = err
            .code()
            .unwrap_or_else(|| panic!("no error code after {took:?}: {err}"));
        codes.push((code.name(), took.as_millis()));
    }
    let peak = peak_rss(s.server.pid());
    println!(
        "hostile frames refused with {codes:?}; broker peak RSS {} MiB",
        peak >> 20
    );
    assert!(peak < 300 << 20, "broker peak RSS {} MiB", peak >> 20);
    let stored = PullConsumer::new(s.client.clone())
        .offsets("good")
        .await
        .unwrap()[0]
        .max_offset;
    assert_eq!(stored, 100, "only the good sends are stored");
}
