//! The host against real components built for wasm32-wasip2 (`cargo xtask ci` builds them
//! first; `cargo xtask guests` alone): outcomes, emits, config and logs; a loop, a panic and
//! a memory hog each end their call with a clear reason and hurt nothing after them; the
//! import policy refuses sockets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quiver_fnhost::{FnEngine, FnModule, Limits, Outcome};

mod common;

use common::{config, guest, message};

fn small() -> Limits {
    Limits {
        fuel_per_message: 200_000_000,
        deadline_per_message: Duration::from_millis(300),
        memory_bytes: 16 << 20,
        ..Limits::default()
    }
}

#[tokio::test]
async fn outcomes_emits_config_and_logs_come_back_per_message() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("misbehave")).unwrap();
    let batch = [
        message(0, "hello"),
        message(1, "retry"),
        message(2, "dead"),
        message(3, "emit:shipments"),
        message(4, "chatty"),
    ];
    let report = module
        .call(&batch, config(&[("greeting", "hi there")]), &small())
        .await;
    let outcomes = report.settled.unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Ack,
            Outcome::Retry(Some(250)),
            Outcome::DeadLetter("asked to".into()),
            Outcome::Ack,
            Outcome::Ack,
        ]
    );
    assert_eq!(report.emits.len(), 1);
    assert_eq!(report.emits[0].topic, "shipments");
    assert_eq!(report.emits[0].tag.as_deref(), Some("paid"));
    assert_eq!(report.emits[0].keys, vec!["k3".to_string()]);
    assert_eq!(report.emits[0].body, b"copy");
    let logs: Vec<(&str, &str)> = report
        .logs
        .iter()
        .map(|l| (l.level, l.text.as_str()))
        .collect();
    assert!(logs.contains(&("info", "hi there")), "{logs:?}");
    let id = format!("{:032x}", 4);
    assert!(
        logs.contains(&("warn", &*format!("logged {id}"))),
        "{logs:?}"
    );
    assert!(
        logs.contains(&("stdout", &*format!("printed {id}"))),
        "{logs:?}"
    );
    assert!(report.fuel_used > 0);
}

#[tokio::test]
async fn a_loop_a_panic_and_a_memory_hog_fail_their_call_and_nothing_else() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("misbehave")).unwrap();
    let limits = small();
    let cases = [
        ("spin", "out of fuel"),
        ("boom", "panicked"),
        ("oom", "out of memory"),
    ];
    for (body, reason) in cases {
        let batch = [message(0, "emit:early"), message(1, body)];
        let report = module.call(&batch, config(&[]), &limits).await;
        let err = report.settled.expect_err(body);
        assert!(err.contains(reason), "{body}: {err}");
        if body == "boom" {
            let stderr: Vec<&str> = report
                .logs
                .iter()
                .filter(|l| l.level == "stderr")
                .map(|l| l.text.as_str())
                .collect();
            assert!(
                stderr.iter().any(|l| l.contains("boom at offset 1")),
                "the panic message is in the log: {stderr:?}"
            );
        }
        assert!(
            report.emits.is_empty(),
            "{body}: a failed call's emits are dropped"
        );
        // The next call runs in a fresh instance, unharmed.
        let ok = module
            .call(&[message(2, "fine")], config(&[]), &limits)
            .await;
        assert_eq!(ok.settled.unwrap(), vec![Outcome::Ack], "after {body}");
    }
    // A loop with fuel to spare hits the wall-clock deadline instead.
    let generous = Limits {
        fuel_per_message: u64::MAX / 4,
        deadline_per_message: Duration::from_millis(50),
        ..small()
    };
    let report = module
        .call(&[message(0, "spin")], config(&[]), &generous)
        .await;
    let err = report.settled.unwrap_err();
    assert!(err.contains("deadline"), "{err}");
    assert!(
        report.elapsed < Duration::from_secs(5),
        "{:?}",
        report.elapsed
    );
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_ends_at_its_deadline() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("misbehave")).unwrap();
    let limits = Limits {
        deadline_per_message: Duration::from_millis(50),
        keep_instances: 1,
        ..small()
    };
    // It sleeps an hour, waiting on a clock in the host: no wasm runs to see the deadline.
    let batch = [message(0, "sleep")];
    let call = module.call(&batch, config(&[]), &limits);
    let report = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call ends at its deadline, not after the hour");
    eprintln!("a sleeping call ended after {:?}", report.elapsed);
    let err = report.settled.unwrap_err();
    assert!(err.contains("deadline"), "{err}");
    assert!(report.timed_out);
    // Its instance is not kept: the next call is served.
    let ok = module
        .call(&[message(1, "fine")], config(&[]), &limits)
        .await;
    assert_eq!(ok.settled.unwrap(), vec![Outcome::Ack]);
}

#[tokio::test]
async fn a_guest_that_hoards_host_resources_fails_at_the_cap() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("misbehave")).unwrap();
    let report = module
        .call(&[message(0, "leak")], config(&[]), &small())
        .await;
    let err = report
        .settled
        .expect_err("100,000 resources are over the cap");
    assert!(err.contains("host resources"), "{err}");
    let ok = module
        .call(&[message(1, "fine")], config(&[]), &small())
        .await;
    assert_eq!(ok.settled.unwrap(), vec![Outcome::Ack]);
}

#[tokio::test]
async fn a_call_holds_a_bounded_amount_of_emits() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("misbehave")).unwrap();
    let limits = small();
    // 16 MiB, or one message's worth (16 emits of 1 MiB and their names) when larger.
    assert!((16 << 20..32 << 20).contains(&limits.emit_budget()));
    // 8 messages × 4 MiB: over the budget; the call fails, holding nothing.
    let fat: Vec<_> = (0..8).map(|i| message(i, "fat")).collect();
    let report = module.call(&fat, config(&[]), &limits).await;
    let err = report.settled.expect_err("32 MiB of emits in one call");
    assert!(err.contains("emits passed"), "{err}");
    assert!(report.emits.is_empty());
    // Split down, each half of a half fits: 2 × 4 MiB.
    let report = module.call(&fat[..2], config(&[]), &limits).await;
    assert_eq!(report.settled.unwrap(), vec![Outcome::Ack; 2]);
    assert_eq!(report.emits.len(), 8);
    // One message's own limits always fit the budget, however small it is set.
    let tight = Limits {
        emit_bytes_per_call: 1,
        ..small()
    };
    let report = module.call(&fat[..1], config(&[]), &tight).await;
    assert_eq!(report.settled.unwrap(), vec![Outcome::Ack]);
}

#[tokio::test]
async fn the_router_plugin_routes_by_tag_and_by_body() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("router")).unwrap();
    let mut other = message(1, "{}");
    other.tag = Some("refunded".into());
    let batch = [message(0, "{}"), other, message(2, r#"{"route": "audit"}"#)];
    let report = module
        .call(
            &batch,
            config(&[("to", "shipments"), ("tags", "paid || late")]),
            &small(),
        )
        .await;
    assert_eq!(report.settled.unwrap(), vec![Outcome::Ack; 3]);
    let topics: Vec<&str> = report.emits.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, vec!["shipments", "audit"]);
}

#[test]
fn bytes_that_are_not_a_component_are_refused_clearly() {
    let engine = FnEngine::new().unwrap();
    let err = FnModule::load(&engine, b"not wasm").err().unwrap();
    assert!(
        err.to_string().contains("not a valid function component"),
        "{err}"
    );
}

#[test]
fn a_rust_guest_imports_only_the_host_and_wasi_cli_io_clocks_random_filesystem() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("misbehave")).unwrap();
    let mut families: Vec<&str> = module
        .imports()
        .iter()
        .map(|name| name.split('/').next().unwrap_or(name))
        .collect();
    families.sort_unstable();
    families.dedup();
    eprintln!("imports: {:?}", module.imports());
    assert!(families.contains(&"quiver:function"), "{families:?}");
    assert!(
        families.iter().all(|f| [
            "quiver:function",
            "wasi:cli",
            "wasi:io",
            "wasi:clocks",
            "wasi:random",
            "wasi:filesystem"
        ]
        .contains(f)),
        "{families:?}"
    );
}

#[test]
fn a_guest_that_imports_sockets_is_refused_naming_the_import() {
    let engine = FnEngine::new().unwrap();
    let err = FnModule::load(&engine, &guest("netspy"))
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("wasi:sockets/"), "{text}");
    assert!(text.contains("no network access"), "{text}");
}

/// The `count N` lines of a call's log.
fn counts(report: &quiver_fnhost::CallReport) -> Vec<String> {
    report
        .logs
        .iter()
        .filter(|l| l.text.starts_with("count "))
        .map(|l| l.text.clone())
        .collect()
}

#[tokio::test]
async fn a_settled_call_leaves_its_instance_to_the_next_and_a_failed_one_does_not() {
    let engine = FnEngine::new().unwrap();
    let module = FnModule::load(&engine, &guest("misbehave")).unwrap();
    let kept = Limits {
        keep_instances: 1,
        ..small()
    };
    let call = |body: &'static str, conf: &Arc<BTreeMap<String, String>>, limits: &Limits| {
        let (module, conf, limits) = (&module, conf.clone(), limits.clone());
        async move { module.call(&[message(0, body)], conf, &limits).await }
    };
    // The `count` the instance that ran it logged.
    let count = |conf, limits| async move { counts(&call("count", conf, limits).await) };
    let (conf, other) = (config(&[]), config(&[("greeting", "hi")]));
    assert_eq!(count(&conf, &kept).await, ["count 1"]);
    assert_eq!(count(&conf, &kept).await, ["count 2"]);
    // What an instance printed is read once: each call logs only its own lines.
    for _ in 0..2 {
        let report = call("chatty", &conf, &kept).await;
        let printed: Vec<_> = report.logs.iter().filter(|l| l.level == "stdout").collect();
        assert_eq!(printed.len(), 1, "{:?}", report.logs);
    }
    assert_eq!(count(&conf, &kept).await, ["count 3"]);
    // A failed call throws its instance away.
    assert!(call("boom", &conf, &kept).await.settled.is_err());
    assert_eq!(count(&conf, &kept).await, ["count 1"]);
    // Other settings: a fresh instance (a guest may have cached the old ones).
    assert_eq!(count(&other, &kept).await, ["count 1"]);
    assert_eq!(count(&other, &kept).await, ["count 2"]);
    // Other limits: a fresh instance (its store was made with the old ones).
    let roomier = Limits {
        memory_bytes: 32 << 20,
        ..kept.clone()
    };
    assert_eq!(count(&other, &roomier).await, ["count 1"]);
    // Memory grown past the keep limit (4 MiB by default): not kept.
    assert!(call("grow", &other, &kept).await.settled.is_ok());
    assert_eq!(count(&other, &kept).await, ["count 1"]);
    // Keeping none: a fresh instance per call.
    let fresh = small();
    assert_eq!(count(&conf, &fresh).await, ["count 1"]);
    assert_eq!(count(&conf, &fresh).await, ["count 1"]);
}
