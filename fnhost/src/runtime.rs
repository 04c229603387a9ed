//! A loaded function and one call. An instance whose
//! call settled may serve the function's next calls (`Limits::keep_instances`, while its
//! memory stays under `Limits::keep_memory_bytes`); a trap, a timeout or an out-of-memory
//! throws it away, so a broken instance never runs again. Emits are kept per call and
//! dropped when the call fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use crate::imports::{ImportRefused, check_imports};
use crate::limits::Limits;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "function",
        path: "../sdk-wasm/wit",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::quiver::function::types::{Message, Outcome};

pub use crate::engine::FnEngine;
use crate::engine::TICK;
use crate::state::{CallLimiter, FnState, HOST_RESOURCES_MAX, PRINTED_LINES, Printed};

/// Instances, tables and memories one call may create (the component and its adapters).
const INSTANCES_PER_CALL: usize = 16;
/// Why a call past its deadline failed.
const DEADLINE_EXCEEDED: &str = "deadline exceeded (the call ran too long)";

/// What went wrong loading or calling a function.
#[derive(Debug, thiserror::Error)]
pub enum FnError {
    /// Not a loadable component.
    #[error("not a valid function component: {0}")]
    Invalid(String),
    /// An import the broker refuses.
    #[error(transparent)]
    Refused(#[from] ImportRefused),
    /// The host could not be set up.
    #[error("function host: {0}")]
    Host(String),
}

impl From<wasmtime::Error> for FnError {
    fn from(err: wasmtime::Error) -> Self {
        FnError::Host(format!("{err:#}"))
    }
}

/// A message a call asked to send, written only if the call settles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emit {
    /// Target topic.
    pub topic: String,
    /// Tag.
    pub tag: Option<String>,
    /// Keys.
    pub keys: Vec<String>,
    /// Body.
    pub body: Vec<u8>,
}

/// One line of a function's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// `trace` … `error`, or `stdout` / `stderr` for what the guest printed.
    pub level: &'static str,
    /// The text (cut at the line limit).
    pub text: String,
}

/// A call's outcomes (one per message, in order), or why the call failed (a trap: fuel,
/// deadline, memory, a panic; or a wrong number of outcomes).
pub type Settled = Result<Vec<Outcome>, String>;

/// What one call did.
#[derive(Debug)]
pub struct CallReport {
    /// Outcomes, or why there are none.
    pub settled: Settled,
    /// Messages to send (empty when the call failed).
    pub emits: Vec<Emit>,
    /// Log lines kept.
    pub logs: Vec<LogLine>,
    /// Log lines over the limit, not kept.
    pub logs_dropped: usize,
    /// Fuel the call used.
    pub fuel_used: u64,
    /// Wall-clock time of the call (instantiation included).
    pub elapsed: Duration,
    /// The call failed because it ran past its wall-clock deadline.
    pub timed_out: bool,
}

/// An instance whose last call settled, with its store (made under the limits its state
/// holds).
struct Kept {
    store: Store<FnState>,
    instance: bindings::Function,
}

impl Kept {
    /// The settings its calls had: a guest may have cached them.
    fn config(&self) -> &Arc<BTreeMap<String, String>> {
        &self.store.data().config
    }
}

/// A loaded, checked function, ready to instantiate.
pub struct FnModule {
    engine: Engine,
    component: Component,
    pre: bindings::FunctionPre<FnState>,
    imports: Vec<String>,
    /// Instances kept for the next calls (at most `Limits::keep_instances`).
    idle: Mutex<Vec<Kept>>,
}

impl FnModule {
    /// Compiles a component and checks its imports.
    pub fn load(engine: &FnEngine, wasm: &[u8]) -> Result<Self, FnError> {
        let component = Component::new(engine.engine(), wasm)
            .map_err(|err| FnError::Invalid(format!("{err:#}")))?;
        Self::link(engine, component)
    }

    /// Checks a compiled component's imports and links it.
    pub(crate) fn link(engine: &FnEngine, component: Component) -> Result<Self, FnError> {
        let imports: Vec<String> = component
            .component_type()
            .imports(engine.engine())
            .map(|(name, _)| name.to_owned())
            .collect();
        check_imports(imports.iter().map(String::as_str))?;
        let mut linker = Linker::<FnState>::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Function::add_to_linker::<FnState, HasSelf<FnState>>(&mut linker, |s| s)?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(bindings::FunctionPre::new)
            .map_err(|err| FnError::Invalid(format!("{err:#}")))?;
        Ok(FnModule {
            engine: engine.engine().clone(),
            component,
            pre,
            imports,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The compiled code, for [`FnModule::from_artifact`] in a later process with the same
    /// engine ([`FnEngine::artifact_key`]).
    pub fn artifact(&self) -> Result<Vec<u8>, FnError> {
        Ok(self.component.serialize()?)
    }

    /// The component's imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Runs one batch under `limits`, in a kept instance or a fresh one.
    pub async fn call(
        &self,
        batch: &[Message],
        config: Arc<BTreeMap<String, String>>,
        limits: &Limits,
    ) -> CallReport {
        let started = Instant::now();
        let kept = if limits.keep_instances > 0 {
            let mut idle = self.lock_idle();
            // Instances made under other limits (their store's memory cap, pipes) or that
            // saw other settings (a guest may cache them) are stale.
            idle.retain(|kept| kept.store.data().limits == *limits && *kept.config() == config);
            idle.pop()
        } else {
            None
        };
        let (mut store, instance) = match kept {
            Some(kept) => (kept.store, Some(kept.instance)),
            None => (self.store(limits), None),
        };
        let state = store.data_mut();
        state.config = config;
        state.limits = limits.clone();
        state.emits.clear();
        state.emits_left = limits.emits_per_message.saturating_mul(batch.len().max(1));
        state.emit_bytes = 0;
        state.emits_over = false;
        state.logs.clear();
        state.logs_dropped = 0;
        state.timed_out = false;
        let fuel = limits.fuel(batch.len());
        // Every tick the call yields to the executor (so functions share the host's threads
        // fairly), and past its deadline it is interrupted.
        let deadline = started + limits.deadline(batch.len());
        let (settled, instance) = match store.set_fuel(fuel) {
            Ok(()) => {
                store.set_epoch_deadline(1);
                store.epoch_deadline_callback(move |mut ctx| {
                    Ok(if Instant::now() >= deadline {
                        ctx.data_mut().timed_out = true;
                        UpdateDeadline::Interrupt
                    } else {
                        UpdateDeadline::Yield(1)
                    })
                });
                // The epoch callback only runs while wasm runs: a guest blocked in a host
                // call (a clock, a poll) ends here instead, a tick past its deadline.
                let end = tokio::time::Instant::from_std(deadline + TICK);
                match tokio::time::timeout_at(end, self.run(&mut store, instance, batch)).await {
                    Ok(ran) => ran,
                    Err(_) => {
                        store.data_mut().timed_out = true;
                        (Err(DEADLINE_EXCEEDED.to_owned()), None)
                    }
                }
            }
            Err(err) => (Err(format!("cannot set the call's fuel: {err}")), None),
        };
        let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let state = store.data_mut();
        let timed_out = state.timed_out;
        // Held emits are bounded per call; a batch whose emits pass the budget fails, so
        // the runner splits it (one message's emits always fit).
        let (settled, instance) = match settled {
            Ok(_) if state.emits_over => {
                let budget = limits.emit_budget();
                let why = format!("the call's emits passed {budget} bytes (the batch is split)");
                (Err(why), None)
            }
            ran => (ran, instance),
        };
        for level in ["stdout", "stderr"] {
            let printed = if level == "stdout" {
                state.stdout.take()
            } else {
                state.stderr.take()
            };
            for line in String::from_utf8_lossy(&printed)
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                state.log_line(level, line);
            }
        }
        let emits = if settled.is_ok() {
            std::mem::take(&mut state.emits)
        } else {
            Vec::new()
        };
        let report = CallReport {
            logs: std::mem::take(&mut state.logs),
            logs_dropped: state.logs_dropped,
            timed_out: timed_out && settled.is_err(),
            settled,
            emits,
            fuel_used,
            elapsed: started.elapsed(),
        };
        if let Some(instance) = instance {
            self.keep(store, instance, limits);
        }
        report
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a settled call's instance for the next call, unless enough are kept, its
    /// memory grew past the limit, or what it printed nears its pipes' capacity.
    fn keep(&self, store: Store<FnState>, instance: bindings::Function, limits: &Limits) {
        let state = store.data();
        let printed_max = limits.log_line_bytes_max * PRINTED_LINES / 2;
        if state.limiter.memory_bytes > limits.keep_memory_bytes
            || state.stdout.read > printed_max
            || state.stderr.read > printed_max
        {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < limits.keep_instances {
            idle.push(Kept { store, instance });
        }
    }

    /// A fresh store: WASI without capabilities, the memory and instance limits.
    fn store(&self, limits: &Limits) -> Store<FnState> {
        let stdout = Printed::new(limits.log_line_bytes_max * PRINTED_LINES);
        let stderr = Printed::new(limits.log_line_bytes_max * PRINTED_LINES);
        let wasi = WasiCtx::builder()
            .stdout(stdout.pipe.clone())
            .stderr(stderr.pipe.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits_of_store = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .instances(INSTANCES_PER_CALL)
            .tables(INSTANCES_PER_CALL)
            .memories(INSTANCES_PER_CALL)
            .trap_on_grow_failure(true)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(HOST_RESOURCES_MAX);
        let state = FnState {
            wasi,
            table,
            limiter: CallLimiter {
                limits: limits_of_store,
                memory_bytes: 0,
            },
            stdout,
            stderr,
            config: Arc::default(),
            limits: limits.clone(),
            emits: Vec::new(),
            emits_left: 0,
            emit_bytes: 0,
            emits_over: false,
            logs: Vec::new(),
            logs_dropped: 0,
            timed_out: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
    }

    /// Instantiates (unless `kept`) and calls; the instance back when the call settled.
    async fn run(
        &self,
        store: &mut Store<FnState>,
        kept: Option<bindings::Function>,
        batch: &[Message],
    ) -> (Settled, Option<bindings::Function>) {
        let instance = match kept {
            Some(instance) => instance,
            None => match self.pre.instantiate_async(&mut *store).await {
                Ok(instance) => instance,
                Err(err) => return (Err(why(&err)), None),
            },
        };
        let outcomes = match instance.call_handle(&mut *store, batch).await {
            Ok(outcomes) => outcomes,
            Err(err) => return (Err(why(&err)), None),
        };
        if outcomes.len() != batch.len() {
            let wrong = format!(
                "the function returned {} outcomes for {} messages",
                outcomes.len(),
                batch.len()
            );
            return (Err(wrong), None);
        }
        (Ok(outcomes), Some(instance))
    }
}

/// Why a call failed, in words (without the wasm backtrace).
fn why(err: &wasmtime::Error) -> String {
    let root = err.root_cause().to_string();
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => "out of fuel (the call's instruction budget)".into(),
        Some(Trap::Interrupt) => DEADLINE_EXCEEDED.into(),
        Some(Trap::UnreachableCodeReached) => {
            "the function panicked or aborted (its stderr is in the log)".into()
        }
        _ if root.contains("resource table has no free keys") => format!(
            "over the limit of {HOST_RESOURCES_MAX} host resources (streams, pollables) held at \
             once"
        ),
        _ if root.contains("growing memory") => {
            format!("out of memory: over the instance's memory limit ({root})")
        }
        Some(trap) => format!("trap: {trap}"),
        None => root,
    }
}
