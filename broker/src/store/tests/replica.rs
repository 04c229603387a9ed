//! `Log::append_at`: a copy of a master's log bytes, appended by position on another log,
//! recovers to the same messages; bytes out of place or cut short are refused.

use super::*;

#[tokio::test]
async fn log_bytes_appended_by_position_recover_to_the_same_messages() {
    let (master_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master_storage = FaultStorage::new();
    let (master, _) = open(&master_storage, master_dir.path());
    master.create_topic("t", 2).unwrap();
    for batch in 0..6u64 {
        let msgs = (0..3)
            .map(|i| message(format!("r{batch}-{i}"), batch, 3))
            .collect();
        master.append("t", (batch % 2) as u32, msgs).await.unwrap();
    }
    master.catch_up().await.unwrap();
    let end = master.stats().log_end;
    let bytes = master.shared().log.read(0, end as usize).unwrap();
    let want = read_all(&master, "t");

    let replica_storage = FaultStorage::new();
    {
        let (replica, _) = open(&replica_storage, replica_dir.path());
        replica.create_topic("t", 2).unwrap();
    }
    let log = log::Log::open(Arc::new(replica_storage.clone())).unwrap();
    let segment_bytes = 1 << 20;
    let short = bytes.slice(..bytes.len() - 10);
    let err = log.append_at(0, &short, segment_bytes).unwrap_err();
    assert!(err.to_string().contains("not whole records"), "{err}");
    let err = log.append_at(5, &bytes, segment_bytes).unwrap_err();
    assert!(err.to_string().contains("the log ends at 0"), "{err}");
    log.append_at(0, &bytes, segment_bytes).unwrap();
    drop(log);

    let (replica, report) = open(&replica_storage, replica_dir.path());
    assert_eq!(report.replayed, 18);
    assert!(
        read_all(&replica, "t") == want,
        "the replica holds the master's messages"
    );
    assert_eq!(replica.stats().log_end, end);
}
