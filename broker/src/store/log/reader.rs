//! Reads: pulls by queue offset and lookups by id and key, through the index to the log.

use quiver_proto::requests::msg::{QUERY_BYTES_MAX, QUERY_MSGS_MAX};
use quiver_proto::{MessageId, StoredMessage};
use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable};

use crate::store::index::consume::{self, ScanLimits, TagFilter};
use crate::store::index::page::Slot;
use crate::store::tables::{CONSUME_PAGES, IDS, KEYS};
use crate::store::{Refusal, Shared, Store, StoreError, TopicMeta};

/// What a pull asks for.
#[derive(Clone, Copy, Debug)]
pub struct PullSpec {
    /// Queue.
    pub queue_id: u32,
    /// First offset.
    pub offset: u64,
    /// Most messages.
    pub max_msgs: u32,
    /// Most body bytes (at least one message is returned).
    pub max_bytes: u32,
}

/// What a read of a queue found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRead {
    /// Messages from the asked offset on, in offset order (only those the tags match).
    pub messages: Vec<StoredMessage>,
    /// Where the next read starts: past every offset this one looked at, matched or not.
    pub next_offset: u64,
    /// The queue's smallest stored offset when it was read.
    pub min_offset: u64,
    /// One past the queue's last offset when it was read.
    pub max_offset: u64,
}

/// A tag filter: the tags a consumer wants. Pages whose tag bitmap misses every wanted
/// hash are skipped unread, slots are matched on the hash, and the record's own tag is
/// compared exactly before a message is returned (hashes collide).
#[derive(Clone, Debug)]
pub struct TagMatch {
    tags: Vec<String>,
    filter: TagFilter,
}

impl TagMatch {
    /// Matches messages whose tag is one of `tags`.
    pub fn new(tags: Vec<String>) -> Self {
        let filter = TagFilter::new(
            tags.iter()
                .map(|tag| quiver_proto::message::tag_hash(Some(tag))),
        );
        TagMatch { tags, filter }
    }

    /// The wanted tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    fn matches(&self, tag: Option<&str>) -> bool {
        tag.is_some_and(|tag| self.tags.iter().any(|want| want == tag))
    }
}

/// Slots a filtered read looks at before it answers, matched or not.
pub const FILTER_SLOTS_MAX: usize = 64 * 1024;

impl Store {
    /// Reads up to `spec.max_msgs` messages of a queue from `spec.offset`, without waiting.
    /// Offsets below the queue's minimum (removed) or past its end are errors that say so.
    pub fn read_queue(
        &self,
        topic: &str,
        meta: &TopicMeta,
        spec: PullSpec,
    ) -> Result<QueueRead, StoreError> {
        self.read_queue_matching(topic, meta, spec, None)
    }

    /// [`Store::read_queue`], keeping only messages whose tag `tags` matches: the read looks
    /// at most at [`FILTER_SLOTS_MAX`] offsets, and its `next_offset` moves past all it looked
    /// at, so a consumer moves on even when nothing matched.
    pub fn read_queue_matching(
        &self,
        topic: &str,
        meta: &TopicMeta,
        spec: PullSpec,
        tags: Option<&TagMatch>,
    ) -> Result<QueueRead, StoreError> {
        let shared = self.shared();
        let range = shared.queue_range(meta.id, spec.queue_id);
        if spec.offset < range.min {
            return Err(StoreError::invalid(
                Refusal::OffsetRemoved,
                format!(
                    "offset {} of queue {} was removed by retention: the queue now starts at {}",
                    spec.offset, spec.queue_id, range.min
                ),
            ));
        }
        if spec.offset > range.max {
            return Err(StoreError::invalid(
                Refusal::OffsetOutOfRange,
                format!(
                    "offset {} is past the end of queue {} (next offset {}): pull from {} or lower",
                    spec.offset, spec.queue_id, range.max, range.max
                ),
            ));
        }
        let txn = shared.index.begin_read()?;
        let pages = txn.open_table(CONSUME_PAGES)?;
        let limits = ScanLimits {
            msgs_max: spec.max_msgs.max(1) as usize,
            bytes_max: spec.max_bytes as usize,
            slots_max: if tags.is_some() {
                FILTER_SLOTS_MAX
            } else {
                usize::MAX
            },
        };
        // `[offset, max)`: a gap that `quiver-broker repair` left (offsets whose records went
        // to quarantine) is stepped over rather than read as the queue's end.
        let scanned = consume::scan(
            &pages,
            (meta.id, spec.queue_id),
            spec.offset,
            range.max,
            tags.map(|tags| &tags.filter),
            limits,
        )?;
        let entries = scanned.entries;
        // Retention may remove the start of the queue between the range check above and this
        // snapshot (or the log read below): that is "removed", never a silent skip.
        let removed = || {
            StoreError::invalid(
                Refusal::OffsetRemoved,
                format!(
                    "offset {} of queue {} was removed by retention while it was read: pull from the queue's new start",
                    spec.offset, spec.queue_id
                ),
            )
        };
        // Rows go only after the queue's minimum was raised past them, so a first row past
        // the asked offset is retention only if the minimum moved; else it is a repair gap.
        if entries
            .first()
            .is_some_and(|(offset, _)| *offset != spec.offset)
            && spec.offset < shared.queue_range(meta.id, spec.queue_id).min
        {
            return Err(removed());
        }
        if entries.is_empty()
            && spec.offset < range.max
            && spec.offset < shared.queue_range(meta.id, spec.queue_id).min
        {
            return Err(removed());
        }
        let next_offset = scanned.next_offset;
        let stats = &shared.stats;
        stats.slots_scanned.fetch_add(
            next_offset - spec.offset,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats
            .records_read
            .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
        stats.bytes_read.fetch_add(
            entries.iter().map(|(_, e)| u64::from(e.size)).sum(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let messages = load_many(shared, topic, &entries).map_err(|err| {
            let log_start = shared.log_start.load(std::sync::atomic::Ordering::Acquire);
            if entries
                .first()
                .is_some_and(|(_, entry)| entry.pos < log_start)
            {
                removed()
            } else {
                err
            }
        })?;
        let mut messages = messages;
        if let Some(tags) = tags {
            // The hash matched; the tag itself must too.
            messages.retain(|msg| tags.matches(msg.tag.as_deref()));
        }
        Ok(QueueRead {
            messages,
            next_offset,
            min_offset: range.min,
            max_offset: range.max,
        })
    }

    /// The first offset of a queue stored at or after `time_ms` (broker time), or the
    /// queue's end when every message is older: where a consumer that starts "from a time"
    /// begins.
    pub fn offset_at_time(
        &self,
        meta: &TopicMeta,
        queue_id: u32,
        time_ms: u64,
    ) -> Result<u64, StoreError> {
        let shared = self.shared();
        let range = shared.queue_range(meta.id, queue_id);
        let txn = shared.index.begin_read()?;
        let pages = txn.open_table(CONSUME_PAGES)?;
        let found = consume::offset_at_time(&pages, (meta.id, queue_id), time_ms)?;
        Ok(found.map_or(range.max, |offset| offset.clamp(range.min, range.max)))
    }

    /// Every stored copy of `msg_id` in `topic`.
    pub fn query_id(
        &self,
        topic: &str,
        meta: &TopicMeta,
        msg_id: MessageId,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let shared = self.shared();
        let txn = shared.index.begin_read()?;
        let ids = txn.open_table(IDS)?;
        let pages = txn.open_table(CONSUME_PAGES)?;
        let copies = (meta.id, msg_id.0, 0, 0)..=(meta.id, msg_id.0, u32::MAX, u64::MAX);
        let locations = ids.range(copies)?.map(|row| {
            let (_, _, queue_id, offset) = row?.0.value();
            Ok::<_, StoreError>(Some((queue_id, offset)))
        });
        let mut budget = QueryBudget::new(QUERY_MSGS_MAX as usize);
        let mut found = budget.load_all(shared, topic, meta, &pages, locations)?;
        if found.is_empty() {
            let removed_before = shared
                .removed_before_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            if removed_before > 0 && msg_id.v7_timestamp_ms() < removed_before {
                return Err(StoreError::invalid(
                    Refusal::MessageRemoved,
                    format!(
                        "message {msg_id} was removed by retention (messages stored before {removed_before} ms are gone)"
                    ),
                ));
            }
            return Err(StoreError::invalid(
                Refusal::MessageNotFound,
                format!("no message with id {msg_id} in topic {topic}"),
            ));
        }
        found.sort_by_key(|m| m.log_pos);
        Ok(found)
    }

    /// Messages of `topic` with `key`, stored in `[begin_ms, end_ms)`, oldest first.
    pub fn query_key(
        &self,
        topic: &str,
        meta: &TopicMeta,
        key: &str,
        begin_ms: Option<u64>,
        end_ms: Option<u64>,
        max_msgs: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let shared = self.shared();
        let txn = shared.index.begin_read()?;
        let keys = txn.open_multimap_table(KEYS)?;
        let pages = txn.open_table(CONSUME_PAGES)?;
        let limit = max_msgs.clamp(1, QUERY_MSGS_MAX) as usize;
        let (begin, end) = (begin_ms.unwrap_or(0), end_ms.unwrap_or(u64::MAX));
        let locations = keys.get((meta.id, key))?.map(|row| {
            let (stored_ms, queue_id, offset) = row?.value();
            Ok::<_, StoreError>(
                (begin..end)
                    .contains(&stored_ms)
                    .then_some((queue_id, offset)),
            )
        });
        let found = QueryBudget::new(limit).load_all(shared, topic, meta, &pages, locations)?;
        if found.is_empty() {
            let removed_before = shared
                .removed_before_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let note = if removed_before > begin {
                format!("; messages stored before {removed_before} ms were removed by retention")
            } else {
                String::new()
            };
            return Err(StoreError::invalid(
                Refusal::MessageNotFound,
                format!("no message with key {key:?} in topic {topic}{note}"),
            ));
        }
        Ok(found)
    }
}

/// Bounds a query's answer by message count and bytes (it must fit one frame); the first
/// message is always admitted.
struct QueryBudget {
    msgs_left: usize,
    bytes: usize,
}

impl QueryBudget {
    fn new(msgs_max: usize) -> Self {
        QueryBudget {
            msgs_left: msgs_max,
            bytes: 0,
        }
    }

    /// Loads the messages at `locations` (`(queue_id, offset)`, `None` to skip one) in order,
    /// until the budget is spent.
    fn load_all<L>(
        &mut self,
        shared: &Shared,
        topic: &str,
        meta: &TopicMeta,
        pages: &impl consume::PageRead,
        locations: L,
    ) -> Result<Vec<StoredMessage>, StoreError>
    where
        L: Iterator<Item = Result<Option<(u32, u64)>, StoreError>>,
    {
        let mut found = Vec::new();
        for location in locations {
            let Some((queue_id, offset)) = location? else {
                continue;
            };
            if let Some(slot) = consume::entry(pages, (meta.id, queue_id), offset)?
                && !self.offer(shared, topic, offset, &slot, &mut found)?
            {
                break;
            }
        }
        Ok(found)
    }

    /// Loads the message of a consume-index value into `found` unless retention is removing
    /// it; `false` when the budget is spent (stop looking).
    fn offer(
        &mut self,
        shared: &Shared,
        topic: &str,
        offset: u64,
        entry: &Slot,
        found: &mut Vec<StoredMessage>,
    ) -> Result<bool, StoreError> {
        if entry.pos < shared.log_start.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(true); // being removed by retention
        }
        if !self.admit(entry) {
            return Ok(false);
        }
        found.push(load(shared, topic, offset, entry)?);
        Ok(true)
    }

    fn admit(&mut self, entry: &Slot) -> bool {
        let first = self.bytes == 0;
        if self.msgs_left == 0 || (!first && self.bytes + entry.size as usize > QUERY_BYTES_MAX) {
            return false;
        }
        self.msgs_left -= 1;
        self.bytes += entry.size as usize;
        true
    }
}

/// Most bytes read from the log in one call while loading adjacent records.
const READ_RUN_BYTES_MAX: u64 = 8 << 20;

/// Reads one message from the log and checks it against its index entry.
fn load(
    shared: &Shared,
    topic: &str,
    offset: u64,
    entry: &Slot,
) -> Result<StoredMessage, StoreError> {
    let mut one = load_many(shared, topic, &[(offset, *entry)])?;
    Ok(one.pop().expect("one entry, one message"))
}

/// Reads messages in index order, with one log read per run of adjacent records (a pull of
/// a batch-written queue is mostly one read).
fn load_many(
    shared: &Shared,
    topic: &str,
    entries: &[(u64, Slot)],
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut out = Vec::with_capacity(entries.len());
    let mut idx = 0;
    while idx < entries.len() {
        let start = entries[idx].1.pos;
        let segment_end = shared.log.segment_end(start);
        let mut end = start + u64::from(entries[idx].1.size);
        let mut last = idx + 1;
        while let Some((_, next)) = entries.get(last) {
            let next_end = end + u64::from(next.size);
            if next.pos != end || next_end > segment_end || next_end - start > READ_RUN_BYTES_MAX {
                break;
            }
            end = next_end;
            last += 1;
        }
        let bytes = shared.log.read(start, (end - start) as usize)?;
        for (offset, entry) in &entries[idx..last] {
            let at = (entry.pos - start) as usize;
            let record = bytes.slice(at..at + entry.size as usize);
            out.push(to_message(topic, *offset, entry, &record)?);
        }
        idx = last;
    }
    Ok(out)
}

/// Decodes a record read for `entry` and checks it against the entry and its body CRC.
fn to_message(
    topic: &str,
    offset: u64,
    entry: &Slot,
    bytes: &bytes::Bytes,
) -> Result<StoredMessage, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        pos: entry.pos,
        reason,
    };
    let (record, len) =
        crate::store::log::record::decode(bytes).map_err(|err| corrupt(err.to_string()))?;
    if len != entry.size as usize || record.offset != offset || record.stored_ms != entry.stored_ms
    {
        return Err(corrupt("record does not match its index entry".into()));
    }
    if crc32c::crc32c(&record.body) != record.body_crc {
        return Err(corrupt("body checksum mismatch".into()));
    }
    Ok(StoredMessage {
        topic: topic.to_owned(),
        queue_id: record.queue_id,
        offset: record.offset,
        msg_id: record.msg_id,
        tag: record.tag,
        keys: record.keys,
        properties: record.properties,
        body: record.body,
        born_ms: record.born_ms,
        stored_ms: record.stored_ms,
        log_pos: entry.pos,
        body_crc: record.body_crc,
    })
}

/// Removes a deleted topic's consume pages, id rows (in chunks) and key rows.
pub(in crate::store) fn drop_topic_rows(shared: &Shared, topic_id: u32) -> Result<(), StoreError> {
    // The topic is gone from `meta` already, so an index commit that begins from here on adds
    // no row of it; one that began before holds the write lock until it commits, so the
    // first transaction below sees its rows. Chunks keep each transaction short.
    loop {
        let mut txn = shared.index.begin_write()?;
        crate::store::index::make_durable(&mut txn)?;
        let removed = {
            let mut pages = txn.open_table(CONSUME_PAGES)?;
            let mut ids = txn.open_table(IDS)?;
            // A topic has one page per `PAGE_SLOTS` messages: few enough for one pass.
            pages.retain_in((topic_id, 0, 0)..=(topic_id, u32::MAX, u64::MAX), |_, _| {
                false
            })?;
            let mut chunk = Vec::with_capacity(DROP_CHUNK_ROWS);
            let all = (topic_id, 0, 0, 0)..=(topic_id, u128::MAX, u32::MAX, u64::MAX);
            for row in ids.range(all)?.take(DROP_CHUNK_ROWS) {
                chunk.push(row?.0.value());
            }
            for key in &chunk {
                ids.remove(*key)?;
            }
            chunk.len()
        };
        txn.commit()?;
        if removed < DROP_CHUNK_ROWS {
            break;
        }
    }
    let mut txn = shared.index.begin_write()?;
    crate::store::index::make_durable(&mut txn)?;
    {
        let mut keys = txn.open_multimap_table(KEYS)?;
        let names: Vec<String> = {
            let mut names = Vec::new();
            for row in keys.range((topic_id, "")..(topic_id + 1, ""))? {
                names.push(row?.0.value().1.to_owned());
            }
            names
        };
        for name in names {
            keys.remove_all((topic_id, name.as_str()))?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Id rows deleted per transaction when a topic is deleted.
const DROP_CHUNK_ROWS: usize = 4096;
