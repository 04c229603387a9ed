//! The store: a commit log of segment files (the truth) and redb indexes that follow it.
//!
//! `docs/store.md` describes the file layouts, tables, commit and recovery order and the
//! invariants. This module is the only one that names redb.
//!
//! # Layout
//! - [`log`]: the data plane: segments and records, the writer (assembler, durable-position
//!   gate, I/O loop), reads, recovery, retention, repair, storage backends.
//! - [`index`]: `index.redb`, rebuildable from the log: consume pages, id and key rows, the
//!   dispatcher.
//! - [`catalog`]: `meta.redb`, what the log does not carry: topics and queue floors (consumer
//!   offsets, groups and deployments next).
//! - [`tables`]: every redb table and its key/value types, in one place.
//! - [`Store`] (here): the API the broker core calls, and the state the threads share.

pub mod catalog;
pub mod config;
pub mod error;
pub mod index;
pub mod log;
pub mod tables;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quiver_proto::requests::admin::BrokerStats;
use quiver_proto::requests::msg::BATCH_LEN_MAX;
use quiver_proto::{MessageId, SendMessage};
use tokio::sync::{Semaphore, oneshot, watch};

pub use catalog::TopicMeta;
pub use config::{FlushMode, LogIo, StoreConfig};
pub use error::{Refusal, StoreError};
pub use log::backend::{FsStorage, LogFile, Storage};

use index::dispatcher::{DispatchMsg, Dispatcher, IndexEntry};
use log::writer::{Job, Writer, WriterMsg};
use log::{gate, recovery, retention};

/// Bytes of sends queued for the writer at once; senders wait beyond this.
const INFLIGHT_BYTES_MAX: usize = 256 << 20;
/// Index batches queued for the dispatcher before the writer waits.
const DISPATCH_QUEUE_MAX: usize = 1024;
/// How long a query waits for the index to catch up with acknowledged sends.
const DISPATCH_WAIT_MAX: Duration = Duration::from_secs(10);

/// A queue's stored offsets: `[min, max)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueRange {
    /// Smallest stored offset.
    pub min: u64,
    /// One past the largest dispatched offset.
    pub max: u64,
}

/// Where an appended send batch went: message `i` has offset `first_offset + i` and id
/// `msg_ids[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Queue of the batch.
    pub queue_id: u32,
    /// Offset of the first message.
    pub first_offset: u64,
    /// Final id of each message (the producer's, or one the writer assigned).
    pub msg_ids: Vec<MessageId>,
}

/// Counters.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) msgs_appended: AtomicU64,
    pub(crate) appends: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    /// End of the acknowledged log.
    pub(crate) log_end: AtomicU64,
    /// Retention passes that failed (each logged at error with its cause).
    pub(crate) retention_errors: AtomicU64,
    /// Records read from the log for pulls.
    pub(crate) records_read: AtomicU64,
    /// Their bytes.
    pub(crate) bytes_read: AtomicU64,
    /// Consume-index slots pulls looked at (read, or stepped over by a tag filter).
    pub(crate) slots_scanned: AtomicU64,
}

/// State shared by the request path and the store's threads.
pub(crate) struct Shared {
    pub(crate) config: StoreConfig,
    pub(crate) log: log::Log,
    pub(crate) index: redb::Database,
    pub(crate) catalog: catalog::Catalog,
    // RwLock: read by every pull, written once per dispatcher commit.
    pub(crate) queues: RwLock<HashMap<(u32, u32), QueueRange>>,
    pub(crate) dispatched: watch::Sender<u64>,
    /// End of the log `fdatasync` made durable (recovery's end at start).
    pub(crate) synced: watch::Sender<u64>,
    /// Bumped when an index commit arms a delayed-message timer (the timer loop sleeps on it).
    pub(crate) timers_armed: watch::Sender<u64>,
    pub(crate) stats: Stats,
    pub(crate) log_start: AtomicU64,
    /// Messages stored before this time may have been removed by retention (0: none removed).
    pub(crate) removed_before_ms: AtomicU64,
    /// Why the log refuses writes until restart (a failed write or sync). OnceLock: set at
    /// most once (the first failure is the cause), read on every group commit.
    pub(crate) log_fence: OnceLock<String>,
    /// Why the index stopped following the log (a failed index commit): sends are refused
    /// and reads fail, since the index would answer stale data.
    pub(crate) index_fence: OnceLock<String>,
    /// Newest broker time in each sealed segment, by base, so a retention check reads no
    /// segment twice. Mutex: written once per roll, read once per retention check.
    pub(crate) segment_newest: Mutex<BTreeMap<u64, u64>>,
}

impl Shared {
    /// Fences the log after a failed write or sync: no write or sync follows until restart.
    pub(crate) fn fence_log(&self, reason: String) {
        let _ = self.log_fence.set(reason);
    }

    /// Fences the store after a failed index commit: sends are refused, reads fail.
    pub(crate) fn fence_index(&self, reason: String) {
        let _ = self.index_fence.set(reason);
        // Wake the waiters on the dispatch position so they see the fence at once.
        self.dispatched.send_modify(|_| ());
    }

    /// Records the newest broker time of the sealed segment at `base`.
    pub(crate) fn set_segment_newest_ms(&self, base: u64, newest_ms: u64) {
        self.segment_newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(base, newest_ms);
    }

    /// Why sends are refused, if they are: the log's fence first, then the index's.
    pub(crate) fn fenced(&self) -> Option<String> {
        if let Some(reason) = self.log_fence.get() {
            return Some(format!(
                "an earlier commit-log write or sync failed ({reason})"
            ));
        }
        self.index_fence
            .get()
            .map(|reason| format!("the index database failed ({reason})"))
    }

    pub(crate) fn publish_dispatched<'a>(
        &self,
        entries: impl Iterator<Item = &'a IndexEntry>,
        end: Option<u64>,
    ) {
        {
            let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
            // Asked under the queues lock, which a topic delete takes after removing the
            // topic: a deleted topic's queues never come back.
            let mut live = (u32::MAX, false);
            for entry in entries {
                if live.0 != entry.topic_id {
                    live = (
                        entry.topic_id,
                        self.catalog.name_of(entry.topic_id).is_some(),
                    );
                }
                if !live.1 {
                    continue;
                }
                let range = queues
                    .entry((entry.topic_id, entry.queue_id))
                    .or_insert(QueueRange {
                        min: entry.offset,
                        max: entry.offset,
                    });
                range.max = range.max.max(entry.offset + 1);
            }
        }
        if let Some(end) = end {
            self.dispatched.send_replace(end);
        }
    }

    pub(crate) fn queue_range(&self, topic_id: u32, queue_id: u32) -> QueueRange {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        queues
            .get(&(topic_id, queue_id))
            .copied()
            .unwrap_or_default()
    }
}

/// The broker's store.
pub struct Store {
    shared: Arc<Shared>,
    writer_tx: Mutex<Option<mpsc::Sender<WriterMsg>>>,
    dispatch_tx: Mutex<Option<mpsc::SyncSender<DispatchMsg>>>,
    inflight: Arc<Semaphore>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    retention_stop: Mutex<Option<mpsc::Sender<()>>>,
}

/// What opening the store found.
#[derive(Clone, Copy, Debug)]
pub struct OpenReport {
    /// Messages replayed from the log into the index.
    pub replayed: u64,
    /// Bytes of torn tail cut from the log.
    pub truncated_bytes: u64,
}

impl Store {
    /// Opens the store in `dir`: segments in `dir/log/`, `dir/index.redb`, `dir/meta.redb`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<(Store, OpenReport), StoreError> {
        let storage =
            Arc::new(FsStorage::new(dir.join("log"))?.with_direct_writes(config.direct_writes()));
        Self::open_with(storage, dir, config)
    }

    /// Opens the store with log segments on `storage` and the redb files in `db_dir`.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        db_dir: &Path,
        config: StoreConfig,
    ) -> Result<(Store, OpenReport), StoreError> {
        Self::open_with_index(storage, db_dir, config, None)
    }

    /// [`Store::open_with`], with the index database on `index` instead of
    /// `db_dir/index.redb` when given (tests inject a failing one).
    pub fn open_with_index(
        storage: Arc<dyn Storage>,
        db_dir: &Path,
        config: StoreConfig,
        index: Option<Box<dyn redb::StorageBackend>>,
    ) -> Result<(Store, OpenReport), StoreError> {
        config
            .validate()
            .map_err(|reason| StoreError::invalid(Refusal::InvalidArgument, reason))?;
        std::fs::create_dir_all(db_dir)?;
        let recent = if config.direct_writes() {
            config.tail_cache_bytes.as_u64() as usize
        } else {
            0
        };
        let log = log::Log::open(storage)?.keep_recent(recent);
        let catalog = catalog::Catalog::open(
            &db_dir.join("meta.redb"),
            config.meta_cache_bytes.as_u64() as usize,
        )?;
        let rec = recovery::recover(
            &log,
            db_dir,
            &catalog,
            index,
            config.index_cache_bytes.as_u64() as usize,
        )?;
        let report = OpenReport {
            replayed: rec.replayed,
            truncated_bytes: rec.truncated_bytes,
        };
        let next_offsets = rec
            .queues
            .iter()
            .map(|(key, range)| (*key, range.max))
            .collect();
        let (dispatched, _) = watch::channel(rec.dispatched_upto);
        let (synced, _) = watch::channel(rec.active_base + rec.active_len);
        let shared = Arc::new(Shared {
            config: config.clone(),
            log,
            index: rec.index,
            catalog,
            queues: RwLock::new(rec.queues),
            dispatched,
            synced,
            timers_armed: watch::channel(0).0,
            stats: Stats::default(),
            log_start: AtomicU64::new(rec.log_start),
            removed_before_ms: AtomicU64::new(rec.removed_before_ms),
            log_fence: OnceLock::new(),
            index_fence: OnceLock::new(),
            segment_newest: Mutex::new(BTreeMap::new()),
        });
        shared
            .stats
            .log_end
            .store(rec.active_base + rec.active_len, Ordering::Release);
        let (writer_tx, writer_rx) = mpsc::channel();
        let (dispatch_tx, dispatch_rx) = mpsc::sync_channel(DISPATCH_QUEUE_MAX);
        let writer = Writer {
            shared: shared.clone(),
            rx: writer_rx,
            dispatch: dispatch_tx.clone(),
            assembler: log::assemble::Assembler::new(next_offsets),
            gate: gate::AckGate::new(gate::AckRule::of(config.flush)),
            positions: gate::Positions {
                written: rec.active_base + rec.active_len,
                synced: rec.active_base + rec.active_len,
            },
            active_base: rec.active_base,
            active: rec.active,
            active_len: rec.active_len,
            unsynced_since: None,
            active_newest_ms: None,
            buf: Vec::with_capacity(1 << 20),
        };
        let dispatcher = Dispatcher {
            shared: shared.clone(),
            rx: dispatch_rx,
            last_durable: Instant::now(),
        };
        let (retention_stop, retention_rx) = mpsc::channel();
        let retention_shared = shared.clone();
        let threads = vec![
            spawn("quiver-writer", move || writer.run())?,
            spawn("quiver-dispatch", move || dispatcher.run())?,
            spawn("quiver-retention", move || {
                retention::run(retention_shared, retention_rx)
            })?,
        ];
        let store = Store {
            shared,
            writer_tx: Mutex::new(Some(writer_tx)),
            dispatch_tx: Mutex::new(Some(dispatch_tx)),
            inflight: Arc::new(Semaphore::new(INFLIGHT_BYTES_MAX)),
            threads: Mutex::new(threads),
            retention_stop: Mutex::new(Some(retention_stop)),
        };
        Ok((store, report))
    }

    /// The flush mode.
    pub fn flush_mode(&self) -> FlushMode {
        self.shared.config.flush
    }

    /// The store settings.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Appends a send batch to one queue; returns after it is durable in the flush mode.
    pub async fn append(
        &self,
        topic: &str,
        queue_id: u32,
        messages: Vec<SendMessage>,
    ) -> Result<Appended, StoreError> {
        let topic_meta = self.topic(topic)?;
        check_queue(topic, &topic_meta, queue_id)?;
        let bytes = self.check_batch(&messages)?;
        let permits = bytes.clamp(1, INFLIGHT_BYTES_MAX) as u32;
        let permit = self
            .inflight
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            topic_id: topic_meta.id,
            queue_id,
            messages,
            bytes,
            reply,
            _permit: permit,
        };
        {
            let writer = self.writer_tx.lock().unwrap_or_else(|p| p.into_inner());
            let writer = writer.as_ref().ok_or(StoreError::Closed)?;
            writer
                .send(WriterMsg::Append(job))
                .map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn check_batch(&self, messages: &[SendMessage]) -> Result<usize, StoreError> {
        if messages.is_empty() {
            return Err(StoreError::invalid(
                Refusal::InvalidArgument,
                "the send has no messages",
            ));
        }
        if messages.len() > BATCH_LEN_MAX {
            return Err(StoreError::invalid(
                Refusal::BatchTooLarge,
                format!(
                    "the batch has {} messages: the maximum is {BATCH_LEN_MAX}",
                    messages.len()
                ),
            ));
        }
        let body_max = self.shared.config.message_bytes_max.as_u64() as usize;
        let mut bytes = 0usize;
        for (msg_idx, msg) in messages.iter().enumerate() {
            msg.validate(body_max).map_err(|reason| {
                let code = if msg.body.len() > body_max {
                    Refusal::MessageTooLarge
                } else {
                    Refusal::InvalidArgument
                };
                StoreError::invalid(code, format!("message {msg_idx}: {reason}"))
            })?;
            if !msg.checksum_ok() {
                return Err(StoreError::invalid(
                    Refusal::ChecksumMismatch,
                    format!(
                        "message {msg_idx}: body CRC-32C does not match body_crc (corrupted in transit?)"
                    ),
                ));
            }
            bytes += log::record::encoded_len(msg);
        }
        let batch_max = self.shared.config.batch_bytes_max.as_u64() as usize;
        if bytes > batch_max {
            return Err(StoreError::invalid(
                Refusal::BatchTooLarge,
                format!("the batch is {bytes} bytes: the maximum is {batch_max}; split it"),
            ));
        }
        Ok(bytes)
    }

    /// A topic's settings, or "topic not found".
    pub fn topic(&self, name: &str) -> Result<TopicMeta, StoreError> {
        self.shared
            .catalog
            .get(name)
            .ok_or_else(|| catalog::not_found(name))
    }

    /// Every topic clients see: the internal schedule topic of delayed messages is left out
    /// (of listings, routes and registrations).
    pub fn topics(&self) -> Vec<(String, TopicMeta)> {
        let mut topics = self.shared.catalog.list();
        topics.retain(|(name, _)| name != index::timers::SCHEDULE_TOPIC);
        topics
    }

    /// Creates a topic (blocking: one durable redb commit).
    pub fn create_topic(&self, name: &str, queues: u32) -> Result<TopicMeta, StoreError> {
        self.shared
            .catalog
            .create(name, queues, crate::clock::now_ms())
    }

    /// Raises a topic's queue count (blocking).
    pub fn update_topic(&self, name: &str, queues: u32) -> Result<TopicMeta, StoreError> {
        self.shared.catalog.update(name, queues)
    }

    /// Deletes a topic and its index rows (blocking). Its records leave the log with
    /// retention.
    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, StoreError> {
        let topic = self.shared.catalog.delete(name)?;
        log::reader::drop_topic_rows(&self.shared, topic.id)?;
        let mut queues = self
            .shared
            .queues
            .write()
            .unwrap_or_else(|p| p.into_inner());
        queues.retain(|(topic_id, _), _| *topic_id != topic.id);
        Ok(topic)
    }

    /// A queue's `[min, max)` offsets.
    pub fn queue_range(&self, topic: &TopicMeta, queue_id: u32) -> QueueRange {
        self.shared.queue_range(topic.id, queue_id)
    }

    /// Waits until the index holds every send acknowledged before this call, so reads see
    /// the caller's own writes. Fails at once when the store is fenced.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let shared = &self.shared;
        let target = shared.stats.log_end.load(Ordering::Acquire);
        let mut rx = shared.dispatched.subscribe();
        let caught_up = rx.wait_for(|pos| *pos >= target || shared.index_fence.get().is_some());
        let _ = tokio::time::timeout(DISPATCH_WAIT_MAX, caught_up).await;
        match shared.index_fence.get() {
            Some(reason) => Err(StoreError::Fenced(format!(
                "the index database failed ({reason}), so reads would be stale"
            ))),
            None => Ok(()),
        }
    }

    /// Why the store refuses sends, if it does (`None` while healthy).
    pub fn fence_reason(&self) -> Option<String> {
        self.shared.fenced()
    }

    /// The log position the index covers (`dispatched_upto`), as it moves: long-polls wake
    /// on it.
    pub fn dispatched_upto(&self) -> watch::Receiver<u64> {
        self.shared.dispatched.subscribe()
    }

    /// The log position `fdatasync` has made durable, as it moves (replication ships up to
    /// here; async flush lags it by at most `flush_interval`).
    pub fn synced_upto(&self) -> watch::Receiver<u64> {
        self.shared.synced.subscribe()
    }

    /// Changes when a delayed message is scheduled.
    pub fn timers_armed(&self) -> watch::Receiver<u64> {
        self.shared.timers_armed.subscribe()
    }

    /// The earliest pending delayed message.
    pub fn first_timer(&self) -> Result<Option<index::timers::Timer>, StoreError> {
        index::timers::first(&self.shared.index)
    }

    /// Pending delayed messages due at or before `now_ms`, at most `max`, earliest first.
    pub fn due_timers(
        &self,
        now_ms: u64,
        max: usize,
    ) -> Result<Vec<index::timers::Timer>, StoreError> {
        index::timers::due(&self.shared.index, now_ms, max)
    }

    /// The record of `size` bytes at log position `pos` (a scheduled message).
    pub fn read_record(&self, pos: u64, size: u32) -> Result<log::record::Record, StoreError> {
        let bytes = self.shared.log.read(pos, size as usize)?;
        log::record::decode(&bytes)
            .map(|(record, _)| record)
            .map_err(|err| StoreError::Corrupt {
                pos,
                reason: format!("scheduled record: {err}"),
            })
    }

    /// The catalog (topics, groups, offsets).
    pub fn catalog(&self) -> &catalog::Catalog {
        &self.shared.catalog
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Counters.
    pub fn stats(&self) -> BrokerStats {
        let stats = &self.shared.stats;
        let fence = self.shared.fenced();
        BrokerStats {
            flush_mode: self.shared.config.flush.name().to_owned(),
            msgs_appended: stats.msgs_appended.load(Ordering::Relaxed),
            appends: stats.appends.load(Ordering::Relaxed),
            fsyncs: stats.fsyncs.load(Ordering::Relaxed),
            bytes_written: stats.bytes_written.load(Ordering::Relaxed),
            log_start: self.shared.log_start.load(Ordering::Relaxed),
            log_end: stats.log_end.load(Ordering::Relaxed),
            dispatched_upto: *self.shared.dispatched.borrow(),
            healthy: fence.is_none(),
            unhealthy_reason: fence.unwrap_or_default(),
            retention_errors: stats.retention_errors.load(Ordering::Relaxed),
        }
    }

    /// What pulls cost: records and bytes read from the log, index slots scanned.
    pub fn read_stats(&self) -> quiver_proto::requests::admin::ReadStats {
        let stats = &self.shared.stats;
        quiver_proto::requests::admin::ReadStats {
            records_read: stats.records_read.load(Ordering::Relaxed),
            bytes_read: stats.bytes_read.load(Ordering::Relaxed),
            slots_scanned: stats.slots_scanned.load(Ordering::Relaxed),
        }
    }

    /// Runs retention once now (tests and admin).
    pub fn enforce_retention(&self) -> Result<u64, StoreError> {
        retention::enforce(&self.shared, crate::clock::now_ms())
    }

    /// Stops accepting sends, syncs the log, makes the index durable, joins the threads.
    pub async fn shutdown(&self) {
        let writer = self
            .writer_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(writer) = writer {
            let (done, wait) = oneshot::channel();
            if writer.send(WriterMsg::Shutdown(done)).is_ok() {
                let _ = wait.await;
            }
        }
        let dispatch = self
            .dispatch_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(dispatch) = dispatch {
            let (done, wait) = oneshot::channel();
            if dispatch.send(DispatchMsg::Flush(done)).is_ok() {
                let _ = wait.await;
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channels stops the threads (the writer first finishes what it was
        // given and syncs it); joining them releases the redb files for a reopen.
        self.writer_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.dispatch_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.retention_stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for thread in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StoreError> {
    Ok(std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)?)
}

/// Checks `queue_id` against the topic's queue count.
pub fn check_queue(topic: &str, meta: &TopicMeta, queue_id: u32) -> Result<(), StoreError> {
    if queue_id >= meta.queues {
        return Err(StoreError::invalid(
            Refusal::QueueOutOfRange,
            format!(
                "queue {queue_id} does not exist: topic {topic} has queues 0 to {}",
                meta.queues - 1
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
