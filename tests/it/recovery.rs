//! Index rebuild from the log, retention, configuration layering.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use quiver_client::{Admin, ErrorCode, Message, Producer, PullConsumer};
use quiver_tests::harness::{Spec, bin, serial};

use crate::{read_all, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_index_loses_nothing() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "rebuild", 4).await;
    let producer = Producer::new(s.client.clone());
    let mut sent = HashMap::new();
    for i in 0..300 {
        let msg = Message::new(format!("m{i}"))
            .with_key(format!("key-{}", i % 30))
            .with_tag("t");
        let result = producer.send("rebuild", msg).await.unwrap();
        sent.insert(result.msg_id, format!("m{i}"));
    }
    let before = read_all(&s.client, "rebuild").await;
    s.server.signal_and_wait(libc::SIGTERM).unwrap();
    std::fs::remove_file(s.server.data_dir.join("index.redb")).unwrap();
    s.server.restart().unwrap();
    let client = s.server.client(false);
    assert_eq!(
        read_all(&client, "rebuild").await,
        before,
        "pull returns everything"
    );
    let admin = Admin::new(client.clone());
    for (id, body) in &sent {
        let found = admin.query_id("rebuild", *id).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].body, body.as_bytes());
    }
    for k in 0..30 {
        let found = admin
            .query_key("rebuild", &format!("key-{k}"), None, None, 100)
            .await
            .unwrap();
        assert_eq!(found.len(), 10, "key-{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_the_oldest_segments() {
    let _serial = serial();
    let check_ms = 100;
    let spec = Spec::standalone(&[])
        .env("QUIVER_STORE__SEGMENT_BYTES", "8KiB")
        .env("QUIVER_STORE__RETENTION_BYTES", "24KiB")
        .env("QUIVER_STORE__RETENTION_CHECK", &format!("{check_ms}ms"));
    let s = setup(spec, "retained", 1).await;
    let producer = Producer::new(s.client.clone());
    let first = producer
        .send("retained", Message::new("x".repeat(900)).with_key("oldest"))
        .await
        .unwrap();
    for _ in 0..99 {
        producer
            .send("retained", Message::new("x".repeat(900)))
            .await
            .unwrap();
    }
    let consumer = PullConsumer::new(s.client.clone());
    let queue = consumer.queues("retained").await.unwrap().remove(0);
    // Retention runs every 100 ms: wait up to 100x that for the minimum offset to rise.
    let started = Instant::now();
    let min = loop {
        let min = consumer.offsets("retained").await.unwrap()[0].min_offset;
        if min > 0 {
            break min;
        }
        assert!(
            started.elapsed() < Duration::from_millis(100 * check_ms),
            "retention never ran"
        );
        // Wait for the next retention pass by long-polling the (idle) queue end.
        let _ = consumer
            .pull(&queue, 100, 1, Duration::from_millis(check_ms))
            .await;
    };
    println!(
        "retention removed offsets below {min} after {:?}",
        started.elapsed()
    );
    let offsets = consumer.offsets("retained").await.unwrap().remove(0);
    assert_eq!(offsets.max_offset, 100);
    let err = consumer
        .pull(&queue, 0, 1, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OffsetRemoved), "{err}");
    let admin = Admin::new(s.client.clone());
    let err = admin.query_id("retained", first.msg_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MessageRemoved), "{err}");
    let err = admin
        .query_key("retained", "oldest", None, None, 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("retention"), "{err}");
    // A retention pass removes segments one by one; read from the queue's start as it
    // stands, and again if a pass moved it meanwhile.
    let deadline = Instant::now() + Duration::from_millis(100 * check_ms);
    loop {
        let start = consumer.offsets("retained").await.unwrap()[0].min_offset;
        assert!(start >= min);
        match consumer.pull(&queue, start, 1000, Duration::ZERO).await {
            Ok(left) => {
                assert_eq!(left.messages.len() as u64, 100 - start);
                assert_eq!(left.messages[0].offset, start);
                break;
            }
            Err(err)
                if err.code() == Some(ErrorCode::OffsetRemoved) && Instant::now() < deadline => {}
            Err(err) => panic!("pull from the queue start failed: {err}"),
        }
    }
}

#[test]
fn print_config_shows_a_file_value_overridden_by_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.toml");
    std::fs::write(
        &file,
        "[broker]\nname = \"from-file\"\n\n[store]\nflush = \"sync\"\nsegment_bytes = \"64 MiB\"\n",
    )
    .unwrap();
    let output = Command::new(bin("quiver-broker"))
        .args(["--config"])
        .arg(&file)
        .arg("--print-config")
        .env("QUIVER_STORE__FLUSH", "async")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("name = \"from-file\""), "{text}");
    assert!(
        text.contains("flush = \"async\""),
        "env overrides the file:\n{text}"
    );
    assert!(text.contains("64"), "file value kept:\n{text}");
    // A bad value names its source.
    let output = Command::new(bin("quiver-broker"))
        .args(["--print-config"])
        .env("QUIVER_STORE__FLUSH", "sometimes")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("QUIVER_") && err.contains("sometimes") && err.contains("FLUSH"),
        "{err}"
    );
}
