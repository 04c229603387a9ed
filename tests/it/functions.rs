//! WASM functions end to end on a standalone: deploy a component, send, see its output, lag
//! reach 0, a restart resume without recompiling or re-handling, the tag filter keep
//! non-matching messages out of the VM, and a poison message dead-lettered alone.

use std::time::{Duration, Instant};

use quiver_client::admin_fn::OnBroker;
use quiver_client::{Admin, Client, Message, Producer};
use quiver_proto::requests::function::{FnInfo, FnLimits, FnSpec};
use quiver_proto::requests::group::StartFrom;
use quiver_tests::harness::{Spec, serial};

use crate::{read_all, setup};

/// Liveness deadline for a function to catch up.
const DEADLINE: Duration = Duration::from_secs(60);

/// A guest built by `cargo xtask guests`.
pub(crate) fn guest_bytes(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}; build the guests with `cargo xtask guests`",
            path.display()
        )
    })
}

pub(crate) fn spec_for(topic: &str, tags: &str, config: &[(&str, &str)]) -> FnSpec {
    FnSpec {
        topic: topic.into(),
        tags: tags.into(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        max_retries: 0,
        retry_delay_ms: 100,
        batch_max: 64,
        batch_wait_ms: 0,
        start: StartFrom::First,
        limits: FnLimits::default(),
    }
}

pub(crate) async fn describe(client: &Client, name: &str) -> FnInfo {
    let mut all: Vec<OnBroker<FnInfo>> = Admin::new(client.clone())
        .describe_function(name)
        .await
        .expect("describe");
    assert_eq!(all.len(), 1, "one broker");
    all.remove(0).value
}

/// Waits until the function has no lag and `check` holds; prints how long it took.
pub(crate) async fn caught_up(
    client: &Client,
    name: &str,
    check: impl Fn(&FnInfo) -> bool,
) -> FnInfo {
    let started = Instant::now();
    loop {
        let info = describe(client, name).await;
        let lag: u64 = info.queues.iter().map(|q| q.lag).sum();
        if lag == 0 && check(&info) {
            eprintln!("function {name} caught up in {:?}", started.elapsed());
            return info;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "function {name} not caught up within {DEADLINE:?}: lag {lag}, {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(client: &Client, topic: &str, n: usize, make: impl Fn(usize) -> Message) {
    let producer = Producer::new(client.clone());
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(500) {
        producer
            .send_batch(topic, chunk.iter().map(|i| make(*i)).collect())
            .await
            .expect("send");
    }
}

async fn count(client: &Client, topic: &str) -> usize {
    read_all(client, topic).await.values().map(Vec::len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_routes_exactly_the_matching_messages_and_resumes_after_a_restart() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "orders", 4).await;
    let admin = Admin::new(s.client.clone());
    admin.create_topic("routed", 2).await.unwrap();
    // The host filters on `paid`; the router itself would route `free` too, so anything
    // `free` in the output would have entered the VM.
    let spec = spec_for(
        "orders",
        "paid",
        &[("tags", "paid || free"), ("to", "routed")],
    );
    let deployed = admin
        .deploy_function("router", &guest_bytes("router"), spec)
        .await
        .unwrap();
    assert_eq!(deployed[0].value.version, 1);
    assert!(deployed[0].value.compiled);

    send(&s.client, "orders", 10_000, |i| {
        Message::new(format!("order {i}"))
            .with_tag(if i % 2 == 0 { "paid" } else { "free" })
            .with_key(format!("o-{i}"))
    })
    .await;
    let info = caught_up(&s.client, "router", |i| i.counters.handled == 5_000).await;
    assert_eq!(info.state, "running");
    assert_eq!(info.counters.acked, 5_000, "{info:?}");
    assert_eq!(
        info.counters.filtered, 5_000,
        "the host kept the free orders out"
    );
    assert_eq!(info.counters.emitted, 5_000);
    assert_eq!(info.counters.compiles, 1);
    let routed = read_all(&s.client, "routed").await;
    let mut bodies: Vec<String> = routed
        .values()
        .flatten()
        .map(|m| {
            assert_eq!(m.tag.as_deref(), Some("paid"));
            String::from_utf8_lossy(&m.body).into_owned()
        })
        .collect();
    // Order is kept per queue: in each output queue, the messages that came from one input
    // queue are in that queue's order (batches of 64, so many writes overlap calls).
    let source: std::collections::HashMap<Vec<u8>, (u32, u64)> = read_all(&s.client, "orders")
        .await
        .into_values()
        .flatten()
        .map(|m| (m.body.to_vec(), (m.queue_id, m.offset)))
        .collect();
    for (queue, out) in &routed {
        let mut last: std::collections::HashMap<u32, u64> = Default::default();
        for m in out {
            let (from, offset) = source[m.body.as_ref()];
            if let Some(before) = last.insert(from, offset) {
                assert!(
                    before < offset,
                    "{queue}: orders queue {from} offset {offset} after offset {before}"
                );
            }
        }
    }
    bodies.sort();
    let mut want: Vec<String> = (0..10_000)
        .step_by(2)
        .map(|i| format!("order {i}"))
        .collect();
    want.sort();
    assert_eq!(bodies, want);
    // The group is the function's: the group tools see it.
    let groups = admin.describe_group("fn-router").await.unwrap();
    assert_eq!(groups[0].info.queues.iter().map(|q| q.lag).sum::<u64>(), 0);

    // kill -9: the function comes back from the stored artefact and re-handles nothing.
    s.server.restart().unwrap();
    s.client = s.server.client(true);
    let info = describe(&s.client, "router").await;
    assert_eq!(info.state, "running");
    assert_eq!(info.counters.compiles, 1, "a restart does not compile");
    send(&s.client, "orders", 10, |i| {
        Message::new(format!("late {i}")).with_tag("paid")
    })
    .await;
    let info = caught_up(&s.client, "router", |i| i.counters.handled == 10).await;
    assert_eq!(
        info.counters.handled, 10,
        "nothing settled before was handled again"
    );
    assert_eq!(count(&s.client, "routed").await, 5_010);
    s.server.check_no_panic().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_message_in_a_batch_of_a_thousand_is_dead_lettered_alone() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "jobs", 1).await;
    send(&s.client, "jobs", 1_000, |i| {
        Message::new(if i == 613 {
            "boom".to_owned()
        } else {
            format!("job {i}")
        })
    })
    .await;
    let mut spec = spec_for("jobs", "*", &[]);
    spec.batch_max = 1_000;
    let admin = Admin::new(s.client.clone());
    admin
        .deploy_function("jobs", &guest_bytes("misbehave"), spec)
        .await
        .unwrap();
    let info = caught_up(&s.client, "jobs", |i| i.counters.handled == 1_000).await;
    assert_eq!(info.counters.acked, 999, "{info:?}");
    assert_eq!(info.counters.dead_lettered, 1, "{info:?}");
    assert!(info.counters.traps >= 1);
    assert!(
        info.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("panicked"),
        "{info:?}"
    );
    let letters = admin.dead_letters("fn-jobs", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message.body.as_ref(), b"boom");
    assert_eq!(letters[0].message.origin_topic(), "jobs");
    let reason = letters[0]
        .message
        .property("%DLQ_REASON")
        .unwrap_or_default();
    assert!(reason.contains("panicked"), "{reason}");
    s.server.check_no_panic().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_cannot_be_written_are_handled_again_once_they_can() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "orders", 1).await;
    let admin = Admin::new(s.client.clone());
    // `later` does not exist (the broker does not create topics): every write of emits
    // fails until it is created.
    let mut spec = spec_for("orders", "*", &[("tags", "paid"), ("to", "later")]);
    spec.batch_max = 16;
    admin
        .deploy_function("router", &guest_bytes("router"), spec)
        .await
        .unwrap();
    // One in four is routed: batches with writes and batches without interleave.
    send(&s.client, "orders", 200, |i| {
        Message::new(format!("order {i:03}")).with_tag(if i % 4 == 0 { "paid" } else { "free" })
    })
    .await;
    let (_, addr) = admin.function_brokers("router").await.unwrap().remove(0);
    let started = Instant::now();
    let mut after = 0;
    'failed: loop {
        let logs = admin
            .function_logs(&addr, "router", after, Duration::from_secs(1))
            .await
            .unwrap();
        for line in logs.lines {
            after = line.seq;
            if line.level == "broker" && line.text.contains("will be handled again") {
                eprintln!(
                    "write failure seen after {:?}: {}",
                    started.elapsed(),
                    line.text
                );
                break 'failed;
            }
        }
        assert!(started.elapsed() < DEADLINE, "no write failure logged");
    }
    let info = describe(&s.client, "router").await;
    assert_eq!(info.counters.emitted, 0, "{info:?}");
    assert!(
        info.queues.iter().map(|q| q.lag).sum::<u64>() > 0,
        "{info:?}"
    );

    admin.create_topic("later", 1).await.unwrap();
    let info = caught_up(&s.client, "router", |i| i.counters.emitted == 50).await;
    // Batches read again after a failed write are handled (and counted) again.
    assert!(info.counters.acked >= 200, "{info:?}");
    let out: Vec<String> = read_all(&s.client, "later")
        .await
        .into_values()
        .flatten()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    let want: Vec<String> = (0..200)
        .step_by(4)
        .map(|i| format!("order {i:03}"))
        .collect();
    assert_eq!(out, want, "every message once, in order");
    s.server.check_no_panic().unwrap();
}
