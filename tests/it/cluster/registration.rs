//! Registration: routes at every name server, leave on shutdown, expiry after a crash,
//! restart, refusal of non-nodes and of name conflicts, one name server lost.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quiver_client::{Admin, ErrorCode, Message, Producer, PullConsumer};
use quiver_proto::RequestCode;
use quiver_proto::requests::route::{
    BrokerRegistration, BrokerRole, ClusterList, ClusterListing, DataVersion, RegistrationAck,
};
use quiver_tests::harness::{bin, serial};

use super::{Cluster, EXPIRY, HEARTBEAT, broker_args, client, start_cluster, wait_brokers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_route_leave_and_expire() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        brokers,
    } = start_cluster(dir.path(), 2, &["broker-a", "broker-b"]);
    let mut namesrvs = namesrvs.into_iter();
    let (mut ns1, ns2) = (namesrvs.next().unwrap(), namesrvs.next().unwrap());
    let mut brokers = brokers.into_iter();
    let (mut broker, broker_b) = (brokers.next().unwrap(), brokers.next().unwrap());
    let namesrv_list = [ns1.addr.clone(), ns2.addr.clone()];

    // `topic create` through the name servers puts 4 queues on every registered broker; the
    // next heartbeats (sent at once on a topic change) bring the route to both name servers.
    let admin = Admin::new(client(&[&ns1.addr, &ns2.addr], &tls, Some("admin")));
    let created = admin.create_topic("orders", 4).await.unwrap();
    assert_eq!(created.len(), 2);
    for ns in [&ns1.addr, &ns2.addr] {
        let started = Instant::now();
        loop {
            let route = client(&[ns], &tls, None).refresh_route("orders").await;
            if route.as_ref().is_ok_and(|r| r.brokers.len() == 2) {
                let route = route.unwrap();
                assert_eq!(route.queues.iter().map(|q| q.queues).sum::<u32>(), 8);
                break;
            }
            assert!(
                started.elapsed() < HEARTBEAT * 50,
                "route at {ns}: {route:?}"
            );
            tokio::time::sleep(HEARTBEAT).await;
        }
        println!(
            "route with both brokers at {ns} after {:?}",
            started.elapsed()
        );
    }
    let listing: ClusterListing = client(&[&ns1.addr], &tls, None)
        .call(&ns1.addr, RequestCode::ClusterList, &ClusterList {})
        .await
        .unwrap();
    assert_eq!(listing.brokers.len(), 2);
    for info in &listing.brokers {
        assert_eq!((info.cluster.as_str(), info.queues), ("c1", 4));
        assert!(info.heartbeat_age_ms < EXPIRY.as_millis() as u64);
        assert_eq!(info.role, BrokerRole::Master);
        // One topic change since start: the heartbeat that brought the route carried it.
        assert_eq!(info.data_version.counter, 1, "{info:?}");
        assert!(info.data_version.timestamp_ms > 0);
    }

    // Producers spread over the queues of both brokers; a key query merges both brokers.
    let app = client(&[&ns1.addr, &ns2.addr], &tls, None);
    let producer = Producer::new(app.clone());
    for i in 0..40 {
        producer
            .send("orders", Message::new(format!("m{i}")).with_key("shared"))
            .await
            .unwrap();
    }
    let found = admin
        .query_key("orders", "shared", None, None, 100)
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        40,
        "the key query asks every broker serving the topic"
    );
    let offsets_a = PullConsumer::new(client(&[&broker.addr], &tls, None))
        .offsets("orders")
        .await
        .unwrap();
    let offsets_b = PullConsumer::new(client(&[&broker_b.addr], &tls, None))
        .offsets("orders")
        .await
        .unwrap();
    let stored_a: u64 = offsets_a.iter().map(|q| q.max_offset).sum();
    let stored_b: u64 = offsets_b.iter().map(|q| q.max_offset).sum();
    assert_eq!(
        (stored_a, stored_b),
        (20, 20),
        "round robin over both brokers' queues"
    );
    let sent = producer
        .send("orders", Message::new("via namesrv"))
        .await
        .unwrap();
    let reader = PullConsumer::new(app.clone());
    let pulled = reader
        .pull(&sent.queue, sent.offset, 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(pulled.messages[0].msg_id, sent.msg_id);

    // `quiver pull` names a queue by id and, when the id exists on several brokers, broker.
    let pull = |extra: &[&str]| {
        Command::new(bin("quiver"))
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .args(["--namesrv", &ns2.addr, "--output", "json", "pull"])
            .args([
                "--topic",
                "orders",
                "--queue",
                &sent.queue.queue_id.to_string(),
            ])
            .args(["--offset", &sent.offset.to_string(), "--count", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let ambiguous = pull(&[]);
    let stderr = String::from_utf8_lossy(&ambiguous.stderr);
    assert!(!ambiguous.status.success());
    assert!(
        stderr.contains("several brokers") && stderr.contains("--broker"),
        "{stderr}"
    );
    let named = pull(&["--broker", &sent.queue.broker_name]);
    assert!(
        named.status.success(),
        "{}",
        String::from_utf8_lossy(&named.stderr)
    );
    let stdout = String::from_utf8_lossy(&named.stdout);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["msg_id"], sent.msg_id.to_string());

    // Only node certificates may register; a live name at another address conflicts.
    let conflict = BrokerRegistration {
        cluster: "c1".into(),
        broker_name: "broker-a".into(),
        addr: "127.0.0.1:1".into(),
        role: BrokerRole::Master,
        data_version: DataVersion::default(),
        topics: vec![],
        unhealthy_reason: String::new(),
    };
    let as_admin = client(&[&ns2.addr], &tls, Some("admin"));
    let err = as_admin
        .call::<_, RegistrationAck>(&ns2.addr, RequestCode::BrokerRegister, &conflict)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    // A node certificate registers only the broker it names.
    let as_other_node = client(&[&ns2.addr], &tls, Some("broker-b"));
    for code in [RequestCode::BrokerRegister, RequestCode::BrokerHeartbeat] {
        let err = as_other_node
            .call::<_, RegistrationAck>(&ns2.addr, code, &conflict)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
        assert!(err.to_string().contains("broker-b"), "{err}");
    }
    let unregister = quiver_proto::requests::route::BrokerUnregister {
        cluster: "c1".into(),
        broker_name: "broker-a".into(),
        addr: "127.0.0.1:1".into(),
    };
    let err = as_other_node
        .call::<_, RegistrationAck>(&ns2.addr, RequestCode::BrokerUnregister, &unregister)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    let as_node = client(&[&ns2.addr], &tls, Some("broker-a"));
    let err = as_node
        .call::<_, RegistrationAck>(&ns2.addr, RequestCode::BrokerRegister, &conflict)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BrokerConflict), "{err}");
    let output = Command::new(bin("quiver-broker"))
        .args(broker_args(&tls, "broker-a", &namesrv_list))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("impostor"))
        .env("QUIVER_EXIT_ON_STDIN_EOF", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broker-a is registered at"), "{stderr}");

    // One name server down: nothing a client does fails, whether it was talking to the dead
    // one (`app`, `admin`) or starts fresh; an unknown topic is still "not found".
    // First, frozen (SIGSTOP: requests to it hang): a caller that asks it first gets its answer
    // from the other after the stagger, not after the 3 s request timeout.
    ns1.signal(libc::SIGSTOP).unwrap();
    let frozen_first = Admin::new(client(&[&ns1.addr, &ns2.addr], &tls, None));
    let started = Instant::now();
    let listing = tokio::time::timeout(Duration::from_secs(2), frozen_first.cluster())
        .await
        .expect("the live name server answers without waiting for the frozen one")
        .unwrap();
    assert_eq!(listing.len(), 2);
    println!(
        "cluster list with the first name server frozen: {:?}",
        started.elapsed()
    );
    ns1.kill9();
    let fresh = client(&[&ns1.addr, &ns2.addr], &tls, None);
    for app in [&app, &fresh] {
        app.forget_route("orders");
        let sent = Producer::new(app.clone())
            .send("orders", Message::new("one namesrv left"))
            .await
            .unwrap();
        let pulled = PullConsumer::new(app.clone())
            .pull(&sent.queue, sent.offset, 1, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(pulled.messages[0].msg_id, sent.msg_id);
        let err = Producer::new(app.clone())
            .send("nope", Message::new("x"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
        assert!(err.to_string().contains("topic nope not found"), "{err}");
    }
    assert_eq!(admin.cluster().await.unwrap().len(), 2);
    assert!(
        admin
            .list_topics()
            .await
            .unwrap()
            .iter()
            .any(|t| t.topic == "orders")
    );
    assert_eq!(admin.create_topic("after-ns1", 1).await.unwrap().len(), 2);
    assert_eq!(
        admin
            .query_key("orders", "shared", None, None, 100)
            .await
            .unwrap()
            .len(),
        40
    );

    // A graceful leave drops the broker's queues from the route at once.
    assert!(broker.signal_and_wait(libc::SIGTERM).unwrap().success());
    let route = client(&[&ns2.addr], &tls, None)
        .refresh_route("orders")
        .await
        .unwrap();
    assert_eq!(route.brokers.len(), 1);
    assert_eq!(route.brokers[0].addr, broker_b.addr);

    // It comes back on restart; after kill -9 it expires (expiry 1 s, deadline 10 s).
    broker.restart().unwrap();
    wait_brokers(&ns2.addr, &tls, "orders", 2, HEARTBEAT * 50).await;
    broker.kill9();
    let took = wait_brokers(&ns2.addr, &tls, "orders", 1, EXPIRY * 10).await;
    println!("route expired {took:?} after kill -9 (expiry {EXPIRY:?})");
    assert!(took >= EXPIRY / 2, "expired before the expiry: {took:?}");
}
