//! Delayed-message timers in the index: armed by a scheduled record, ended by its
//! delivery, and rebuilt from the log the same way (a replay never re-arms a delivered one).

use super::super::index::timers::{PROP_REAL_QUEUE, PROP_REAL_TOPIC, PROP_TIMER, SCHEDULE_TOPIC};
use super::*;

fn scheduled(due_ms: u64) -> SendMessage {
    let mut msg = SendMessage::new(None, Bytes::from_static(b"later"), 1);
    msg.properties = vec![
        (
            quiver_proto::message::PROP_DELIVER_AT.into(),
            due_ms.to_string(),
        ),
        (PROP_REAL_TOPIC.into(), "t".into()),
        (PROP_REAL_QUEUE.into(), "0".into()),
    ];
    msg
}

#[tokio::test]
async fn a_delivered_timer_stays_ended_through_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let (store, _) = open(&storage, dir.path());
    store.create_topic("t", 1).unwrap();
    store.create_topic(SCHEDULE_TOPIC, 1).unwrap();
    store
        .append(SCHEDULE_TOPIC, 0, vec![scheduled(5_000), scheduled(9_000)])
        .await
        .unwrap();
    store.catch_up().await.unwrap();
    let first = store.first_timer().unwrap().expect("armed");
    assert_eq!(first.due_ms, 5_000);
    let record = store.read_record(first.pos, first.size).unwrap();
    assert_eq!(&record.body[..], b"later");

    // Deliver the first: its timer ends, the second is next.
    let mut delivered = SendMessage::new(Some(record.msg_id), record.body.clone(), 1);
    delivered.properties = vec![(PROP_TIMER.into(), first.pos.to_string())];
    store.append("t", 0, vec![delivered]).await.unwrap();
    store.catch_up().await.unwrap();
    assert_eq!(store.first_timer().unwrap().unwrap().due_ms, 9_000);
    drop(store);

    // The index rebuilt from the log agrees.
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    let (store, report) = open(&storage, dir.path());
    assert_eq!(report.replayed, 3);
    let next = store.first_timer().unwrap().unwrap();
    assert_eq!(
        next.due_ms, 9_000,
        "the delivered timer is not re-armed by the replay"
    );
}
