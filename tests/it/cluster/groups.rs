//! Consumer groups over three brokers, with real `quiver consume` processes: a member killed
//! with SIGKILL mid-way loses its queues to the others, nothing is lost, and the duplicates
//! are bounded by what it had printed but not committed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quiver_client::{Admin, BrokerChoice, Message, Producer};
use quiver_tests::harness::serial;

use crate::member::Member;

use super::{HEARTBEAT, client, start_cluster_env, wait_brokers};

/// The brokers' group session; members heartbeat every 100 ms.
const SESSION: &str = "1s";
const MESSAGES: usize = 100_000;
const BATCH: u32 = 32;
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_loses_its_queues_and_nothing_is_lost() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster_env(
        dir.path(),
        1,
        &["b1", "b2", "b3"],
        &[("QUIVER_BROKER__GROUP_SESSION", SESSION)],
    );
    let namesrv = cluster.namesrvs[0].addr.clone();
    let admin_client = client(&[&namesrv], &cluster.tls, Some("admin"));
    let admin = Admin::new(admin_client.clone());
    // Eight queues over three brokers.
    for (broker, queues) in [("b1", 3), ("b2", 3), ("b3", 2)] {
        admin
            .create_topic_on("work", queues, &BrokerChoice::Named(vec![broker.into()]))
            .await
            .unwrap();
    }
    wait_brokers(&namesrv, &cluster.tls, "work", 3, HEARTBEAT * 50).await;

    let mut members: Vec<Member> = (0..3)
        .map(|_| Member::start(&cluster.tls, &namesrv, "workers", "work", BATCH))
        .collect();
    // The members settle (each holds queues, all eight are held) before any message exists,
    // so every duplicate below comes from the kill.
    let settle = Instant::now();
    loop {
        let ids: Vec<Option<String>> = members
            .iter()
            .map(|m| m.id.lock().unwrap().clone())
            .collect();
        let mut held = BTreeMap::<String, usize>::new();
        if let Ok(views) = admin.describe_group("workers").await {
            for q in views.iter().flat_map(|v| v.info.queues.iter()) {
                if let Some(holder) = &q.holder {
                    *held.entry(holder.clone()).or_default() += 1;
                }
            }
        }
        let settled = held.values().sum::<usize>() == 8
            && ids
                .iter()
                .all(|id| id.as_ref().is_some_and(|id| held.contains_key(id)));
        if settled {
            break;
        }
        assert!(
            settle.elapsed() < DEADLINE,
            "the members did not settle: {held:?}"
        );
        tokio::time::sleep(HEARTBEAT).await;
    }
    eprintln!(
        "three members settled over eight queues in {:?}",
        settle.elapsed()
    );
    let producer = Producer::new(admin_client.clone());
    let mut sent = BTreeSet::new();
    let started = Instant::now();
    let mut victim_queues = None;
    let mut takeover = None;
    for chunk in 0..MESSAGES / 100 {
        let batch = (0..100)
            .map(|i| Message::new(format!("w{chunk}-{i}")))
            .collect();
        for result in producer.send_batch("work", batch).await.unwrap() {
            sent.insert(result.msg_id.to_string());
        }
        // Mid-way, once every member is busy: kill the first one.
        if victim_queues.is_none()
            && chunk * 100 >= MESSAGES / 3
            && members.iter().all(|m| m.handled() > 0)
        {
            let victim = members[0]
                .id
                .lock()
                .unwrap()
                .clone()
                .expect("member id printed");
            let mut held = 0;
            for view in admin.describe_group("workers").await.unwrap() {
                held += view
                    .info
                    .queues
                    .iter()
                    .filter(|q| q.holder.as_deref() == Some(victim.as_str()))
                    .count();
            }
            // SIGKILL (`Child::kill`): no leave, no final commit.
            members[0].child.kill().unwrap();
            let killed = Instant::now();
            let (watch, dead) = (Admin::new(admin_client.clone()), victim.clone());
            takeover = Some(tokio::spawn(async move {
                loop {
                    let views = watch.describe_group("workers").await.unwrap();
                    let holders: Vec<Option<String>> = views
                        .iter()
                        .flat_map(|v| v.info.queues.iter().map(|q| q.holder.clone()))
                        .collect();
                    if holders.len() == 8
                        && holders
                            .iter()
                            .all(|h| h.as_ref().is_some_and(|h| *h != dead))
                    {
                        return killed.elapsed();
                    }
                    assert!(
                        killed.elapsed() < DEADLINE,
                        "no takeover within {DEADLINE:?}: {holders:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
            victim_queues = Some((victim, held));
        }
    }
    let (victim, held) = victim_queues.expect("the victim was killed mid-way");
    assert!(held > 0, "the victim held queues");
    let took = takeover.unwrap().await.unwrap();
    eprintln!(
        "the live members held the dead member's queues {took:?} after the kill (group session {SESSION})"
    );
    eprintln!(
        "sent {} messages in {:?}; killed member {victim} holding {held} queues",
        sent.len(),
        started.elapsed()
    );

    // Every message is handled by somebody.
    let wait = Instant::now();
    loop {
        let handled: BTreeSet<String> = members
            .iter()
            .flat_map(|m| m.seen.lock().unwrap().clone())
            .collect();
        if sent.iter().all(|id| handled.contains(id)) {
            break;
        }
        assert!(
            wait.elapsed() < DEADLINE,
            "{} of {} messages handled within {DEADLINE:?}",
            sent.iter().filter(|id| handled.contains(*id)).count(),
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "every message handled {:?} after the last send",
        wait.elapsed()
    );
    // A consumer duplicate is one position handled twice; one id at two positions is a
    // producer retry that stored a batch twice (reported, not the consumers' doing).
    let mut at: BTreeMap<(String, u64, u64), usize> = BTreeMap::new();
    let mut ids: BTreeMap<String, BTreeSet<(String, u64, u64)>> = BTreeMap::new();
    for member in &members {
        let seen = member.seen.lock().unwrap();
        let positions = member.positions.lock().unwrap();
        for (id, position) in seen.iter().zip(positions.iter()) {
            *at.entry(position.clone()).or_default() += 1;
            ids.entry(id.clone()).or_default().insert(position.clone());
        }
    }
    let duplicates: usize = at.values().map(|n| n - 1).sum();
    let stored_twice = ids.values().filter(|p| p.len() > 1).count();
    let bound = BATCH as usize * held;
    eprintln!(
        "duplicates after the kill: {duplicates} (bound: batch {BATCH} x {held} queues = {bound}); messages a producer retry stored twice: {stored_twice}"
    );
    let twice: Vec<&(String, u64, u64)> =
        at.iter().filter(|(_, n)| **n > 1).map(|(p, _)| p).collect();
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, over {bound}; first positions handled twice: {:?}",
        &twice[..twice.len().min(10)]
    );
    assert!(
        ids.keys().all(|id| sent.contains(id)),
        "only sent messages are handled"
    );

    // The dead member holds nothing; the two live ones hold all eight queues.
    let views = admin.describe_group("workers").await.unwrap();
    let holders: Vec<Option<String>> = views
        .iter()
        .flat_map(|v| v.info.queues.iter().map(|q| q.holder.clone()))
        .collect();
    assert_eq!(holders.len(), 8, "{holders:?}");
    assert!(
        holders
            .iter()
            .all(|h| h.as_deref().is_some_and(|h| h != victim)),
        "{holders:?}"
    );
}
