//! An index written in an older format is rebuilt from the log at start.

use redb::{ReadableDatabase, TableDefinition};

use super::super::tables::{INDEX_FORMAT, INDEX_FORMAT_VERSION, STATE};
use super::*;

/// Format 1's tables, as the code before consume pages wrote them.
const V1_CONSUME: TableDefinition<'static, (u32, u32, u64), [u8; 40]> =
    TableDefinition::new("consume_index");
const V1_STATE: TableDefinition<'static, &str, u64> = TableDefinition::new("state");

#[tokio::test]
async fn an_index_in_the_old_format_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultStorage::new();
    let (store, _) = open(&storage, dir.path());
    store.create_topic("t", 2).unwrap();
    for batch in 0..30u64 {
        let msgs = (0..4)
            .map(|i| message(format!("m{batch}-{i}"), batch, 4))
            .collect();
        store.append("t", (batch % 2) as u32, msgs).await.unwrap();
    }
    store.catch_up().await.unwrap();
    let before = read_all(&store, "t");
    assert_eq!(before[&0].len() + before[&1].len(), 120);
    let log_end = store.stats().log_end;
    store.shutdown().await;
    drop(store);

    // A format-1 index: rows of the old layout, and a dispatch position at the log's end, so
    // an index that were trusted would replay nothing and hold no page.
    let path = dir.path().join("index.redb");
    std::fs::remove_file(&path).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(V1_CONSUME)
            .unwrap()
            .insert((1, 0, 0), [7u8; 40])
            .unwrap();
        txn.open_table(V1_STATE)
            .unwrap()
            .insert("dispatched_upto", log_end)
            .unwrap();
        txn.commit().unwrap();
    }

    let (store, report) = open(&storage, dir.path());
    assert_eq!(
        report.replayed, 120,
        "every record replayed into the new index"
    );
    assert!(
        read_all(&store, "t") == before,
        "the same messages after the rebuild"
    );
    let meta = store.topic("t").unwrap();
    assert_eq!(store.queue_range(&meta, 0), QueueRange { min: 0, max: 60 });
    let id = before[&1][5].msg_id;
    let copies: Vec<u64> = store
        .query_id("t", &meta, id)
        .unwrap()
        .iter()
        .map(|m| m.offset)
        .collect();
    assert_eq!(
        copies,
        vec![4, 5, 6, 7],
        "the test's ids are per batch: every copy is found"
    );
    let txn = store.shared().index.begin_read().unwrap();
    let format = txn
        .open_table(STATE)
        .unwrap()
        .get(INDEX_FORMAT)
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(format, INDEX_FORMAT_VERSION);
    drop(txn);
    drop(store);

    // The rebuilt index is current: the next start replays nothing.
    let (_, report) = open(&storage, dir.path());
    assert_eq!(report.replayed, 0);
}
