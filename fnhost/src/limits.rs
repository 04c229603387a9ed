//! What one call of a function may use. A call carries a batch; its fuel and deadline scale
//! with the batch's length. And how many instances a function keeps between calls.

use std::time::Duration;

use quiver_proto::message::{KEY_BYTES_MAX, KEYS_MAX, NAME_BYTES_MAX, TAG_BYTES_MAX};

/// Topic, tag and keys of one emit, at most.
const EMIT_OVERHEAD_MAX: usize = NAME_BYTES_MAX + TAG_BYTES_MAX + KEYS_MAX * KEY_BYTES_MAX;

/// Per-call limits of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per message of the batch.
    pub fuel_per_message: u64,
    /// Wall-clock time per message of the batch (a call gets at least one tick).
    pub deadline_per_message: Duration,
    /// Linear memory of one instance.
    pub memory_bytes: usize,
    /// Messages one handled message may emit.
    pub emits_per_message: usize,
    /// Largest emitted body.
    pub emit_bytes_max: usize,
    /// Bytes of emits one call may hold (at least one message's worth: see
    /// [`Limits::emit_budget`]); past it the call fails and the runner splits the batch.
    pub emit_bytes_per_call: usize,
    /// Log lines one call keeps (the rest are counted, not kept).
    pub log_lines_max: usize,
    /// Longest log line kept (longer ones are cut).
    pub log_line_bytes_max: usize,
    /// Instances kept for the next calls: one whose call settled goes back to the module's
    /// idle instances while there are fewer than this (0: a fresh instance per call).
    pub keep_instances: usize,
    /// An instance whose linear memory grew past this is not kept.
    pub keep_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_message: 50_000_000,
            deadline_per_message: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            emits_per_message: 16,
            emit_bytes_max: 1 << 20,
            emit_bytes_per_call: 16 << 20,
            log_lines_max: 256,
            log_line_bytes_max: 4096,
            keep_instances: 0,
            keep_memory_bytes: 4 << 20,
        }
    }
}

impl Limits {
    /// Fuel for a batch of `n` messages.
    pub fn fuel(&self, n: usize) -> u64 {
        self.fuel_per_message.saturating_mul(n.max(1) as u64)
    }

    /// Bytes of emits one call may hold: `emit_bytes_per_call`, and never less than one
    /// message may emit (so a batch split down to one message always fits).
    pub fn emit_budget(&self) -> usize {
        let one_message = self
            .emits_per_message
            .saturating_mul(self.emit_bytes_max.saturating_add(EMIT_OVERHEAD_MAX));
        self.emit_bytes_per_call.max(one_message)
    }

    /// Deadline for a batch of `n` messages.
    pub fn deadline(&self, n: usize) -> Duration {
        self.deadline_per_message
            .saturating_mul(u32::try_from(n.max(1)).unwrap_or(u32::MAX))
    }
}
