//! Retention: whole old segments leave the log when it is over its size limit or when all
//! their messages are older than the age limit. Their index rows are removed first (one
//! durable commit), then the file; a crash in between leaves a segment no index points to,
//! which the next pass removes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use redb::WriteTransaction;
use tracing::{error, info};

use super::log::scan;
use super::tables::{CONSUME, IDS, KEYS};
use super::{Shared, StoreError};

pub(super) fn run(shared: Arc<Shared>, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(shared.config.retention_check) {
            Err(RecvTimeoutError::Timeout) => {
                if let Err(err) = enforce(&shared, crate::clock::now_ms()) {
                    error!(cause = %err, "retention failed");
                }
            }
            _ => return,
        }
    }
}

/// Removes every segment retention allows; returns the bytes removed.
pub(super) fn enforce(shared: &Shared, now_ms: u64) -> Result<u64, StoreError> {
    let limit_bytes = shared.config.retention_bytes.as_u64();
    let age_ms = shared.config.retention_age.as_millis() as u64;
    let mut removed = 0;
    loop {
        let segments = shared.log.segments();
        if segments.len() < 2 {
            return Ok(removed);
        }
        let mut total = 0;
        for (_, file) in &segments {
            total += file.len()?;
        }
        let (base, file) = &segments[0];
        let next_base = segments[1].0;
        let over_size = limit_bytes > 0 && total > limit_bytes;
        let newest_ms = newest_stored_ms(file.as_ref())?;
        let too_old = age_ms > 0 && newest_ms.is_some_and(|ms| ms + age_ms < now_ms);
        let dispatched = *shared.dispatched.borrow() >= next_base;
        if !(over_size || too_old) || !dispatched {
            return Ok(removed);
        }
        let bytes = file.len()?;
        drop_rows(shared, file.as_ref())?;
        // Readers that fail to read a position below `log_start` report "removed", so the
        // new start is published before the file goes.
        shared.log_start.store(next_base, Ordering::Release);
        shared.log.remove_segment(*base)?;
        if let Some(ms) = newest_ms {
            shared
                .removed_before_ms
                .fetch_max(ms + 1, Ordering::Relaxed);
        }
        info!(
            segment_base = base,
            bytes, over_size, too_old, "retention removed a segment"
        );
        removed += bytes;
    }
}

fn newest_stored_ms(file: &dyn super::LogFile) -> Result<Option<u64>, StoreError> {
    let mut newest = None;
    scan(file, 0, |_, record, _| {
        newest = Some(record.stored_ms);
        Ok(())
    })?;
    Ok(newest)
}

/// Deletes the index rows of every record in `file`, durably, and raises queue minimums.
fn drop_rows(shared: &Shared, file: &dyn super::LogFile) -> Result<(), StoreError> {
    let txn = shared.index.begin_write()?;
    let mut raised = Vec::new();
    remove_rows(&txn, file, &mut raised)?;
    txn.commit()?;
    let mut queues = shared.queues.write().unwrap_or_else(|p| p.into_inner());
    for (key, next) in raised {
        if let Some(range) = queues.get_mut(&key) {
            range.min = range.min.max(next);
        }
    }
    Ok(())
}

fn remove_rows(
    txn: &WriteTransaction,
    file: &dyn super::LogFile,
    raised: &mut Vec<((u32, u32), u64)>,
) -> Result<(), StoreError> {
    let mut consume = txn.open_table(CONSUME)?;
    let mut ids = txn.open_multimap_table(IDS)?;
    let mut keys = txn.open_multimap_table(KEYS)?;
    scan(file, 0, |_, record, _| {
        let at = (record.topic_id, record.queue_id, record.offset);
        consume.remove(at)?;
        ids.remove(record.msg_id.0, at)?;
        for key in &record.keys {
            keys.remove(
                (record.topic_id, key.as_str()),
                (record.stored_ms, record.queue_id, record.offset),
            )?;
        }
        raised.push(((record.topic_id, record.queue_id), record.offset + 1));
        Ok(())
    })?;
    Ok(())
}
