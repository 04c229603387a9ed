//! Consumer groups end to end, on a standalone with a short group session: members share
//! the queues, a leave moves them at once, every message is handled, offsets survive a
//! broker restart, conflicting subscriptions are refused, and the broker's tag filter
//! shows in the pull replies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quiver_client::{
    Admin, Client, ErrorCode, GroupConsumer, GroupOptions, GroupStart, Message, MessageId, Producer,
};
use quiver_proto::RequestCode;
use quiver_proto::requests::group::{
    GroupHeartbeat, GroupHeartbeatResponse, GroupPull, GroupPullResponse, StartFrom, Subscription,
};
use quiver_tests::harness::{Spec, serial};

use crate::member::Member;
use crate::setup;

/// The brokers' group session (members heartbeat every third of it).
const SESSION: Duration = Duration::from_millis(600);
/// Liveness deadline: far beyond the session.
const DEADLINE: Duration = Duration::from_secs(20);

fn spec() -> Spec {
    Spec::standalone(&[]).env("QUIVER_BROKER__GROUP_SESSION", "600ms")
}

fn options(group: &str, topic: &str, tags: &str) -> GroupOptions {
    let mut options = GroupOptions::new(group, topic, tags);
    options.start = GroupStart::First;
    options.heartbeat = Duration::from_millis(100);
    options.auto_commit = Some(Duration::from_millis(100));
    options.pull_wait = Duration::from_millis(500);
    options
}

async fn send(
    client: &Client,
    topic: &str,
    n: usize,
    tag: impl Fn(usize) -> &'static str,
) -> BTreeSet<MessageId> {
    let producer = Producer::new(client.clone());
    let mut ids = BTreeSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let batch = chunk
            .iter()
            .map(|i| Message::new(format!("m{i}")).with_tag(tag(*i)))
            .collect();
        for result in producer.send_batch(topic, batch).await.unwrap() {
            ids.insert(result.msg_id);
        }
    }
    ids
}

/// Waits until `check` holds, printing how long it took; fails past the deadline.
async fn until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    eprintln!("{what}: {took:?}");
    took
}

/// Polls `consumer` until it has handled `want` distinct messages or the deadline passes.
async fn drain(
    consumers: &[&GroupConsumer],
    want: &BTreeSet<MessageId>,
) -> BTreeMap<MessageId, usize> {
    let mut seen: BTreeMap<MessageId, usize> = BTreeMap::new();
    let started = Instant::now();
    while !want.iter().all(|id| seen.contains_key(id)) {
        assert!(
            started.elapsed() < DEADLINE,
            "handled {} of {} messages within {DEADLINE:?}",
            want.iter().filter(|id| seen.contains_key(id)).count(),
            want.len()
        );
        for consumer in consumers {
            for delivery in consumer.poll(Duration::from_millis(50)).await.unwrap() {
                *seen.entry(delivery.message.msg_id).or_default() += 1;
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_queues_and_a_leave_moves_them_at_once() {
    let _serial = serial();
    let s = setup(spec(), "orders", 8).await;
    let a = GroupConsumer::start(s.client.clone(), options("billing", "orders", "*"))
        .await
        .unwrap();
    until("a lone member holds every queue", || {
        a.assigned().len() == 8
    })
    .await;
    let b = GroupConsumer::start(s.client.clone(), options("billing", "orders", "*"))
        .await
        .unwrap();
    let join = until("a join splits the queues", || {
        let (qa, qb) = (a.assigned(), b.assigned());
        qa.len() == 4 && qb.len() == 4 && qa.iter().all(|q| !qb.contains(q))
    })
    .await;
    eprintln!("rebalance after a join: {join:?} (group session {SESSION:?})");

    let sent = send(&s.client, "orders", 2000, |_| "t").await;
    let seen = drain(&[&a, &b], &sent).await;
    assert_eq!(seen.len(), 2000);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        duplicates, 0,
        "no rebalance happened, so nothing is handled twice"
    );

    b.close().await.unwrap();
    let leave = until("a leave hands every queue to the other member", || {
        a.assigned().len() == 8
    })
    .await;
    eprintln!("rebalance after a leave: {leave:?}");
    let more = send(&s.client, "orders", 500, |_| "t").await;
    let seen = drain(&[&a], &more).await;
    assert_eq!(
        seen.len(),
        500,
        "only the new messages: b committed what it handled"
    );
    a.commit().await.unwrap();

    let views = Admin::new(s.client.clone())
        .describe_group("billing")
        .await
        .unwrap();
    let info = &views[0].info;
    assert_eq!(info.members.len(), 1);
    let committed: u64 = info.queues.iter().map(|q| q.committed.unwrap_or(0)).sum();
    assert_eq!(committed, 2500, "{:?}", info.queues);
    assert!(
        info.queues
            .iter()
            .all(|q| q.lag == 0 && q.holder.as_deref() == Some(a.member()))
    );
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_where_it_committed_after_a_broker_restart() {
    let _serial = serial();
    let mut s = setup(spec(), "events", 2).await;
    let first = send(&s.client, "events", 100, |_| "t").await;
    let a = GroupConsumer::start(s.client.clone(), options("audit", "events", "*"))
        .await
        .unwrap();
    drain(&[&a], &first).await;
    a.close().await.unwrap();
    let epochs_before: Vec<u64> = Admin::new(s.client.clone())
        .describe_group("audit")
        .await
        .unwrap()[0]
        .info
        .queues
        .iter()
        .map(|q| q.committed.unwrap())
        .collect();
    assert_eq!(epochs_before.iter().sum::<u64>(), 100);

    s.server.restart().unwrap();
    let client = s.server.client(true);
    let second = send(&client, "events", 40, |_| "t").await;
    let b = GroupConsumer::start(client.clone(), options("audit", "events", "*"))
        .await
        .unwrap();
    let seen = drain(&[&b], &second).await;
    // Nothing of the first 100 again: the restarted broker kept the offsets.
    let extra = b.poll(Duration::from_millis(300)).await.unwrap();
    assert!(
        extra.is_empty(),
        "re-delivered after restart: {}",
        extra.len()
    );
    assert!(seen.keys().all(|id| second.contains(id)));
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_subscription_is_refused_naming_both() {
    let _serial = serial();
    let s = setup(spec(), "payments", 2).await;
    let a = GroupConsumer::start(s.client.clone(), options("ledger", "payments", "paid"))
        .await
        .unwrap();
    let err = GroupConsumer::start(
        s.client.clone(),
        options("ledger", "payments", "refunded || paid"),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(err.code(), Some(ErrorCode::SubscriptionConflict));
    let text = err.to_string();
    assert!(
        text.contains("payments [paid]") && text.contains("payments [paid || refunded]"),
        "{text}"
    );
    let err = GroupConsumer::start(s.client.clone(), options("other", "payments", "a || "))
        .await
        .err()
        .expect("bad expression refused");
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tag_filter_runs_on_the_broker() {
    let _serial = serial();
    let s = setup(spec(), "mixed", 1).await;
    send(&s.client, "mixed", 300, |i| {
        if i % 3 == 0 { "keep" } else { "skip" }
    })
    .await;
    let addr = s.server.addr.clone();
    let beat = GroupHeartbeat {
        group: "filtered".into(),
        member: "m1".into(),
        client: "test".into(),
        subscriptions: vec![Subscription {
            topic: "mixed".into(),
            tags: "keep".into(),
        }],
        start: StartFrom::First,
    };
    let granted: GroupHeartbeatResponse = s
        .client
        .call(&addr, RequestCode::GroupHeartbeat, &beat)
        .await
        .unwrap();
    assert_eq!(granted.leases.len(), 1);
    let mut pull = GroupPull {
        group: "filtered".into(),
        member: "m1".into(),
        topic: "mixed".into(),
        queue_id: 0,
        epoch: granted.leases[0].epoch,
        offset: None,
        max_msgs: 1000,
        max_bytes: 1 << 20,
        wait_ms: 0,
    };
    let read: GroupPullResponse = s
        .client
        .call(&addr, RequestCode::GroupPull, &pull)
        .await
        .unwrap();
    assert_eq!(read.messages.len(), 100);
    assert!(
        read.messages
            .iter()
            .all(|m| m.tag.as_deref() == Some("keep"))
    );
    assert_eq!(read.filtered, 200, "the skipped messages were stepped over");
    assert_eq!(read.next_offset, 300);

    // A stale epoch is fenced.
    pull.epoch += 1;
    let err = s
        .client
        .call::<_, GroupPullResponse>(&addr, RequestCode::GroupPull, &pull)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::GroupFenced), "{err}");
}

/// Every member's printed ids, once each of `want` was printed by somebody.
async fn handled_by(members: &[&Member], want: &BTreeSet<MessageId>) {
    let want: BTreeSet<String> = want.iter().map(MessageId::to_string).collect();
    let started = Instant::now();
    loop {
        let seen: BTreeSet<String> = members
            .iter()
            .flat_map(|m| m.seen.lock().unwrap().clone())
            .collect();
        let missing = want.iter().filter(|id| !seen.contains(*id)).count();
        if missing == 0 {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{missing} of {} not handled within {DEADLINE:?}",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Queue → (holder, epoch) of `group`, from the broker.
async fn leases(client: &Client, group: &str) -> BTreeMap<u32, (Option<String>, u64)> {
    Admin::new(client.clone())
        .describe_group(group)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|v| v.info.queues)
        .map(|q| (q.queue_id, (q.holder, q.epoch)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_is_fenced_and_never_handles_a_moved_queue() {
    let _serial = serial();
    let s = setup(spec(), "stops", 4).await;
    let tls = s.server.tls_dir();
    let a = Member::start(&tls, &s.server.addr, "stoppers", "stops", 16);
    let b = Member::start(&tls, &s.server.addr, "stoppers", "stops", 16);
    let ids = |m: &Member| m.id.lock().unwrap().clone();
    until("both members print their ids", || {
        ids(&a).is_some() && ids(&b).is_some()
    })
    .await;
    let (a_id, b_id) = (ids(&a).unwrap(), ids(&b).unwrap());
    let started = Instant::now();
    loop {
        let held = leases(&s.client, "stoppers").await;
        let of = |id: &str| {
            held.values()
                .filter(|(h, _)| h.as_deref() == Some(id))
                .count()
        };
        if of(&a_id) == 2 && of(&b_id) == 2 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no even split: {held:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = send(&s.client, "stops", 400, |_| "t").await;
    handled_by(&[&a, &b], &first).await;

    // Freeze a past its session: b takes its queues, and handles what is sent meanwhile.
    let before = leases(&s.client, "stoppers").await;
    let a_leases: Vec<(u32, u64)> = before
        .iter()
        .filter(|(_, (h, _))| h.as_deref() == Some(a_id.as_str()))
        .map(|(q, (_, e))| (*q, *e))
        .collect();
    assert_eq!(a_leases.len(), 2);
    a.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let second = send(&s.client, "stops", 400, |_| "t").await;
    handled_by(&[&b], &second).await;
    eprintln!(
        "b handled everything sent while a was stopped, {:?} after SIGSTOP",
        stopped.elapsed()
    );
    let after = leases(&s.client, "stoppers").await;
    assert!(
        after
            .values()
            .all(|(h, _)| h.as_deref() == Some(b_id.as_str())),
        "{after:?}"
    );

    // a resumes: its old leases are fenced, and it never prints what b handled.
    a.signal(libc::SIGCONT);
    for (queue, epoch) in &a_leases {
        let commit = quiver_proto::requests::group::GroupCommit {
            group: "stoppers".into(),
            member: a_id.clone(),
            offsets: vec![quiver_proto::requests::group::OffsetCommit {
                topic: "stops".into(),
                queue_id: *queue,
                epoch: *epoch,
                offset: 0,
            }],
        };
        let err = s
            .client
            .call_raw(
                &s.server.addr,
                RequestCode::GroupCommit,
                bytes::Bytes::from(quiver_proto::encode_body(&commit)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::GroupFenced), "{err}");
    }
    let third = send(&s.client, "stops", 400, |_| "t").await;
    handled_by(&[&a, &b], &third).await;
    let second_ids: BTreeSet<String> = second.iter().map(MessageId::to_string).collect();
    let a_saw: Vec<String> = a.seen.lock().unwrap().clone();
    let overlap = a_saw.iter().filter(|id| second_ids.contains(*id)).count();
    assert_eq!(
        overlap, 0,
        "a printed messages of queues it lost while stopped"
    );
    let fenced_commits = a
        .errors
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("group.fenced"))
        .count();
    eprintln!("a's own commits refused after SIGCONT: {fenced_commits}");
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for id in a_saw.iter().chain(b.seen.lock().unwrap().iter()) {
        *count.entry(id.clone()).or_default() += 1;
    }
    let duplicates: usize = count.values().map(|n| n - 1).sum();
    eprintln!("duplicates: {duplicates} (bound: batch 16 x 2 queues)");
    assert!(duplicates <= 32, "{duplicates}");
}
