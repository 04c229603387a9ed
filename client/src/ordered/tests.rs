use quiver_proto::requests::route::{BrokerAddr, QueueRoute};

use super::*;
use crate::queue::routed_queues;

/// A route of `brokers` (name, queues, live), listed in the given order.
fn route(brokers: &[(&str, u32, bool)]) -> TopicRoute {
    TopicRoute {
        topic: "t".into(),
        brokers: brokers
            .iter()
            .filter(|(_, _, live)| *live)
            .map(|(name, _, _)| BrokerAddr {
                broker_name: (*name).into(),
                addr: format!("{name}:1"),
            })
            .collect(),
        queues: brokers
            .iter()
            .map(|(name, queues, live)| QueueRoute {
                broker_name: (*name).into(),
                queues: *queues,
                writable: *live,
            })
            .collect(),
    }
}

fn keys() -> Vec<String> {
    (0..200).map(|i| format!("order-{i}")).collect()
}

/// Every key's choice in `route`: the home queue, or the home that is not live.
fn choices(route: &TopicRoute, reroute: bool) -> Vec<Result<RoutedQueue, MessageQueue>> {
    let targets: Vec<RoutedQueue> = routed_queues(route)
        .into_iter()
        .filter(|t| t.writable)
        .collect();
    keys()
        .iter()
        .map(|key| choose(&layout(route), &targets, key, reroute, |_| true))
        .collect()
}

fn queue_of(choice: &Result<RoutedQueue, MessageQueue>) -> &MessageQueue {
    match choice {
        Ok(target) => &target.queue,
        Err(home) => home,
    }
}

#[test]
fn the_home_is_a_function_of_the_layout_in_any_listing_order() {
    let listed = choices(
        &route(&[("a", 4, true), ("b", 4, true), ("c", 2, true)]),
        false,
    );
    let shuffled = choices(
        &route(&[("c", 2, true), ("a", 4, true), ("b", 4, true)]),
        false,
    );
    assert_eq!(listed, shuffled);
    let per_broker = |name: &str| {
        listed
            .iter()
            .filter(|c| c.as_ref().unwrap().queue.broker_name == name)
            .count()
    };
    assert!(per_broker("a") > 0 && per_broker("b") > 0 && per_broker("c") > 0);
}

#[test]
fn a_departed_broker_keeps_its_keys_and_no_other_key_moves() {
    // What a producer started while b was down sees: b in the layout, without an address.
    let full = choices(&route(&[("a", 4, true), ("b", 4, true)]), false);
    let b_gone = choices(&route(&[("a", 4, true), ("b", 4, false)]), false);
    let mut failed = 0;
    for ((key, before), now) in keys().iter().zip(&full).zip(&b_gone) {
        assert_eq!(queue_of(before), queue_of(now), "{key} changed home");
        match now {
            Ok(_) => assert_eq!(now, before),
            Err(home) => {
                assert_eq!(home.broker_name, "b", "{key}: only b's keys fail");
                failed += 1;
            }
        }
    }
    assert!(failed > 0 && failed < full.len());
}

#[test]
fn rerouting_moves_only_the_keys_whose_queue_is_unusable_and_back() {
    let both = route(&[("a", 4, true), ("b", 4, true)]);
    let targets: Vec<RoutedQueue> = routed_queues(&both);
    let layout = layout(&both);
    let home = choices(&both, true);
    // b is in the route but failing: its keys move to a, a's keys stay.
    let on_a = |t: &RoutedQueue| t.queue.broker_name == "a";
    let mut moved = 0;
    for (key, home) in keys().iter().zip(&home) {
        let home = home.as_ref().unwrap();
        let now = choose(&layout, &targets, key, true, on_a).unwrap();
        assert_eq!(now.queue.broker_name, "a");
        if home.queue.broker_name == "a" {
            assert_eq!(&now, home, "{key} moved although its queue was usable");
        } else {
            moved += 1;
        }
        // Without re-routing a failing-but-routed home is still chosen (the send then fails).
        assert_eq!(&choose(&layout, &targets, key, false, on_a).unwrap(), home);
    }
    assert!(moved > 0 && moved < home.len());
    // b gone from the route: re-routed keys land on a; back, every key is home again.
    let b_gone = choices(&route(&[("a", 4, true), ("b", 4, false)]), true);
    assert!(
        b_gone
            .iter()
            .all(|c| c.as_ref().unwrap().queue.broker_name == "a")
    );
    assert_eq!(choices(&both, true), home);
}

#[test]
fn the_hash_is_frozen() {
    // FNV-1a 64 test vectors: a changed hash would move every key of every deployment.
    assert_eq!(sharding_hash(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(sharding_hash("a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(sharding_hash("foobar"), 0x8594_4171_f739_67e8);
}
