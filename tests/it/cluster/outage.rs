//! Every name server down for three times the route refresh and expiry intervals (one killed,
//! one frozen with SIGSTOP, so requests to it hang until they time out): producers and
//! consumers go on with their cached routes and nothing acknowledged is lost; the name servers
//! come back and route again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quiver_client::{Client, ClientOptions, Message, Producer, PullConsumer};
use quiver_tests::harness::{campaign, serial};
use quiver_tests::history::{History, Reads, check};
use tokio::sync::Notify;

use super::{Cluster, EXPIRY, HEARTBEAT, start_cluster_with_topic, wait_brokers};

/// How often the test clients refresh their cached routes.
const ROUTE_REFRESH: Duration = Duration::from_millis(200);

/// Sends and reads seen so far, with a wake-up on every change.
#[derive(Default)]
struct Seen {
    history: History,
    consumed: Reads,
    failed_sends: AtomicU64,
    failed_pulls: AtomicU64,
    changed: Notify,
}

impl Seen {
    fn counts(&self) -> (usize, usize) {
        (self.history.acked(), self.consumed.messages())
    }

    /// Waits until `done` holds for (acked, consumed), or panics after `deadline`.
    async fn wait(&self, what: &str, deadline: Duration, done: impl Fn(usize, usize) -> bool) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let changed = self.changed.notified();
            let (acked, consumed) = self.counts();
            if done(acked, consumed) {
                return;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until) => {
                    panic!("{what}: not reached in {deadline:?} ({acked} acked, {consumed} consumed)")
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_and_consumers_outlive_every_name_server() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        tls,
        mut namesrvs,
        brokers: _brokers,
    } = start_cluster_with_topic(dir.path(), 2, &["broker-a", "broker-b"], "feed", 2).await;
    let addrs: Vec<String> = namesrvs.iter().map(|ns| ns.addr.clone()).collect();

    let mut options = ClientOptions::new(addrs[0].clone(), tls.join("ca.pem"));
    options.namesrv = addrs.clone();
    options.timeout = Duration::from_secs(1);
    options.route_refresh = ROUTE_REFRESH;
    let app = Client::new(options.clone()).unwrap();
    // A client of its own, so no other caller has started its background refresh.
    let probe = Client::new(options).unwrap();
    probe.route("feed").await.unwrap();
    let seen = Arc::new(Seen::default());
    let (stop_sending, stop_consuming) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );

    let producer = Producer::new(app.clone());
    let sending = {
        let (seen, stop) = (seen.clone(), stop_sending.clone());
        tokio::spawn(async move {
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let body = Bytes::from(format!("m{i}"));
                seen.history.invoke(&body);
                match producer.send("feed", Message::new(body.clone())).await {
                    Ok(sent) => seen.history.ok(&body, sent.msg_id),
                    Err(err) => {
                        eprintln!("send failed: {err}");
                        seen.history.fail(&body);
                        seen.failed_sends.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seen.changed.notify_waiters();
            }
        })
    };
    // One consumer reads every queue of both brokers from its start, in turns.
    let consumer = PullConsumer::new(app.clone());
    let queues = consumer.queues("feed").await.unwrap();
    assert_eq!(queues.len(), 4, "2 queues on each of 2 brokers: {queues:?}");
    let consuming = {
        let (seen, stop) = (seen.clone(), stop_consuming.clone());
        tokio::spawn(async move {
            let mut next: HashMap<usize, u64> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                for (index, queue) in queues.iter().enumerate() {
                    let offset = next.entry(index).or_default();
                    match consumer
                        .pull(queue, *offset, 256, Duration::from_millis(20))
                        .await
                    {
                        Ok(pulled) => {
                            *offset = pulled.next_offset;
                            seen.consumed.record_all(queue, &pulled.messages);
                        }
                        Err(err) => {
                            eprintln!("pull of {queue} failed: {err}");
                            seen.failed_pulls.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    seen.changed.notify_waiters();
                }
            }
        })
    };
    seen.wait(
        "traffic before the outage",
        Duration::from_secs(30),
        |a, c| a >= 200 && c >= 200,
    )
    .await;

    // Every name server down for 3x the longer of the refresh and expiry intervals (60 s in a
    // campaign run, RELIABILITY.md's F14).
    let outage = if campaign() {
        Duration::from_secs(60)
    } else {
        3 * ROUTE_REFRESH.max(EXPIRY)
    };
    namesrvs[0].kill9();
    namesrvs[1].signal(libc::SIGSTOP).unwrap();
    let down_at = Instant::now();
    let (acked_at_kill, consumed_at_kill) = seen.counts();
    // A stale cached route is answered at once and refreshed in the background: a caller
    // never waits on a name server that does not answer (a refresh waits for the 1 s request
    // timeout at each of them).
    for _ in 0..3 {
        tokio::time::sleep(ROUTE_REFRESH).await;
        let route = tokio::time::timeout(Duration::from_millis(500), probe.route("feed"))
            .await
            .expect("a cached route is answered without waiting for the name servers")
            .unwrap();
        assert_eq!(route.brokers.len(), 2);
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(down_at + outage)).await;
    let (acked_in_outage, consumed_in_outage) = seen.counts();
    println!(
        "{:?} without name servers: {} sends acked, {} messages consumed",
        down_at.elapsed(),
        acked_in_outage - acked_at_kill,
        consumed_in_outage - consumed_at_kill
    );
    assert!(
        acked_in_outage > acked_at_kill + 100,
        "sends went on with the cached route"
    );
    assert!(
        consumed_in_outage > consumed_at_kill + 100,
        "pulls went on with the cached route"
    );

    // The killed one restarts, the frozen one resumes; both rebuild from the next heartbeats.
    namesrvs[0].restart().unwrap();
    namesrvs[1].signal(libc::SIGCONT).unwrap();
    for ns in &addrs {
        let took = wait_brokers(ns, &tls, "feed", 2, HEARTBEAT * 50).await;
        println!("name server {ns} routes again after {took:?}");
    }
    let refreshed_at = app.refresh_route("feed").await.unwrap();
    assert_eq!(refreshed_at.brokers.len(), 2);

    // Stop sending; everything acknowledged is read back.
    let (acked_now, _) = seen.counts();
    seen.wait(
        "traffic after the outage",
        Duration::from_secs(30),
        |a, _| a >= acked_now + 100,
    )
    .await;
    stop_sending.store(true, Ordering::Relaxed);
    sending.await.unwrap();
    let lost = |seen: &Seen| check(&seen.history, &seen.consumed).lost.count;
    seen.wait(
        "every acked message consumed",
        Duration::from_secs(30),
        |_, _| lost(&seen) == 0,
    )
    .await;
    stop_consuming.store(true, Ordering::Relaxed);
    consuming.await.unwrap();
    let report = check(&seen.history, &seen.consumed);
    println!(
        "{report}; {} failed sends, {} failed pulls",
        seen.failed_sends.load(Ordering::Relaxed),
        seen.failed_pulls.load(Ordering::Relaxed)
    );
    report.assert_clean("after the name server outage");
    assert_eq!(seen.failed_sends.load(Ordering::Relaxed), 0);
    assert_eq!(seen.failed_pulls.load(Ordering::Relaxed), 0);
}
