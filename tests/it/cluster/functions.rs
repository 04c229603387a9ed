//! A function in a cluster: deployed to every broker with one call, it runs where its
//! topic's queues are, and its emits reach a topic that only another broker serves.

use std::time::{Duration, Instant};

use quiver_client::{Admin, BrokerChoice, Message, Producer};
use quiver_tests::harness::serial;

use super::{HEARTBEAT, client, start_cluster, wait_brokers};
use crate::functions::{guest_bytes, spec_for};
use crate::read_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_emits_to_a_topic_another_broker_serves() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path(), 1, &["b1", "b2"]);
    let namesrv = cluster.namesrvs[0].addr.clone();
    let admin_client = client(&[&namesrv], &cluster.tls, Some("admin"));
    let admin = Admin::new(admin_client.clone());
    admin
        .create_topic_on("src", 2, &BrokerChoice::Named(vec!["b1".into()]))
        .await
        .unwrap();
    admin
        .create_topic_on("dst", 2, &BrokerChoice::Named(vec!["b2".into()]))
        .await
        .unwrap();
    wait_brokers(&namesrv, &cluster.tls, "src", 1, HEARTBEAT * 50).await;
    wait_brokers(&namesrv, &cluster.tls, "dst", 1, HEARTBEAT * 50).await;
    let deployed = admin
        .deploy_function(
            "relay",
            &guest_bytes("router"),
            spec_for("src", "*", &[("to", "dst")]),
        )
        .await
        .unwrap();
    assert_eq!(deployed.len(), 2, "deployed to every broker");
    let producer = Producer::new(admin_client.clone());
    for i in 0..100 {
        let msg = Message::new(format!("m{i}")).with_tag("paid");
        let msg = if i % 2 == 0 {
            msg.with_key(format!("k{i}"))
        } else {
            msg
        };
        producer.send("src", msg).await.unwrap();
    }
    let started = Instant::now();
    loop {
        let got: usize = read_all(&admin_client, "dst")
            .await
            .values()
            .map(Vec::len)
            .sum();
        if got == 100 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{got} of 100 emits reached b2's topic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("emits reached the other broker in {:?}", started.elapsed());
    let mut bodies: Vec<String> = read_all(&admin_client, "dst")
        .await
        .values()
        .flatten()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    bodies.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(bodies, want);
}
