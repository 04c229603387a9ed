//! Consumer groups in `meta.redb`: settings and committed offsets. Offsets are committed in
//! the batches members send (one `Immediate` commit per request, never per message).

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use crate::store::catalog::Catalog;
use crate::store::tables::{BROKER_GENERATION, COUNTERS, GROUP_OFFSETS, GROUPS};

/// A group's stored settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Deliveries after the first before a message is dead-lettered.
    pub max_retries: u32,
    /// Wait before each retry (ms); the last step repeats.
    pub backoff_ms: Vec<u64>,
    /// Queue assignment strategy name (`average`, `consistent_hash`).
    pub strategy: String,
}

impl Default for GroupSettings {
    /// The wire's default (RocketMQ's: 16 retries, 10 s, 30 s, 1 m, 2 m, … 2 h).
    fn default() -> Self {
        let wire = quiver_proto::requests::group::GroupSettings::default();
        GroupSettings {
            max_retries: wire.max_retries,
            backoff_ms: wire.backoff_ms,
            strategy: wire.strategy,
        }
    }
}

/// One committed offset: `(topic_id, queue_id, offset)`.
pub type OffsetRow = (u32, u32, u64);

impl Catalog {
    /// Raises and returns the broker's start counter (called once per start).
    pub fn next_generation(&self) -> Result<u32, StoreError> {
        let txn = self.db.begin_write()?;
        let generation = {
            let mut counters = txn.open_table(COUNTERS)?;
            let next = counters
                .get(BROKER_GENERATION)?
                .map_or(1, |v| v.value() + 1);
            counters.insert(BROKER_GENERATION, next)?;
            next
        };
        txn.commit()?;
        u32::try_from(generation).map_err(|_| StoreError::Corrupt {
            pos: 0,
            reason: format!("broker generation {generation} in meta.redb is out of range"),
        })
    }

    /// A group's settings, if the group exists.
    pub fn group(&self, group: &str) -> Result<Option<GroupSettings>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(GROUPS)?;
        let Some(value) = table.get(group)? else {
            return Ok(None);
        };
        let settings =
            quiver_proto::decode_body(value.value()).map_err(|err| StoreError::Corrupt {
                pos: 0,
                reason: format!("group {group:?} in meta.redb: {err}"),
            })?;
        Ok(Some(settings))
    }

    /// A group's settings, creating the group with the defaults when new.
    pub fn ensure_group(&self, group: &str) -> Result<GroupSettings, StoreError> {
        if let Some(settings) = self.group(group)? {
            return Ok(settings);
        }
        let settings = GroupSettings::default();
        self.set_group(group, &settings)?;
        Ok(settings)
    }

    /// Stores a group's settings.
    pub fn set_group(&self, group: &str, settings: &GroupSettings) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(GROUPS)?
            .insert(group, quiver_proto::encode_body(settings).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Names of every group with settings.
    pub fn groups(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(GROUPS)?;
        let mut names = Vec::new();
        for row in table.iter()? {
            names.push(row?.0.value().to_owned());
        }
        Ok(names)
    }

    /// A group's committed offset of one queue.
    pub fn offset(
        &self,
        group: &str,
        topic_id: u32,
        queue_id: u32,
    ) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(GROUP_OFFSETS)?;
        Ok(table.get((group, topic_id, queue_id))?.map(|v| v.value()))
    }

    /// Every committed offset of a group.
    pub fn offsets(&self, group: &str) -> Result<Vec<OffsetRow>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(GROUP_OFFSETS)?;
        let mut rows = Vec::new();
        for row in table.range((group, 0, 0)..=(group, u32::MAX, u32::MAX))? {
            let (key, value) = row?;
            let (_, topic_id, queue_id) = key.value();
            rows.push((topic_id, queue_id, value.value()));
        }
        Ok(rows)
    }

    /// Commits offsets durably, in one transaction.
    pub fn commit_offsets(&self, group: &str, rows: &[OffsetRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(GROUP_OFFSETS)?;
            for (topic_id, queue_id, offset) in rows {
                table.insert((group, *topic_id, *queue_id), *offset)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The committed offset of a queue, or `start` committed as its first one when there is
    /// none (so a group that starts at "last" keeps what is sent after it started).
    pub fn offset_or_start(
        &self,
        group: &str,
        topic_id: u32,
        queue_id: u32,
        start: u64,
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let offset = {
            let mut table = txn.open_table(GROUP_OFFSETS)?;
            let existing = table.get((group, topic_id, queue_id))?.map(|v| v.value());
            match existing {
                Some(offset) => offset,
                None => {
                    table.insert((group, topic_id, queue_id), start)?;
                    start
                }
            }
        };
        txn.commit()?;
        Ok(offset)
    }
}
