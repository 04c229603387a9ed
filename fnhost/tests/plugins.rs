//! The example functions in `plugins/` through the host (built by `cargo xtask guests`):
//! the JSON validator/enricher and the order-state tracker. (The router's test is in
//! `guests.rs`.)

use quiver_fnhost::{FnEngine, FnModule, Limits, Message, Outcome};
use serde_json::Value;

mod common;

fn module(name: &str) -> FnModule {
    FnModule::load(&FnEngine::new().unwrap(), &common::guest(name)).unwrap()
}

/// A message of queue 2 of `in`, without tag or keys.
fn message(offset: u64, body: &str) -> Message {
    Message {
        topic: "in".into(),
        queue: 2,
        tag: None,
        keys: vec![],
        ..common::message(offset, body)
    }
}

fn dead(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::DeadLetter(reason) => reason,
        other => panic!("{other:?} is not a dead letter"),
    }
}

#[tokio::test]
async fn the_enricher_passes_valid_objects_enriched_and_dead_letters_the_rest() {
    let module = module("enricher");
    let batch = [
        message(0, r#"{"id": "a1", "amount": 5}"#),
        message(1, "not json"),
        message(2, "[1, 2]"),
        message(3, r#"{"amount": 5}"#),
        message(4, r#"{"id": 7, "amount": null}"#),
    ];
    let conf = common::config(&[
        ("required", "id"),
        ("add", "region=eu; tier=gold"),
        ("to", "clean"),
    ]);
    let report = module.call(&batch, conf, &Limits::default()).await;
    let outcomes = report.settled.unwrap();
    assert_eq!(outcomes[0], Outcome::Ack);
    assert!(dead(&outcomes[1]).starts_with("not JSON"));
    assert!(dead(&outcomes[2]).starts_with("not a JSON object"));
    assert_eq!(dead(&outcomes[3]), "missing required field \"id\"");
    assert_eq!(outcomes[4], Outcome::Ack);
    assert_eq!(report.emits.len(), 2);
    let first: Value = serde_json::from_slice(&report.emits[0].body).unwrap();
    assert_eq!(report.emits[0].topic, "clean");
    assert_eq!(report.emits[0].keys, vec!["a1".to_string()]);
    assert_eq!(first["region"], "eu");
    assert_eq!(first["tier"], "gold");
    assert_eq!(first["amount"], 5);
    assert_eq!(first["_source"]["offset"], 0);
    assert_eq!(first["_source"]["queue"], 2);
    assert_eq!(report.emits[1].keys, vec!["7".to_string()]);
    assert_eq!(
        report.logs.iter().filter(|l| l.level == "warn").count(),
        3,
        "one warning per dead letter"
    );
}

#[tokio::test]
async fn the_order_tracker_carries_each_orders_state_in_what_it_emits() {
    let module = module("order_state");
    let events = [
        r#"{"order": "o1", "event": "created"}"#,
        r#"{"order": "o2", "event": "created"}"#,
        r#"{"order": "o1", "event": "paid"}"#,
        r#"{"order": "o2", "event": "shipped"}"#,
        r#"{"order": "o1", "event": "shipped"}"#,
        r#"{"order": "o3", "event": "delivered", "from": "shipped"}"#,
        r#"{"order": "o3", "event": "paid"}"#,
        "{}",
    ];
    let batch: Vec<Message> = events
        .iter()
        .enumerate()
        .map(|(i, e)| message(i as u64, e))
        .collect();
    let report = module
        .call(&batch, common::config(&[]), &Limits::default())
        .await;
    let outcomes = report.settled.unwrap();
    let acked: Vec<bool> = outcomes.iter().map(|o| *o == Outcome::Ack).collect();
    assert_eq!(acked, [true, true, true, false, true, true, false, false]);
    assert_eq!(
        dead(&outcomes[3]),
        "order o2: illegal transition: shipped from created"
    );
    assert_eq!(
        dead(&outcomes[6]),
        "order o3: illegal transition: paid from delivered"
    );
    assert!(dead(&outcomes[7]).starts_with("not an order event"));
    let states: Vec<(String, String, u64)> = report
        .emits
        .iter()
        .map(|e| {
            assert_eq!(e.topic, "order-state");
            let v: Value = serde_json::from_slice(&e.body).unwrap();
            assert_eq!(e.keys, vec![v["order"].as_str().unwrap().to_string()]);
            assert_eq!(e.tag.as_deref(), v["state"].as_str());
            (
                v["order"].as_str().unwrap().to_owned(),
                v["state"].as_str().unwrap().to_owned(),
                v["events"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("o1", "created", 1),
        ("o2", "created", 1),
        ("o1", "paid", 2),
        ("o1", "shipped", 3),
        ("o3", "delivered", 1),
    ];
    let want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(o, s, n)| (o.to_string(), s.to_string(), *n))
        .collect();
    assert_eq!(states, want);
}
