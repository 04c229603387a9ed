//! Functions that misbehave, and requests that must be refused: hostile guests fail alone
//! (20 runs of each kind, nothing lost, the broker up and serving sends), a looping function
//! does not stall a healthy one, deploys need the admin role and a component the broker
//! accepts, the `fn-` groups are the broker's, and a replay writes nothing and agrees with
//! `quiver fn test`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quiver_client::admin_fn::ReplaySpec;
use quiver_client::{Admin, ErrorCode, Message, Producer};
use quiver_proto::RequestCode;
use quiver_proto::requests::function::{FnLimits, ReplayFrom};
use quiver_proto::requests::group::{
    GroupHeartbeat, GroupHeartbeatResponse, StartFrom, Subscription,
};
use quiver_tests::harness::{Spec, serial};

use crate::cli::quiver;
use crate::functions::{caught_up, describe, guest_bytes, spec_for};
use crate::{read_all, setup};

const HOSTILE: [&str; 8] = [
    "spin",
    "oom",
    "recurse",
    "unreachable",
    "boom",
    "flood",
    "big-emit",
    "read-file",
];

/// Loops end by fuel; the wall-clock deadline is generous, because a call of a function
/// whose last call failed waits for the CPU on the low-priority threads, and on a loaded
/// machine a healthy message must not time out there.
fn tight_limits() -> FnLimits {
    FnLimits {
        fuel_per_message: 20_000_000,
        deadline_ms_per_message: 500,
        ..FnLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_alone_and_the_broker_keeps_serving() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "hostile", 2).await;
    let admin = Admin::new(s.client.clone());
    admin.create_topic("calm", 1).await.unwrap();
    let mut spec = spec_for("hostile", "*", &[]);
    spec.batch_max = 8;
    spec.limits = tight_limits();
    admin
        .deploy_function("hostile", &guest_bytes("misbehave"), spec)
        .await
        .unwrap();
    let producer = Producer::new(s.client.clone());
    let mut bodies = Vec::new();
    for run in 0..20 {
        for kind in HOSTILE.iter().chain(["fine"].iter()) {
            bodies.push(Message::new(kind.to_string()).with_key(format!("{kind}-{run}")));
        }
    }
    let total = bodies.len() as u64;
    for chunk in bodies.chunks(30) {
        producer
            .send_batch("hostile", chunk.to_vec())
            .await
            .unwrap();
    }
    // Sends go on while the function churns through its failures.
    let started = Instant::now();
    for i in 0..100 {
        producer
            .send("calm", Message::new(format!("calm {i}")))
            .await
            .expect("sends keep succeeding");
    }
    eprintln!(
        "100 sync sends beside the hostile function: {:?}",
        started.elapsed()
    );
    let info = caught_up(&s.client, "hostile", |i| i.counters.handled == total).await;
    eprintln!("{:?}", info.counters);
    // Acked: the fine ones and the file reads (an error inside the guest, not a file).
    assert_eq!(info.counters.acked, 40, "{info:?}");
    assert_eq!(info.counters.dead_lettered, 140, "{info:?}");
    let letters = admin.dead_letters("fn-hostile", 1000).await.unwrap();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for letter in &letters {
        *by_kind
            .entry(String::from_utf8_lossy(&letter.message.body).into_owned())
            .or_default() += 1;
    }
    for kind in &HOSTILE[..7] {
        assert_eq!(by_kind.get(*kind), Some(&20), "{kind}: {by_kind:?}");
    }
    assert!(
        !by_kind.contains_key("read-file"),
        "no file was read: {by_kind:?}"
    );
    let logs = admin
        .function_logs(&s.server.addr, "hostile", 0, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        logs.lines.iter().any(|l| l.text.contains("no file")),
        "the file read failed inside the guest"
    );
    assert_eq!(
        read_all(&s.client, "calm").await.values().flatten().count(),
        100
    );
    s.server.check_no_panic().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_function_does_not_stall_a_healthy_one() {
    let _serial = serial();
    let mut s = setup(Spec::standalone(&[]), "spin-in", 1).await;
    let admin = Admin::new(s.client.clone());
    admin.create_topic("orders", 2).await.unwrap();
    admin.create_topic("routed", 2).await.unwrap();
    let producer = Producer::new(s.client.clone());
    producer
        .send_batch("spin-in", (0..200).map(|_| Message::new("spin")).collect())
        .await
        .unwrap();
    let mut spin = spec_for("spin-in", "*", &[]);
    spin.max_retries = 16;
    spin.retry_delay_ms = 10;
    spin.batch_max = 16;
    spin.limits = FnLimits {
        deadline_ms_per_message: 200,
        fuel_per_message: 1 << 40,
        ..FnLimits::default()
    };
    admin
        .deploy_function("spinner", &guest_bytes("misbehave"), spin)
        .await
        .unwrap();
    admin
        .deploy_function(
            "router",
            &guest_bytes("router"),
            spec_for("orders", "*", &[("to", "routed")]),
        )
        .await
        .unwrap();
    let started = Instant::now();
    producer
        .send_batch(
            "orders",
            (0..2000)
                .map(|i| Message::new(format!("o{i}")).with_tag("paid"))
                .collect(),
        )
        .await
        .expect("sends succeed beside a looping function");
    caught_up(&s.client, "router", |i| i.counters.handled == 2000).await;
    eprintln!(
        "healthy function done beside a looping one in {:?}",
        started.elapsed()
    );
    let spinner = describe(&s.client, "spinner").await;
    let lag: u64 = spinner.queues.iter().map(|q| q.lag).sum();
    assert!(lag > 0, "the spinner is still busy: {spinner:?}");
    // Its calls end at their deadline, one after another.
    let waited = Instant::now();
    loop {
        let spinner = describe(&s.client, "spinner").await;
        if spinner.counters.traps > 0 {
            let why = spinner.last_error.unwrap_or_default();
            assert!(why.contains("deadline"), "{why}");
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no spinner call ended: {spinner:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.server.check_no_panic().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_need_admin_and_a_component_the_broker_accepts() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "guarded", 1).await;
    let user = Admin::new(s.server.client(false));
    let err = user
        .deploy_function("f", &guest_bytes("router"), spec_for("guarded", "*", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");

    let admin = Admin::new(s.client.clone());
    let err = admin
        .upload_module(&s.server.addr, &vec![0u8; 17 << 20])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ModuleTooLarge), "{err}");
    assert!(
        err.to_string().contains("functions.module_bytes_max"),
        "{err}"
    );

    let err = admin
        .deploy_function("spy", &guest_bytes("netspy"), spec_for("guarded", "*", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidModule), "{err}");
    assert!(err.to_string().contains("wasi:sockets"), "{err}");

    let err = admin
        .deploy_function(
            "web",
            &guest_bytes("httpspy"),
            spec_for("guarded", "*", &[]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidModule), "{err}");
    assert!(
        err.to_string().contains("wasi:http/outgoing-handler"),
        "{err}"
    );

    let err = admin
        .deploy_function("junk", b"\0asm not really", spec_for("guarded", "*", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidModule), "{err}");

    let err = admin.describe_function("nobody").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::FunctionNotFound), "{err}");

    // The fn- groups are the broker's: a client cannot join one.
    let heartbeat = GroupHeartbeat {
        group: "fn-router".into(),
        member: "intruder".into(),
        client: "test".into(),
        subscriptions: vec![Subscription {
            topic: "guarded".into(),
            tags: "*".into(),
        }],
        start: StartFrom::Last,
        finishing: vec![],
    };
    let err = s
        .client
        .call::<_, GroupHeartbeatResponse>(&s.server.addr, RequestCode::GroupHeartbeat, &heartbeat)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("reserved"), "{err}");
    assert!(admin.list_functions().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_writes_nothing_and_agrees_with_fn_test() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "replayed", 1).await;
    let kinds = ["fine", "retry", "dead", "boom", "emit:out", "chatty"];
    let producer = Producer::new(s.client.clone());
    producer
        .send_batch(
            "replayed",
            (0..3)
                .flat_map(|_| kinds.iter().map(|k| Message::new(k.to_string())))
                .collect(),
        )
        .await
        .unwrap();
    let admin = Admin::new(s.client.clone());
    let before = admin.stats(&s.server.addr).await.unwrap();
    let groups_before = admin.list_groups().await.unwrap();
    let spec = ReplaySpec {
        topic: "replayed".into(),
        queue_id: None,
        tags: "*".into(),
        from: ReplayFrom::Offset(0),
        limit: 100,
        config: vec![],
    };
    let answer = admin
        .replay_function(&guest_bytes("misbehave"), &spec)
        .await
        .unwrap()
        .remove(0)
        .value;
    assert_eq!(answer.handled, 18);
    assert_eq!(answer.acked, 9, "{answer:?}");
    assert_eq!(answer.retried, 3);
    assert_eq!(answer.dead_lettered, 3);
    assert_eq!(answer.failed, 3);
    assert_eq!(answer.emits_total, 3);
    assert_eq!(answer.emits[0].topic, "out");
    assert!(answer.logs.iter().any(|l| l.text.starts_with("printed")));
    // Nothing was written: the log did not grow, no topic or group appeared.
    let after = admin.stats(&s.server.addr).await.unwrap();
    assert_eq!(after.log_end, before.log_end);
    assert_eq!(admin.list_groups().await.unwrap(), groups_before);
    assert!(
        s.client.refresh_route("out").await.is_err(),
        "no emit was stored"
    );
    // The same outcome as `quiver fn test` on each message.
    let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release/misbehave.wasm");
    for (offset, kind) in kinds.iter().enumerate() {
        let out = quiver(
            &s.server,
            &[
                "--output",
                "json",
                "fn",
                "test",
                &wasm.to_string_lossy(),
                "--message",
                &format!("{{\"body\": \"{kind}\"}}"),
            ],
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let local = if report["failed"].is_string() {
            "failed".to_owned()
        } else {
            report["outcomes"][0]["outcome"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let replayed = answer
            .failures
            .iter()
            .find(|f| f.offset == offset as u64)
            .map_or("ack".to_owned(), |f| {
                f.outcome.split([':', ' ']).next().unwrap().to_owned()
            });
        assert_eq!(
            replayed, local,
            "{kind}: replay {replayed}, fn test {local}"
        );
    }
}
