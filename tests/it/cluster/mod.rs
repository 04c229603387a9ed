//! Clusters: name servers, brokers registering with all of them, topics over many brokers,
//! clients routing around failures. Every test starts real `quiver-namesrv` and
//! `quiver-broker` processes with short intervals (heartbeat 100 ms, expiry 1 s) and asserts
//! liveness against deadlines of at least 10x those.

mod balance;
mod failover;
mod functions;
mod groups;
mod ordered;
mod ordered_agree;
mod outage;
mod registration;

use std::time::{Duration, Instant};

use quiver_client::{Admin, Client, ClientOptions};
use quiver_net::tls::{CertPlan, init_dir};
use quiver_tests::harness::{Server, Spec};

/// Heartbeat interval and expiry configured for the test; deadlines are 10x these.
const HEARTBEAT: Duration = Duration::from_millis(100);
const EXPIRY: Duration = Duration::from_secs(1);

fn client(namesrv: &[&str], tls: &std::path::Path, identity: Option<&str>) -> Client {
    let mut options = ClientOptions::new(namesrv[0].to_owned(), tls.join("ca.pem"));
    options.namesrv = namesrv.iter().map(|s| s.to_string()).collect();
    options.timeout = Duration::from_secs(3);
    // Without a name: the client pair beside the CA (ClientOptions::new).
    if let Some(name) = identity {
        options.identity = Some((
            tls.join(format!("{name}.pem")),
            tls.join(format!("{name}.key")),
        ));
    }
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
    start_cluster_env(dir, n_namesrvs, brokers, &[])
}

/// [`start_cluster`], with extra environment for the brokers.
fn start_cluster_env(
    dir: &std::path::Path,
    n_namesrvs: usize,
    brokers: &[&str],
    broker_envs: &[(&str, &str)],
) -> Cluster {
    let tls = dir.join("tls");
    let mut nodes = vec![("namesrv".to_string(), vec![])];
    nodes.extend(brokers.iter().map(|b| (b.to_string(), vec![])));
    init_dir(
        &tls,
        &CertPlan {
            nodes,
            clients: vec![("admin".into(), true), ("client".into(), false)],
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
                envs: broker_envs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
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

/// [`start_cluster`], then `topic` with `queues` queues on every broker, routed to all of them
/// by every name server.
async fn start_cluster_with_topic(
    dir: &std::path::Path,
    n_namesrvs: usize,
    brokers: &[&str],
    topic: &str,
    queues: u32,
) -> Cluster {
    let cluster = start_cluster(dir, n_namesrvs, brokers);
    let addrs: Vec<&str> = cluster.namesrvs.iter().map(|ns| ns.addr.as_str()).collect();
    let admin = Admin::new(client(&addrs, &cluster.tls, Some("admin")));
    let created = admin.create_topic(topic, queues).await.unwrap();
    assert_eq!(created.len(), brokers.len(), "{topic} on every broker");
    for ns in &addrs {
        wait_brokers(ns, &cluster.tls, topic, brokers.len(), HEARTBEAT * 50).await;
    }
    cluster
}
