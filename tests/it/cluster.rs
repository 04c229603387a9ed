//! Name servers and broker registration: register, heartbeat, route through any name server,
//! leave on shutdown, expire after a crash, refuse non-nodes and name conflicts.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quiver_client::{Admin, Client, ClientOptions, ErrorCode, Message, Producer, PullConsumer};
use quiver_net::tls::{CertPlan, init_dir};
use quiver_proto::RequestCode;
use quiver_proto::requests::msg::{QueryKeyRequest, QueryResponse};
use quiver_proto::requests::route::{
    BrokerRegistration, ClusterList, ClusterListing, RegistrationAck,
};
use quiver_tests::harness::{Server, Spec, bin, serial};

/// Heartbeat interval and expiry configured for the test; deadlines are 10x these.
const HEARTBEAT: Duration = Duration::from_millis(100);
const EXPIRY: Duration = Duration::from_secs(1);

fn client(namesrv: &[&str], tls: &std::path::Path, identity: Option<&str>) -> Client {
    let mut options = ClientOptions::new(namesrv[0].to_owned(), tls.join("ca.pem"));
    options.namesrv = namesrv.iter().map(|s| s.to_string()).collect();
    options.timeout = Duration::from_secs(3);
    options.identity = identity.map(|name| {
        (
            tls.join(format!("{name}.pem")),
            tls.join(format!("{name}.key")),
        )
    });
    Client::new(options).unwrap()
}

/// Waits until `namesrv` routes `topic` to exactly `brokers` brokers; returns how long.
async fn wait_brokers(
    namesrv: &str,
    tls: &std::path::Path,
    topic: &str,
    brokers: usize,
    deadline: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let route = client(&[namesrv], tls, None).refresh_route(topic).await;
        let count = route.as_ref().map_or(0, |r| r.brokers.len());
        if count == brokers {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "route of {topic} at {namesrv}: {count} brokers after {deadline:?}"
        );
        // One heartbeat interval between polls: the route only changes on heartbeats and expiry.
        tokio::time::sleep(HEARTBEAT).await;
    }
}

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
        .pull("orders", sent.queue_id, sent.offset, 1, Duration::ZERO)
        .await;
    assert!(pulled.is_ok(), "{pulled:?}");

    // Only node certificates may register; a live name at another address conflicts.
    let conflict = BrokerRegistration {
        cluster: "c1".into(),
        broker_name: "broker-a".into(),
        addr: "127.0.0.1:1".into(),
        topics: vec![],
    };
    let as_admin = client(&[&ns2.addr], &tls, Some("admin"));
    let err = as_admin
        .call::<_, RegistrationAck>(&ns2.addr, RequestCode::BrokerRegister, &conflict)
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

    // One name server down: clients go on through the other.
    ns1.kill9();
    let fresh = client(&[&ns1.addr, &ns2.addr], &tls, None);
    Producer::new(fresh)
        .send("orders", Message::new("one namesrv left"))
        .await
        .unwrap();

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

    // Every name server down: producers and consumers go on with their cached routes (a
    // failed refresh keeps the cached route), and nothing acknowledged is lost.
    let mut options = ClientOptions::new(ns2.addr.clone(), tls.join("ca.pem"));
    options.timeout = Duration::from_secs(1);
    options.route_refresh = Duration::from_millis(100);
    let cached = Client::new(options).unwrap();
    let producer = Producer::new(cached.clone());
    producer
        .send("orders", Message::new("route cached"))
        .await
        .unwrap();
    let mut ns2 = ns2;
    ns2.kill9();
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(
            producer
                .send("orders", Message::new(format!("no namesrv {i}")))
                .await
                .unwrap(),
        );
    }
    let consumer = PullConsumer::new(cached.clone());
    for result in &sent {
        let pulled = consumer
            .pull("orders", result.queue_id, result.offset, 1, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(pulled.messages[0].msg_id, result.msg_id);
    }
    // Restarted name servers rebuild their state from the next heartbeats.
    ns1.restart().unwrap();
    ns2.restart().unwrap();
    for ns in [&ns1.addr, &ns2.addr] {
        let took = wait_brokers(ns, &tls, "orders", 1, HEARTBEAT * 50).await;
        println!("restarted name server {ns} routes again after {took:?}");
    }
}

/// Name servers and brokers sharing one CA in `<dir>/tls`.
struct Cluster {
    tls: std::path::PathBuf,
    namesrvs: Vec<Server>,
    brokers: Vec<Server>,
}

/// Flags of a test broker: 100 ms heartbeats to `namesrvs`, cluster `c1`.
fn broker_args(tls: &std::path::Path, name: &str, namesrvs: &[String]) -> Vec<String> {
    let tls = tls.to_str().unwrap();
    [
        "--tls-dir",
        tls,
        "--broker-name",
        name,
        "--cluster",
        "c1",
        "--heartbeat-interval",
        "100ms",
        "--namesrv",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([namesrvs.join(",")])
    .collect()
}

/// Starts `n_namesrvs` name servers (expiry 1 s) and the named brokers.
fn start_cluster(dir: &std::path::Path, n_namesrvs: usize, brokers: &[&str]) -> Cluster {
    let tls = dir.join("tls");
    let mut nodes = vec![("namesrv".to_string(), vec![])];
    nodes.extend(brokers.iter().map(|b| (b.to_string(), vec![])));
    init_dir(
        &tls,
        &CertPlan {
            nodes,
            clients: vec![("admin".into(), true)],
        },
    )
    .unwrap();
    let ns_spec = Spec {
        program: "quiver-namesrv".into(),
        args: ["--tls-dir", tls.to_str().unwrap(), "--expiry", "1s"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        envs: vec![],
    };
    let namesrvs: Vec<Server> = (0..n_namesrvs)
        .map(|i| Server::start(&ns_spec, &dir.join(format!("ns{i}"))).unwrap())
        .collect();
    let addrs: Vec<String> = namesrvs.iter().map(|ns| ns.addr.clone()).collect();
    let brokers = brokers
        .iter()
        .map(|name| {
            let spec = Spec {
                program: "quiver-broker".into(),
                args: broker_args(&tls, name, &addrs),
                envs: vec![],
            };
            Server::start(&spec, &dir.join(name)).unwrap()
        })
        .collect();
    Cluster {
        tls,
        namesrvs,
        brokers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_route_around_a_killed_broker_without_failed_sends() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        mut brokers,
    } = start_cluster(dir.path(), 1, &["broker-a", "broker-b"]);
    let ns = &namesrvs[0];
    let admin = Admin::new(client(&[&ns.addr], &tls, Some("admin")));
    admin.create_topic("load", 4).await.unwrap();
    wait_brokers(&ns.addr, &tls, "load", 2, HEARTBEAT * 50).await;

    // Sync senders with the default retries, a 1 s request timeout and a 1 s back-off, so the
    // test runs in seconds. Routes are cached for the default 30 s: the dead broker stays in
    // the producer's route, so the back-off (not the route) has to keep sends away from it.
    let mut options = ClientOptions::new(ns.addr.clone(), tls.join("ca.pem"));
    options.timeout = Duration::from_secs(1);
    let backoff = Duration::from_secs(1);
    let producer = std::sync::Arc::new(
        Producer::new(Client::new(options).unwrap()).with_failure_backoff(backoff),
    );
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let (producer, acked, failed, stop, progress) = (
            producer.clone(),
            acked.clone(),
            failed.clone(),
            stop.clone(),
            progress.clone(),
        );
        tasks.spawn(async move {
            for i in 0u64.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                match producer
                    .send("load", Message::new(format!("s{sender}-{i}")))
                    .await
                {
                    Ok(sent) => {
                        acked.lock().unwrap().push(sent.msg_id);
                        progress.notify_one();
                    }
                    Err(err) => {
                        eprintln!("send failed: {err}");
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let wait_acked = |n: usize| {
        let (acked, progress) = (acked.clone(), progress.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked.lock().unwrap().len() < n {
                tokio::select! {
                    () = progress.notified() => {}
                    () = tokio::time::sleep_until(deadline) => panic!("load made no progress"),
                }
            }
        }
    };
    wait_acked(300).await;
    let before = producer
        .counters()
        .get("broker-b")
        .copied()
        .unwrap_or_default();
    brokers[1].kill9();
    let killed_at = Instant::now();
    let acked_at_kill = acked.lock().unwrap().len();
    wait_acked(acked_at_kill + 600).await;
    // Keep the load on for three back-off periods, so the dead broker is retried and avoided.
    tokio::time::sleep_until(tokio::time::Instant::from_std(killed_at + backoff * 3)).await;
    let elapsed = killed_at.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let after = producer.counters()["broker-b"];
    let attempts = after.attempts - before.attempts;
    let periods = elapsed.as_secs_f64() / backoff.as_secs_f64();
    println!(
        "kill -9 broker-b: {attempts} attempts on it in {elapsed:?} ({periods:.1} back-off periods), {} failures, {} avoided",
        after.failures - before.failures,
        after.avoided - before.avoided
    );
    assert_eq!(
        failed.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no send failed with the default retries"
    );
    assert!(
        after.failures > before.failures,
        "the dead broker's failures are counted"
    );
    assert!(
        after.avoided > before.avoided,
        "the dead broker is avoided while it backs off"
    );
    assert!(
        attempts as f64 <= 8.0 + periods + 1.0,
        "{attempts} attempts on a dead broker in {periods:.1} back-off periods: at most the 8 in flight at the kill plus one probe per period"
    );

    // Nothing acknowledged is lost: read both brokers (broker-b restarted on its data).
    brokers[1].restart().unwrap();
    wait_brokers(&ns.addr, &tls, "load", 2, HEARTBEAT * 50).await;
    let mut stored = std::collections::HashMap::new();
    for broker in &brokers {
        let reader = client(&[&broker.addr], &tls, None);
        for (_, msgs) in crate::read_all(&reader, "load").await {
            for msg in msgs {
                *stored.entry(msg.msg_id).or_insert(0u32) += 1;
            }
        }
    }
    let acked = acked.lock().unwrap().clone();
    let lost = acked.iter().filter(|id| !stored.contains_key(id)).count();
    let duplicates = stored.values().filter(|n| **n > 1).count();
    println!(
        "{} acked, {lost} lost, {duplicates} stored twice (indeterminate sends retried)",
        acked.len()
    );
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_over_three_brokers_balances_30k_sends_and_queries_reach_all() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        brokers,
    } = start_cluster(dir.path(), 2, &["b1", "b2", "b3"]);
    let addrs: Vec<&str> = namesrvs.iter().map(|ns| ns.addr.as_str()).collect();
    let admin = Admin::new(client(&addrs, &tls, Some("admin")));
    assert_eq!(admin.create_topic("spread", 4).await.unwrap().len(), 3);
    for ns in &addrs {
        wait_brokers(ns, &tls, "spread", 3, HEARTBEAT * 50).await;
    }
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
