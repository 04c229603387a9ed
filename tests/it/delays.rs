//! Delayed messages: stored in the schedule topic, delivered to their queue when due, never
//! early, never twice, also across a `kill -9` of the broker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quiver_client::{ErrorCode, Message, MessageId, Producer};
use quiver_tests::harness::{Spec, serial};

use crate::{read_all, setup};

const DEADLINE: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_arrive_when_due_once_across_a_kill9() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "later", 2).await;
    let producer = Producer::new(s.client.clone());
    // id → due time.
    let mut due: BTreeMap<MessageId, u64> = BTreeMap::new();
    for i in 0..40u64 {
        let at = now_ms() + 300 + i * 40;
        let sent = producer
            .send("later", Message::new(format!("d{i}")).with_delivery_at(at))
            .await
            .unwrap();
        due.insert(sent.msg_id, at);
    }
    // Not delivered yet.
    let early: usize = read_all(&s.client, "later")
        .await
        .values()
        .map(Vec::len)
        .sum();
    assert!(
        early < due.len(),
        "{early} of {} delivered at once",
        due.len()
    );

    // A crash while some are due and some are not; the broker stays down past the due
    // time of several more (the 10th falls due 400 ms after the first send's 300 ms).
    let mut times: Vec<u64> = due.values().copied().collect();
    times.sort_unstable();
    let down_until = times[10].max(now_ms() + 100);
    let killed_at = now_ms();
    s.server
        .restart_after_downtime(Duration::from_millis(
            down_until.saturating_sub(killed_at) + 50,
        ))
        .unwrap();
    let back_at = now_ms();
    let due_while_down = due
        .values()
        .filter(|at| (killed_at..back_at).contains(*at))
        .count();
    assert!(
        due_while_down > 0,
        "no message fell due while the broker was down"
    );
    let client = s.server.client(true);
    let started = Instant::now();
    let delivered = loop {
        let all = read_all(&client, "later").await;
        let msgs: Vec<_> = all.into_values().flatten().collect();
        if msgs.len() >= due.len() {
            break msgs;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{} of {} delivered",
            msgs.len(),
            due.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut seen: BTreeMap<MessageId, usize> = BTreeMap::new();
    let mut late = Vec::new();
    for msg in &delivered {
        *seen.entry(msg.msg_id).or_default() += 1;
        let at = due[&msg.msg_id];
        assert!(
            msg.stored_ms >= at,
            "{} delivered {} ms early",
            msg.msg_id,
            at - msg.stored_ms
        );
        late.push(msg.stored_ms - at);
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a delayed message was delivered twice"
    );
    assert_eq!(seen.len(), due.len());
    late.sort_unstable();
    eprintln!(
        "delayed delivery, lateness over {} messages ({due_while_down} fell due while the broker was down after a kill -9): p50 {} ms, p99 {} ms, max {} ms",
        late.len(),
        late[late.len() / 2],
        late[late.len() * 99 / 100],
        late[late.len() - 1]
    );
    // Nothing more arrives later (no second delivery after the timers ended).
    let store = client.clone();
    let again: usize = read_all(&store, "later").await.values().map(Vec::len).sum();
    assert_eq!(again, due.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_delays_are_refused() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "soon", 1).await;
    let producer = Producer::new(s.client.clone());
    let far = now_ms() + 41 * 24 * 3600 * 1000;
    let err = producer
        .send("soon", Message::new("x").with_delivery_at(far))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("40 days"), "{err}");
    let mixed = vec![
        Message::new("a").with_delay(Duration::from_secs(60)),
        Message::new("b"),
    ];
    let err = producer.send_batch("soon", mixed).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    // A time already past is delivered at once.
    producer
        .send("soon", Message::new("now").with_delivery_at(1))
        .await
        .unwrap();
    let got: usize = read_all(&s.client, "soon")
        .await
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(got, 1);
}
