//! Consumer groups end to end, on a standalone with a short group session: members share
//! the queues, a leave moves them at once, every message is handled, offsets survive a
//! broker restart, conflicting subscriptions are refused, and the broker's tag filter
//! shows in the pull replies; a stopped member is fenced; push consumers, orderly and
//! concurrent, handle everything through failures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_client::group::HandlerFuture;
use quiver_client::{
    Admin, Client, Delivery, ErrorCode, GroupConsumer, GroupOptions, GroupStart, Message,
    MessageId, Outcome, Producer, PushConsumer, PushOptions,
};
use quiver_proto::RequestCode;
use quiver_proto::requests::group::{
    GroupHeartbeat, GroupHeartbeatResponse, GroupPull, GroupPullResponse, GroupSettings, StartFrom,
    Subscription,
};
use quiver_tests::harness::{Spec, serial};
use quiver_tests::history::{History, Reads, check};

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
async fn conflicting_subscriptions_bad_expressions_and_reserved_names_are_refused() {
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
    // Reserved names: `%` properties are the broker's.
    let err = Producer::new(s.client.clone())
        .send(
            "payments",
            Message::new("x").with_property("%RECONSUME", "1"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    assert!(!err.is_retryable());
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
        finishing: vec![],
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
    let admin = Admin::new(s.client.clone());
    let before = admin.read_stats(&addr).await.unwrap();
    let read: GroupPullResponse = s
        .client
        .call(&addr, RequestCode::GroupPull, &pull)
        .await
        .unwrap();
    let after = admin.read_stats(&addr).await.unwrap();
    assert_eq!(
        after.records_read - before.records_read,
        100,
        "only the matching records were read from the log"
    );
    assert_eq!(after.slots_scanned - before.slots_scanned, 300);
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

/// A deterministic "random" failure: about one attempt in `one_in` fails.
fn fails(body: &[u8], attempt: u64, one_in: u64) -> bool {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in body.iter().chain(&attempt.to_le_bytes()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash.is_multiple_of(one_in)
}

fn push_options(group: &str, topic: &str, orderly: bool) -> PushOptions {
    let mut options = PushOptions::new(options(group, topic, "*"));
    options.orderly = orderly;
    options.retry_delay = Duration::from_millis(2);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_push_keeps_every_keys_order_through_random_failures() {
    let _serial = serial();
    let s = setup(spec(), "ledger", 4).await;
    // key → sequence numbers handled successfully, in handling order.
    let handled: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let reads = Arc::new(Reads::new());
    let attempts: Arc<Mutex<BTreeMap<Vec<u8>, u64>>> = Arc::default();
    let handler = {
        let (handled, reads, attempts) = (handled.clone(), reads.clone(), attempts.clone());
        Arc::new(move |delivery: Delivery| -> HandlerFuture {
            let (handled, reads, attempts) = (handled.clone(), reads.clone(), attempts.clone());
            Box::pin(async move {
                let body = delivery.message.body.clone();
                let attempt = {
                    let mut attempts = attempts.lock().unwrap();
                    let n = attempts.entry(body.to_vec()).or_default();
                    *n += 1;
                    *n
                };
                if fails(&body, attempt, 10) {
                    return Outcome::Retry(Some(Duration::from_millis(1)));
                }
                let text = String::from_utf8(body.to_vec()).unwrap();
                let (key, seq) = text.split_once('/').unwrap();
                handled
                    .lock()
                    .unwrap()
                    .entry(key.to_owned())
                    .or_default()
                    .push(seq.parse().unwrap());
                let m = &delivery.message;
                reads.record(&delivery.queue, m.offset, m.msg_id, m.body.clone());
                Outcome::Success
            })
        }) as quiver_client::group::Handler
    };
    let a = PushConsumer::start(
        s.client.clone(),
        push_options("ordered", "ledger", true),
        handler.clone(),
    )
    .await
    .unwrap();
    let b = PushConsumer::start(
        s.client.clone(),
        push_options("ordered", "ledger", true),
        handler,
    )
    .await
    .unwrap();
    until("two orderly members split four queues", || {
        a.assigned().len() == 2 && b.assigned().len() == 2
    })
    .await;

    let history = Arc::new(History::new());
    let producer = Arc::new(Producer::new(s.client.clone()));
    let mut senders = tokio::task::JoinSet::new();
    for key in 0..100 {
        let (producer, history) = (producer.clone(), history.clone());
        senders.spawn(async move {
            for seq in 0..100u64 {
                let body = bytes::Bytes::from(format!("key{key}/{seq}"));
                history.invoke_ordered(&body, &format!("key{key}"), seq);
                let sent = producer
                    .send_ordered("ledger", &format!("key{key}"), Message::new(body.clone()))
                    .await
                    .unwrap();
                history.ok(&body, sent.msg_id);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    until("every message handled", || reads.messages() == 10_000).await;
    let report = check(&history, &reads);
    assert_eq!(report.lost.count, 0, "{report:?}");
    assert_eq!(report.unexpected.count, 0, "{report:?}");
    for (key, seqs) in handled.lock().unwrap().iter() {
        assert_eq!(
            *seqs,
            (0..100).collect::<Vec<u64>>(),
            "key {key} handled out of order"
        );
    }
    let retried = attempts
        .lock()
        .unwrap()
        .values()
        .filter(|n| **n > 1)
        .count();
    eprintln!(
        "orderly: 10,000 messages over 100 keys, {retried} retried in place, every key in order"
    );
    assert!(retried > 0, "the handler failed some attempts");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_push_consumer_handles_everything_and_commits_past_retries() {
    let _serial = serial();
    let s = setup(spec(), "jobs", 2).await;
    let admin = Admin::new(s.client.clone());
    let settings = GroupSettings {
        backoff_ms: vec![5],
        ..GroupSettings::default()
    };
    admin.update_group("workers", settings).await.unwrap();
    // id → (attempts, succeeded, retries that came through the retry topic).
    type Done = BTreeMap<MessageId, (u64, bool, u64)>;
    let done: Arc<Mutex<Done>> = Arc::default();
    let handler = {
        let done = done.clone();
        Arc::new(move |delivery: Delivery| -> HandlerFuture {
            let done = done.clone();
            Box::pin(async move {
                let mut done = done.lock().unwrap();
                let m = &delivery.message;
                let (attempts, succeeded, retried) = done.entry(m.msg_id).or_default();
                *attempts += 1;
                if m.topic == "%RETRY%workers"
                    && m.reconsume_times() == 1
                    && m.origin_topic() == "jobs"
                {
                    *retried += 1;
                }
                // Every message fails its first attempt once in five.
                if *attempts == 1 && fails(&m.body, 0, 5) {
                    return Outcome::Failure;
                }
                *succeeded = true;
                Outcome::Success
            })
        }) as quiver_client::group::Handler
    };
    let consumer = PushConsumer::start(
        s.client.clone(),
        push_options("workers", "jobs", false),
        handler,
    )
    .await
    .unwrap();
    let sent = send(&s.client, "jobs", 1000, |_| "t").await;
    // Every message succeeded, retries included.
    until("every message handled", || {
        let done = done.lock().unwrap();
        done.len() == 1000 && done.values().all(|(_, ok, _)| *ok)
    })
    .await;
    let snapshot = done.lock().unwrap().clone();
    let attempts: u64 = snapshot.values().map(|(n, _, _)| n).sum();
    let failed_once: Vec<&MessageId> = sent.iter().filter(|id| snapshot[*id].0 == 2).collect();
    assert!(!failed_once.is_empty());
    assert_eq!(
        attempts,
        1000 + failed_once.len() as u64,
        "a failed message is handled again, once"
    );
    assert!(
        failed_once.iter().all(|id| snapshot[*id].2 == 1),
        "a failed message comes back through %RETRY%workers with its retry count and origin"
    );
    consumer.close().await.unwrap();
    let info = &admin.describe_group("workers").await.unwrap()[0].info;
    let committed = |topic: &str| -> u64 {
        info.queues
            .iter()
            .filter(|q| q.topic == topic)
            .map(|q| q.committed.unwrap_or(0))
            .sum()
    };
    assert_eq!(
        committed("jobs"),
        1000,
        "close commits up to the last message: {:?}",
        info.queues
    );
    assert_eq!(
        committed("%RETRY%workers"),
        failed_once.len() as u64,
        "and past every retry: {:?}",
        info.queues
    );
    eprintln!(
        "concurrent: 1,000 messages, {} retried through the retry topic",
        failed_once.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_members_each_get_everything_and_resume_from_their_file() {
    let _serial = serial();
    let s = setup(spec(), "news", 3).await;
    let tls = s.server.tls_dir();
    let states = tempfile::tempdir().unwrap();
    let start = |n: usize| {
        let dir = states.path().join(format!("m{n}"));
        Member::start_with(
            &tls,
            &s.server.addr,
            &[
                "--group",
                "readers",
                "--topic",
                "news",
                "--tags",
                "keep",
                "--mode",
                "broadcast",
                "--state-dir",
                dir.to_str().unwrap(),
                "--from",
                "first",
                "--commit-interval",
                "0s",
            ],
        )
    };
    let members: Vec<Member> = (0..3).map(start).collect();
    let first = send(&s.client, "news", 300, |i| {
        if i % 2 == 0 { "keep" } else { "drop" }
    })
    .await;
    let kept: BTreeSet<MessageId> = {
        let all = crate::read_all(&s.client, "news").await;
        all.values()
            .flatten()
            .filter(|m| m.tag.as_deref() == Some("keep"))
            .map(|m| m.msg_id)
            .collect()
    };
    assert_eq!(kept.len(), 150);
    assert!(kept.iter().all(|id| first.contains(id)));
    for member in &members {
        handled_by(&[member], &kept).await;
    }
    for member in &members {
        assert_eq!(
            member.handled(),
            150,
            "each member gets each kept message once"
        );
    }

    // Member 0 stops (Ctrl-C saves its offsets), misses a second round, and resumes.
    let mut members = members;
    let mut stopped = members.remove(0);
    stopped.signal(libc::SIGINT);
    let status = stopped.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    drop(stopped);
    let second = send(&s.client, "news", 100, |_| "keep").await;
    for member in &members {
        handled_by(&[member], &second).await;
    }
    let resumed = start(0);
    handled_by(&[&resumed], &second).await;
    let printed: Vec<String> = resumed.seen.lock().unwrap().clone();
    let second_ids: BTreeSet<String> = second.iter().map(MessageId::to_string).collect();
    assert!(
        printed.iter().all(|id| second_ids.contains(id)),
        "the resumed member re-read {} messages it had saved",
        printed
            .iter()
            .filter(|id| !second_ids.contains(*id))
            .count()
    );
    assert_eq!(printed.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_still_failing_when_its_member_closes_is_not_committed() {
    let _serial = serial();
    let s = setup(spec(), "poison", 1).await;
    let tries = Arc::new(Mutex::new(0u64));
    let handler = {
        let tries = tries.clone();
        Arc::new(move |delivery: Delivery| -> HandlerFuture {
            let tries = tries.clone();
            Box::pin(async move {
                if delivery.message.body.as_ref() == b"m2" {
                    *tries.lock().unwrap() += 1;
                    return Outcome::Failure;
                }
                Outcome::Success
            })
        }) as quiver_client::group::Handler
    };
    let consumer = PushConsumer::start(
        s.client.clone(),
        push_options("careful", "poison", true),
        handler,
    )
    .await
    .unwrap();
    send(&s.client, "poison", 5, |_| "t").await;
    until("the poison message failed twice", || {
        *tries.lock().unwrap() >= 2
    })
    .await;
    consumer.close().await.unwrap();
    let info = &Admin::new(s.client.clone())
        .describe_group("careful")
        .await
        .unwrap()[0]
        .info;
    let queue = info.queues.iter().find(|q| q.topic == "poison").unwrap();
    assert_eq!(
        queue.committed,
        Some(2),
        "the failing message (offset 2) is left for the next member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiver_consume_orderly_prints_every_queue_in_order_and_commits_on_exit() {
    let _serial = serial();
    let s = setup(spec(), "steps", 3).await;
    let tls = s.server.tls_dir();
    let producer = Producer::new(s.client.clone());
    let mut sent = BTreeSet::new();
    for seq in 0..60 {
        for key in ["a", "b", "c", "d"] {
            let msg = Message::new(format!("{key}/{seq}"));
            sent.insert(
                producer
                    .send_ordered("steps", key, msg)
                    .await
                    .unwrap()
                    .msg_id
                    .to_string(),
            );
        }
    }
    let mut member = Member::start_with(
        &tls,
        &s.server.addr,
        &[
            "--group",
            "stepper",
            "--topic",
            "steps",
            "--from",
            "first",
            "--orderly",
            "--heartbeat",
            "100ms",
            "--count",
            "240",
        ],
    );
    let status = member.child.wait().unwrap();
    assert!(status.success(), "{:?}", member.errors.lock().unwrap());
    let seen: BTreeSet<String> = member.seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(seen, sent, "every message printed once");
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, queue, offset) in member.positions.lock().unwrap().iter() {
        if let Some(before) = last.insert(*queue, *offset) {
            assert_eq!(*offset, before + 1, "queue {queue} printed out of order");
        }
    }
    let info = &Admin::new(s.client.clone())
        .describe_group("stepper")
        .await
        .unwrap()[0]
        .info;
    let committed: u64 = info
        .queues
        .iter()
        .filter(|q| q.topic == "steps")
        .map(|q| q.committed.unwrap_or(0))
        .sum();
    assert_eq!(committed, 240, "{:?}", info.queues);
}
