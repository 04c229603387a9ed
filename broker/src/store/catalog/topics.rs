//! Topic metadata in `meta.redb`, with an in-memory copy for the request path.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use quiver_proto::requests::topic::QUEUES_MAX;
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::store::tables::{
    COUNTERS, FN_ARTIFACTS, FN_MODULES, FN_UPLOADS, FUNCTIONS, GROUP_OFFSETS, GROUPS,
    NEXT_TOPIC_ID, QUEUE_FLOORS, TOPICS,
};
use crate::store::{Refusal, StoreError};

/// A topic's stored settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Internal id, never reused: a re-created topic gets a new one, so stale index entries
    /// of the old topic never show.
    pub id: u32,
    /// Queue count.
    pub queues: u32,
    /// Creation time.
    pub created_ms: u64,
}

#[derive(Default)]
struct Topics {
    by_name: BTreeMap<String, TopicMeta>,
    by_id: HashMap<u32, Arc<str>>,
}

/// Topics: redb is the truth, the map is a cache updated after each commit.
pub struct Catalog {
    pub(super) db: Database,
    // RwLock: read on every request, written only by admin requests.
    topics: RwLock<Topics>,
}

impl Catalog {
    /// Opens (or creates) `meta.redb` and loads the topics.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let mut topics = Topics::default();
        let txn = db.begin_write()?;
        {
            txn.open_table(COUNTERS)?;
            txn.open_table(QUEUE_FLOORS)?;
            txn.open_table(GROUP_OFFSETS)?;
            txn.open_table(GROUPS)?;
            txn.open_table(FUNCTIONS)?;
            txn.open_table(FN_MODULES)?;
            txn.open_table(FN_ARTIFACTS)?;
            txn.open_table(FN_UPLOADS)?;
            let table = txn.open_table(TOPICS)?;
            for row in table.iter()? {
                let (name, value) = row?;
                let meta: TopicMeta = quiver_proto::decode_body(value.value()).map_err(|err| {
                    StoreError::Corrupt {
                        pos: 0,
                        reason: format!("topic {:?} in meta.redb: {err}", name.value()),
                    }
                })?;
                topics.by_id.insert(meta.id, Arc::from(name.value()));
                topics.by_name.insert(name.value().to_owned(), meta);
            }
        }
        txn.commit()?;
        Ok(Catalog {
            db,
            topics: RwLock::new(topics),
        })
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<TopicMeta> {
        self.read().by_name.get(name).cloned()
    }

    /// A topic's name by id, if it still exists.
    pub fn name_of(&self, id: u32) -> Option<Arc<str>> {
        self.read().by_id.get(&id).cloned()
    }

    /// Every topic, by name.
    pub fn list(&self) -> Vec<(String, TopicMeta)> {
        self.read()
            .by_name
            .iter()
            .map(|(name, meta)| (name.clone(), meta.clone()))
            .collect()
    }

    /// Creates a topic.
    pub fn create(&self, name: &str, queues: u32, now_ms: u64) -> Result<TopicMeta, StoreError> {
        check_queues(queues)?;
        let mut topics = self.write();
        if topics.by_name.contains_key(name) {
            return Err(StoreError::invalid(
                Refusal::TopicExists,
                format!("topic {name} already exists: use `quiver topic update` to change it"),
            ));
        }
        let txn = self.db.begin_write()?;
        let meta = {
            let mut counters = txn.open_table(COUNTERS)?;
            let id = counters.get(NEXT_TOPIC_ID)?.map_or(1, |v| v.value());
            counters.insert(NEXT_TOPIC_ID, id + 1)?;
            let id = u32::try_from(id).map_err(|_| {
                StoreError::invalid(Refusal::InvalidArgument, "topic ids exhausted")
            })?;
            let meta = TopicMeta {
                id,
                queues,
                created_ms: now_ms,
            };
            txn.open_table(TOPICS)?
                .insert(name, quiver_proto::encode_body(&meta).as_slice())?;
            meta
        };
        txn.commit()?;
        topics.by_id.insert(meta.id, Arc::from(name));
        topics.by_name.insert(name.to_owned(), meta.clone());
        Ok(meta)
    }

    /// Raises a topic's queue count.
    pub fn update(&self, name: &str, queues: u32) -> Result<TopicMeta, StoreError> {
        check_queues(queues)?;
        let mut topics = self.write();
        let mut meta = topics
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        if queues < meta.queues {
            return Err(StoreError::invalid(
                Refusal::InvalidArgument,
                format!(
                    "topic {name} has {} queues: the count can only grow (queues keep their messages)",
                    meta.queues
                ),
            ));
        }
        meta.queues = queues;
        let txn = self.db.begin_write()?;
        txn.open_table(TOPICS)?
            .insert(name, quiver_proto::encode_body(&meta).as_slice())?;
        txn.commit()?;
        topics.by_name.insert(name.to_owned(), meta.clone());
        Ok(meta)
    }

    /// Deletes a topic; returns what it was.
    pub fn delete(&self, name: &str) -> Result<TopicMeta, StoreError> {
        let mut topics = self.write();
        let meta = topics
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        let txn = self.db.begin_write()?;
        txn.open_table(TOPICS)?.remove(name)?;
        txn.open_table(QUEUE_FLOORS)?
            .retain_in((meta.id, 0)..=(meta.id, u32::MAX), |_, _| false)?;
        // Offsets of the deleted topic id: a re-created topic gets a new id and starts over.
        txn.open_table(GROUP_OFFSETS)?
            .retain(|(_, topic_id, _), _| topic_id != meta.id)?;
        txn.commit()?;
        topics.by_name.remove(name);
        topics.by_id.remove(&meta.id);
        Ok(meta)
    }

    /// Every queue floor (see [`QUEUE_FLOORS`]).
    pub fn floors(&self) -> Result<HashMap<(u32, u32), u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(QUEUE_FLOORS)?;
        let mut floors = HashMap::new();
        for row in table.iter()? {
            let (key, value) = row?;
            floors.insert(key.value(), value.value());
        }
        Ok(floors)
    }

    /// Raises queue floors durably (a floor never goes down).
    pub fn raise_floors(&self, floors: &HashMap<(u32, u32), u64>) -> Result<(), StoreError> {
        if floors.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(QUEUE_FLOORS)?;
            for (key, floor) in floors {
                let old = table.get(*key)?.map_or(0, |v| v.value());
                if *floor > old {
                    table.insert(*key, *floor)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The "topic not found" error.
pub fn not_found(name: &str) -> StoreError {
    StoreError::invalid(
        Refusal::TopicNotFound,
        format!("topic {name} not found: create it with `quiver topic create {name}`"),
    )
}

fn check_queues(queues: u32) -> Result<(), StoreError> {
    if queues == 0 || queues > QUEUES_MAX {
        return Err(StoreError::invalid(
            Refusal::InvalidArgument,
            format!("queue count {queues} is out of range: use 1 to {QUEUES_MAX}"),
        ));
    }
    Ok(())
}
