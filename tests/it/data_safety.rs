//! Data never goes backwards or vanishes: a queue that retention emptied keeps its offsets
//! across a restart; a corrupt sealed segment stops the broker until an explicit repair.

use std::process::Command;
use std::time::{Duration, Instant};

use quiver_client::{Admin, Message, Producer};
use quiver_tests::harness::{Server, Spec, bin, serial};

use crate::{read_all, setup};

async fn queue_zero(admin: &Admin, topic: &str) -> (u64, u64) {
    let described = admin.describe_topic(topic).await.unwrap();
    let queue = &described[0].description.queues[0];
    (queue.min_offset, queue.max_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_emptied_by_retention_restarts_at_its_old_end() {
    let _serial = serial();
    let check_ms = 100;
    let spec = Spec::standalone(&[])
        .env("QUIVER_STORE__SEGMENT_BYTES", "8KiB")
        .env("QUIVER_STORE__RETENTION_BYTES", "24KiB")
        .env("QUIVER_STORE__RETENTION_CHECK", &format!("{check_ms}ms"));
    let mut s = setup(spec, "emptied", 1).await;
    let admin = Admin::new(s.client.clone());
    admin.create_topic("filler", 1).await.unwrap();
    let producer = Producer::new(s.client.clone());
    for i in 0..5 {
        producer
            .send("emptied", Message::new(format!("early {i}")))
            .await
            .unwrap();
    }
    for _ in 0..100 {
        producer
            .send("filler", Message::new("f".repeat(900)))
            .await
            .unwrap();
    }
    // Retention runs every 100 ms: wait up to 100x that for the queue to empty.
    let started = Instant::now();
    while queue_zero(&admin, "emptied").await != (5, 5) {
        assert!(
            started.elapsed() < Duration::from_millis(100 * check_ms),
            "retention never emptied the queue: {:?}",
            queue_zero(&admin, "emptied").await
        );
        tokio::task::yield_now().await;
    }
    println!("queue emptied by retention after {:?}", started.elapsed());
    s.server.signal_and_wait(libc::SIGTERM).unwrap();
    s.server.restart().unwrap();
    let client = s.server.client(true);
    let admin = Admin::new(client.clone());
    assert_eq!(
        queue_zero(&admin, "emptied").await,
        (5, 5),
        "topic describe after the restart: min = max = the old end"
    );
    let sent = Producer::new(client)
        .send("emptied", Message::new("after restart"))
        .await
        .unwrap();
    assert_eq!(sent.offset, 5, "offsets continue, never repeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_sealed_segment_stops_the_broker_until_repaired() {
    let _serial = serial();
    let spec = Spec::standalone(&[]).env("QUIVER_STORE__SEGMENT_BYTES", "8KiB");
    let mut s = setup(spec.clone(), "fragile", 1).await;
    let producer = Producer::new(s.client.clone());
    let mut acked = Vec::new();
    for i in 0..60 {
        let body = format!("{i:04}{}", "b".repeat(896));
        acked.push(producer.send("fragile", Message::new(body)).await.unwrap());
    }
    s.server.signal_and_wait(libc::SIGTERM).unwrap();
    let data = s.server.data_dir.clone();
    let log_dir = data.join("log");
    let first = log_dir.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    // Every record has the same length (bytes 0..4 of a record, docs/store.md).
    let record_len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let in_first = (bytes.len() / record_len) as u64;
    assert_eq!(bytes.len() % record_len, 0);
    let bad = 2 * record_len + 500; // inside the third record
    bytes[bad] ^= 0x20;
    std::fs::write(&first, &bytes).unwrap();
    // Without the index, opening replays (and so checks) the whole log.
    std::fs::remove_file(data.join("index.redb")).unwrap();
    let sizes = || {
        let mut sizes: Vec<(String, u64)> = std::fs::read_dir(&log_dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let len = entry.metadata().unwrap().len();
                (entry.file_name().to_string_lossy().into_owned(), len)
            })
            .collect();
        sizes.sort();
        sizes
    };
    let before = sizes();

    let err = Server::start(&spec, &data)
        .err()
        .expect("the broker refuses");
    let text = format!("{err:#}");
    assert!(
        text.contains("00000000000000000000.log is corrupt at byte")
            && text.contains("quiver-broker repair"),
        "{text}"
    );
    assert_eq!(sizes(), before, "no log file changed");

    let repair = |yes: bool| {
        let mut command = Command::new(bin("quiver"));
        command
            .args(["standalone", "repair", "--data-dir"])
            .arg(&data);
        if yes {
            command.arg("--yes");
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plan = repair(false);
    assert!(
        plan.contains("cut 00000000000000000000.log") && plan.contains("--yes"),
        "{plan}"
    );
    assert_eq!(sizes(), before, "a dry run changes nothing");
    let done = repair(true);
    assert!(done.contains("quarantined"), "{done}");
    let quarantined = std::fs::read_dir(data.join("quarantine")).unwrap().count();
    assert_eq!(quarantined, 1);

    s.server = Server::start(&spec, &data).expect("the repaired broker starts");
    let client = s.server.client(true);
    let stored: Vec<u64> = read_all(&client, "fragile")
        .await
        .into_values()
        .flatten()
        .map(|msg| msg.offset)
        .collect();
    // Kept: the two whole records before the bad one, and every later segment.
    let expected: Vec<u64> = (0..2).chain(in_first..acked.len() as u64).collect();
    assert_eq!(stored, expected);
    let next = Producer::new(client)
        .send("fragile", Message::new("after repair"))
        .await
        .unwrap();
    assert_eq!(next.offset, acked.len() as u64, "no offset is reused");
}
