//! The wasmtime engine of every function of a process: fuel metering, epoch deadlines (a
//! ticker thread), GC types off; and the key its compiled artefacts are stored under.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine};

use crate::runtime::FnError;

/// How often the engine's epoch advances: the granularity of call deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// Deepest wasm stack a call may use.
const WASM_STACK_BYTES: usize = 256 << 10;

/// The wasmtime engine of every function of a process, with the thread that advances its
/// epoch (stopped when the engine is dropped).
pub struct FnEngine {
    engine: Engine,
    _ticking: Arc<()>,
}

impl FnEngine {
    /// An engine with fuel metering and epoch deadlines.
    pub fn new() -> Result<Self, FnError> {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(WASM_STACK_BYTES)
            // Functions are Rust (linear memory): no GC types, so no collector is built in
            // (the crate's `gc` feature stays on: RELIABILITY.md 8.5).
            .wasm_gc(false)
            .wasm_function_references(false)
            .wasm_exceptions(false)
            .gc_support(false);
        let engine = Engine::new(&config)?;
        let ticking = Arc::new(());
        let alive = Arc::downgrade(&ticking);
        let ticked = engine.clone();
        std::thread::Builder::new()
            .name("fn-epoch".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(TICK);
                    ticked.increment_epoch();
                }
            })
            .map_err(|err| FnError::Host(format!("cannot start the epoch ticker: {err}")))?;
        Ok(FnEngine {
            engine,
            _ticking: ticking,
        })
    }

    /// Names what a compiled artefact depends on: the wasmtime version and every engine
    /// setting that changes code. An artefact stored under another key must be recompiled.
    pub fn artifact_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = Xxh3Hasher::default();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        hasher.finish()
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// A hasher that gives the same value in every process (std's `DefaultHasher` promises that
/// only within one build).
#[derive(Default)]
struct Xxh3Hasher(xxhash_rust::xxh3::Xxh3);

impl std::hash::Hasher for Xxh3Hasher {
    fn finish(&self) -> u64 {
        self.0.digest()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
