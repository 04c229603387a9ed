//! A broker lost under load: `kill -9` (no failed sync send with the default retries, nothing
//! acknowledged lost) and SIGSTOP (one probe per back-off period while the others take the
//! traffic, traffic back after SIGCONT).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quiver_client::fault::BrokerCounters;
use quiver_client::{Client, ClientOptions, Message, Producer, PullConsumer};
use quiver_tests::harness::{Server, serial};
use quiver_tests::history::{History, Reads, check};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{Cluster, HEARTBEAT, client, start_cluster_with_topic, wait_brokers};

/// Sync senders kept busy by the load.
const SENDERS: u64 = 8;
/// Request timeout and failure back-off of the load's producer (short, so tests take seconds).
const TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF: Duration = Duration::from_secs(1);

/// `SENDERS` sync senders with the default retries on one producer, until stopped.
struct Load {
    producer: Arc<Producer>,
    history: Arc<History>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    progress: Arc<Notify>,
    tasks: JoinSet<()>,
}

impl Load {
    /// Starts sending to `topic` through the name server `ns`. Routes are cached for the
    /// default 30 s, so a lost broker stays in the producer's route: the back-off, not the
    /// route, has to keep sends away from it.
    fn start(ns: &str, tls: &std::path::Path, topic: &'static str) -> Load {
        let mut options = ClientOptions::new(ns.to_owned(), tls.join("ca.pem"));
        options.timeout = TIMEOUT;
        let producer =
            Arc::new(Producer::new(Client::new(options).unwrap()).with_failure_backoff(BACKOFF));
        let mut load = Load {
            producer,
            history: Arc::default(),
            failed: Arc::default(),
            stop: Arc::default(),
            progress: Arc::default(),
            tasks: JoinSet::new(),
        };
        for sender in 0..SENDERS {
            let (producer, history, failed, stop, progress) = (
                load.producer.clone(),
                load.history.clone(),
                load.failed.clone(),
                load.stop.clone(),
                load.progress.clone(),
            );
            load.tasks.spawn(async move {
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let body = Bytes::from(format!("s{sender}-{i}"));
                    history.invoke(&body);
                    match producer.send(topic, Message::new(body.clone())).await {
                        Ok(sent) => {
                            history.ok(&body, sent.msg_id);
                            progress.notify_waiters();
                        }
                        Err(err) => {
                            eprintln!("send failed: {err}");
                            history.fail(&body);
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        load
    }

    fn acked(&self) -> usize {
        self.history.acked()
    }

    /// Waits until `n` sends are acknowledged (deadline 60 s).
    async fn wait_acked(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let progress = self.progress.notified();
            if self.acked() >= n {
                return;
            }
            tokio::select! {
                () = progress => {}
                () = tokio::time::sleep_until(deadline) => panic!("load made no progress: {} of {n} acked", self.acked()),
            }
        }
    }

    fn counters(&self, broker: &str) -> BrokerCounters {
        self.producer
            .counters()
            .get(broker)
            .copied()
            .unwrap_or_default()
    }

    /// Stops the senders; returns the history of their sends and the failed count.
    async fn stop(mut self) -> (Arc<History>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        (self.history.clone(), self.failed.load(Ordering::Relaxed))
    }
}

/// Counts on the lost broker since `before` (taken just after the fault): each sender may
/// pick it once more before the first failure starts its back-off, then one probe per period.
fn report(what: &str, before: BrokerCounters, after: BrokerCounters, elapsed: Duration) -> u64 {
    let attempts = after.attempts - before.attempts;
    let periods = elapsed.as_secs_f64() / BACKOFF.as_secs_f64();
    println!(
        "{what}: {attempts} attempts on it in {elapsed:?} ({periods:.1} back-off periods), {} failures, {} avoided",
        after.failures - before.failures,
        after.avoided - before.avoided
    );
    assert!(
        after.failures > before.failures,
        "the lost broker's failures are counted"
    );
    assert!(
        after.avoided > before.avoided,
        "the lost broker is avoided while it backs off"
    );
    assert!(
        attempts as f64 <= SENDERS as f64 + periods + 1.0,
        "{attempts} attempts on a lost broker in {periods:.1} back-off periods: at most one per sender before the back-off plus one probe per period"
    );
    attempts
}

/// Every acknowledged send is stored on one of `brokers`, nothing unsent is stored and no
/// offset holds two messages; copies of retried sends are reported.
async fn assert_none_lost(
    brokers: &[Server],
    tls: &std::path::Path,
    topic: &str,
    history: &History,
) {
    let reads = Reads::new();
    for broker in brokers {
        let reader = client(&[&broker.addr], tls, None);
        for (queue, msgs) in crate::read_all(&reader, topic).await {
            reads.record_all(&queue, &msgs);
        }
    }
    let report = check(history, &reads);
    println!("{report} (duplicates: indeterminate sends retried)");
    assert_eq!(report.lost.count, 0, "{report}");
    report.assert_clean(topic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_route_around_a_killed_broker_without_failed_sends() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        mut brokers,
    } = start_cluster_with_topic(dir.path(), 1, &["broker-a", "broker-b"], "load", 4).await;
    let ns = &namesrvs[0];

    let load = Load::start(&ns.addr, &tls, "load");
    load.wait_acked(300).await;
    brokers[1].kill9();
    let killed_at = Instant::now();
    let before = load.counters("broker-b");
    load.wait_acked(load.acked() + 600).await;
    // Keep the load on for three back-off periods, so the dead broker is retried and avoided.
    tokio::time::sleep_until(tokio::time::Instant::from_std(killed_at + BACKOFF * 3)).await;
    let elapsed = killed_at.elapsed();
    let after = load.counters("broker-b");
    let (history, failed) = load.stop().await;
    report("kill -9 broker-b", before, after, elapsed);
    assert_eq!(failed, 0, "no send failed with the default retries");

    // Nothing acknowledged is lost: read both brokers (broker-b restarted on its data).
    brokers[1].restart().unwrap();
    wait_brokers(&ns.addr, &tls, "load", 2, HEARTBEAT * 50).await;
    assert_none_lost(&brokers, &tls, "load", &history).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_gets_one_probe_per_backoff_and_traffic_after_it_thaws() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        namesrvs,
        brokers,
    } = start_cluster_with_topic(dir.path(), 1, &["broker-a", "broker-b"], "frozen", 4).await;
    let ns = &namesrvs[0];
    let stored_on_b = || async {
        let offsets = PullConsumer::new(client(&[&brokers[1].addr], &tls, None))
            .offsets("frozen")
            .await
            .unwrap();
        offsets.iter().map(|q| q.max_offset).sum::<u64>()
    };

    let load = Load::start(&ns.addr, &tls, "frozen");
    load.wait_acked(300).await;
    // SIGSTOP: the broker keeps its sockets but answers nothing, so requests to it hang until
    // they time out (unlike kill -9, nothing refuses them).
    brokers[1].signal(libc::SIGSTOP).unwrap();
    let frozen_at = Instant::now();
    let before = load.counters("broker-b");
    load.wait_acked(load.acked() + 600).await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(frozen_at + BACKOFF * 4)).await;
    let acked_frozen = load.acked();
    let elapsed = frozen_at.elapsed();
    let after = load.counters("broker-b");
    report("SIGSTOP broker-b", before, after, elapsed);

    // SIGCONT: the next probe succeeds and broker-b takes its share again.
    brokers[1].signal(libc::SIGCONT).unwrap();
    let thawed_at = Instant::now();
    let stored_at_thaw = stored_on_b().await;
    // Sends may reach broker-b while the line above runs: count successes from here on.
    let base = load.counters("broker-b");
    let deadline = thawed_at + (BACKOFF + TIMEOUT) * 10;
    let back_after = loop {
        let progress = load.progress.notified();
        let counters = load.counters("broker-b");
        // attempts - failures also counts sends still in flight (at most one per sender).
        if counters.attempts - counters.failures > base.attempts - base.failures + 200 {
            break thawed_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "broker-b got no traffic after SIGCONT: {counters:?}"
        );
        tokio::select! {
            () = progress => {}
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
        }
    };
    println!("broker-b took 200 sends again {back_after:?} after SIGCONT");
    let (history, failed) = load.stop().await;
    assert!(
        acked_frozen > 600,
        "sends went on while broker-b was frozen"
    );
    assert_eq!(failed, 0, "no send failed with the default retries");
    let stored_after = stored_on_b().await;
    assert!(
        stored_after > stored_at_thaw + 100,
        "broker-b stores again after SIGCONT: {stored_at_thaw} -> {stored_after}"
    );
    assert_none_lost(&brokers, &tls, "frozen", &history).await;
}
