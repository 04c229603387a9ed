//! The dispatcher: follows the log writer and folds index entries into `index.redb` in
//! batched commits. Most commits use `Durability::None` (fast, lost on a crash); one every
//! `index_durable_interval` is `Immediate` and records `dispatched_upto`. Recovery replays the
//! log from that durable point, so nothing the log holds is ever missing from the index.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use quiver_proto::MessageId;
use redb::{Durability, WriteTransaction};
use tokio::sync::oneshot;
use tracing::error;

use crate::store::catalog::Catalog;
use crate::store::index::consume::{Put, put_entries};
use crate::store::index::page::Slot;
use crate::store::index::timers::{TimerOp, apply, timer_of};
use crate::store::log::record::Record;
use crate::store::tables::{CONSUME_PAGES, DISPATCHED_UPTO, IDS, KEYS, STATE};
use crate::store::{Shared, StoreError};

/// How much lower the dispatcher's scheduling priority is than the request path's: its
/// commits then never delay an acknowledgement on a broker with one core to spare, and a
/// dispatcher that falls behind slows the writer through its bounded queue. Measured
/// (`bench/ab`, same binary with and without, pinned to one core, 2026-12-02): W1 ×1.03-1.09
/// (p50 0.381 → 0.367 ms), W2 ×1.03-1.11, W3 ×1.16.
const DISPATCHER_NICE: i32 = 10;

/// Most batches folded into one index commit.
const BATCHES_PER_COMMIT_MAX: usize = 256;

/// One message's index entries.
#[derive(Clone, Debug)]
pub struct IndexEntry {
    /// Topic id.
    pub topic_id: u32,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// Log position of the record.
    pub pos: u64,
    /// Record length.
    pub size: u32,
    /// Tag hash.
    pub tag_hash: u32,
    /// Broker time.
    pub stored_ms: u64,
    /// Id.
    pub msg_id: MessageId,
    /// Keys.
    pub keys: Vec<String>,
    /// What the record does to the delayed-message timers.
    pub timer: Option<TimerOp>,
}

/// What the dispatcher receives.
pub enum DispatchMsg {
    /// Entries of a group commit that ends at log position `end`.
    Batch {
        /// Log end after the batch.
        end: u64,
        /// Entries in log order.
        entries: Vec<IndexEntry>,
    },
    /// Make everything dispatched so far durable, then answer.
    Flush(oneshot::Sender<()>),
}

pub(in crate::store) struct Dispatcher {
    pub(in crate::store) shared: Arc<Shared>,
    pub(in crate::store) rx: Receiver<DispatchMsg>,
    pub(in crate::store) last_durable: Instant,
}

impl Dispatcher {
    pub(in crate::store) fn run(mut self) {
        if let Err(err) = quiver_net::process::lower_thread_priority(DISPATCHER_NICE) {
            tracing::warn!(cause = %err, "cannot lower the dispatcher's priority");
        }
        while let Ok(first) = self.rx.recv() {
            let mut batches = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    DispatchMsg::Batch { end, entries } => batches.push((end, entries)),
                    DispatchMsg::Flush(done) => flushes.push(done),
                }
                if batches.len() < BATCHES_PER_COMMIT_MAX {
                    next = self.rx.try_recv().ok();
                }
            }
            let durable = !flushes.is_empty()
                || self.last_durable.elapsed() >= self.shared.config.index_durable_interval;
            if let Err(err) = self.commit(&batches, durable) {
                // The log still holds everything; a restart replays it into the index. Until
                // then the store refuses sends and reads, rather than answer stale data.
                error!(cause = %err, "index commit failed; refusing sends and reads until restart");
                self.shared.fence_index(err.to_string());
                return;
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn commit(
        &mut self,
        batches: &[(u64, Vec<IndexEntry>)],
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut txn = self.shared.index.begin_write()?;
        if durable {
            crate::store::index::make_durable(&mut txn)?;
        } else {
            txn.set_durability(Durability::None)?;
        }
        let mut end = None;
        // Checked inside the write transaction: a topic deleted before it began has had its
        // rows dropped (or they are dropped after this commit, by the delete's own
        // transaction), so no row of a deleted topic outlives the delete.
        let live = LiveTopics::new(&self.shared.catalog);
        for (batch_end, entries) in batches {
            insert_entries(&txn, entries.iter().filter(|e| live.contains(e.topic_id)))?;
            end = Some(*batch_end);
        }
        if let Some(end) = end {
            txn.open_table(STATE)?.insert(DISPATCHED_UPTO, end)?;
        }
        txn.commit()?;
        if durable {
            self.last_durable = Instant::now();
        }
        let armed = batches
            .iter()
            .flat_map(|(_, entries)| entries.iter())
            .any(|e| matches!(e.timer, Some(TimerOp::Arm { .. })));
        let all = batches.iter().flat_map(|(_, entries)| entries.iter());
        self.shared.publish_dispatched(all, end);
        if armed {
            self.shared.timers_armed.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}

/// Which topic ids exist, asked once per run of entries of one topic.
struct LiveTopics<'a> {
    catalog: &'a Catalog,
    last: Cell<Option<(u32, bool)>>,
}

impl<'a> LiveTopics<'a> {
    fn new(catalog: &'a Catalog) -> Self {
        LiveTopics {
            catalog,
            last: Cell::new(None),
        }
    }

    fn contains(&self, topic_id: u32) -> bool {
        match self.last.get() {
            Some((id, live)) if id == topic_id => live,
            _ => {
                let live = self.catalog.name_of(topic_id).is_some();
                self.last.set(Some((topic_id, live)));
                live
            }
        }
    }
}

impl IndexEntry {
    /// The index entries of the record at log position `pos`: the one function from a log
    /// record to its index rows, used by the dispatcher, recovery replay and (later) replicas.
    pub fn of_record(pos: u64, record: &Record, len: usize) -> Self {
        IndexEntry {
            topic_id: record.topic_id,
            queue_id: record.queue_id,
            offset: record.offset,
            pos,
            size: len as u32,
            tag_hash: record.tag_hash,
            stored_ms: record.stored_ms,
            msg_id: record.msg_id,
            keys: record.keys.clone(),
            timer: timer_of(&record.properties),
        }
    }

    fn put(&self) -> Put {
        Put {
            queue: (self.topic_id, self.queue_id),
            offset: self.offset,
            slot: Slot {
                pos: self.pos,
                size: self.size,
                tag_hash: self.tag_hash,
                stored_ms: self.stored_ms,
            },
        }
    }
}

/// Writes the index rows of `entries` (used by the dispatcher and by recovery replay): each
/// touched consume page once, one id row per message, one key row per key.
pub fn insert_entries<'e>(
    txn: &WriteTransaction,
    entries: impl IntoIterator<Item = &'e IndexEntry> + Clone,
) -> Result<(), StoreError> {
    let mut pages = txn.open_table(CONSUME_PAGES)?;
    put_entries(&mut pages, entries.clone().into_iter().map(IndexEntry::put))?;
    let mut ids = txn.open_table(IDS)?;
    let mut keys = txn.open_multimap_table(KEYS)?;
    let mut timers = Vec::new();
    for entry in entries {
        if let Some(op) = entry.timer {
            timers.push((entry.pos, entry.size, op));
        }
        ids.insert(
            (entry.topic_id, entry.msg_id.0, entry.queue_id, entry.offset),
            (),
        )?;
        for key in &entry.keys {
            keys.insert(
                (entry.topic_id, key.as_str()),
                (entry.stored_ms, entry.queue_id, entry.offset),
            )?;
        }
    }
    for (pos, size, op) in timers {
        apply(txn, pos, size, op)?;
    }
    Ok(())
}
