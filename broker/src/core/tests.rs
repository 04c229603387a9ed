//! The core over an in-memory store: tag-filtered pulls, their scan budget and long-poll,
//! auto-creation, tag expressions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quiver_proto::SendMessage;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::store::StoreConfig;
use crate::store::log::fault::FaultStorage;
use crate::store::log::reader::FILTER_SLOTS_MAX;

fn core(dir: &std::path::Path, auto_create_topics: bool) -> Core {
    let (store, _) =
        Store::open_with(Arc::new(FaultStorage::new()), dir, StoreConfig::default()).unwrap();
    Core::new(
        Arc::new(store),
        CoreConfig {
            auto_create_topics,
            default_queues: 2,
            long_polls_max: 16,
            broker_name: "b".into(),
            group_session: Duration::from_secs(5),
        },
        CancellationToken::new(),
    )
    .unwrap()
}

fn tagged(tag: &str, n: usize) -> Vec<SendMessage> {
    (0..n)
        .map(|i| {
            let mut msg = SendMessage::new(None, Bytes::from(format!("{tag}-{i}")), 0);
            msg.tag = Some(tag.to_owned());
            msg
        })
        .collect()
}

fn spec(offset: u64, tags: &str) -> PullSpec {
    PullSpec {
        topic: "t".into(),
        queue_id: 0,
        offset,
        max_msgs: 1000,
        max_bytes: u32::MAX,
        tags: TagExpr::parse(tags).unwrap(),
    }
}

#[tokio::test]
async fn a_tag_filter_returns_only_matching_messages_and_moves_past_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path(), false);
    core.create_topic("t", 1).await.unwrap();
    core.send("t", 0, tagged("a", 100)).await.unwrap();
    core.send("t", 0, tagged("b", 3)).await.unwrap();
    core.send("t", 0, tagged("a", 100)).await.unwrap();
    core.send("t", 0, tagged("c", 2)).await.unwrap();

    let got = core.pull(&spec(0, "b || c"), Duration::ZERO).await.unwrap();
    let bodies: Vec<_> = got.messages.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, ["b-0", "b-1", "b-2", "c-0", "c-1"].map(Bytes::from));
    let offsets: Vec<u64> = got.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, vec![100, 101, 102, 203, 204]);
    assert_eq!(got.next_offset, 205);

    // Nothing matches: the reply is empty, and the next offset is the queue's end.
    let none = core.pull(&spec(0, "zzz"), Duration::ZERO).await.unwrap();
    assert!(none.messages.is_empty());
    assert_eq!(none.next_offset, 205);
    // `*` is every message.
    let all = core.pull(&spec(0, "*"), Duration::ZERO).await.unwrap();
    assert_eq!(all.messages.len(), 205);
}

#[tokio::test]
async fn a_filtered_pull_answers_at_its_scan_budget_even_with_nothing_matched() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path(), false);
    core.create_topic("t", 1).await.unwrap();
    let total = FILTER_SLOTS_MAX + 5_000;
    let mut sent = 0;
    while sent < total {
        let n = (total - sent).min(5_000);
        core.send("t", 0, tagged("a", n)).await.unwrap();
        sent += n;
    }
    core.send("t", 0, tagged("b", 1)).await.unwrap();
    let first = core
        .pull(&spec(0, "b"), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(first.messages.is_empty(), "the budget ran out first");
    assert!(first.next_offset >= FILTER_SLOTS_MAX as u64);
    assert!(first.next_offset < total as u64);
    let second = core
        .pull(&spec(first.next_offset, "b"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(second.messages.len(), 1);
    assert_eq!(second.messages[0].offset, total as u64);
}

#[tokio::test]
async fn a_filtered_long_poll_waits_for_a_matching_message() {
    let dir = tempfile::tempdir().unwrap();
    let core = Arc::new(core(dir.path(), false));
    core.create_topic("t", 1).await.unwrap();
    let waiter = {
        let core = core.clone();
        tokio::spawn(async move { core.pull(&spec(0, "b"), Duration::from_secs(60)).await })
    };
    // The pull holds a long-poll slot while it waits.
    while core.long_polls.available_permits() == 16 {
        tokio::task::yield_now().await;
    }
    // Non-matching messages arrive first: the pull keeps waiting past them.
    core.send("t", 0, tagged("a", 10)).await.unwrap();
    core.send("t", 0, tagged("a", 10)).await.unwrap();
    core.send("t", 0, tagged("b", 1)).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.messages.len(), 1);
    assert_eq!(got.messages[0].tag.as_deref(), Some("b"));
    assert_eq!(got.messages[0].offset, 20);
    assert_eq!(got.next_offset, 21);
}

#[tokio::test]
async fn sends_auto_create_topics_and_bump_the_topic_version() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path(), true);
    let version = core.topics_changed();
    let appended = core.send("fresh", 1, tagged("x", 2)).await.unwrap();
    assert_eq!((appended.queue_id, appended.first_offset), (1, 0));
    assert_eq!(core.store().topic("fresh").unwrap().queues, 2);
    assert_eq!(version.borrow().counter, 1);
    let described = core.describe_topic("fresh").await.unwrap();
    assert_eq!(described.queues[1].max, 2);
}

#[test]
fn tag_expressions_parse_or_say_what_is_wrong() {
    assert_eq!(TagExpr::parse("*").unwrap(), TagExpr::All);
    assert_eq!(TagExpr::parse(" ").unwrap(), TagExpr::All);
    assert_eq!(
        TagExpr::parse("b || a ||a").unwrap(),
        TagExpr::AnyOf(vec!["a".into(), "b".into()])
    );
    assert_eq!(TagExpr::parse("a||b").unwrap().to_string(), "a || b");
    for bad in ["a ||", "|| a", "a || *", "a | b"] {
        let err = TagExpr::parse(bad).unwrap_err().to_string();
        assert!(
            err.contains("write `*` or tags joined by `||`"),
            "{bad}: {err}"
        );
    }
    let too_long = "x".repeat(200);
    assert!(TagExpr::parse(&too_long).is_err());
}

#[tokio::test]
async fn a_topic_change_waits_until_the_name_server_acknowledged_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core(dir.path(), false);
    let (acked, acked_rx) = tokio::sync::watch::channel(0u64);
    core.wait_for_registration(acked_rx);
    let core = Arc::new(core);
    let mut version = core.topics_changed();
    let create = {
        let core = core.clone();
        tokio::spawn(async move { core.create_topic("t", 1).await })
    };
    version.wait_for(|v| v.counter == 1).await.unwrap();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !create.is_finished(),
        "the change waits for the acknowledgement"
    );
    acked.send_replace(1);
    assert_eq!(create.await.unwrap().unwrap().queues, 1);
}

#[tokio::test]
async fn the_offset_at_a_time_is_the_first_message_stored_then() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path(), false);
    core.create_topic("t", 1).await.unwrap();
    core.send("t", 0, tagged("a", 100)).await.unwrap();
    let pulled = core.pull(&spec(0, "*"), Duration::ZERO).await.unwrap();
    let (first, last) = (&pulled.messages[0], &pulled.messages[99]);
    assert_eq!(core.offset_at_time("t", 0, 0).await.unwrap(), 0);
    assert_eq!(
        core.offset_at_time("t", 0, first.stored_ms).await.unwrap(),
        0
    );
    assert_eq!(
        core.offset_at_time("t", 0, last.stored_ms + 1)
            .await
            .unwrap(),
        100,
        "all older: the queue's end"
    );
    let err = core.offset_at_time("t", 3, 0).await.unwrap_err();
    assert_eq!(err.refusal(), Some(crate::store::Refusal::QueueOutOfRange));
}
