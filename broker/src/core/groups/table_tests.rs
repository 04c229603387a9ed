//! The group table driven by hand: time, joins, leaves, silence, conflicts.

use super::assign::Strategy;
use super::table::*;

const SESSION: u64 = 1000;

fn sub(topics: &[(&str, &str)]) -> Subscription {
    topics
        .iter()
        .map(|(t, e)| (t.to_string(), e.to_string()))
        .collect()
}

fn beat(table: &mut GroupTable, now: u64, member: &str) -> Grant {
    let subscription = sub(&[("t", "*")]);
    table
        .heartbeat(now, &beat_of(member, &subscription), |_| 8)
        .unwrap()
}

fn beat_of<'a>(member: &'a str, subscription: &'a Subscription) -> Beat<'a> {
    Beat {
        group: "g",
        member,
        client: "test",
        subscription,
        strategy: Strategy::Average,
        finishing: &[],
    }
}

fn queues(grant: &Grant) -> Vec<u32> {
    grant.leases.iter().map(|((_, q), _)| *q).collect()
}

/// Every queue with a live lease has one holder, and each holder is a live member.
fn one_holder_each(table: &GroupTable, now: u64) {
    let members = table.members("g");
    for (queue, lease) in table.leases("g") {
        if lease.expires_ms > now {
            assert!(
                members.contains_key(&lease.holder),
                "{queue:?} held by a gone member"
            );
        }
    }
}

#[test]
fn a_lone_member_gets_every_queue_then_shares_after_a_join() {
    let mut table = GroupTable::new("b", SESSION, 1);
    let a = beat(&mut table, 0, "a");
    assert_eq!(queues(&a), (0..8).collect::<Vec<_>>());
    assert!(!a.pending);

    // b joins: its queues are still a's, so it waits.
    let b = beat(&mut table, 10, "b");
    assert!(b.leases.is_empty() && b.pending);
    // a's next heartbeat revokes b's share (a may still commit under it), the one after
    // ends it.
    let a = beat(&mut table, 20, "a");
    assert_eq!(queues(&a).len(), 4);
    let moving = table
        .leases("g")
        .into_iter()
        .filter(|(_, l)| l.revoking)
        .collect::<Vec<_>>();
    assert_eq!(moving.len(), 4);
    let (queue, lease) = &moving[0];
    table
        .check(21, "g", "a", queue, lease.epoch, Use::Commit)
        .unwrap();
    let err = table
        .check(21, "g", "a", queue, lease.epoch, Use::Read)
        .unwrap_err();
    assert!(err.reason.contains("moved"), "{}", err.reason);
    let b = beat(&mut table, 25, "b");
    assert!(b.leases.is_empty() && b.pending, "not before a let go");
    beat(&mut table, 28, "a");
    let b = beat(&mut table, 30, "b");
    assert_eq!(queues(&b).len(), 4);
    assert!(!b.pending);
    let mut all = [queues(&a), queues(&b)].concat();
    all.sort();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "each queue once");
    one_holder_each(&table, 30);
}

#[test]
fn epochs_rise_and_fence_the_old_holder() {
    let mut table = GroupTable::new("b", SESSION, 7);
    let a = beat(&mut table, 0, "a");
    beat(&mut table, 10, "b");
    beat(&mut table, 20, "a");
    beat(&mut table, 25, "a");
    let b = beat(&mut table, 30, "b");
    // A queue that moved from a to b.
    let (q7, new_epoch) = b.leases[0].clone();
    let old_epoch = a.leases.iter().find(|(q, _)| *q == q7).unwrap().1;
    assert_eq!(old_epoch >> 32, 7, "the generation leads the epoch");
    assert!(new_epoch > old_epoch);
    let err = table
        .check(40, "g", "a", &q7, old_epoch, Use::Commit)
        .unwrap_err();
    assert!(err.reason.contains("stale"), "{}", err.reason);
    table
        .check(40, "g", "b", &q7, new_epoch, Use::Read)
        .unwrap();
    // A new broker start gives epochs above every earlier one.
    let mut restarted = GroupTable::new("b", SESSION, 8);
    let again = beat(&mut restarted, 0, "a");
    assert!(again.leases.iter().all(|(_, e)| *e > new_epoch));
}

#[test]
fn a_silent_member_loses_its_queues_only_when_its_lease_ends() {
    let mut table = GroupTable::new("b", SESSION, 1);
    beat(&mut table, 0, "a");
    let b = beat(&mut table, 0, "b");
    assert!(b.pending);
    // a goes silent (SIGSTOP). Before its lease ends b still may not take its queues.
    let b = beat(&mut table, SESSION - 1, "b");
    assert!(queues(&b).is_empty() && b.pending, "{b:?}");
    one_holder_each(&table, SESSION - 1);
    // At the end of a's session b gets everything, and a is fenced.
    let b = beat(&mut table, SESSION, "b");
    assert_eq!(queues(&b), (0..8).collect::<Vec<_>>());
    let q = ("t".to_string(), 0);
    assert!(
        table
            .check(SESSION, "g", "a", &q, 1 << 32 | 1, Use::Commit)
            .is_err()
    );
    assert_eq!(table.members("g").len(), 1);
}

#[test]
fn a_leave_frees_queues_at_once() {
    let mut table = GroupTable::new("b", SESSION, 1);
    beat(&mut table, 0, "a");
    beat(&mut table, 0, "b");
    beat(&mut table, 1, "a");
    table.leave("g", "a");
    let b = beat(&mut table, 3, "b");
    assert_eq!(queues(&b), (0..8).collect::<Vec<_>>());
}

#[test]
fn a_different_subscription_is_refused_while_the_old_one_lives() {
    let mut table = GroupTable::new("b", SESSION, 1);
    beat(&mut table, 0, "a");
    let offered = sub(&[("t", "paid")]);
    let err = table
        .heartbeat(1, &beat_of("b", &offered), |_| 8)
        .unwrap_err();
    assert_eq!(err.existing, sub(&[("t", "*")]));
    assert_eq!(err.offered, offered);
    // The same member may change its own subscription; once the old one is gone, so may b.
    table
        .heartbeat(SESSION + 1, &beat_of("b", &offered), |_| 8)
        .unwrap();
}

#[test]
fn a_lease_ends_without_heartbeats() {
    let mut table = GroupTable::new("b", SESSION, 1);
    let a = beat(&mut table, 0, "a");
    let (q, epoch) = a.leases[0].clone();
    table
        .check(SESSION - 1, "g", "a", &q, epoch, Use::Read)
        .unwrap();
    let err = table
        .check(SESSION, "g", "a", &q, epoch, Use::Read)
        .unwrap_err();
    assert!(err.reason.contains("ended"), "{}", err.reason);
}

#[test]
fn a_queue_the_holder_is_still_finishing_moves_once_it_lets_go() {
    let mut table = GroupTable::new("b", SESSION, 1);
    beat(&mut table, 0, "a");
    beat(&mut table, 1, "b");
    beat(&mut table, 2, "a");
    let moving: Vec<(QueueRef, u64)> = table
        .leases("g")
        .into_iter()
        .filter(|(_, l)| l.revoking)
        .map(|(q, l)| (q, l.epoch))
        .collect();
    assert_eq!(moving.len(), 4);
    let subscription = sub(&[("t", "*")]);
    let still = Beat {
        finishing: &moving,
        ..beat_of("a", &subscription)
    };
    table.heartbeat(3, &still, |_| 8).unwrap();
    let b = beat(&mut table, 4, "b");
    assert!(
        b.pending && b.leases.is_empty(),
        "a is still finishing them"
    );
    beat(&mut table, 5, "a");
    let b = beat(&mut table, 6, "b");
    assert_eq!(queues(&b).len(), 4);
    // A holder that never lets go loses them when the unrenewed lease ends.
    let mut table = GroupTable::new("b", SESSION, 1);
    beat(&mut table, 0, "a");
    beat(&mut table, 1, "b");
    beat(&mut table, 2, "a");
    for now in [100, 500, SESSION - 1] {
        table.heartbeat(now, &still, |_| 8).unwrap();
        assert!(beat(&mut table, now, "b").leases.is_empty());
    }
    let b = beat(&mut table, SESSION, "b");
    assert_eq!(queues(&b).len(), 4, "the revoking leases ended with time");
}
