//! A topic over three brokers: sends balance over every queue; key queries reach all brokers.

use quiver_client::{Admin, Message, Producer, PullConsumer};
use quiver_proto::RequestCode;
use quiver_proto::requests::msg::{QueryKeyRequest, QueryResponse};
use quiver_tests::harness::serial;

use super::{Cluster, client, start_cluster_with_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_over_three_brokers_balances_30k_sends_and_queries_reach_all() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        brokers,
    } = start_cluster_with_topic(dir.path(), 2, &["b1", "b2", "b3"], "spread", 4).await;
    let addrs: Vec<&str> = namesrvs.iter().map(|ns| ns.addr.as_str()).collect();
    let admin = Admin::new(client(&addrs, &tls, Some("admin")));
    let producer = std::sync::Arc::new(Producer::new(client(&addrs, &tls, None)));
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..30 {
        let producer = producer.clone();
        tasks.spawn(async move {
            for i in 0..1000 {
                let msg =
                    Message::new(format!("{sender}-{i}")).with_key(format!("key-{}", i % 100));
                producer.send("spread", msg).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let mut counts = Vec::new();
    for broker in &brokers {
        let offsets = PullConsumer::new(client(&[&broker.addr], &tls, None))
            .offsets("spread")
            .await
            .unwrap();
        counts.extend(offsets.iter().map(|q| q.max_offset));
    }
    assert_eq!(counts.len(), 12);
    assert_eq!(counts.iter().sum::<u64>(), 30_000);
    let mean = 30_000.0 / 12.0;
    for count in &counts {
        assert!(
            (*count as f64 - mean).abs() / mean <= 0.2,
            "queue holds {count}, mean {mean}: {counts:?}"
        );
    }
    // Each key's 300 messages are spread over every broker; the query asks them all.
    let found = admin
        .query_key("spread", "key-7", None, None, 1000)
        .await
        .unwrap();
    assert_eq!(found.len(), 300);
    let request = QueryKeyRequest {
        topic: "spread".into(),
        key: "key-7".into(),
        begin_ms: None,
        end_ms: None,
        max_msgs: 1000,
    };
    let mut per_broker = Vec::new();
    for broker in &brokers {
        let direct = client(&[&broker.addr], &tls, None);
        let answer: QueryResponse = direct
            .call(&broker.addr, RequestCode::MsgQueryKey, &request)
            .await
            .unwrap();
        per_broker.push(answer.messages.len());
    }
    assert!(
        per_broker.iter().all(|n| *n > 0),
        "every broker holds some of the key: {per_broker:?}"
    );
    assert_eq!(per_broker.iter().sum::<usize>(), 300);
    println!("30,000 sends over 12 queues on 3 brokers: {counts:?}");
}
