//! Ordered sends across a broker loss: keys on the lost broker fail with a clear error (never
//! silently moved), the other keys go on; the opt-in re-route moves only the lost keys; after
//! a restart every key is back on its queue, and each queue holds each key in send order.

use std::collections::HashMap;
use std::time::Duration;

use quiver_client::{
    Client, ClientError, ClientOptions, Message, MessageQueue, Producer, PullConsumer,
};
use quiver_tests::harness::serial;

use super::{Cluster, EXPIRY, HEARTBEAT, client, start_cluster_with_topic, wait_brokers};

const KEYS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_keys_fail_clearly_while_their_broker_is_gone() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        mut brokers,
    } = start_cluster_with_topic(dir.path(), 1, &["broker-a", "broker-b"], "seq", 2).await;
    let ns = &namesrvs[0].addr;
    let mut options = ClientOptions::new(ns.clone(), tls.join("ca.pem"));
    options.timeout = Duration::from_secs(1);
    let strict_client = Client::new(options.clone()).unwrap();
    let strict = Producer::new(strict_client.clone());
    let moving = Producer::new(Client::new(options).unwrap())
        .with_ordered_reroute(true)
        .with_failure_backoff(Duration::from_secs(1));

    // Each key's next sequence number; a message body is "<key>:<seq>".
    let mut next_seq: HashMap<String, u32> = HashMap::new();
    let mut home: HashMap<String, MessageQueue> = HashMap::new();
    let body = |key: &str, next_seq: &mut HashMap<String, u32>| {
        let seq = next_seq.entry(key.to_owned()).or_default();
        *seq += 1;
        Message::new(format!("{key}:{}", *seq - 1))
    };
    let keys: Vec<String> = (0..KEYS).map(|i| format!("order-{i}")).collect();
    for round in 0..3 {
        for key in &keys {
            let sent = strict
                .send_ordered("seq", key, body(key, &mut next_seq))
                .await
                .unwrap();
            let first = home
                .entry(key.clone())
                .or_insert_with(|| sent.queue.clone());
            assert_eq!(*first, sent.queue, "{key} changed queue in round {round}");
        }
    }
    let on_b: Vec<&String> = keys
        .iter()
        .filter(|k| home[*k].broker_name == "broker-b")
        .collect();
    assert!(
        !on_b.is_empty() && on_b.len() < KEYS,
        "keys on both brokers: {} on broker-b",
        on_b.len()
    );

    // broker-b dies. Its keys fail with the queue named; the other keys go on.
    brokers[1].kill9();
    for key in &keys {
        let result = strict
            .send_ordered("seq", key, body(key, &mut next_seq))
            .await;
        if home[key].broker_name == "broker-b" {
            match result {
                Err(ClientError::OrderedQueueUnavailable { queue, cause }) => {
                    assert_eq!(queue, home[key]);
                    println!("{key} while its broker is down: {cause}");
                    // The message was not stored: take its sequence number back.
                    *next_seq.get_mut(key).unwrap() -= 1;
                }
                other => panic!("{key}: expected OrderedQueueUnavailable, got {other:?}"),
            }
        } else {
            assert_eq!(result.unwrap().queue, home[key]);
        }
    }
    // Once the route has dropped the broker the error says so, without a send attempt.
    wait_brokers(ns, &tls, "seq", 1, EXPIRY * 10).await;
    strict_client.refresh_route("seq").await.unwrap();
    let err = strict
        .send_ordered("seq", on_b[0], Message::new("never stored"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("left the topic's route")
            && err.to_string().contains("with_ordered_reroute"),
        "{err}"
    );

    // The opt-in moves only broker-b's keys, to broker-a; broker-a's keys stay home.
    for key in &keys {
        let sent = moving
            .send_ordered("seq", key, body(key, &mut next_seq))
            .await
            .unwrap();
        assert_eq!(sent.queue.broker_name, "broker-a");
        if home[key].broker_name == "broker-a" {
            assert_eq!(
                sent.queue, home[key],
                "{key} moved although its broker is up"
            );
        }
    }

    // broker-b is back: every key goes home again, strict and re-routing producers alike.
    brokers[1].restart().unwrap();
    wait_brokers(ns, &tls, "seq", 2, HEARTBEAT * 50).await;
    strict_client.refresh_route("seq").await.unwrap();
    for key in &keys {
        let sent = strict
            .send_ordered("seq", key, body(key, &mut next_seq))
            .await
            .unwrap();
        assert_eq!(sent.queue, home[key], "{key} is home again");
    }

    // Each queue holds each key's messages in send order, and the key's home queue holds
    // every message of the key that was not moved.
    let reader = PullConsumer::new(client(&[ns], &tls, None));
    let mut at_home: HashMap<String, u32> = HashMap::new();
    for range in reader.offsets("seq").await.unwrap() {
        let pulled = reader
            .pull(&range.queue, range.min_offset, 1000, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            pulled.messages.len() as u64,
            range.max_offset - range.min_offset
        );
        let mut last: HashMap<String, i64> = HashMap::new();
        for msg in &pulled.messages {
            let text = std::str::from_utf8(&msg.body).unwrap();
            let (key, seq) = text.split_once(':').unwrap();
            let seq: i64 = seq.parse().unwrap();
            let previous = last.entry(key.to_owned()).or_insert(-1);
            assert!(seq > *previous, "{key} out of order in {}", range.queue);
            *previous = seq;
            if home[key] == range.queue {
                *at_home.entry(key.to_owned()).or_default() += 1;
            }
        }
    }
    for key in &keys {
        let moved = u32::from(home[key].broker_name == "broker-b");
        assert_eq!(
            at_home[key] + moved,
            next_seq[key],
            "{key}: every message at home but the one moved while broker-b was down"
        );
    }
}
