use super::*;

fn targets(brokers: &[(&str, u32)]) -> Vec<RoutedQueue> {
    brokers
        .iter()
        .flat_map(|(name, queues)| {
            (0..*queues).map(move |queue_id| RoutedQueue {
                queue: MessageQueue {
                    topic: "t".into(),
                    broker_name: (*name).into(),
                    queue_id,
                },
                addr: format!("{name}:1"),
                writable: true,
            })
        })
        .collect()
}

#[test]
fn an_ordered_key_keeps_its_queue_and_fails_while_its_broker_is_gone() {
    let mut known = Vec::new();
    let both = targets(&[("a", 4), ("b", 4)]);
    let only_a = targets(&[("a", 4)]);
    let keys: Vec<String> = (0..200).map(|i| format!("order-{i}")).collect();
    let before: Vec<RoutedQueue> = keys
        .iter()
        .map(|k| ordered_target(&mut known, &both, k).unwrap())
        .collect();
    let mut failed = 0;
    for (key, was) in keys.iter().zip(&before) {
        match ordered_target(&mut known, &only_a, key) {
            Ok(now) => assert_eq!(&now, was, "{key} moved while its broker was up"),
            Err(queue) => {
                assert_eq!(queue.broker_name, "b");
                assert_eq!(was.queue.broker_name, "b");
                failed += 1;
            }
        }
    }
    assert!(failed > 0 && failed < keys.len());
    // The broker comes back: every key is where it was.
    for (key, was) in keys.iter().zip(&before) {
        assert_eq!(&ordered_target(&mut known, &both, key).unwrap(), was);
    }
}

#[test]
fn a_first_route_without_a_broker_still_maps_every_key() {
    let mut known = Vec::new();
    let only_a = targets(&[("a", 2)]);
    for i in 0..20 {
        assert_eq!(
            ordered_target(&mut known, &only_a, &format!("k{i}"))
                .unwrap()
                .queue
                .broker_name,
            "a"
        );
    }
}

#[test]
fn rerouting_moves_only_the_keys_whose_queue_is_unusable_and_back() {
    let mut known = Vec::new();
    let both = targets(&[("a", 4), ("b", 4)]);
    let keys: Vec<String> = (0..200).map(|i| format!("order-{i}")).collect();
    let home: Vec<RoutedQueue> = keys
        .iter()
        .map(|k| ordered_choice(&mut known, &both, k, true, |_| true).unwrap())
        .collect();
    // b is in the route but failing: its keys move to a, a's keys stay.
    let on_a = |t: &RoutedQueue| t.queue.broker_name == "a";
    let mut moved = 0;
    for (key, home) in keys.iter().zip(&home) {
        let now = ordered_choice(&mut known, &both, key, true, on_a).unwrap();
        assert_eq!(now.queue.broker_name, "a");
        if home.queue.broker_name == "a" {
            assert_eq!(&now, home, "{key} moved although its queue was usable");
        } else {
            moved += 1;
        }
    }
    assert!(moved > 0 && moved < keys.len());
    // Without re-routing a failing-but-routed home is still chosen (the send then fails).
    for (key, home) in keys.iter().zip(&home) {
        assert_eq!(
            &ordered_choice(&mut known, &both, key, false, on_a).unwrap(),
            home
        );
    }
    // b gone from the route: strict keys get their home as the error; recovered, all go home.
    let only_a = targets(&[("a", 4)]);
    for (key, home) in keys.iter().zip(&home) {
        match ordered_choice(&mut known, &only_a, key, false, |_| true) {
            Ok(now) => assert_eq!(&now, home),
            Err(queue) => assert_eq!(queue, home.queue),
        }
        assert_eq!(
            &ordered_choice(&mut known, &both, key, true, |_| true).unwrap(),
            home
        );
    }
}
