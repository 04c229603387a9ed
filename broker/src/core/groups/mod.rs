//! Consumer groups on this broker: membership, the assignment of this broker's queues, the
//! leases that fence old holders, reads through a lease, and committed offsets.
//!
//! - `assign.rs`: which member reads which queue (pure).
//! - `table.rs`: members, subscriptions, leases and epochs as a sans-IO state machine.
//! - `ops.rs`: the core's group operations over the table, the store and the catalog.
//! - `retry.rs`: failed messages to the group's retry topic, then its dead-letter topic.

pub mod assign;
mod ops;
mod retry;
pub mod table;
#[cfg(test)]
mod table_tests;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quiver_proto::requests::group::StartFrom;

use self::table::GroupTable;

pub use ops::{BACKOFF_MS_MAX, GroupPulled, MAX_RETRIES_MAX};

/// The groups of one broker: the table, and the start position each group asked for.
pub struct Groups {
    table: Mutex<GroupTable>,
    starts: Mutex<HashMap<String, StartFrom>>,
    /// Held from a commit's lease check to its write, and by an offset reset from its
    /// revocation to its write, so a member's commit never lands over a reset.
    commits: tokio::sync::Mutex<()>,
    /// The table's clock starts here (a monotonic clock: leases are durations).
    epoch: Instant,
}

impl Groups {
    /// Groups of the broker named `broker`, whose members last `session` past their last
    /// heartbeat, in the broker's start number `generation`.
    pub fn new(broker: &str, session: Duration, generation: u32) -> Self {
        Groups {
            table: Mutex::new(GroupTable::new(
                broker,
                session.as_millis() as u64,
                generation,
            )),
            starts: Mutex::new(HashMap::new()),
            commits: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn table(&self) -> std::sync::MutexGuard<'_, GroupTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, HashMap<String, StartFrom>> {
        self.starts.lock().unwrap_or_else(|p| p.into_inner())
    }
}
