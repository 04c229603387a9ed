//! `quiver-broker repair`: the explicit answer to a corrupt log, which the broker refuses to
//! start on.
//!
//! A repair reads every segment from its start. In each segment it keeps every whole send
//! batch before the first record that does not decode (or before a batch the segment ends
//! inside) and moves the bytes from there to the segment's end into a file under
//! `quarantine/`; later segments are kept up to their own first bad record. So the messages
//! of the bad record's batch and of every later record of that segment leave the log (their
//! bytes are kept in quarantine for inspection); everything else stays readable.
//!
//! Order of a repair: (1) each cut's bytes are written to `quarantine/` and synced; (2) each
//! queue's floor in `meta.redb` is raised to one past its highest offset the old index knew,
//! so no offset of a cut message is handed out again; (3) the segments are truncated; (4)
//! `index.redb` is removed, so the next start rebuilds it from the repaired log.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase};

use crate::store::StoreError;
use crate::store::catalog::Catalog;
use crate::store::index::consume;
use crate::store::log::backend::{FsStorage, LogFile, Storage};
use crate::store::log::recovery::INDEX_FILE;
use crate::store::log::{Log, scan, segment_name};
use crate::store::tables::{
    CONSUME_PAGES, INDEX_FORMAT, INDEX_FORMAT_VERSION, LEGACY_CONSUME, STATE,
};

/// Bytes copied to quarantine at a time.
const COPY_CHUNK_BYTES: usize = 8 << 20;

/// One segment's cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Segment file name.
    pub file: String,
    /// Log position of the segment's first byte.
    pub base: u64,
    /// Bytes kept at the segment's start.
    pub keep_bytes: u64,
    /// Bytes moved to quarantine.
    pub cut_bytes: u64,
    /// Byte in the file where the scan failed.
    pub bad_at: u64,
    /// What failed there.
    pub reason: String,
}

/// What a repair would do.
#[derive(Debug)]
pub struct RepairPlan {
    /// Segments read.
    pub segments: usize,
    /// Records that decoded and are kept.
    pub records_kept: u64,
    /// The cuts, oldest segment first; empty when the log is sound.
    pub cuts: Vec<Cut>,
    /// Queue floors to raise (from the old index), so cut offsets are never reused.
    floors: HashMap<(u32, u32), u64>,
    /// Why the old index could not be read, when it could not.
    pub index_unreadable: Option<String>,
}

impl RepairPlan {
    /// A report of the plan, one line per cut.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "read {} segments: {} records decode and are kept\n",
            self.segments, self.records_kept
        );
        if self.cuts.is_empty() {
            out.push_str("the log is sound: nothing to cut\n");
        }
        for cut in &self.cuts {
            out.push_str(&format!(
                "cut {}: keep the first {} bytes, move {} bytes from byte {} to quarantine ({} at byte {})\n",
                cut.file, cut.keep_bytes, cut.cut_bytes, cut.keep_bytes, cut.reason, cut.bad_at
            ));
        }
        if let Some(reason) = &self.index_unreadable {
            out.push_str(&format!(
                "warning: index.redb is unreadable ({reason}): offsets of cut messages that no kept record follows may be handed out again\n"
            ));
        }
        out
    }
}

/// Plans a repair of the store in `data_dir` (log in `data_dir/log`), changing nothing.
pub fn plan(data_dir: &Path) -> Result<RepairPlan, StoreError> {
    plan_with(Arc::new(FsStorage::new(data_dir.join("log"))?), data_dir)
}

/// Carries out a plan made by [`plan`] on the same, stopped, store.
pub fn apply(data_dir: &Path, plan: &RepairPlan) -> Result<Vec<PathBuf>, StoreError> {
    apply_with(
        Arc::new(FsStorage::new(data_dir.join("log"))?),
        data_dir,
        plan,
    )
}

/// [`plan`] with the log segments on `storage`.
pub fn plan_with(storage: Arc<dyn Storage>, data_dir: &Path) -> Result<RepairPlan, StoreError> {
    let log = Log::open(storage)?;
    let segments = log.segments();
    let mut cuts = Vec::new();
    let mut records_kept = 0;
    for (base, file) in &segments {
        let (kept, cut) = check_segment(*base, file.as_ref())?;
        records_kept += kept;
        cuts.extend(cut);
    }
    let (floors, index_unreadable) = match index_floors(data_dir) {
        Ok(floors) => (floors, None),
        Err(err) => (HashMap::new(), Some(err.to_string())),
    };
    Ok(RepairPlan {
        segments: segments.len(),
        records_kept,
        cuts,
        floors,
        index_unreadable,
    })
}

/// [`apply`] with the log segments on `storage`; returns the quarantine files written.
pub fn apply_with(
    storage: Arc<dyn Storage>,
    data_dir: &Path,
    plan: &RepairPlan,
) -> Result<Vec<PathBuf>, StoreError> {
    if plan.cuts.is_empty() {
        return Ok(Vec::new());
    }
    let log = Log::open(storage)?;
    let segments: HashMap<u64, Arc<dyn LogFile>> = log.segments().into_iter().collect();
    let quarantine = data_dir.join("quarantine");
    fs::create_dir_all(&quarantine)?;
    let mut written = Vec::new();
    for cut in &plan.cuts {
        let file = segments.get(&cut.base).ok_or_else(|| StoreError::Corrupt {
            pos: cut.base,
            reason: format!("segment {} is gone since the plan was made", cut.file),
        })?;
        if file.len()? != cut.keep_bytes + cut.cut_bytes {
            return Err(StoreError::Corrupt {
                pos: cut.base,
                reason: format!(
                    "segment {} changed since the plan was made: run the repair again",
                    cut.file
                ),
            });
        }
        let path = quarantine.join(format!("{}.{}.bad", cut.file, cut.keep_bytes));
        copy_out(file.as_ref(), cut.keep_bytes, cut.cut_bytes, &path)?;
        written.push(path);
    }
    File::open(&quarantine)?.sync_all()?;
    let meta = Catalog::open(&data_dir.join("meta.redb"), REPAIR_CACHE_BYTES)?;
    meta.raise_floors(&plan.floors)?;
    drop(meta);
    for cut in &plan.cuts {
        segments[&cut.base].truncate(cut.keep_bytes)?;
    }
    match fs::remove_file(data_dir.join(INDEX_FILE)) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
        _ => {}
    }
    Ok(written)
}

/// Scans one segment: the records kept and, if the segment must be cut, where.
fn check_segment(base: u64, file: &dyn LogFile) -> Result<(u64, Option<Cut>), StoreError> {
    let mut batch_start = None;
    let mut batch_len = 0u64;
    let mut kept = 0u64;
    let end = scan(file, 0, |offset, record, _| {
        batch_start.get_or_insert(offset);
        batch_len += 1;
        if record.is_batch_end() {
            kept += batch_len;
            batch_len = 0;
            batch_start = None;
        }
        Ok(())
    })?;
    let (bad_at, reason) = match (&end.error, batch_start) {
        (Some(error), _) => (end.valid_len, error.to_string()),
        (None, Some(_)) => (
            end.valid_len,
            "the segment ends inside a send batch".to_owned(),
        ),
        (None, None) => return Ok((kept, None)),
    };
    let keep_bytes = batch_start.unwrap_or(end.valid_len);
    let len = file.len()?;
    Ok((
        kept,
        Some(Cut {
            file: segment_name(base),
            base,
            keep_bytes,
            cut_bytes: len - keep_bytes,
            bad_at,
            reason,
        }),
    ))
}

/// One past the highest offset of every queue the old index holds.
fn index_floors(data_dir: &Path) -> Result<HashMap<(u32, u32), u64>, StoreError> {
    let path = data_dir.join(INDEX_FILE);
    let mut floors = HashMap::new();
    if !path.exists() {
        return Ok(floors);
    }
    let db = Database::builder().open(&path)?;
    let txn = db.begin_read()?;
    let format = match txn.open_table(STATE) {
        Ok(state) => state.get(INDEX_FORMAT)?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(floors),
        Err(err) => return Err(err.into()),
    };
    if format == Some(INDEX_FORMAT_VERSION) {
        let pages = txn.open_table(CONSUME_PAGES)?;
        let mut queue = Some((0u32, 0u32));
        // Pages are ordered by (topic, queue, page): find each queue's first page, then its
        // bounds.
        while let Some((topic_id, queue_id)) = queue {
            let Some(found) = pages.range((topic_id, queue_id, 0)..)?.next().transpose()? else {
                break;
            };
            let (topic_id, queue_id, _) = found.0.value();
            drop(found);
            if let Some((_, max)) = consume::bounds(&pages, (topic_id, queue_id))? {
                floors.insert((topic_id, queue_id), max);
            }
            queue = next_queue(topic_id, queue_id);
        }
        return Ok(floors);
    }
    let consume = match txn.open_table(LEGACY_CONSUME) {
        Ok(consume) => consume,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(floors),
        Err(err) => return Err(err.into()),
    };
    // Format 1: rows are ordered by (topic, queue, offset): the last row of each queue is its
    // highest.
    let mut next = Some((0u32, 0u32));
    while let Some((topic_id, queue_id)) = next {
        let last = consume
            .range((topic_id, queue_id, 0)..)?
            .next()
            .transpose()?
            .map(|(key, _)| key.value());
        let Some((topic_id, queue_id, _)) = last else {
            break;
        };
        let top = consume
            .range((topic_id, queue_id, 0)..=(topic_id, queue_id, u64::MAX))?
            .next_back()
            .transpose()?
            .map_or(0, |(key, _)| key.value().2);
        floors.insert((topic_id, queue_id), top + 1);
        next = next_queue(topic_id, queue_id);
    }
    Ok(floors)
}

/// redb cache of the databases a repair opens.
const REPAIR_CACHE_BYTES: usize = 16 << 20;

fn next_queue(topic_id: u32, queue_id: u32) -> Option<(u32, u32)> {
    match queue_id.checked_add(1) {
        Some(queue_id) => Some((topic_id, queue_id)),
        None => topic_id.checked_add(1).map(|topic_id| (topic_id, 0)),
    }
}

fn copy_out(file: &dyn LogFile, from: u64, len: u64, path: &Path) -> Result<(), StoreError> {
    let mut out = File::create(path)?;
    let mut done = 0u64;
    let mut buf = vec![0u8; COPY_CHUNK_BYTES.min(len as usize)];
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        file.read_at(from + done, &mut buf[..want])?;
        out.write_all(&buf[..want])?;
        done += want as u64;
    }
    out.sync_all()?;
    Ok(())
}
