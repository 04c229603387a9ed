//! Retention: whole old segments leave the log when it is over its size limit or when all
//! their messages are older than the age limit.
//!
//! Removing a segment, in order: for each chunk of its records, (1) raise the queue floors in
//! `meta.redb` durably, so no restart hands those offsets out again; (2) raise the queues'
//! minimums in memory, so readers get "removed" instead of a gap; (3) delete the chunk's
//! index rows in a short transaction, so the dispatcher (and through it, sends) never waits
//! long on the index lock. Then (4) make the deletions durable, (5) publish the new log start
//! and (6) delete the file. A crash anywhere leaves a segment the next pass removes again.
//!
//! A segment's newest broker time is kept in memory (the writer records it when it rolls),
//! so a check reads no segment; a segment sealed before a restart is read once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use redb::Durability;
use tracing::{error, info};

use crate::store::LogFile;
use crate::store::index::consume;
use crate::store::log::record::Record;
use crate::store::log::scan;
use crate::store::tables::{CONSUME_PAGES, IDS, KEYS};
use crate::store::{Shared, StoreError};

/// Records whose index rows are deleted in one transaction.
const DELETE_CHUNK_RECORDS: usize = 4096;

pub(in crate::store) fn run(shared: Arc<Shared>, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(shared.config.retention_check) {
            Err(RecvTimeoutError::Timeout) => {
                if let Err(err) = enforce(&shared, crate::clock::now_ms()) {
                    shared
                        .stats
                        .retention_errors
                        .fetch_add(1, Ordering::Relaxed);
                    error!(cause = %err, "retention failed; the segment is kept");
                }
            }
            _ => return,
        }
    }
}

/// Removes every segment retention allows; returns the bytes removed.
pub(in crate::store) fn enforce(shared: &Shared, now_ms: u64) -> Result<u64, StoreError> {
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
        let dispatched = *shared.dispatched.borrow() >= next_base;
        if !dispatched || !(over_size || age_ms > 0) {
            return Ok(removed);
        }
        // A pending delayed message keeps its segment (and every later one).
        if crate::store::index::timers::oldest_pending_pos(&shared.index)?
            .is_some_and(|pos| pos < next_base)
        {
            return Ok(removed);
        }
        let newest_ms = newest_stored_ms(shared, *base, file.as_ref())?;
        let too_old = age_ms > 0 && newest_ms.is_some_and(|ms| ms + age_ms < now_ms);
        if !(over_size || too_old) {
            return Ok(removed);
        }
        let bytes = file.len()?;
        drop_rows(shared, *base, file.as_ref())?;
        // Readers that fail to read a position below `log_start` report "removed", so the
        // new start is published before the file goes.
        shared.log_start.store(next_base, Ordering::Release);
        shared.log.remove_segment(*base)?;
        shared
            .segment_newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(base);
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

/// The newest broker time in a sealed segment: remembered, or read once.
fn newest_stored_ms(
    shared: &Shared,
    base: u64,
    file: &dyn LogFile,
) -> Result<Option<u64>, StoreError> {
    if let Some(ms) = shared
        .segment_newest
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&base)
    {
        return Ok(Some(*ms));
    }
    let mut newest = None;
    scan_whole(base, file, |record| {
        newest = Some(record.stored_ms);
        Ok(())
    })?;
    if let Some(ms) = newest {
        shared.set_segment_newest_ms(base, ms);
    }
    Ok(newest)
}

/// Scans every record of a sealed segment; a record that does not decode is an error, never
/// the silent end of the segment.
fn scan_whole(
    base: u64,
    file: &dyn LogFile,
    mut visit: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let end = scan(file, 0, |_, record, _| visit(record))?;
    match end.error {
        None => Ok(()),
        Some(error) => Err(StoreError::Corrupt {
            pos: base + end.valid_len,
            reason: format!(
                "retention cannot read segment {}: {error}; stop the broker and run `quiver-broker repair`",
                crate::store::log::segment_name(base)
            ),
        }),
    }
}

/// Deletes the index rows of every record in the segment, chunk by chunk, raising queue
/// floors and minimums before each chunk's rows go.
fn drop_rows(shared: &Shared, base: u64, file: &dyn LogFile) -> Result<(), StoreError> {
    let mut chunk = Vec::with_capacity(DELETE_CHUNK_RECORDS);
    scan_whole(base, file, |record| {
        // Only what names the rows: a record's body would pin the scan's read buffer.
        chunk.push(Rows {
            topic_id: record.topic_id,
            queue_id: record.queue_id,
            offset: record.offset,
            msg_id: record.msg_id.0,
            stored_ms: record.stored_ms,
            keys: record.keys,
        });
        if chunk.len() >= DELETE_CHUNK_RECORDS {
            drop_chunk(shared, &chunk)?;
            chunk.clear();
        }
        Ok(())
    })?;
    drop_chunk(shared, &chunk)?;
    // The deletions become durable before the file goes: no row outlives its record.
    let mut txn = shared.index.begin_write()?;
    crate::store::index::make_durable(&mut txn)?;
    txn.commit()?;
    Ok(())
}

/// What names one record's index rows.
struct Rows {
    topic_id: u32,
    queue_id: u32,
    offset: u64,
    msg_id: u128,
    stored_ms: u64,
    keys: Vec<String>,
}

fn drop_chunk(shared: &Shared, records: &[Rows]) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut floors: HashMap<(u32, u32), u64> = HashMap::new();
    for record in records {
        let floor = floors
            .entry((record.topic_id, record.queue_id))
            .or_default();
        *floor = (*floor).max(record.offset + 1);
    }
    shared.catalog.raise_floors(&floors)?;
    {
        let mut queues = shared.queues.write().unwrap_or_else(|p| p.into_inner());
        for (key, floor) in &floors {
            if let Some(range) = queues.get_mut(key) {
                range.min = range.min.max(*floor);
                range.max = range.max.max(range.min);
            }
        }
    }
    let mut txn = shared.index.begin_write()?;
    txn.set_durability(Durability::None)?;
    {
        // Whole pages below each floor go, and the page holding the floor is cut.
        let mut pages = txn.open_table(CONSUME_PAGES)?;
        for (queue, floor) in &floors {
            consume::cut_below(&mut pages, *queue, *floor)?;
        }
        let mut ids = txn.open_table(IDS)?;
        let mut keys = txn.open_multimap_table(KEYS)?;
        for record in records {
            ids.remove((
                record.topic_id,
                record.msg_id,
                record.queue_id,
                record.offset,
            ))?;
            for key in &record.keys {
                keys.remove(
                    (record.topic_id, key.as_str()),
                    (record.stored_ms, record.queue_id, record.offset),
                )?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}
