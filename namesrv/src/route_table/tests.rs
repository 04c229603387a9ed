use super::*;

#[test]
fn routes_follow_registrations() {
    let mut table = RouteTable::new();
    assert_eq!(table.route("orders"), None);
    table.upsert_broker("b1", "127.0.0.1:10911");
    table.upsert_broker("b2", "127.0.0.1:10912");
    table.set_broker_topics("b1", &[("orders".into(), 8)]);
    table.set_topic("b2", "orders", 4);
    let route = table.route("orders").unwrap();
    assert_eq!(route.brokers.len(), 2);
    assert_eq!(route.queues.iter().map(|q| q.queues).sum::<u32>(), 12);
    table.remove_topic("b2", "orders");
    assert_eq!(table.route("orders").unwrap().queues.len(), 1);
    table.remove_broker("b1");
    assert_eq!(table.route("orders"), None);
}

#[test]
fn heartbeat_replaces_the_topic_set() {
    let mut table = RouteTable::new();
    table.upsert_broker("b1", "a:1");
    table.set_broker_topics("b1", &[("x".into(), 1), ("y".into(), 2)]);
    table.set_broker_topics("b1", &[("y".into(), 3)]);
    assert_eq!(table.route("x"), None);
    assert_eq!(table.route("y").unwrap().queues[0].queues, 3);
}

#[test]
fn a_departed_broker_keeps_its_place_in_the_layout_until_it_says_otherwise() {
    let mut table = RouteTable::new();
    table.upsert_broker("b1", "a:1");
    table.upsert_broker("b2", "a:2");
    table.set_topic("b1", "orders", 2);
    table.set_topic("b2", "orders", 3);
    table.remove_broker("b2");
    let route = table.route("orders").unwrap();
    assert_eq!(route.brokers.len(), 1, "only live brokers have an address");
    let layout: Vec<(&str, u32, bool)> = route
        .queues
        .iter()
        .map(|q| (q.broker_name.as_str(), q.queues, q.writable))
        .collect();
    assert_eq!(layout, [("b1", 2, true), ("b2", 3, false)]);
    // Back with the topic: writable again; back without it: gone from the layout.
    table.upsert_broker("b2", "a:2");
    assert!(
        table
            .route("orders")
            .unwrap()
            .queues
            .iter()
            .all(|q| q.writable)
    );
    table.set_broker_topics("b2", &[]);
    assert_eq!(table.route("orders").unwrap().queues.len(), 1);
    // No live broker: no route, but the layout returns with the first broker.
    table.set_topic("b2", "orders", 3);
    table.remove_broker("b1");
    table.remove_broker("b2");
    assert_eq!(table.route("orders"), None);
    table.upsert_broker("b1", "a:1");
    assert_eq!(table.route("orders").unwrap().queues.len(), 2);
}
