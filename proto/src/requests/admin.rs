//! `broker.*` administration bodies.

use serde::{Deserialize, Serialize};

/// `broker.stats` (empty request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRequest {}

/// Broker counters since start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerStats {
    /// Flush mode: `sync` or `async`.
    pub flush_mode: String,
    /// Messages appended to the commit log.
    pub msgs_appended: u64,
    /// Group-commit appends (one write each).
    pub appends: u64,
    /// `fdatasync` calls on the commit log.
    pub fsyncs: u64,
    /// Bytes written to the commit log.
    pub bytes_written: u64,
    /// First position still in the log (older segments were removed by retention).
    pub log_start: u64,
    /// End of the log.
    pub log_end: u64,
    /// Log position the indexes have caught up to.
    pub dispatched_upto: u64,
    /// Whether the store accepts sends (false after a failed log write or sync, or a failed
    /// index commit, until restart).
    pub healthy: bool,
    /// Why the store is unhealthy (empty while healthy).
    pub unhealthy_reason: String,
    /// Retention passes that failed (each logged with its cause).
    pub retention_errors: u64,
}

/// Answer to `broker.read_stats`: what reads cost the store since start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadStats {
    /// Records read from the log (or its in-memory tail) to answer pulls and lookups.
    pub records_read: u64,
    /// Their bytes.
    pub bytes_read: u64,
    /// Consume-index slots looked at (read or stepped over by a tag filter).
    pub slots_scanned: u64,
}
