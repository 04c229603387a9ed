use quiver_proto::requests::route::{
    BrokerRegistration, BrokerRole, BrokerUnregister, DataVersion, TopicQueues,
};

use super::*;

fn reg(name: &str, addr: &str, topics: &[(&str, u32)]) -> BrokerRegistration {
    BrokerRegistration {
        cluster: "c".into(),
        broker_name: name.into(),
        addr: addr.into(),
        role: BrokerRole::Master,
        data_version: DataVersion::default(),
        topics: topics
            .iter()
            .map(|(t, q)| TopicQueues {
                topic: (*t).into(),
                queues: *q,
            })
            .collect(),
        unhealthy_reason: String::new(),
    }
}

#[test]
fn heartbeats_keep_a_broker_and_silence_expires_it() {
    let mut registry = Registry::new(1000);
    assert_eq!(
        registry.handle_register(0, reg("b1", "a:1", &[("t", 4)])),
        Ok(true)
    );
    assert_eq!(
        registry.handle_register(900, reg("b1", "a:1", &[("t", 4)])),
        Ok(false)
    );
    assert!(
        registry.route(1800, "t").is_some(),
        "heartbeat at 900 keeps it past 1000"
    );
    assert_eq!(registry.poll_timeout(), Some(1900));
    assert!(registry.poll_expired(1899).is_empty());
    assert_eq!(registry.poll_expired(1900), vec!["b1".to_string()]);
    assert_eq!(registry.route(1900, "t"), None);
    assert_eq!(
        registry.handle_register(2000, reg("b1", "a:1", &[("t", 4)])),
        Ok(true),
        "comes back"
    );
}

#[test]
fn routes_merge_brokers_and_follow_topic_changes() {
    let mut registry = Registry::new(1000);
    registry
        .handle_register(0, reg("b1", "a:1", &[("t", 4), ("u", 1)]))
        .unwrap();
    registry
        .handle_register(0, reg("b2", "a:2", &[("t", 2)]))
        .unwrap();
    let route = registry.route(10, "t").unwrap();
    assert_eq!(route.brokers.len(), 2);
    assert_eq!(route.queues.iter().map(|q| q.queues).sum::<u32>(), 6);
    registry
        .handle_register(20, reg("b1", "a:1", &[("t", 4)]))
        .unwrap();
    assert_eq!(
        registry.route(30, "u"),
        None,
        "a heartbeat replaces the topic set"
    );
    let listed = registry.list(40);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].heartbeat_age_ms, 20);
    assert_eq!(listed[1].queues, 2);
}

#[test]
fn a_live_name_at_another_address_conflicts_and_unregister_needs_the_address() {
    let mut registry = Registry::new(1000);
    registry
        .handle_register(0, reg("b1", "a:1", &[("t", 4)]))
        .unwrap();
    let err = registry
        .handle_register(100, reg("b1", "a:9", &[]))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Conflict { ref held_by, wait_ms: 900, .. } if held_by == "a:1"),
        "{err}"
    );
    let stale = BrokerUnregister {
        cluster: "c".into(),
        broker_name: "b1".into(),
        addr: "a:9".into(),
    };
    assert!(!registry.handle_unregister(&stale));
    assert!(registry.route(200, "t").is_some());
    let leave = BrokerUnregister {
        addr: "a:1".into(),
        ..stale
    };
    assert!(registry.handle_unregister(&leave));
    assert_eq!(
        registry.route(200, "t"),
        None,
        "a graceful leave drops routes at once"
    );
    assert_eq!(
        registry.handle_register(300, reg("b1", "a:9", &[])),
        Ok(true),
        "the name is free again"
    );
}

#[test]
fn a_registration_over_the_limits_is_refused_whole() {
    let mut registry = Registry::new(1000);
    for (topics, why) in [
        (vec![("t", 0)], "0 queues"),
        (vec![("t", QUEUES_MAX + 1)], "too many queues"),
        (vec![("t", 1), ("t", 2)], "listed twice"),
        (vec![("bad name", 1)], "bad name"),
    ] {
        let err = registry
            .handle_register(0, reg("b1", "a:1", &topics))
            .unwrap_err();
        assert!(matches!(err, RegistryError::Invalid { .. }), "{why}: {err}");
        assert!(registry.list(0).is_empty(), "{why}: nothing taken");
    }
    // Within the limits a broker's queue total fits its u32 field (TOPICS_MAX x QUEUES_MAX).
    const _: () = assert!((TOPICS_MAX as u64) * (QUEUES_MAX as u64) <= u32::MAX as u64);
}

#[test]
fn an_unhealthy_broker_keeps_its_layout_but_takes_no_sends() {
    let mut registry = Registry::new(1000);
    registry
        .handle_register(0, reg("b1", "a:1", &[("t", 2)]))
        .unwrap();
    let mut sick = reg("b1", "a:1", &[("t", 2)]);
    sick.unhealthy_reason = "commit log sync failed".into();
    registry.handle_register(10, sick).unwrap();
    let route = registry.route(20, "t").unwrap();
    assert_eq!(route.queues.len(), 1);
    assert!(!route.queues[0].writable, "{route:?}");
    assert_eq!(
        registry.list(20)[0].unhealthy_reason,
        "commit log sync failed"
    );
    // Healthy again (after a restart): writable again.
    registry
        .handle_register(30, reg("b1", "a:1", &[("t", 2)]))
        .unwrap();
    assert!(registry.route(40, "t").unwrap().queues[0].writable);
}
