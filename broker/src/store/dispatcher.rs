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

use super::meta::Meta;
use super::tables::{CONSUME, ConsumeEntry, DISPATCHED_UPTO, IDS, KEYS, STATE};
use super::{Shared, StoreError};

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

pub(super) struct Dispatcher {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: Receiver<DispatchMsg>,
    pub(super) last_durable: Instant,
}

impl Dispatcher {
    pub(super) fn run(mut self) {
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
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let mut end = None;
        // Checked inside the write transaction: a topic deleted before it began has had its
        // rows dropped (or they are dropped after this commit, by the delete's own
        // transaction), so no row of a deleted topic outlives the delete.
        let live = LiveTopics::new(&self.shared.meta);
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
        let all = batches.iter().flat_map(|(_, entries)| entries.iter());
        self.shared.publish_dispatched(all, end);
        Ok(())
    }
}

/// Which topic ids exist, asked once per run of entries of one topic.
struct LiveTopics<'a> {
    meta: &'a Meta,
    last: Cell<Option<(u32, bool)>>,
}

impl<'a> LiveTopics<'a> {
    fn new(meta: &'a Meta) -> Self {
        LiveTopics {
            meta,
            last: Cell::new(None),
        }
    }

    fn contains(&self, topic_id: u32) -> bool {
        match self.last.get() {
            Some((id, live)) if id == topic_id => live,
            _ => {
                let live = self.meta.name_of(topic_id).is_some();
                self.last.set(Some((topic_id, live)));
                live
            }
        }
    }
}

/// Writes the index rows of `entries` (used by the dispatcher and by recovery replay).
pub fn insert_entries<'e>(
    txn: &WriteTransaction,
    entries: impl IntoIterator<Item = &'e IndexEntry>,
) -> Result<(), StoreError> {
    let mut consume = txn.open_table(CONSUME)?;
    let mut ids = txn.open_multimap_table(IDS)?;
    let mut keys = txn.open_multimap_table(KEYS)?;
    for entry in entries {
        let value = ConsumeEntry {
            pos: entry.pos,
            size: entry.size,
            tag_hash: entry.tag_hash,
            stored_ms: entry.stored_ms,
            msg_id: entry.msg_id,
        };
        consume.insert(
            (entry.topic_id, entry.queue_id, entry.offset),
            value.to_bytes(),
        )?;
        ids.insert(
            entry.msg_id.0,
            (entry.topic_id, entry.queue_id, entry.offset),
        )?;
        for key in &entry.keys {
            keys.insert(
                (entry.topic_id, key.as_str()),
                (entry.stored_ms, entry.queue_id, entry.offset),
            )?;
        }
    }
    Ok(())
}
