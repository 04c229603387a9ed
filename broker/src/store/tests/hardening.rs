//! Data safety: offsets never repeat, corruption is refused (and repaired only on request),
//! async flush under load, fencing after a failed write or sync or index commit, retention.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::ReadableDatabase;

use super::super::log::fault::FailingIndex;
use super::super::log::{record, repair};
use super::super::tables::{CONSUME_PAGES, IDS, KEYS};
use super::*;
use redb::ReadableTable;

fn small_segments() -> StoreConfig {
    StoreConfig {
        segment_bytes: bytesize::ByteSize::kib(4),
        ..StoreConfig::default()
    }
}

fn sizes(storage: &FaultStorage) -> Vec<(String, u64)> {
    storage
        .list()
        .unwrap()
        .into_iter()
        .map(|name| {
            let len = storage.open(&name, false).unwrap().len().unwrap();
            (name, len)
        })
        .collect()
}

async fn send(store: &Store, queue_id: u32, body: &str, batch: u64) -> Appended {
    store
        .append("t", queue_id, vec![message(body.into(), batch, 1)])
        .await
        .unwrap()
}

#[tokio::test]
async fn a_queue_emptied_by_retention_keeps_its_offsets_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let config = StoreConfig {
        retention_bytes: bytesize::ByteSize::kib(6),
        ..small_segments()
    };
    let (store, _) =
        Store::open_with(Arc::new(storage.clone()), dir.path(), config.clone()).unwrap();
    store.create_topic("t", 2).unwrap();
    for batch in 0..5 {
        send(&store, 0, "queue zero", batch).await;
    }
    // Queue 1 fills segments until queue 0's messages are all in removed ones.
    for batch in 5..60 {
        send(&store, 1, &"x".repeat(400), batch).await;
    }
    store.catch_up().await.unwrap();
    assert!(store.enforce_retention().unwrap() > 0);
    let meta = store.topic("t").unwrap();
    assert_eq!(
        store.queue_range(&meta, 0),
        QueueRange { min: 5, max: 5 },
        "queue 0 is empty at its old end"
    );
    store.shutdown().await;
    drop(store);

    for rebuild_index in [false, true] {
        if rebuild_index {
            std::fs::remove_file(dir.path().join("index.redb")).unwrap();
        }
        let (store, _) =
            Store::open_with(Arc::new(storage.clone()), dir.path(), config.clone()).unwrap();
        let meta = store.topic("t").unwrap();
        assert_eq!(
            store.queue_range(&meta, 0),
            QueueRange { min: 5, max: 5 },
            "after a restart (index rebuilt: {rebuild_index})"
        );
        if rebuild_index {
            let next = send(&store, 0, "after restart", 99).await;
            assert_eq!(
                next.first_offset, 5,
                "the offset continues from the old end"
            );
        }
        store.shutdown().await;
    }
}

/// Five sealed segments of one-message batches, then the index removed so that opening
/// replays (and so checks) the whole log.
async fn five_sealed_segments(storage: &FaultStorage, dir: &Path) -> Vec<Appended> {
    let (store, _) = Store::open_with(Arc::new(storage.clone()), dir, small_segments()).unwrap();
    store.create_topic("t", 1).unwrap();
    let mut acked = Vec::new();
    let mut batch = 0;
    while storage.list().unwrap().len() < 6 {
        acked.push(send(&store, 0, &"m".repeat(300), batch).await);
        batch += 1;
    }
    store.shutdown().await;
    drop(store);
    std::fs::remove_file(dir.join("index.redb")).unwrap();
    acked
}

fn flip_byte(storage: &FaultStorage, name: &str, at: u64) {
    let file = storage.open(name, false).unwrap();
    let mut byte = [0u8];
    file.read_at(at, &mut byte).unwrap();
    file.write_at(at, &[byte[0] ^ 0x40]).unwrap();
    file.sync_data().unwrap();
}

#[tokio::test]
async fn a_corrupt_sealed_segment_is_refused_then_repaired_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let acked = five_sealed_segments(&storage, dir.path()).await;
    let first = log::segment_name(0);
    let first_file = storage.open(&first, false).unwrap();
    // Where each record of the first segment starts.
    let mut starts = Vec::new();
    let mut at = 0u64;
    while at < first_file.len().unwrap() {
        starts.push(at);
        let mut header = vec![0u8; record::HEADER_BYTES];
        first_file.read_at(at, &mut header).unwrap();
        at += record::peek_len(&header).unwrap() as u64;
    }
    let in_first = starts.len() as u64;
    let bad_record_at = starts[3];
    let record_len = starts[4] - starts[3];
    flip_byte(&storage, &first, bad_record_at + record_len - 10);
    let before = sizes(&storage);

    let err = Store::open_with(Arc::new(storage.clone()), dir.path(), small_segments())
        .err()
        .expect("a corrupt sealed segment is refused");
    let text = err.to_string();
    assert!(
        text.contains(&first)
            && text.contains(&format!("byte {bad_record_at}"))
            && text.contains("quiver-broker repair"),
        "{text}"
    );
    assert_eq!(sizes(&storage), before, "no log file changed");

    let plan = repair::plan_with(Arc::new(storage.clone()), dir.path()).unwrap();
    assert_eq!(plan.cuts.len(), 1, "{}", plan.describe());
    assert_eq!(plan.cuts[0].file, first);
    assert_eq!(plan.cuts[0].keep_bytes, bad_record_at);
    assert_eq!(sizes(&storage), before, "planning changes nothing");
    let written = repair::apply_with(Arc::new(storage.clone()), dir.path(), &plan).unwrap();
    assert_eq!(written.len(), 1);
    let quarantined = std::fs::metadata(&written[0]).unwrap().len();
    assert_eq!(quarantined, plan.cuts[0].cut_bytes);

    let (store, _) = Store::open_with(Arc::new(storage.clone()), dir.path(), small_segments())
        .expect("the repaired store opens");
    let read: Vec<u64> = read_all(&store, "t")[&0]
        .iter()
        .map(|msg| msg.offset)
        .collect();
    // Kept: the 3 records before the bad one, and every record of the later segments.
    let expected: Vec<u64> = (0..3).chain(in_first..acked.len() as u64).collect();
    assert_eq!(read, expected);
    let next = send(&store, 0, "after repair", 999).await;
    assert_eq!(
        next.first_offset,
        acked.len() as u64,
        "no offset is handed out twice"
    );
}

#[tokio::test]
async fn a_torn_tail_in_the_last_segment_is_cut_silently() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let acked = five_sealed_segments(&storage, dir.path()).await;
    let names = storage.list().unwrap();
    let last = names.last().unwrap().clone();
    let file = storage.open(&last, false).unwrap();
    let len = file.len().unwrap();
    file.write_at(len, &[0xAB; 37]).unwrap(); // half a record's worth of garbage
    let (store, report) =
        Store::open_with(Arc::new(storage.clone()), dir.path(), small_segments()).unwrap();
    assert_eq!(report.truncated_bytes, 37);
    assert_eq!(read_all(&store, "t")[&0].len(), acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_flush_syncs_every_interval_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        flush: FlushMode::Async,
        flush_interval: Duration::from_millis(5),
        ..StoreConfig::default()
    };
    // A slow disk: every write takes 2 ms, so sends pile up while the writer writes.
    let storage = FaultStorage::new();
    storage.set_write_latency(Duration::from_millis(2));
    let (store, _) = Store::open_with(Arc::new(storage), dir.path(), config).unwrap();
    let store = Arc::new(store);
    store.create_topic("t", 4).unwrap();
    let started = Instant::now();
    let load = Duration::from_secs(1);
    // The writer always finds sends waiting, so it never waits on its channel (where alone
    // the interval used to be checked).
    let appenders: Vec<_> = (0..32u32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut batch = 0;
                while started.elapsed() < load {
                    let msg = message("y".repeat(256), batch, 1);
                    store.append("t", task % 4, vec![msg]).await.unwrap();
                    batch += 1;
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }
    let stats = store.stats();
    println!(
        "async flush under load: {} fsyncs, {} appends in {:?}",
        stats.fsyncs,
        stats.appends,
        started.elapsed()
    );
    assert!(stats.fsyncs >= 50, "{} fsyncs in 1 s", stats.fsyncs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_fences_the_log_and_nothing_follows() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let (store, _) = open(&storage, dir.path());
    store.create_topic("t", 1).unwrap();
    send(&store, 0, "before", 0).await;
    storage.fail_once_after(1); // this send's write works, its sync fails
    let err = store
        .append("t", 0, vec![message("lost?".into(), 1, 1)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreOutcomeUnknown, "{err}");
    assert!(!err.code().is_retryable());
    let ops = storage.ops();
    let image = sizes(&storage);
    for batch in 2..5 {
        let err = store
            .append("t", 0, vec![message("after".into(), batch, 1)])
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::StoreFenced, "{err}");
    }
    store.shutdown().await;
    assert_eq!(storage.ops(), ops, "no write or sync after the failure");
    assert_eq!(sizes(&storage), image);
    assert!(store.fence_reason().unwrap().contains("injected I/O error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_roll_writes_nothing_more_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let (store, _) = open(&storage, dir.path());
    let store = Arc::new(store);
    store.create_topic("t", 1).unwrap();
    send(&store, 0, &"p".repeat(2000), 0).await;
    let ops_before = storage.ops();
    let files_before = storage.list().unwrap();
    // Hold the writer inside a small send's write, so the next two sends queue up and
    // form one group; each needs a new segment.
    storage.hold();
    let small = tokio::spawn({
        let store = store.clone();
        async move { send(&store, 0, "small", 1).await }
    });
    while storage.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    let big = |batch| {
        let store = store.clone();
        let mut future = Box::pin(async move {
            store
                .append("t", 0, vec![message("b".repeat(2500), batch, 1)])
                .await
        });
        // One poll queues the send with the writer (it then waits for its answer).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        future
    };
    let first = big(2);
    let second = big(3);
    // The small send's write and sync work; the first roll's sync fails.
    storage.fail_once_after(2);
    storage.release();
    small.await.unwrap();
    for result in [first.await, second.await] {
        assert_eq!(result.unwrap_err().code(), ErrorCode::StoreFenced);
    }
    store.shutdown().await;
    assert_eq!(
        storage.ops(),
        ops_before + 3,
        "the small send's write and sync, the failed sync, and nothing after it"
    );
    assert_eq!(
        storage.list().unwrap(),
        files_before,
        "no segment was started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_index_commit_fences_sends_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (index, failing) = FailingIndex::new();
    let config = StoreConfig {
        index_durable_interval: Duration::from_millis(1),
        ..StoreConfig::default()
    };
    let (store, _) = Store::open_with_index(
        Arc::new(FaultStorage::new()),
        dir.path(),
        config,
        Some(Box::new(index)),
    )
    .unwrap();
    store.create_topic("t", 1).unwrap();
    send(&store, 0, "indexed", 0).await;
    store.catch_up().await.unwrap();
    failing.store(true, Ordering::Relaxed);
    // Index commits between durable ones write nothing to the backend, so the failure shows
    // at the next durable commit (at most `index_durable_interval` later): keep sending
    // until the store notices.
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        let _ = store
            .append("t", 0, vec![message("unindexed".into(), 1, 1)])
            .await;
        let started = Instant::now();
        if let Err(err) = store.catch_up().await {
            assert!(
                started.elapsed() < DISPATCH_WAIT_MAX,
                "reads fail at once, not after the catch-up wait"
            );
            break err;
        }
        assert!(
            Instant::now() < deadline,
            "the index failure was not noticed in 20 s (durable interval 1 ms)"
        );
    };
    assert_eq!(err.code(), ErrorCode::StoreFenced, "{err}");
    let err = store
        .append("t", 0, vec![message("refused".into(), 2, 1)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::StoreFenced, "{err}");
    assert!(err.to_string().contains("index"), "{err}");
    let stats = store.stats();
    assert!(!stats.healthy);
    assert!(stats.unhealthy_reason.contains("injected index I/O error"));
}

#[tokio::test]
async fn a_retention_check_reads_no_segment_twice() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let (store, _) = open(&storage, dir.path());
    store.create_topic("t", 1).unwrap();
    for batch in 0..40 {
        send(&store, 0, &"r".repeat(300), batch).await;
    }
    store.catch_up().await.unwrap();
    assert_eq!(store.enforce_retention().unwrap(), 0, "nothing is old yet");
    let reads = storage.reads();
    for _ in 0..5 {
        assert_eq!(store.enforce_retention().unwrap(), 0);
    }
    assert_eq!(storage.reads(), reads, "a check reads no segment");
}

#[tokio::test]
async fn retention_reports_a_segment_it_cannot_read_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let config = StoreConfig {
        retention_bytes: bytesize::ByteSize::kib(6),
        ..small_segments()
    };
    let (store, _) = Store::open_with(Arc::new(storage.clone()), dir.path(), config).unwrap();
    store.create_topic("t", 1).unwrap();
    for batch in 0..30 {
        send(&store, 0, &"c".repeat(300), batch).await;
    }
    store.catch_up().await.unwrap();
    flip_byte(&storage, &log::segment_name(0), 500);
    let before = sizes(&storage);
    let err = store.enforce_retention().unwrap_err();
    assert!(err.to_string().contains("quiver-broker repair"), "{err}");
    assert_eq!(sizes(&storage), before, "the segment is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_under_appends_leaves_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let (store, _) = Store::open_with(
        Arc::new(storage.clone()),
        dir.path(),
        StoreConfig::default(),
    )
    .unwrap();
    let store = Arc::new(store);
    let topic_id = store.create_topic("t", 4).unwrap().id;
    let appenders: Vec<_> = (0..8u32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acked = 0u64;
                for batch in 0.. {
                    let msgs = (0..20)
                        .map(|i| message(format!("d{i}"), batch, 20))
                        .collect();
                    match store.append("t", task % 4, msgs).await {
                        Ok(_) => acked += 1,
                        Err(err) if err.code() == ErrorCode::TopicNotFound => return acked,
                        Err(err) => panic!("{err}"),
                    }
                }
                acked
            })
        })
        .collect();
    while store.stats().appends < 200 {
        tokio::task::yield_now().await;
    }
    store.delete_topic("t").unwrap();
    for appender in appenders {
        assert!(appender.await.unwrap() > 0);
    }
    store.catch_up().await.unwrap();
    let txn = store.shared().index.begin_read().unwrap();
    let pages = txn.open_table(CONSUME_PAGES).unwrap();
    let rows = pages
        .range((topic_id, 0, 0)..=(topic_id, u32::MAX, u64::MAX))
        .unwrap()
        .count();
    let ids = txn.open_table(IDS).unwrap();
    let mut id_rows = 0;
    for row in ids.iter().unwrap() {
        id_rows += usize::from(row.unwrap().0.value().0 == topic_id);
    }
    let keys = txn.open_multimap_table(KEYS).unwrap();
    let key_rows = keys
        .range((topic_id, "")..(topic_id + 1, ""))
        .unwrap()
        .count();
    assert_eq!((rows, id_rows, key_rows), (0, 0, 0));
    let meta_queues = store
        .shared()
        .queues
        .read()
        .unwrap()
        .keys()
        .filter(|(id, _)| *id == topic_id)
        .count();
    assert_eq!(meta_queues, 0, "no queue range of the deleted topic");
}
