//! The commit log: segment files named by their base position, holding records back to back.
//! A position is a byte address in the whole log; segment `base` holds `[base, base + len)`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::store::StoreError;
use crate::store::log::backend::{LogFile, Storage};
use crate::store::log::recent::RecentBytes;
use crate::store::log::record::{self, Record, RecordError};

/// Bytes read at a time while scanning.
const SCAN_CHUNK_BYTES: usize = 8 << 20;
/// File name suffix of a segment.
const SEGMENT_SUFFIX: &str = ".log";

/// The segment files.
pub struct Log {
    storage: Arc<dyn Storage>,
    // RwLock: readers look segments up on every pull; only rolling and retention write.
    segments: RwLock<BTreeMap<u64, Arc<dyn LogFile>>>,
    /// The newest bytes written, for tailing reads when writes skip the page cache.
    recent: RecentBytes,
}

impl Log {
    /// Opens every segment present, in position order.
    pub fn open(storage: Arc<dyn Storage>) -> Result<Self, StoreError> {
        let mut segments = BTreeMap::new();
        for name in storage.list()? {
            if let Some(base) = parse_name(&name) {
                segments.insert(base, storage.open(&name, false)?);
            }
        }
        Ok(Log {
            storage,
            segments: RwLock::new(segments),
            recent: RecentBytes::new(0),
        })
    }

    /// Keeps the last `bytes` written in memory and answers reads from them (for direct
    /// writes, which leave nothing in the page cache).
    pub fn keep_recent(mut self, bytes: usize) -> Self {
        self.recent = RecentBytes::new(bytes);
        self
    }

    /// Records that `bytes` were written at `pos` (see [`Log::keep_recent`]).
    pub fn remember(&self, pos: u64, bytes: &[u8]) {
        self.recent.push(pos, bytes);
    }

    /// `(base, file)` of every segment, oldest first.
    pub fn segments(&self) -> Vec<(u64, Arc<dyn LogFile>)> {
        self.read_lock()
            .iter()
            .map(|(base, file)| (*base, file.clone()))
            .collect()
    }

    /// Creates the segment starting at `base`.
    pub fn create_segment(&self, base: u64) -> Result<Arc<dyn LogFile>, StoreError> {
        let file = self.storage.open(&segment_name(base), true)?;
        self.write_lock().insert(base, file.clone());
        Ok(file)
    }

    /// Deletes the segment starting at `base`.
    pub fn remove_segment(&self, base: u64) -> Result<(), StoreError> {
        self.write_lock().remove(&base);
        self.storage.remove(&segment_name(base))?;
        Ok(())
    }

    /// Appends whole records at `pos`, which must be the log's end: how a replica copies its
    /// master's log by position. The bytes must decode as records and end with a send
    /// batch's last record (so recovery never cuts into them); a segment that would pass
    /// `segment_bytes` is synced and a new one starts at `pos`. The caller syncs the bytes.
    pub fn append_at(&self, pos: u64, bytes: &Bytes, segment_bytes: u64) -> Result<(), StoreError> {
        let mut batch_end = false;
        scan_bytes(bytes, |_, record, _| batch_end = record.is_batch_end()).map_err(|err| {
            StoreError::Corrupt {
                pos,
                reason: format!("bytes to append at {pos} are not whole records: {err}"),
            }
        })?;
        if !batch_end {
            return Err(StoreError::Corrupt {
                pos,
                reason: format!(
                    "bytes to append at {pos} do not end with a send batch's last record"
                ),
            });
        }
        let (base, file) = self.segments().pop().ok_or_else(|| StoreError::Corrupt {
            pos,
            reason: "the log has no segment".into(),
        })?;
        let end = base + file.len()?;
        if pos != end {
            return Err(StoreError::Corrupt {
                pos,
                reason: format!("append at {pos}, but the log ends at {end}"),
            });
        }
        let (file, at) = if end > base && end - base + bytes.len() as u64 > segment_bytes {
            file.sync_data()?;
            file.seal()?;
            (self.create_segment(pos)?, 0)
        } else {
            (file, pos - base)
        };
        file.write_at(at, bytes)?;
        self.remember(pos, bytes);
        Ok(())
    }

    /// Reads `len` bytes at `pos` (inside one segment).
    pub fn read(&self, pos: u64, len: usize) -> Result<Bytes, StoreError> {
        if let Some(bytes) = self.recent.get(pos, len) {
            return Ok(bytes);
        }
        let (base, file) = {
            let segments = self.read_lock();
            let (base, file) =
                segments
                    .range(..=pos)
                    .next_back()
                    .ok_or_else(|| StoreError::Corrupt {
                        pos,
                        reason: "no segment holds this position (removed by retention?)".into(),
                    })?;
            (*base, file.clone())
        };
        let mut buf = vec![0u8; len];
        file.read_at(pos - base, &mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// The end of the segment holding `pos`: the next segment's base, or `u64::MAX` for the
    /// last one. A record never spans segments.
    pub fn segment_end(&self, pos: u64) -> u64 {
        self.read_lock()
            .range(pos + 1..)
            .next()
            .map_or(u64::MAX, |(base, _)| *base)
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<dyn LogFile>>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<dyn LogFile>>> {
        self.segments.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A segment's file name: its base position as 20 digits.
pub fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// Calls `visit(byte_offset, record, len)` for each record in `bytes`, which must hold whole
/// records (what the writer assembled, or a replica received).
pub fn scan_bytes(
    bytes: &Bytes,
    mut visit: impl FnMut(u64, Record, usize),
) -> Result<(), RecordError> {
    let mut used = 0usize;
    while used < bytes.len() {
        let (record, len) = record::decode(&bytes.slice(used..))?;
        visit(used as u64, record, len);
        used += len;
    }
    Ok(())
}

/// How a scan of one segment ended.
#[derive(Debug)]
pub struct ScanEnd {
    /// File offset just past the last record that decoded.
    pub valid_len: u64,
    /// Why the scan stopped before the file's end, if it did.
    pub error: Option<RecordError>,
}

/// Calls `visit(file_offset, record, len)` for each record of `file` from `from`, stopping at
/// the first record that does not decode (a torn or corrupt tail).
pub fn scan(
    file: &dyn LogFile,
    from: u64,
    mut visit: impl FnMut(u64, Record, usize) -> Result<(), StoreError>,
) -> Result<ScanEnd, StoreError> {
    let file_len = file.len()?;
    let mut pos = from;
    while pos < file_len {
        let want = ((file_len - pos) as usize).min(SCAN_CHUNK_BYTES);
        let mut chunk = vec![0u8; want];
        file.read_at(pos, &mut chunk)?;
        let mut chunk = Bytes::from(chunk);
        // A record longer than the chunk: read exactly that record.
        if let Ok(len) = record::peek_len(&chunk)
            && len > chunk.len()
            && pos + len as u64 <= file_len
        {
            let mut whole = vec![0u8; len];
            file.read_at(pos, &mut whole)?;
            chunk = Bytes::from(whole);
        }
        let mut used = 0usize;
        while used < chunk.len() {
            match record::decode(&chunk.slice(used..)) {
                Ok((rec, len)) => {
                    visit(pos + used as u64, rec, len)?;
                    used += len;
                }
                Err(RecordError::Truncated { .. }) if used > 0 => break,
                Err(error) => {
                    return Ok(ScanEnd {
                        valid_len: pos + used as u64,
                        error: Some(error),
                    });
                }
            }
        }
        pos += used as u64;
    }
    Ok(ScanEnd {
        valid_len: pos,
        error: None,
    })
}
