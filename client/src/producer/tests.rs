use super::*;

fn targets(brokers: &[(&str, u32)]) -> Vec<Target> {
    brokers
        .iter()
        .flat_map(|(name, queues)| {
            (0..*queues).map(move |queue_id| Target {
                broker_name: (*name).into(),
                addr: format!("{name}:1"),
                queue_id,
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
    let before: Vec<Target> = keys
        .iter()
        .map(|k| ordered_target(&mut known, &both, k).unwrap())
        .collect();
    let mut failed = 0;
    for (key, was) in keys.iter().zip(&before) {
        match ordered_target(&mut known, &only_a, key) {
            Ok(now) => assert_eq!(&now, was, "{key} moved while its broker was up"),
            Err(slot) => {
                assert_eq!(slot.broker_name, "b");
                assert_eq!(was.broker_name, "b");
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
                .broker_name,
            "a"
        );
    }
}
