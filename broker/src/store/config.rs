//! Store settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When an acknowledged send is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    /// Ack after `fdatasync` (default): survives power loss.
    Sync,
    /// Ack after `write()` reaches the OS: survives `kill -9`, not power loss; the log is
    /// synced every `flush_interval`.
    Async,
}

impl FlushMode {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            FlushMode::Sync => "sync",
            FlushMode::Async => "async",
        }
    }
}

/// How the log is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogIo {
    /// Direct in sync flush mode, buffered in async (default): the faster of the two for
    /// each mode, as measured (docs/store.md).
    Auto,
    /// Through the page cache.
    Buffered,
    /// `O_DIRECT` from aligned buffers; recent bytes are kept for tailing reads
    /// (`tail_cache_bytes`).
    Direct,
}

/// Store settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Flush mode.
    pub flush: FlushMode,
    /// Async mode: how often the log is synced.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Size at which a new segment is started.
    pub segment_bytes: bytesize::ByteSize,
    /// Remove the oldest segments while the log is larger than this (0 = no limit).
    pub retention_bytes: bytesize::ByteSize,
    /// Remove segments whose messages are all older than this (0 = keep forever).
    #[serde(with = "humantime_serde")]
    pub retention_age: Duration,
    /// How often retention runs.
    #[serde(with = "humantime_serde")]
    pub retention_check: Duration,
    /// Largest message body.
    pub message_bytes_max: bytesize::ByteSize,
    /// Largest send batch (sum of bodies).
    pub batch_bytes_max: bytesize::ByteSize,
    /// How often index commits are made durable.
    #[serde(with = "humantime_serde")]
    pub index_durable_interval: Duration,
    /// Page cache of `index.redb` (redb's own default is 1 GiB, which an edge node cannot
    /// spare): consume pages, id rows and key rows read or written recently.
    pub index_cache_bytes: bytesize::ByteSize,
    /// Page cache of `meta.redb` (topics, floors; later offsets and functions).
    pub meta_cache_bytes: bytesize::ByteSize,
    /// How the log is written.
    pub log_io: LogIo,
    /// With direct writes: the newest log bytes kept in memory for consumers reading at
    /// the log's end (the page cache does not hold them).
    pub tail_cache_bytes: bytesize::ByteSize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            flush: FlushMode::Sync,
            flush_interval: Duration::from_millis(100),
            segment_bytes: bytesize::ByteSize::gib(1),
            retention_bytes: bytesize::ByteSize::b(0),
            retention_age: Duration::from_secs(72 * 3600),
            retention_check: Duration::from_secs(10),
            message_bytes_max: bytesize::ByteSize::b(
                quiver_proto::message::MESSAGE_BYTES_MAX_DEFAULT as u64,
            ),
            batch_bytes_max: bytesize::ByteSize::b(
                quiver_proto::requests::msg::BATCH_BYTES_MAX_DEFAULT as u64,
            ),
            index_durable_interval: Duration::from_secs(1),
            index_cache_bytes: bytesize::ByteSize::mib(32),
            meta_cache_bytes: bytesize::ByteSize::mib(4),
            log_io: LogIo::Auto,
            tail_cache_bytes: bytesize::ByteSize::mib(8),
        }
    }
}

/// Smallest segment size accepted (tests use tiny segments; production wants ~1 GiB).
pub const SEGMENT_BYTES_MIN: u64 = 4 << 10;

impl StoreConfig {
    /// Whether the log is written with `O_DIRECT`.
    pub fn direct_writes(&self) -> bool {
        match self.log_io {
            LogIo::Auto => self.flush == FlushMode::Sync,
            LogIo::Buffered => false,
            LogIo::Direct => true,
        }
    }

    /// Checks the settings against each other and the wire limits; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let message = self.message_bytes_max.as_u64();
        let batch = self.batch_bytes_max.as_u64();
        let frame = quiver_proto::frame::FRAME_BODY_BYTES_MAX as u64;
        if message == 0 || message > 64 << 20 {
            return Err(format!(
                "store.message_bytes_max = {message} bytes: use 1 byte to 64 MiB"
            ));
        }
        if batch < message || batch + message + (1 << 20) > frame {
            return Err(format!(
                "store.batch_bytes_max = {batch} bytes: use at least message_bytes_max ({message}) and at most {} bytes",
                frame - message - (1 << 20)
            ));
        }
        if self.segment_bytes.as_u64() < SEGMENT_BYTES_MIN {
            return Err(format!(
                "store.segment_bytes must be at least {SEGMENT_BYTES_MIN} bytes"
            ));
        }
        for (key, value) in [
            ("flush_interval", self.flush_interval),
            ("retention_check", self.retention_check),
            ("index_durable_interval", self.index_durable_interval),
        ] {
            if value.is_zero() {
                return Err(format!("store.{key} must be greater than zero"));
            }
        }
        Ok(())
    }
}
