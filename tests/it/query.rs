//! Lookups by id and key, including a retried send (two stored copies of one id).

use quiver_client::{Admin, ErrorCode, Message, Producer};
use quiver_tests::harness::{Spec, serial};

use crate::setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_by_id_and_key_find_every_copy() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "lookup", 4).await;
    let producer = Producer::new(s.client.clone());
    let admin = Admin::new(s.client.clone());
    // A retry after a lost acknowledgement re-sends the same id: both copies are stored.
    let first = producer
        .send("lookup", Message::new("order 7 paid").with_key("order-7"))
        .await
        .unwrap();
    let retry = producer
        .send_with_id(
            "lookup",
            first.msg_id,
            Message::new("order 7 paid").with_key("order-7"),
        )
        .await
        .unwrap();
    assert_eq!(retry.msg_id, first.msg_id);
    for i in 0..20 {
        producer
            .send(
                "lookup",
                Message::new(format!("other {i}")).with_key(format!("order-{}", 100 + i)),
            )
            .await
            .unwrap();
    }
    let copies = admin.query_id("lookup", first.msg_id).await.unwrap();
    assert_eq!(copies.len(), 2, "both stored copies of the retried id");
    assert!(
        copies
            .iter()
            .all(|m| m.msg_id == first.msg_id && m.body == "order 7 paid".as_bytes())
    );
    let placed: Vec<(u32, u64)> = copies.iter().map(|m| (m.queue_id, m.offset)).collect();
    assert!(
        placed.contains(&(first.queue.queue_id, first.offset))
            && placed.contains(&(retry.queue.queue_id, retry.offset))
    );

    let by_key = admin
        .query_key("lookup", "order-7", None, None, 10)
        .await
        .unwrap();
    assert_eq!(by_key.len(), 2);
    let stored_ms = by_key[0].stored_ms;
    let in_range = admin
        .query_key(
            "lookup",
            "order-7",
            Some(stored_ms),
            Some(stored_ms + 60_000),
            10,
        )
        .await
        .unwrap();
    assert_eq!(in_range.len(), 2);
    let err = admin
        .query_key("lookup", "order-7", Some(stored_ms + 60_000), None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MessageNotFound));
    assert_eq!(
        admin
            .query_key("lookup", "order-105", None, None, 10)
            .await
            .unwrap()[0]
            .body,
        "other 5".as_bytes()
    );
    let err = admin
        .query_key("lookup", "nobody", None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MessageNotFound));
    let err = admin.query_id("nope", first.msg_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound));
}
