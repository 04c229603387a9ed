//! Retries and dead letters end to end: a push consumer's failed messages come back through
//! the group's retry topic after the group's back-off, and after the group's retries land in
//! its dead-letter topic, which `quiver pull`, `query` and `dlq list` read and `dlq resend`
//! gives back to the group. Users cannot create or send to `%` topics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_client::group::HandlerFuture;
use quiver_client::{Admin, Delivery, GroupOptions, GroupStart, Message, MessageId, Outcome};
use quiver_client::{Producer, PushConsumer, PushOptions};
use quiver_tests::harness::{Spec, serial};

use crate::cli::quiver;
use crate::setup;

/// Liveness deadline: far beyond the back-offs (50 ms, 100 ms) and the session (600 ms).
const DEADLINE: Duration = Duration::from_secs(30);

/// One handler call.
#[derive(Clone, Debug)]
struct Attempt {
    topic: String,
    reconsume: u32,
    origin: String,
    at: Instant,
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{what}: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_retry_with_back_off_then_dead_letter_and_come_back_on_resend() {
    let _serial = serial();
    let spec = Spec::standalone(&[]).env("QUIVER_BROKER__GROUP_SESSION", "600ms");
    let s = setup(spec, "jobs", 2).await;
    ok(&quiver(
        &s.server,
        &[
            "group",
            "update",
            "billing",
            "--max-retries",
            "2",
            "--backoff",
            "50ms,100ms",
        ],
    ));

    // id → every handler call, and whether it succeeded.
    type Attempts = BTreeMap<MessageId, Vec<(Attempt, bool)>>;
    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let failing = Arc::new(AtomicBool::new(true));
    let handler = {
        let (attempts, failing) = (attempts.clone(), failing.clone());
        Arc::new(move |delivery: Delivery| -> HandlerFuture {
            let (attempts, failing) = (attempts.clone(), failing.clone());
            Box::pin(async move {
                let m = &delivery.message;
                let fail = failing.load(Ordering::SeqCst);
                let attempt = Attempt {
                    topic: m.topic.clone(),
                    reconsume: m.reconsume_times(),
                    origin: m.origin_topic().to_owned(),
                    at: Instant::now(),
                };
                attempts
                    .lock()
                    .unwrap()
                    .entry(m.msg_id)
                    .or_default()
                    .push((attempt, !fail));
                if fail {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            })
        }) as quiver_client::group::Handler
    };
    let mut group = GroupOptions::new("billing", "jobs", "*");
    group.start = GroupStart::First;
    group.heartbeat = Duration::from_millis(100);
    group.auto_commit = Some(Duration::from_millis(100));
    group.pull_wait = Duration::from_millis(500);
    let consumer = PushConsumer::start(s.client.clone(), PushOptions::new(group), handler)
        .await
        .unwrap();

    let producer = Producer::new(s.client.clone());
    let mut ids = Vec::new();
    for i in 0..5 {
        let msg = Message::new(format!("invoice {i}"))
            .with_tag("bill")
            .with_key(format!("inv-{i}"))
            .with_property("customer", format!("c{i}"));
        ids.push(producer.send("jobs", msg).await.unwrap().msg_id);
    }
    let admin = Admin::new(s.client.clone());
    let started = Instant::now();
    loop {
        let letters = admin.dead_letters("billing", 100).await.unwrap();
        if letters.len() == 5 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{} dead letters",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "5 messages dead-lettered after 3 tries: {:?}",
        started.elapsed()
    );

    // Exactly three tries each: the original, then two through the retry topic, each
    // after its back-off step (never early).
    let mut late = Vec::new();
    for id in &ids {
        let tries = attempts.lock().unwrap()[id].clone();
        let seen: Vec<(&str, u32, &str)> = tries
            .iter()
            .map(|(a, _)| (a.topic.as_str(), a.reconsume, a.origin.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("jobs", 0, "jobs"),
                ("%RETRY%billing", 1, "jobs"),
                ("%RETRY%billing", 2, "jobs")
            ],
            "{id}"
        );
        for (pair, step) in tries.windows(2).zip([50u128, 100]) {
            let gap = pair[1].0.at.duration_since(pair[0].0.at).as_millis();
            assert!(
                gap >= step,
                "retry after {gap} ms, before its {step} ms back-off"
            );
            late.push(gap - step);
        }
    }
    late.sort_unstable();
    eprintln!(
        "retry lateness past the back-off: p50 {} ms, max {} ms",
        late[late.len() / 2],
        late[late.len() - 1]
    );

    // The dead letters: readable by pull, query and `dlq list`, with their story.
    let mut pulled = json_lines(&ok(&quiver(
        &s.server,
        &[
            "pull",
            "--topic",
            "%DLQ%billing",
            "--queue",
            "0",
            "--offset",
            "0",
            "--output",
            "json",
        ],
    )));
    // The last line is the queue's offsets.
    assert_eq!(pulled.pop().unwrap()["max_offset"], 5);
    let mut pulled_ids: Vec<String> = pulled
        .iter()
        .map(|m| m["msg_id"].as_str().unwrap().to_owned())
        .collect();
    let mut want: Vec<String> = ids.iter().map(ToString::to_string).collect();
    pulled_ids.sort();
    want.sort();
    assert_eq!(pulled_ids, want);
    for m in &pulled {
        let props: BTreeMap<String, String> = m["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
            .collect();
        assert_eq!(props["%RECONSUME"], "3", "{m}");
        assert_eq!(props["%ORIGIN_TOPIC"], "jobs", "{m}");
        assert!(props["customer"].starts_with('c'), "{m}");
        assert_eq!(m["tag"], "bill");
    }
    let first = ids[0].to_string();
    let found = json_lines(&ok(&quiver(
        &s.server,
        &[
            "query",
            "--topic",
            "%DLQ%billing",
            "--id",
            &first,
            "--output",
            "json",
        ],
    )));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["body"], "invoice 0");
    assert_eq!(found[0]["keys"][0], "inv-0");
    let listed = json_lines(&ok(&quiver(
        &s.server,
        &["dlq", "list", "billing", "--output", "json"],
    )));
    assert_eq!(listed.len(), 5);
    assert!(
        listed.iter().all(|l| l["origin_topic"] == "jobs"
            && l["reconsume_times"] == 3
            && l["resent"] == false)
    );

    for args in [
        &["topic", "describe", "%DLQ%billing"][..],
        &["topic", "route", "%DLQ%billing"][..],
        &["topic", "route", "%RETRY%billing"][..],
    ] {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        let out = ok(&quiver(&s.server, &args));
        assert!(
            out.contains("\"queue_id\":0") || out.contains("\"queues\""),
            "{args:?}: {out}"
        );
    }

    // `%` topics are the broker's: no sends, no creation.
    for args in [
        &["send", "--topic", "%DLQ%billing", "--body", "x"][..],
        &["topic", "create", "%RETRY%billing"][..],
    ] {
        let out = quiver(&s.server, args);
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("reserved for system topics"), "{err}");
    }

    // Resend: one by id, then every one; they come back to the group, counted afresh.
    failing.store(false, Ordering::SeqCst);
    let out = ok(&quiver(
        &s.server,
        &["dlq", "resend", "billing", "--id", &first],
    ));
    assert!(out.contains("1 dead letters"), "{out}");
    let succeeded = |id: &MessageId| -> usize {
        attempts.lock().unwrap()[id]
            .iter()
            .filter(|(a, ok)| *ok && a.topic == "%RETRY%billing" && a.reconsume == 0)
            .count()
    };
    until("a resent dead letter handled", || succeeded(&ids[0]) == 1).await;
    let out = ok(&quiver(
        &s.server,
        &["dlq", "resend", "billing", "--all", "--output", "json"],
    ));
    assert!(out.contains("\"resent\":5"), "{out}");
    until("every resent dead letter handled", || {
        ids[1..].iter().all(|id| succeeded(id) == 1)
    })
    .await;
    let out = ok(&quiver(
        &s.server,
        &["dlq", "resend", "billing", "--all", "--output", "json"],
    ));
    assert!(
        out.contains("\"resent\":0"),
        "a second --all resends nothing new: {out}"
    );
    let listed = json_lines(&ok(&quiver(
        &s.server,
        &["dlq", "list", "billing", "--output", "json"],
    )));
    assert!(listed.iter().all(|l| l["resent"] == true), "{listed:?}");
    let out = quiver(
        &s.server,
        &["dlq", "resend", "billing", "--id", &"0".repeat(32)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dead letter"));
    consumer.close().await.unwrap();

    let info = &admin.describe_group("billing").await.unwrap()[0].info;
    assert!(
        info.queues.iter().any(|q| q.topic == "%RETRY%billing"),
        "{:?}",
        info.queues
    );
}
