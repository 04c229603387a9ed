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
