//! Name servers and broker registration: register, heartbeat, route through any name server,
//! leave on shutdown, expire after a crash, refuse non-nodes and name conflicts.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quiver_client::{Admin, Client, ClientOptions, ErrorCode, Message, Producer, PullConsumer};
use quiver_net::tls::{CertPlan, init_dir};
use quiver_proto::RequestCode;
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

/// Waits until `namesrv` routes `topic` (or, with `present == false`, no longer does).
async fn wait_route(
    namesrv: &str,
    tls: &std::path::Path,
    topic: &str,
    present: bool,
    deadline: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let found = client(&[namesrv], tls, None)
            .refresh_route(topic)
            .await
            .is_ok();
        if found == present {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "route of {topic} at {namesrv}: still {found} after {deadline:?}"
        );
        // One heartbeat interval between polls: the condition changes on heartbeats.
        tokio::time::sleep(HEARTBEAT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_route_leave_and_expire() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let plan = CertPlan {
        nodes: vec![("namesrv".into(), vec![]), ("broker-a".into(), vec![])],
        clients: vec![("admin".into(), true)],
    };
    init_dir(&tls, &plan).unwrap();
    let tls_arg = tls.to_str().unwrap().to_owned();
    let ns_spec = Spec {
        program: "quiver-namesrv".into(),
        args: vec![
            "--tls-dir".into(),
            tls_arg.clone(),
            "--expiry".into(),
            "1s".into(),
        ],
        envs: vec![],
    };
    let mut ns1 = Server::start(&ns_spec, &dir.path().join("ns1")).unwrap();
    let ns2 = Server::start(&ns_spec, &dir.path().join("ns2")).unwrap();
    let broker_args = |name: &str| -> Vec<String> {
        [
            "--tls-dir",
            &tls_arg,
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
        .chain([format!("{},{}", ns1.addr, ns2.addr)])
        .collect()
    };
    let broker_spec = Spec {
        program: "quiver-broker".into(),
        args: broker_args("broker-a"),
        envs: vec![],
    };
    let mut broker = Server::start(&broker_spec, &dir.path().join("broker-a")).unwrap();

    // A topic created on the broker reaches both name servers with the next heartbeat.
    Admin::new(client(&[&broker.addr], &tls, Some("admin")))
        .create_topic("orders", 4)
        .await
        .unwrap();
    for ns in [&ns1.addr, &ns2.addr] {
        let took = wait_route(ns, &tls, "orders", true, HEARTBEAT * 50).await;
        println!("route at {ns} after {took:?}");
        let route = client(&[ns], &tls, None)
            .refresh_route("orders")
            .await
            .unwrap();
        assert_eq!(route.brokers[0].addr, broker.addr);
        assert_eq!(route.queues[0].queues, 4);
    }
    let listing: ClusterListing = client(&[&ns1.addr], &tls, None)
        .call(&ns1.addr, RequestCode::ClusterList, &ClusterList {})
        .await
        .unwrap();
    assert_eq!(listing.brokers.len(), 1);
    assert_eq!(
        (
            listing.brokers[0].cluster.as_str(),
            listing.brokers[0].queues
        ),
        ("c1", 4)
    );
    assert!(listing.brokers[0].heartbeat_age_ms < EXPIRY.as_millis() as u64);

    // Producers and consumers find the broker through the name servers.
    let app = client(&[&ns1.addr, &ns2.addr], &tls, None);
    let sent = Producer::new(app.clone())
        .send("orders", Message::new("via namesrv"))
        .await
        .unwrap();
    let pulled = PullConsumer::new(app.clone())
        .pull("orders", sent.queue_id, sent.offset, 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(pulled.messages[0].body, "via namesrv".as_bytes());

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
        .args(broker_args("broker-a"))
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

    // A graceful leave drops the route at once.
    assert!(broker.signal_and_wait(libc::SIGTERM).unwrap().success());
    let err = client(&[&ns2.addr], &tls, None)
        .refresh_route("orders")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");

    // It comes back on restart; after kill -9 it expires (expiry 1 s, deadline 10 s).
    broker.restart().unwrap();
    wait_route(&ns2.addr, &tls, "orders", true, HEARTBEAT * 50).await;
    broker.kill9();
    let took = wait_route(&ns2.addr, &tls, "orders", false, EXPIRY * 10).await;
    println!("route expired {took:?} after kill -9 (expiry {EXPIRY:?})");
    assert!(took >= EXPIRY / 2, "expired before the expiry: {took:?}");
}
