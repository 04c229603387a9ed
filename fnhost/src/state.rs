//! What one instance's store holds: WASI without capabilities, the limits (a limiter that
//! notes how far memory grew), what the guest printed, logged and emitted; and the host
//! functions the guest imports (`log`, `emit`, `config`).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use quiver_proto::message::{KEY_BYTES_MAX, KEYS_MAX, TAG_BYTES_MAX};

use crate::limits::Limits;
use crate::runtime::bindings;
use crate::runtime::bindings::quiver::function::host::Level;
use crate::runtime::{Emit, LogLine};

/// Host resources (WASI streams, pollables) one instance may hold at once: a Rust guest
/// holds a handful; the table's own default (a million) would let one instance hold about
/// 100 MB of the broker's memory.
pub(crate) const HOST_RESOURCES_MAX: usize = 4096;
/// A store's stdout and stderr each hold this many log lines' worth of bytes; an instance
/// that printed half of it is not kept.
pub(crate) const PRINTED_LINES: usize = 8;

/// The store's limits, noting how far its memory grew.
pub(crate) struct CallLimiter {
    pub(crate) limits: StoreLimits,
    /// Largest linear memory size the instance reached.
    pub(crate) memory_bytes: usize,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self.memory_bytes.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What the guest printed, read a call at a time.
pub(crate) struct Printed {
    pub(crate) pipe: MemoryOutputPipe,
    /// Bytes of it earlier calls read.
    pub(crate) read: usize,
}

impl Printed {
    pub(crate) fn new(capacity: usize) -> Self {
        Printed {
            pipe: MemoryOutputPipe::new(capacity),
            read: 0,
        }
    }

    /// What was printed since the last take.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let all = self.pipe.contents();
        let new = all.get(self.read..).unwrap_or_default().to_vec();
        self.read = all.len();
        new
    }
}

/// What a call's instance holds: WASI without capabilities, the limits, and what the guest
/// logged and emitted.
pub(crate) struct FnState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) stdout: Printed,
    pub(crate) stderr: Printed,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) limits: Limits,
    pub(crate) emits: Vec<Emit>,
    pub(crate) emits_left: usize,
    /// Bytes of this call's emits so far.
    pub(crate) emit_bytes: usize,
    /// An emit was refused for the call's emit budget: the call fails (and is split).
    pub(crate) emits_over: bool,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: usize,
    /// The epoch callback interrupted the call at its deadline.
    pub(crate) timed_out: bool,
}

impl FnState {
    pub(crate) fn log_line(&mut self, level: &'static str, text: &str) {
        if self.logs.len() >= self.limits.log_lines_max {
            self.logs_dropped += 1;
            return;
        }
        let mut cut = text.len().min(self.limits.log_line_bytes_max);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.logs.push(LogLine {
            level,
            text: text[..cut].to_owned(),
        });
    }
}

impl WasiView for FnState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::quiver::function::types::Host for FnState {}

impl bindings::quiver::function::host::Host for FnState {
    async fn log(&mut self, level: Level, text: String) {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log_line(level, &text);
    }

    async fn emit(
        &mut self,
        topic: String,
        tag: Option<String>,
        keys: Vec<String>,
        body: Vec<u8>,
    ) -> Result<(), String> {
        if self.emits_left == 0 {
            return Err(format!(
                "over the emit limit ({} per message)",
                self.limits.emits_per_message
            ));
        }
        if body.len() > self.limits.emit_bytes_max {
            return Err(format!(
                "body of {} bytes is over the emit limit of {} bytes",
                body.len(),
                self.limits.emit_bytes_max
            ));
        }
        if let Err(why) = quiver_proto::Name::new(&topic) {
            return Err(format!("topic {topic:?}: {why}"));
        }
        if tag.as_ref().is_some_and(|t| t.len() > TAG_BYTES_MAX) {
            return Err(format!("tag is over {TAG_BYTES_MAX} bytes"));
        }
        if keys.len() > KEYS_MAX || keys.iter().any(|k| k.len() > KEY_BYTES_MAX) {
            return Err(format!(
                "at most {KEYS_MAX} keys of at most {KEY_BYTES_MAX} bytes each"
            ));
        }
        let bytes = emit_size(&topic, tag.as_deref(), &keys, &body);
        let budget = self.limits.emit_budget();
        if self.emit_bytes + bytes > budget {
            self.emits_over = true;
            return Err(format!("over the call's emit budget of {budget} bytes"));
        }
        self.emit_bytes += bytes;
        self.emits_left -= 1;
        self.emits.push(Emit {
            topic,
            tag,
            keys,
            body,
        });
        Ok(())
    }

    async fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

/// Bytes an emit holds.
fn emit_size(topic: &str, tag: Option<&str>, keys: &[String], body: &[u8]) -> usize {
    topic.len() + tag.map_or(0, str::len) + keys.iter().map(String::len).sum::<usize>() + body.len()
}
