//! Opening the store: find the valid end of the log (a torn tail is truncated to the last
//! complete send batch), replay the log into the index past its durable point, and load each
//! queue's offsets.
//!
//! Order: (1) open the segments; (2) read `dispatched_upto` from `index.redb`; if the log ends
//! before it (async mode after a power loss, or a lost index), rebuild the index from the log's
//! start; (3) scan from there, keeping records batch by batch and cutting the log at the first
//! record that does not decode or at an unfinished batch; (4) commit the replayed rows with
//! `Immediate` durability; (5) read each queue's first and last offsets.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase};
use tracing::{info, warn};

use crate::store::catalog::Catalog;
use crate::store::index::consume;
use crate::store::index::dispatcher::{IndexEntry, insert_entries};
use crate::store::log::backend::LogFile;
use crate::store::log::{Log, scan};
use crate::store::tables::{
    CONSUME_PAGES, DISPATCHED_UPTO, IDS, INDEX_FORMAT, INDEX_FORMAT_VERSION, KEYS, STATE,
};
use crate::store::{QueueRange, StoreError};

/// The index database's file name in the data directory.
pub(in crate::store) const INDEX_FILE: &str = "index.redb";

/// Rows replayed per index commit during recovery.
const REPLAY_COMMIT_ROWS: usize = 100_000;

/// What recovery hands to the running store.
pub(in crate::store) struct Recovered {
    pub(in crate::store) index: Database,
    pub(in crate::store) active_base: u64,
    pub(in crate::store) active: Arc<dyn LogFile>,
    pub(in crate::store) active_len: u64,
    pub(in crate::store) log_start: u64,
    pub(in crate::store) dispatched_upto: u64,
    pub(in crate::store) queues: HashMap<(u32, u32), QueueRange>,
    pub(in crate::store) removed_before_ms: u64,
    pub(in crate::store) replayed: u64,
    pub(in crate::store) truncated_bytes: u64,
}

pub(in crate::store) fn recover(
    log: &Log,
    data_dir: &Path,
    catalog: &Catalog,
    backend: Option<Box<dyn redb::StorageBackend>>,
    cache_bytes: usize,
) -> Result<Recovered, StoreError> {
    let index_path = &data_dir.join(INDEX_FILE);
    if log.segments().is_empty() {
        log.create_segment(0)?;
    }
    let segments = log.segments();
    let log_start = segments[0].0;
    let (last_base, last_file) = segments.last().cloned().expect("at least one segment");
    let claimed_end = last_base + last_file.len()?;

    let injected = backend.is_some();
    let mut index = match backend {
        Some(backend) => {
            init_tables(index_builder(cache_bytes).create_with_backend(DynBackend(backend))?)?
        }
        None => open_index(index_path, cache_bytes)?,
    };
    let mut from = read_dispatched(&index)?;
    if from > claimed_end && !injected {
        warn!(
            dispatched_upto = from,
            log_end = claimed_end,
            "index is ahead of the log; rebuilding it"
        );
        drop(index);
        std::fs::remove_file(index_path)?;
        index = open_index(index_path, cache_bytes)?;
        from = 0;
    }
    let from = from.max(log_start);

    let mut replay = Replay::new(&index);
    let mut valid_end = from;
    let mut cut = None;
    for (idx, (base, file)) in segments.iter().enumerate() {
        let last = idx + 1 == segments.len();
        let seg_end = base + file.len()?;
        if seg_end <= from && !last {
            continue;
        }
        let start = from.saturating_sub(*base);
        let base = *base;
        info!(
            segment = idx + 1,
            segments = segments.len(),
            from = base + start,
            to = seg_end,
            "replaying the log into the index"
        );
        let end = scan(file.as_ref(), start, |offset, record, len| {
            replay.push(base + offset, record, len)
        })?;
        if end.error.is_none() && replay.batch_start.is_none() {
            valid_end = base + end.valid_len;
            continue;
        }
        let batch_start = replay.batch_start.unwrap_or(base + end.valid_len);
        if !last {
            // Only the last segment can end in a torn write: a segment is synced before the
            // next one is created. Anything else is media corruption, and cutting it would
            // delete acknowledged messages.
            let (pos, reason) = match &end.error {
                Some(error) => (base + end.valid_len, error.to_string()),
                None => (
                    batch_start,
                    "the segment ends inside a send batch (a sealed segment holds whole batches)"
                        .to_owned(),
                ),
            };
            return Err(StoreError::CorruptLog {
                file: crate::store::log::segment_name(base),
                file_pos: pos - base,
                pos,
                reason,
                data_dir: data_dir.display().to_string(),
            });
        }
        cut = Some((idx, batch_start - base, end.error));
        valid_end = batch_start;
    }
    let replayed = replay.finish(valid_end)?;

    let mut truncated_bytes = 0;
    if let Some((idx, keep, error)) = cut {
        let (base, file) = &segments[idx];
        truncated_bytes = file.len()? - keep;
        warn!(pos = base + keep, bytes = truncated_bytes, cause = ?error, "truncating torn log tail");
        file.truncate(keep)?;
    }
    let segments = log.segments();
    let (active_base, active) = segments.last().cloned().expect("segment kept");
    let active_len = active.len()?;
    let queues = load_queues(&index, catalog)?;
    let removed_before_ms = if log_start > 0 {
        first_stored_ms(segments[0].1.as_ref())?.unwrap_or(0)
    } else {
        0
    };
    info!(
        log_start,
        log_end = active_base + active_len,
        replayed,
        truncated_bytes,
        "store recovered"
    );
    Ok(Recovered {
        index,
        active_base,
        active,
        active_len,
        log_start,
        dispatched_upto: active_base + active_len,
        queues,
        removed_before_ms,
        replayed,
        truncated_bytes,
    })
}

/// Opens the index, or rebuilds it when it was written in another format: a file without
/// the current `index_format` is deleted and the log replayed into a new one from its start.
fn open_index(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)?;
    let format = {
        let txn = db.begin_read()?;
        match txn.open_table(STATE) {
            Ok(state) => Some((
                state.get(INDEX_FORMAT)?.map(|v| v.value()),
                state.get(DISPATCHED_UPTO)?.map(|v| v.value()),
            )),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(err) => return Err(err.into()),
        }
    };
    match format {
        None | Some((Some(INDEX_FORMAT_VERSION), _)) | Some((None, None)) => init_tables(db),
        Some((found, _)) => {
            warn!(
                found = found.unwrap_or(1),
                current = INDEX_FORMAT_VERSION,
                "index.redb is in an older format; rebuilding it from the log (progress is logged)"
            );
            drop(db);
            std::fs::remove_file(path)?;
            init_tables(
                Database::builder()
                    .set_cache_size(cache_bytes)
                    .create(path)?,
            )
        }
    }
}

/// How `index.redb` is opened: with a sized cache. (Its durable commits use quick repair:
/// see `durable_index_txn`.)
fn index_builder(cache_bytes: usize) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    builder
}

fn init_tables(db: Database) -> Result<Database, StoreError> {
    let mut txn = db.begin_write()?;
    crate::store::index::make_durable(&mut txn)?;
    txn.open_table(CONSUME_PAGES)?;
    txn.open_table(IDS)?;
    txn.open_multimap_table(KEYS)?;
    txn.open_table(STATE)?
        .insert(INDEX_FORMAT, INDEX_FORMAT_VERSION)?;
    txn.commit()?;
    Ok(db)
}

fn read_dispatched(index: &Database) -> Result<u64, StoreError> {
    let txn = index.begin_read()?;
    let table = txn.open_table(STATE)?;
    Ok(table.get(DISPATCHED_UPTO)?.map_or(0, |v| v.value()))
}

/// Replayed rows, kept per send batch until the batch's last record is seen.
struct Replay<'a> {
    index: &'a Database,
    done: Vec<IndexEntry>,
    batch: Vec<IndexEntry>,
    batch_start: Option<u64>,
    replayed: u64,
}

impl<'a> Replay<'a> {
    fn new(index: &'a Database) -> Self {
        Replay {
            index,
            done: Vec::new(),
            batch: Vec::new(),
            batch_start: None,
            replayed: 0,
        }
    }

    fn push(
        &mut self,
        pos: u64,
        record: crate::store::log::record::Record,
        len: usize,
    ) -> Result<(), StoreError> {
        self.batch_start.get_or_insert(pos);
        let batch_end = record.is_batch_end();
        self.batch.push(IndexEntry::of_record(pos, &record, len));
        if batch_end {
            self.done.append(&mut self.batch);
            self.batch_start = None;
            if self.done.len() >= REPLAY_COMMIT_ROWS {
                self.commit(None)?;
            }
        }
        Ok(())
    }

    fn commit(&mut self, dispatched: Option<u64>) -> Result<(), StoreError> {
        let mut txn = self.index.begin_write()?;
        if dispatched.is_some() {
            crate::store::index::make_durable(&mut txn)?;
        } else {
            txn.set_durability(redb::Durability::None)?;
        }
        insert_entries(&txn, &self.done)?;
        if let Some(end) = dispatched {
            txn.open_table(STATE)?.insert(DISPATCHED_UPTO, end)?;
        }
        txn.commit()?;
        self.replayed += self.done.len() as u64;
        self.done.clear();
        Ok(())
    }

    fn finish(mut self, valid_end: u64) -> Result<u64, StoreError> {
        self.commit(Some(valid_end))?;
        Ok(self.replayed)
    }
}

/// Each queue's `[min, max)` from its first and last index rows, never below its floor in
/// `meta.redb`: a queue that retention emptied restarts at its old end, not at 0.
fn load_queues(
    index: &Database,
    catalog: &Catalog,
) -> Result<HashMap<(u32, u32), QueueRange>, StoreError> {
    let floors = catalog.floors()?;
    let txn = index.begin_read()?;
    let pages = txn.open_table(CONSUME_PAGES)?;
    let mut queues = HashMap::new();
    for (_, topic) in catalog.list() {
        for queue_id in 0..topic.queues {
            let floor = floors.get(&(topic.id, queue_id)).copied().unwrap_or(0);
            let range = match consume::bounds(&pages, (topic.id, queue_id))? {
                Some((min, max)) => QueueRange {
                    min,
                    max: max.max(floor),
                },
                None if floor > 0 => QueueRange {
                    min: floor,
                    max: floor,
                },
                None => continue,
            };
            queues.insert((topic.id, queue_id), range);
        }
    }
    Ok(queues)
}

fn first_stored_ms(file: &dyn LogFile) -> Result<Option<u64>, StoreError> {
    let mut header = vec![0u8; crate::store::log::record::HEADER_BYTES];
    if file.len()? < header.len() as u64 {
        return Ok(None);
    }
    file.read_at(0, &mut header)?;
    Ok(crate::store::log::record::peek_stored_ms(&header))
}

/// A boxed backend as a backend (redb takes one by value).
#[derive(Debug)]
struct DynBackend(Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for DynBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}
