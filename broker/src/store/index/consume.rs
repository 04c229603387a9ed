//! The consume index over pages: put entries, cut a queue below a floor, scan a queue from an
//! offset with an optional tag filter, find a queue's bounds. Written against the
//! [`PageRead`] / [`PageWrite`] traits, which the redb tables implement and the tests
//! implement with a `BTreeMap`, so the property test runs this very code.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table};

use crate::store::StoreError;
use crate::store::index::page::{self, PAGE_SLOTS, PageBuf, PageView, Slot};

/// `(topic_id, queue_id)`.
pub type QueueKey = (u32, u32);
/// Key of a page row: `(topic_id, queue_id, page_no)`.
pub type PageKey = (u32, u32, u64);

/// Reads pages.
pub trait PageRead {
    /// Calls `visit(page_no, page)` for the queue's pages numbered `from..=to`, ascending,
    /// until it returns `false` (none when `from > to`).
    fn scan_pages(
        &self,
        queue: QueueKey,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, PageView<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// The queue's first and last page.
    fn edge_pages(&self, queue: QueueKey) -> Result<Option<[(u64, PageBuf); 2]>, StoreError>;

    /// One page.
    fn page(&self, key: PageKey) -> Result<Option<PageBuf>, StoreError> {
        let mut found = None;
        self.scan_pages((key.0, key.1), key.2, key.2, &mut |_, view| {
            found = Some(PageBuf::from_view(view));
            Ok(false)
        })?;
        Ok(found)
    }
}

/// Changes pages.
pub trait PageWrite: PageRead {
    /// Stores a page.
    fn put_page(&mut self, key: PageKey, page: &PageBuf) -> Result<(), StoreError>;
    /// Removes a page.
    fn remove_page(&mut self, key: PageKey) -> Result<(), StoreError>;
}

/// One consume-index entry to store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Put {
    /// The queue.
    pub queue: QueueKey,
    /// Offset in the queue.
    pub offset: u64,
    /// Where the record is.
    pub slot: Slot,
}

/// Stores `puts`, reading and writing each touched page once.
pub fn put_entries(
    table: &mut impl PageWrite,
    puts: impl IntoIterator<Item = Put>,
) -> Result<(), StoreError> {
    let mut touched: BTreeMap<PageKey, PageBuf> = BTreeMap::new();
    for put in puts {
        let key = (put.queue.0, put.queue.1, page::page_no(put.offset));
        let page = match touched.entry(key) {
            std::collections::btree_map::Entry::Occupied(page) => page.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(table.page(key)?.unwrap_or_default())
            }
        };
        let idx = page::slot_idx(put.offset);
        // A slot cut by retention is never written again: offsets only grow, and the queue
        // floor is above every cut slot.
        if idx >= page.view().first() {
            page.put(idx, put.slot);
        }
    }
    for (key, page) in &touched {
        table.put_page(*key, page)?;
    }
    Ok(())
}

/// Removes every entry of `queue` below `floor`: whole pages go, the page holding `floor`
/// is cut. Returns the pages removed.
pub fn cut_below(
    table: &mut impl PageWrite,
    queue: QueueKey,
    floor: u64,
) -> Result<u64, StoreError> {
    let floor_page = page::page_no(floor);
    let mut gone = Vec::new();
    if floor_page > 0 {
        table.scan_pages(queue, 0, floor_page - 1, &mut |page_no, _| {
            gone.push(page_no);
            Ok(true)
        })?;
    }
    for page_no in &gone {
        table.remove_page((queue.0, queue.1, *page_no))?;
    }
    let key = (queue.0, queue.1, floor_page);
    // The page holding the floor keeps its later slots (and takes the queue's next entries).
    if let Some(mut page) = table.page(key)? {
        page.cut_below(page::slot_idx(floor));
        table.put_page(key, &page)?;
    }
    Ok(gone.len() as u64)
}

/// Which tags a scan keeps.
#[derive(Clone, Debug, Default)]
pub struct TagFilter {
    hashes: Vec<u32>,
    bits: u64,
}

impl TagFilter {
    /// Keeps messages whose tag hashes to one of `hashes` (the exact tag is checked by the
    /// caller against the record: hashes collide).
    pub fn new(hashes: impl IntoIterator<Item = u32>) -> Self {
        let hashes: Vec<u32> = hashes.into_iter().collect();
        let bits = hashes
            .iter()
            .fold(0, |bits, hash| bits | page::tag_bit(*hash));
        TagFilter { hashes, bits }
    }

    fn skips_page(&self, view: &PageView<'_>) -> bool {
        view.tag_bits() & self.bits == 0
    }

    fn keeps(&self, slot: &Slot) -> bool {
        self.hashes.contains(&slot.tag_hash)
    }
}

/// Limits of one scan.
#[derive(Clone, Copy, Debug)]
pub struct ScanLimits {
    /// Most entries returned.
    pub msgs_max: usize,
    /// Most record bytes returned (the first entry is always returned).
    pub bytes_max: usize,
    /// Most slots examined when filtering; a filtered scan stops there even with nothing
    /// found, and its `next_offset` says how far it looked.
    pub slots_max: usize,
}

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// `(offset, entry)` in offset order.
    pub entries: Vec<(u64, Slot)>,
    /// Where the next scan starts: past every slot examined (kept or filtered out).
    pub next_offset: u64,
}

/// Entries of `queue` in `[from, end)`, in order, within `limits`, keeping only what `filter`
/// keeps (every entry without one). Offsets with no entry (a repair gap) are stepped over.
pub fn scan(
    table: &impl PageRead,
    queue: QueueKey,
    from: u64,
    end: u64,
    filter: Option<&TagFilter>,
    limits: ScanLimits,
) -> Result<Scanned, StoreError> {
    let mut entries: Vec<(u64, Slot)> = Vec::new();
    if from >= end {
        return Ok(Scanned {
            entries,
            next_offset: from,
        });
    }
    let msgs_max = limits.msgs_max.max(1);
    let (mut bytes, mut examined) = (0usize, 0usize);
    // One past the last offset looked at, and why the scan stopped early (if it did).
    let mut examined_to = from;
    let mut stop = None;
    table.scan_pages(
        queue,
        page::page_no(from),
        page::page_no(end - 1),
        &mut |page_no, view| {
            let base = page::first_offset(page_no);
            let page_end = (base + PAGE_SLOTS).min(end);
            if filter.is_some_and(|filter| filter.skips_page(&view)) {
                examined += (page_end - examined_to.max(base)) as usize;
                examined_to = page_end;
                if examined >= limits.slots_max {
                    stop = Some(Stop::Budget);
                }
                return Ok(stop.is_none());
            }
            let start = from.saturating_sub(base) as usize;
            for (idx, slot) in view.entries_from(start) {
                let offset = base + idx as u64;
                if offset >= end {
                    break;
                }
                if filter.is_some_and(|filter| !filter.keeps(&slot)) {
                    examined += 1;
                    examined_to = offset + 1;
                    if examined >= limits.slots_max {
                        stop = Some(Stop::Budget);
                        return Ok(false);
                    }
                    continue;
                }
                if !entries.is_empty() && bytes + slot.size as usize > limits.bytes_max {
                    stop = Some(Stop::Full);
                    return Ok(false);
                }
                examined += 1;
                examined_to = offset + 1;
                bytes += slot.size as usize;
                entries.push((offset, slot));
                if entries.len() >= msgs_max {
                    stop = Some(Stop::Full);
                    return Ok(false);
                }
            }
            examined_to = page_end;
            Ok(true)
        },
    )?;
    let next_offset = match stop {
        Some(Stop::Full) => entries.last().map_or(from, |(offset, _)| offset + 1),
        Some(Stop::Budget) => examined_to,
        // Every offset up to `end` was looked at. Without a filter the next pull starts
        // after the last entry (and steps over a gap behind it then).
        None if filter.is_none() => entries.last().map_or(end, |(offset, _)| offset + 1),
        None => end,
    };
    Ok(Scanned {
        entries,
        next_offset,
    })
}

/// Why a scan stopped before `end`.
enum Stop {
    /// The message or byte limit.
    Full,
    /// The filter's slot budget.
    Budget,
}

/// The queue's `[min, max)` from its pages: the first entry's offset and one past the last.
pub fn bounds(table: &impl PageRead, queue: QueueKey) -> Result<Option<(u64, u64)>, StoreError> {
    let Some([(first_no, first), (last_no, last)]) = table.edge_pages(queue)? else {
        return Ok(None);
    };
    let first_entry = |page_no: u64, view: PageView<'_>| {
        view.entries_from(0)
            .next()
            .map(|(idx, _)| page::first_offset(page_no) + idx as u64)
    };
    let mut min = first_entry(first_no, first.view());
    if min.is_none() && first_no < last_no {
        // The first page had every entry cut (the floor is in it, past them): look further.
        table.scan_pages(queue, first_no + 1, last_no, &mut |page_no, view| {
            min = first_entry(page_no, view);
            Ok(min.is_none())
        })?;
    }
    let max = (0..last.view().filled())
        .rev()
        .find_map(|idx| last.view().slot(idx).map(|_| idx))
        .map(|idx| page::first_offset(last_no) + idx as u64 + 1);
    Ok(min.zip(max))
}

/// The first offset of `queue` stored at or after `time_ms` (broker time), or `None` when
/// every entry is older. Binary search over the pages' first entries (broker time only
/// grows along a queue), then a scan of one page: O(log pages) page reads.
pub fn offset_at_time(
    table: &impl PageRead,
    queue: QueueKey,
    time_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let Some([(first_no, _), (last_no, _)]) = table.edge_pages(queue)? else {
        return Ok(None);
    };
    // The first page at or after `page_no` that holds an entry, with its first entry's time.
    let first_entry_from = |page_no: u64| -> Result<Option<(u64, u64)>, StoreError> {
        let mut found = None;
        table.scan_pages(queue, page_no, last_no, &mut |no, view| {
            found = view
                .entries_from(0)
                .next()
                .map(|(_, slot)| (no, slot.stored_ms));
            Ok(found.is_none())
        })?;
        Ok(found)
    };
    // Invariant: every page below `low` starts before `time_ms`; the answer is in a page at
    // or after `low - 1`.
    let (mut low, mut high) = (first_no, last_no + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        match first_entry_from(mid)? {
            Some((no, stored_ms)) if stored_ms < time_ms => low = no + 1,
            _ => high = mid,
        }
    }
    // The page before `low` may hold the first match in its tail; scan from there.
    let from = page::first_offset(low.saturating_sub(1).max(first_no));
    let mut found = None;
    table.scan_pages(queue, page::page_no(from), last_no, &mut |no, view| {
        found = view
            .entries_from(0)
            .find(|(_, slot)| slot.stored_ms >= time_ms)
            .map(|(idx, _)| page::first_offset(no) + idx as u64);
        Ok(found.is_none())
    })?;
    Ok(found)
}

/// The entry of one offset.
pub fn entry(
    table: &impl PageRead,
    queue: QueueKey,
    offset: u64,
) -> Result<Option<Slot>, StoreError> {
    Ok(table
        .page((queue.0, queue.1, page::page_no(offset)))?
        .and_then(|page| page.view().slot(page::slot_idx(offset))))
}

fn checked(bytes: &[u8], key: PageKey) -> Result<PageView<'_>, StoreError> {
    PageView::new(bytes).map_err(|err| StoreError::Corrupt {
        pos: 0,
        reason: format!(
            "consume page {} of topic id {} queue {}: {err}; delete index.redb to rebuild it from the log",
            key.2, key.0, key.1
        ),
    })
}

impl<T: ReadableTable<PageKey, &'static [u8]>> PageRead for T {
    fn scan_pages(
        &self,
        queue: QueueKey,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, PageView<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if from > to {
            return Ok(());
        }
        for row in self.range((queue.0, queue.1, from)..=(queue.0, queue.1, to))? {
            let (key, value) = row?;
            let key = key.value();
            if !visit(key.2, checked(value.value(), key)?)? {
                break;
            }
        }
        Ok(())
    }

    fn edge_pages(&self, queue: QueueKey) -> Result<Option<[(u64, PageBuf); 2]>, StoreError> {
        let mut rows = self.range((queue.0, queue.1, 0)..=(queue.0, queue.1, u64::MAX))?;
        let own = |row: (redb::AccessGuard<'_, PageKey>, redb::AccessGuard<'_, &[u8]>)| {
            let key = row.0.value();
            checked(row.1.value(), key).map(|view| (key.2, PageBuf::from_view(view)))
        };
        let Some(first) = rows.next().transpose()? else {
            return Ok(None);
        };
        let first = own(first)?;
        let last = match rows.next_back().transpose()? {
            Some(last) => own(last)?,
            None => first.clone(),
        };
        Ok(Some([first, last]))
    }
}

impl PageWrite for Table<'_, PageKey, &'static [u8]> {
    fn put_page(&mut self, key: PageKey, page: &PageBuf) -> Result<(), StoreError> {
        self.insert(key, page.as_bytes())?;
        Ok(())
    }

    fn remove_page(&mut self, key: PageKey) -> Result<(), StoreError> {
        self.remove(key)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
