//! redb table definitions: the only place that names the tables and their byte layouts
//! (docs/store.md describes them).
//!
//! Two database files: `index.redb` holds what log replay rebuilds (consume pages, id rows,
//! key index, the dispatch position and the index format); `meta.redb` holds what the log does not carry (topics,
//! later consumer offsets and functions). Deleting `index.redb` loses nothing.

use redb::{MultimapTableDefinition, TableDefinition};

/// `(topic_id, queue_id, page_no)` → a consume page (`page.rs`): the entries of offsets
/// `[page_no * PAGE_SLOTS, (page_no + 1) * PAGE_SLOTS)`.
pub const CONSUME_PAGES: TableDefinition<'static, (u32, u32, u64), &[u8]> =
    TableDefinition::new("consume_pages");
/// `(topic_id, msg_id, queue_id, offset)` → nothing: a message id's copies (retried sends)
/// in a topic, read by prefix range; a topic's rows are one range, dropped with it.
pub const IDS: TableDefinition<'static, (u32, u128, u32, u64), ()> =
    TableDefinition::new("id_rows");
/// `(topic_id, key)` → `(stored_ms, queue_id, offset)`: one value per key of a message. (A
/// plain table keyed by all five fields measured slower to insert: 3.0-3.7 vs 2.2-2.4 ms per
/// 1,000 keyed messages in `index_commit_1000`.)
pub const KEYS: MultimapTableDefinition<'static, (u32, &str), (u64, u32, u64)> =
    MultimapTableDefinition::new("key_index");
/// Named positions: `dispatched_upto`.
pub const STATE: TableDefinition<'static, &str, u64> = TableDefinition::new("state");
/// Key of the dispatch position in [`STATE`].
pub const DISPATCHED_UPTO: &str = "dispatched_upto";
/// Key of the index format in [`STATE`]; an index without it, or with another one, is
/// rebuilt from the log at start.
pub const INDEX_FORMAT: &str = "index_format";
/// The index format this code writes: 2 = consume pages and id rows (1 had one consume row
/// and one id multimap value per message, and no format key).
pub const INDEX_FORMAT_VERSION: u64 = 2;

/// Format 1's consume table, read only by `repair` (to raise floors from an old index).
pub const LEGACY_CONSUME: TableDefinition<'static, (u32, u32, u64), [u8; 40]> =
    TableDefinition::new("consume_index");

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

/// `(group, topic_id, queue_id)` → the group's committed offset: the next offset it reads
/// (in `meta.redb`).
pub const GROUP_OFFSETS: TableDefinition<'static, (&str, u32, u32), u64> =
    TableDefinition::new("group_offsets");
/// Group name → postcard `GroupSettings` (in `meta.redb`); a group is created with the
/// defaults on its first heartbeat.
pub const GROUPS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("groups");
/// Key of the broker's start counter in [`COUNTERS`]: raised at every start, it leads every
/// lease epoch so epochs rise across restarts.
pub const BROKER_GENERATION: &str = "broker_generation";

/// `(due_ms, log position)` → record size: pending delayed messages (in `index.redb`,
/// rebuilt from the log like every index row). A record of the system topic `%SCHEDULE%`
/// arms one; the record that delivers it (`%TIMER` = its position) ends it.
pub const TIMERS: TableDefinition<'static, (u64, u64), u32> = TableDefinition::new("timers");
/// Log position → due time of each pending timer: the oldest pending position keeps its
/// segment from retention.
pub const TIMER_POS: TableDefinition<'static, u64, u64> = TableDefinition::new("timer_pos");

/// Function name → postcard `FnRecord` (in `meta.redb`): its current and previous version
/// (each with the wire's `FnSpec`, positional like every postcard body) and how often the
/// broker compiled it.
pub const FUNCTIONS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("functions");
/// A module's SHA-256 → the module (in `meta.redb`): modules of deployed versions, and
/// uploads not yet deployed (removed when a function is deployed or undeployed and nothing
/// names them).
pub const FN_MODULES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("fn_modules");
/// `(SHA-256, engine key)` → xxh3-64 of the artefact (8 bytes, little-endian) followed by
/// the compiled artefact (in `meta.redb`): a restart loads it instead of compiling.
pub const FN_ARTIFACTS: TableDefinition<'static, (&[u8], u64), &[u8]> =
    TableDefinition::new("fn_artifacts");
/// `(SHA-256, offset)` → a chunk of a module being uploaded (in `meta.redb`); the chunks
/// become one `FN_MODULES` row when the last arrives and the hash matches.
pub const FN_UPLOADS: TableDefinition<'static, (&[u8], u64), &[u8]> =
    TableDefinition::new("fn_uploads");
