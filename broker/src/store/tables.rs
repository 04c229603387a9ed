//! redb table definitions: the only place that names the tables and their byte layouts
//! (docs/store.md describes them).
//!
//! Two database files: `index.redb` holds what log replay rebuilds (consume index, id index,
//! key index, the dispatch position); `meta.redb` holds what the log does not carry (topics,
//! later consumer offsets and functions). Deleting `index.redb` loses nothing.

use quiver_proto::MessageId;
use redb::{MultimapTableDefinition, TableDefinition};

/// `(topic_id, queue_id, offset)` → [`ConsumeEntry`] bytes.
pub const CONSUME: TableDefinition<'static, (u32, u32, u64), [u8; 40]> =
    TableDefinition::new("consume_index");
/// `msg_id` → `(topic_id, queue_id, offset)`; a multimap, so a retried send's copies all show.
pub const IDS: MultimapTableDefinition<'static, u128, (u32, u32, u64)> =
    MultimapTableDefinition::new("id_index");
/// `(topic_id, key)` → `(stored_ms, queue_id, offset)`.
pub const KEYS: MultimapTableDefinition<'static, (u32, &str), (u64, u32, u64)> =
    MultimapTableDefinition::new("key_index");
/// Named positions: `dispatched_upto`.
pub const STATE: TableDefinition<'static, &str, u64> = TableDefinition::new("state");
/// Key of the dispatch position in [`STATE`].
pub const DISPATCHED_UPTO: &str = "dispatched_upto";

/// Topic name → postcard `TopicMeta` (in `meta.redb`).
pub const TOPICS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("topics");
/// Named counters (in `meta.redb`): `next_topic_id`.
pub const COUNTERS: TableDefinition<'static, &str, u64> = TableDefinition::new("counters");
/// Key of the topic id allocator in [`COUNTERS`].
pub const NEXT_TOPIC_ID: &str = "next_topic_id";
/// `(topic_id, queue_id)` → the queue's floor (in `meta.redb`): every offset below it was
/// removed by retention, so the queue never starts, nor hands out an offset, below it. Raised
/// before retention deletes a segment's index rows; the log no longer proves these offsets
/// were used, so this is the one place that remembers them.
pub const QUEUE_FLOORS: TableDefinition<'static, (u32, u32), u64> =
    TableDefinition::new("queue_floors");

/// One consume-index value: where a queue's message lives in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumeEntry {
    /// Log position of the record.
    pub pos: u64,
    /// Record length.
    pub size: u32,
    /// Tag hash, for filtering without reading the log.
    pub tag_hash: u32,
    /// Broker time.
    pub stored_ms: u64,
    /// Message id.
    pub msg_id: MessageId,
}

impl ConsumeEntry {
    /// Fixed 40-byte little-endian layout: pos, size, tag_hash, stored_ms, msg_id.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[0..8].copy_from_slice(&self.pos.to_le_bytes());
        out[8..12].copy_from_slice(&self.size.to_le_bytes());
        out[12..16].copy_from_slice(&self.tag_hash.to_le_bytes());
        out[16..24].copy_from_slice(&self.stored_ms.to_le_bytes());
        out[24..40].copy_from_slice(&self.msg_id.0.to_le_bytes());
        out
    }

    /// Reads the layout of [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 40]) -> Self {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        ConsumeEntry {
            pos: u64_at(0),
            size: u32_at(8),
            tag_hash: u32_at(12),
            stored_ms: u64_at(16),
            msg_id: MessageId(u128::from_le_bytes(
                bytes[24..40].try_into().expect("16 bytes"),
            )),
        }
    }
}
