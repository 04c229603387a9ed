//! `[functions]`: the WASM function host's settings and each function's default limits.

use serde::{Deserialize, Serialize};

use quiver_proto::requests::function::FnLimits;

/// `[functions]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionsConfig {
    /// Threads that run function calls (0: one per core). Calls never run on the threads
    /// that serve QUIC, and yield every 10 ms so functions share these fairly.
    pub threads: usize,
    /// Largest module `fn.upload` accepts.
    pub module_bytes_max: u64,
    /// Log lines kept per function (a ring: `quiver fn logs` reads it).
    pub log_lines: usize,
    /// Most bytes of messages one call gets (a batch stops before it; one message always).
    pub batch_bytes_max: u32,
    /// How often a function commits its offsets while busy (ms; also when idle and on stop).
    pub commit_interval_ms: u64,
    /// Fuel per message of a batch (roughly wasm instructions).
    pub fuel_per_message: u64,
    /// Wall-clock ms per message of a batch.
    pub deadline_ms_per_message: u64,
    /// Linear memory of one instance.
    pub memory_bytes: u64,
    /// Calls of one function running at once on this broker.
    pub instances: u32,
    /// Messages one handled message may emit.
    pub emits_per_message: u32,
    /// Largest emitted body.
    pub emit_bytes_max: u32,
    /// Bytes of emits one call may hold before it is written (at least one message's
    /// worth); past it the call fails and the batch is split.
    pub emit_bytes_per_call: u64,
    /// An instance whose call settled serves its function's next calls (up to `instances`
    /// kept per function) while its linear memory is at most this; 0: a fresh instance per
    /// call. Kept memory is at most functions × instances × this.
    pub kept_instance_bytes: u64,
}

impl Default for FunctionsConfig {
    fn default() -> Self {
        FunctionsConfig {
            threads: 0,
            module_bytes_max: 16 << 20,
            log_lines: 1_000,
            batch_bytes_max: 4 << 20,
            commit_interval_ms: 1_000,
            fuel_per_message: 50_000_000,
            deadline_ms_per_message: 100,
            memory_bytes: 64 << 20,
            instances: 2,
            emits_per_message: 16,
            emit_bytes_max: 1 << 20,
            emit_bytes_per_call: 16 << 20,
            kept_instance_bytes: 4 << 20,
        }
    }
}

impl FunctionsConfig {
    /// Checks the values the host could not use.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("functions.module_bytes_max", self.module_bytes_max),
            ("functions.log_lines", self.log_lines as u64),
            ("functions.batch_bytes_max", u64::from(self.batch_bytes_max)),
            ("functions.commit_interval_ms", self.commit_interval_ms),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        self.limits(&FnLimits::default()).map(|_| ())
    }

    /// A function's limits: what it asked for, else the defaults; refused when out of range.
    pub fn limits(&self, asked: &FnLimits) -> Result<FnLimits, String> {
        let pick = |asked: u64, default: u64| if asked == 0 { default } else { asked };
        let limits = FnLimits {
            fuel_per_message: pick(asked.fuel_per_message, self.fuel_per_message),
            deadline_ms_per_message: pick(
                asked.deadline_ms_per_message,
                self.deadline_ms_per_message,
            ),
            memory_bytes: pick(asked.memory_bytes, self.memory_bytes),
            instances: pick(u64::from(asked.instances), u64::from(self.instances)) as u32,
            emits_per_message: pick(
                u64::from(asked.emits_per_message),
                u64::from(self.emits_per_message),
            ) as u32,
            emit_bytes_max: pick(
                u64::from(asked.emit_bytes_max),
                u64::from(self.emit_bytes_max),
            ) as u32,
        };
        let ranges: [(&str, u64, u64, u64); 6] = [
            ("fuel per message", limits.fuel_per_message, 1_000, 1 << 40),
            (
                "deadline per message (ms)",
                limits.deadline_ms_per_message,
                1,
                60_000,
            ),
            ("memory (bytes)", limits.memory_bytes, 1 << 20, 4 << 30),
            ("instances", u64::from(limits.instances), 1, 256),
            (
                "emits per message",
                u64::from(limits.emits_per_message),
                1,
                10_000,
            ),
            ("emit bytes", u64::from(limits.emit_bytes_max), 1, 4 << 20),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!("{name} is {value}; it must be {min} to {max}"));
            }
        }
        Ok(limits)
    }

    /// The host's limits for a call of a function with (resolved) `limits`.
    pub fn host_limits(&self, limits: &FnLimits) -> quiver_fnhost::Limits {
        let keep = self.kept_instance_bytes > 0;
        quiver_fnhost::Limits {
            fuel_per_message: limits.fuel_per_message,
            deadline_per_message: std::time::Duration::from_millis(limits.deadline_ms_per_message),
            memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            emits_per_message: limits.emits_per_message as usize,
            emit_bytes_max: limits.emit_bytes_max as usize,
            emit_bytes_per_call: usize::try_from(self.emit_bytes_per_call).unwrap_or(usize::MAX),
            keep_instances: if keep { limits.instances as usize } else { 0 },
            keep_memory_bytes: usize::try_from(self.kept_instance_bytes).unwrap_or(usize::MAX),
            ..quiver_fnhost::Limits::default()
        }
    }
}
