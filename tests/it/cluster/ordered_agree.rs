//! Two producers agree on every key's queue: one started with the whole cluster up, one
//! started while a broker was down. The late one fails the down broker's keys (their home is
//! in the layout the name server keeps) instead of spreading them over the live queues; after
//! the broker is back both put every key on the same queue, so each key is on one queue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quiver_client::{Client, ClientError, ClientOptions, Message, MessageQueue, Producer};
use quiver_tests::harness::serial;

use super::{Cluster, EXPIRY, HEARTBEAT, start_cluster_with_topic, wait_brokers};

const KEYS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_started_while_a_broker_is_down_puts_keys_where_the_others_do() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        mut brokers,
    } = start_cluster_with_topic(dir.path(), 1, &["broker-a", "broker-b"], "agree", 4).await;
    let ns = &namesrvs[0].addr;
    let mut options = ClientOptions::new(ns.clone(), tls.join("ca.pem"));
    options.timeout = Duration::from_secs(1);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();

    let early_client = Client::new(options.clone()).unwrap();
    let early = Producer::new(early_client.clone());
    let mut home: BTreeMap<&str, MessageQueue> = BTreeMap::new();
    for key in &keys {
        let sent = early
            .send_ordered("agree", key, Message::new(key.clone()))
            .await
            .unwrap();
        home.insert(key, sent.queue);
    }
    let on_b = home
        .values()
        .filter(|q| q.broker_name == "broker-b")
        .count();
    assert!(on_b > 0 && on_b < KEYS, "{on_b} of {KEYS} keys on broker-b");

    // broker-b dies and leaves the route; a new producer starts.
    brokers[1].kill9();
    wait_brokers(ns, &tls, "agree", 1, EXPIRY * 10).await;
    let late_client = Client::new(options).unwrap();
    let late = Producer::new(late_client.clone());
    for key in &keys {
        let result = late
            .send_ordered("agree", key, Message::new(key.clone()))
            .await;
        match result {
            Ok(sent) => assert_eq!(sent.queue, home[key.as_str()], "{key}: late producer"),
            Err(ClientError::OrderedQueueUnavailable { queue, cause }) => {
                assert_eq!(queue, home[key.as_str()], "{key}: {cause}");
                assert!(cause.contains("left the topic's route"), "{cause}");
            }
            Err(other) => panic!("{key}: {other}"),
        }
    }

    // broker-b is back: both producers put every key at its home.
    brokers[1].restart().unwrap();
    wait_brokers(ns, &tls, "agree", 2, HEARTBEAT * 50).await;
    for (client, producer) in [(&early_client, &early), (&late_client, &late)] {
        client.refresh_route("agree").await.unwrap();
        for key in &keys {
            let sent = producer
                .send_ordered("agree", key, Message::new(key.clone()))
                .await
                .unwrap();
            assert_eq!(sent.queue, home[key.as_str()], "{key} after the restart");
        }
    }

    // What is stored: each key on exactly one queue.
    let reader = super::client(&[ns], &tls, None);
    let mut queues_of: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
    for (queue, msgs) in crate::read_all(&reader, "agree").await {
        for msg in msgs {
            let key = String::from_utf8(msg.body.to_vec()).unwrap();
            queues_of.entry(key).or_default().insert(queue.clone());
        }
    }
    assert_eq!(queues_of.len(), KEYS);
    for (key, queues) in &queues_of {
        assert_eq!(queues.len(), 1, "{key} is on {queues:?}");
    }
}
