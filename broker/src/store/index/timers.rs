//! Delayed messages in the index: what a record does to the pending timers, and the rows
//! that hold them. A delayed send is stored once, in the system topic `%SCHEDULE%`, with
//! its due time and real destination as properties; that record arms a timer. When it is
//! due, the broker appends the message to its real topic with `%TIMER` naming the
//! scheduled record's position, and indexing that record ends the timer, so a replay of
//! the log re-arms and ends it again and never delivers it twice.

use quiver_proto::message::PROP_DELIVER_AT;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use crate::store::StoreError;
use crate::store::tables::{TIMER_POS, TIMERS};

/// The system topic that holds delayed messages until they are due.
pub const SCHEDULE_TOPIC: &str = "%SCHEDULE%";
/// Property of a scheduled record: the topic it is for.
pub const PROP_REAL_TOPIC: &str = "%REAL_TOPIC";
/// Property of a scheduled record: the queue it is for.
pub const PROP_REAL_QUEUE: &str = "%REAL_QUEUE";
/// Property of a delivered record: the log position of the scheduled record it delivers.
pub const PROP_TIMER: &str = "%TIMER";

/// What a record does to the timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerOp {
    /// A scheduled record: a timer due at this time.
    Arm {
        /// Due time (ms since the Unix epoch).
        due_ms: u64,
    },
    /// The delivery of the scheduled record at this log position.
    Fired {
        /// The scheduled record's position.
        pos: u64,
    },
}

fn property<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A record's effect on the timers, from its properties.
pub fn timer_of(properties: &[(String, String)]) -> Option<TimerOp> {
    if let Some(pos) = property(properties, PROP_TIMER).and_then(|v| v.parse().ok()) {
        return Some(TimerOp::Fired { pos });
    }
    property(properties, PROP_REAL_TOPIC)?;
    let due_ms = property(properties, PROP_DELIVER_AT)?.parse().ok()?;
    Some(TimerOp::Arm { due_ms })
}

/// Applies a record's timer effect inside an index transaction.
pub fn apply(txn: &WriteTransaction, pos: u64, size: u32, op: TimerOp) -> Result<(), StoreError> {
    let mut timers = txn.open_table(TIMERS)?;
    let mut by_pos = txn.open_table(TIMER_POS)?;
    match op {
        TimerOp::Arm { due_ms } => {
            timers.insert((due_ms, pos), size)?;
            by_pos.insert(pos, due_ms)?;
        }
        TimerOp::Fired { pos } => {
            let due = by_pos.remove(pos)?.map(|v| v.value());
            if let Some(due_ms) = due {
                timers.remove((due_ms, pos))?;
            }
        }
    }
    Ok(())
}

/// A pending timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// Due time.
    pub due_ms: u64,
    /// Scheduled record's position.
    pub pos: u64,
    /// Its size.
    pub size: u32,
}

/// A table of a read transaction, `None` before its first row was ever written.
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<'static, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The earliest pending timer.
pub fn first(index: &redb::Database) -> Result<Option<Timer>, StoreError> {
    Ok(due(index, u64::MAX, 1)?.into_iter().next())
}

/// The earliest pending timers due at or before `now_ms`, at most `max`, earliest first.
pub fn due(index: &redb::Database, now_ms: u64, max: usize) -> Result<Vec<Timer>, StoreError> {
    let txn = index.begin_read()?;
    let Some(timers) = read_table(&txn, TIMERS)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in timers.range((0, 0)..=(now_ms, u64::MAX))? {
        if out.len() >= max {
            break;
        }
        let (key, size) = row?;
        let (due_ms, pos) = key.value();
        out.push(Timer {
            due_ms,
            pos,
            size: size.value(),
        });
    }
    Ok(out)
}

/// The lowest log position holding a pending timer (retention keeps it).
pub fn oldest_pending_pos(index: &redb::Database) -> Result<Option<u64>, StoreError> {
    let txn = index.begin_read()?;
    let Some(by_pos) = read_table(&txn, TIMER_POS)? else {
        return Ok(None);
    };
    Ok(by_pos.first()?.map(|(pos, _)| pos.value()))
}
