//! The runner in one process over an in-memory store, with a handler in Rust
//! (`Functions::run_native`): what a batch settles to is written (emits in order per
//! queue, dead letters), and the group's offsets reach the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quiver_fnhost::{Emit, Message, Outcome};
use quiver_proto::SendMessage;
use quiver_proto::requests::function::{FnLimits, FnSpec};
use quiver_proto::requests::group::StartFrom;
use tokio_util::sync::CancellationToken;

use super::Functions;
use super::config::FunctionsConfig;
use crate::core::{Core, CoreConfig, PullSpec, TagExpr};
use crate::store::log::fault::FaultStorage;
use crate::store::{Store, StoreConfig};

const DEADLINE: Duration = Duration::from_secs(30);

fn core(dir: &std::path::Path) -> Arc<Core> {
    let (store, _) =
        Store::open_with(Arc::new(FaultStorage::new()), dir, StoreConfig::default()).unwrap();
    let config = CoreConfig {
        auto_create_topics: false,
        default_queues: 2,
        long_polls_max: 64,
        broker_name: "b".into(),
        group_session: Duration::from_secs(30),
    };
    Arc::new(Core::new(Arc::new(store), config, CancellationToken::new()).unwrap())
}

async fn read(core: &Core, topic: &str, queue_id: u32) -> Vec<String> {
    let spec = PullSpec {
        topic: topic.into(),
        queue_id,
        offset: 0,
        max_msgs: 10_000,
        max_bytes: u32::MAX,
        tags: TagExpr::All,
    };
    let read = core.pull(&spec, Duration::ZERO).await.unwrap();
    read.messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_handler_runs_through_the_runner_and_its_outputs_are_written_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    core.create_topic("in", 1).await.unwrap();
    core.create_topic("out", 1).await.unwrap();
    for chunk in 0..10 {
        let batch = (chunk * 30..chunk * 30 + 30)
            .map(|i| SendMessage::new(None, Bytes::from(format!("m{i:03}")), 0))
            .collect();
        core.send("in", 0, batch).await.unwrap();
    }
    let functions = Functions::start(core.clone(), FunctionsConfig::default(), None)
        .await
        .unwrap();
    // One message in 40 is copied to `out`, `m007` is dead-lettered, the rest acked: in
    // batches of 16, some batches have writes and some have none.
    let handler = Arc::new(
        |msg: &Message, config: &BTreeMap<String, String>, emits: &mut Vec<Emit>| {
            if msg.body == b"m007" {
                return Outcome::DeadLetter("seven".into());
            }
            if msg.offset.is_multiple_of(40) {
                emits.push(Emit {
                    topic: config["to"].clone(),
                    tag: None,
                    keys: vec![],
                    body: msg.body.clone(),
                });
            }
            Outcome::Ack
        },
    );
    let spec = FnSpec {
        topic: "in".into(),
        tags: "*".into(),
        config: vec![("to".into(), "out".into())],
        max_retries: 0,
        retry_delay_ms: 100,
        batch_max: 16,
        batch_wait_ms: 0,
        start: StartFrom::First,
        limits: FnLimits::default(),
    };
    functions.run_native("copier", spec, handler).await.unwrap();
    let started = Instant::now();
    let lag = || async {
        let info = core.group_describe("fn-copier").await.unwrap();
        info.queues.iter().map(|q| q.lag).sum::<u64>()
    };
    while functions.counters("copier").handled < 300 || lag().await > 0 {
        assert!(started.elapsed() < DEADLINE, "not caught up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("caught up in {:?}", started.elapsed());
    let counters = functions.counters("copier");
    assert_eq!(
        (counters.acked, counters.dead_lettered, counters.emitted),
        (299, 1, 8)
    );
    let want: Vec<String> = (0..300).step_by(40).map(|i| format!("m{i:03}")).collect();
    assert_eq!(read(&core, "out", 0).await, want);
    assert_eq!(read(&core, "%DLQ%fn-copier", 0).await, vec!["m007"]);
    functions.shutdown().await;
}
