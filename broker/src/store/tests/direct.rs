//! Direct (`O_DIRECT`) log writes on the real file system: sealed segments carry no padding,
//! a crash's padding is cut as a torn tail, and tailing reads come from the recent bytes.

use super::super::log::direct;
use super::*;

fn sync_direct() -> StoreConfig {
    StoreConfig {
        segment_bytes: bytesize::ByteSize::kib(16),
        log_io: LogIo::Direct,
        ..StoreConfig::default()
    }
}

async fn fill(store: &Store, batches: u64) {
    store.create_topic("t", 2).unwrap();
    for batch in 0..batches {
        // Odd sizes, so writes rarely end on a block boundary.
        let msgs = (0..3)
            .map(|i| {
                message(
                    format!("b{batch}-{i}-{}", "y".repeat(batch as usize * 7)),
                    batch,
                    3,
                )
            })
            .collect();
        store.append("t", (batch % 2) as u32, msgs).await.unwrap();
    }
    store.catch_up().await.unwrap();
}

fn segment_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn direct_writes_survive_rolls_and_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), sync_direct()).unwrap();
    fill(&store, 60).await;
    let before = read_all(&store, "t");
    assert_eq!(before.values().map(Vec::len).sum::<usize>(), 180);
    let log_end = store.stats().log_end;
    store.shutdown().await;
    drop(store);

    let files = segment_files(dir.path());
    assert!(files.len() > 3, "small segments rolled: {}", files.len());
    let on_disk: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(
        on_disk, log_end,
        "sealed segments and a clean shutdown leave no padding"
    );

    let (store, report) = Store::open(dir.path(), sync_direct()).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(read_all(&store, "t"), before);
    // Appends continue mid-block after the restart (the head is read back from the file).
    store
        .append("t", 0, vec![message("after".into(), 99, 1)])
        .await
        .unwrap();
    store.catch_up().await.unwrap();
    assert_eq!(read_all(&store, "t")[&0].last().unwrap().body, "after");
}

#[tokio::test]
async fn padding_left_by_a_crash_is_cut_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), sync_direct()).unwrap();
    fill(&store, 25).await;
    let before = read_all(&store, "t");
    let log_end = store.stats().log_end;
    // What a crash leaves: the files as they are while the store runs.
    let crashed = segment_files(dir.path());
    store.shutdown().await;
    drop(store);
    for (path, bytes) in &crashed {
        std::fs::write(path, bytes).unwrap();
    }
    let (last_path, last) = crashed.last().unwrap();
    let base: u64 = last_path
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let padding = base + last.len() as u64 - log_end;
    // Zero where the file system refuses O_DIRECT (the segment was written buffered).
    assert!(padding < direct::BLOCK as u64, "padding {padding}");
    assert!(last[(log_end - base) as usize..].iter().all(|b| *b == 0));

    let (store, report) = Store::open(dir.path(), sync_direct()).unwrap();
    assert_eq!(report.truncated_bytes, padding);
    assert_eq!(
        read_all(&store, "t"),
        before,
        "nothing acknowledged is lost"
    );
    assert_eq!(store.stats().log_end, log_end);
}

#[tokio::test]
async fn tailing_reads_come_from_the_recent_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        tail_cache_bytes: bytesize::ByteSize::kib(1),
        ..sync_direct()
    };
    let (store, _) = Store::open(dir.path(), config).unwrap();
    fill(&store, 10).await;
    let end = store.stats().log_end;
    let (path, written) = segment_files(dir.path()).pop().unwrap();
    assert!(written.len() as u64 >= end);
    // Zero the file under the store: what still reads back came from memory.
    std::fs::write(&path, vec![0u8; written.len()]).unwrap();
    let tail = store.shared().log.read(end - 1024, 1024).unwrap();
    assert_eq!(&tail[..], &written[(end - 1024) as usize..end as usize]);
    let older = store.shared().log.read(end - 1025, 1025).unwrap();
    assert!(
        older.iter().all(|b| *b == 0),
        "past the ring, reads go to the file"
    );
}
