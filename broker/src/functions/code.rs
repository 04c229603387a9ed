//! What a version runs: a WASM module (every deployed function), or a handler in Rust run
//! through the same runner (`Functions::run_native`: the benchmarks' baseline, W9's "the
//! same filter as native Rust in the broker"; never stored, never reachable from the wire).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use quiver_fnhost::{CallReport, Emit, FnModule, Limits, Message, Outcome};
use quiver_proto::requests::function::{FnCounters, FnSpec};

use super::Functions;
use crate::clock::now_ms;
use crate::store::StoreError;
use crate::store::catalog::FnVersion;

/// A handler in Rust: one outcome per message; emits are pushed to the `Vec`.
pub type NativeHandler =
    Arc<dyn Fn(&Message, &BTreeMap<String, String>, &mut Vec<Emit>) -> Outcome + Send + Sync>;

/// The code of a version.
#[derive(Clone)]
pub enum Code {
    /// A component, compiled.
    Wasm(Arc<FnModule>),
    /// Rust in the broker.
    Native(NativeHandler),
}

impl Code {
    /// Calls the code over `batch`.
    pub async fn call(
        &self,
        batch: &[Message],
        config: Arc<BTreeMap<String, String>>,
        limits: &Limits,
    ) -> CallReport {
        match self {
            Code::Wasm(module) => module.call(batch, config, limits).await,
            Code::Native(handler) => {
                let started = Instant::now();
                let mut emits = Vec::new();
                let outcomes = batch
                    .iter()
                    .map(|msg| handler(msg, &config, &mut emits))
                    .collect();
                CallReport {
                    settled: Ok(outcomes),
                    emits,
                    logs: Vec::new(),
                    logs_dropped: 0,
                    fuel_used: 0,
                    elapsed: started.elapsed(),
                    timed_out: false,
                }
            }
        }
    }
}

impl Functions {
    /// Runs `handler` as the function `name` (the group `fn-<name>`) through the same
    /// runner, calls, writes and commits as a module: the benchmarks' native baseline. It
    /// is not stored: it runs until the broker stops.
    pub async fn run_native(
        &self,
        name: &str,
        spec: FnSpec,
        handler: NativeHandler,
    ) -> Result<(), StoreError> {
        super::ops::check_name(name)?;
        let version = FnVersion {
            version: 1,
            sha256: [0; 32],
            spec,
            deployed_ms: now_ms(),
        };
        let mut running = self.running.lock().await;
        if let Some(run) = running.remove(name) {
            run.stop.cancel();
            let _ = run.task.await;
        }
        self.launch(&mut running, name, version, Code::Native(handler));
        Ok(())
    }

    /// Counters of `name` on this broker since it started.
    pub fn counters(&self, name: &str) -> FnCounters {
        self.shared_of(name).stats.counters(0)
    }
}
