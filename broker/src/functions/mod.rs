//! WASM consumer functions on this broker. A deployed function **is** the consumer group
//! `fn-<name>` (the prefix is reserved): the broker runs it as a member of that group over
//! its own queues, so offsets, lag, retry and dead-letter topics and the group tools are the
//! same as for remote consumers. Modules and their compiled artefacts live in the catalog.
//!
//! - `config.rs`: `[functions]` and each function's limits.
//! - `pool.rs`: the threads calls run on (never the QUIC threads).
//! - `settle.rs`: a batch's outcomes, bisecting failed calls (pure over the call).
//! - `runner.rs`: the group membership and one runner per leased queue.
//! - `call.rs`: calling the function over a batch; `write.rs`: writing what it produced.
//! - `code.rs`: what a version runs: a module, or Rust (the benchmarks' native baseline).
//! - `ops.rs`: upload, deploy, undeploy, rollback, list, describe, logs.
//! - `replay.rs`: a dry run of a module over stored messages.
//! - `logs.rs`, `stats.rs`: each function's log ring and counters.

mod call;
mod code;
pub mod config;
mod logs;
mod ops;
mod pool;
mod replay;
mod runner;
pub mod settle;
mod stats;
#[cfg(test)]
mod tests;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quiver_fnhost::{FnEngine, FnModule, artifact_checksum};

pub use self::code::{Code, NativeHandler};
use quiver_proto::requests::function::{FN_GROUP_PREFIX, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::config::FunctionsConfig;
use self::logs::FnLog;
use self::pool::CallPool;
use self::runner::Deployed;
use self::stats::FnStats;
use crate::clock::now_ms;
use crate::core::Core;
use crate::core::blocking;
use crate::store::{Refusal, StoreError};

/// The group a function runs as.
pub fn group_of(name: &str) -> String {
    format!("{FN_GROUP_PREFIX}{name}")
}

/// What a function keeps across its versions while the broker runs: counters and log.
pub struct FnShared {
    stats: FnStats,
    log: FnLog,
    /// Its last call ran past `pool::SLOW_CALL`: the next run on the low-priority threads.
    slow: std::sync::atomic::AtomicBool,
}

impl FnShared {
    fn new(log_lines: usize) -> Self {
        FnShared {
            stats: FnStats::default(),
            log: FnLog::new(log_lines),
            slow: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A line of the host's own about the function, in its log and the broker's.
    fn note(&self, version: u32, text: String) {
        warn!(version, "function: {text}");
        self.log.push(version, now_ms(), [("broker", text)], 0);
    }
}

/// A running version.
struct Running {
    version: u32,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The functions of this broker.
pub struct Functions {
    core: Arc<Core>,
    engine: Arc<FnEngine>,
    engine_key: u64,
    pool: Arc<CallPool>,
    config: FunctionsConfig,
    shared: Mutex<HashMap<String, Arc<FnShared>>>,
    /// Running versions; also serialises deploys, undeploys and rollbacks.
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    /// Functions that could not start, with why.
    failed: Mutex<HashMap<String, String>>,
    /// Writes emits to topics other brokers serve (`None`: a broker without name servers).
    peers: Option<Arc<quiver_client::Producer>>,
}

impl Functions {
    /// Starts the host and every function in the catalog (one that cannot load is reported
    /// by `fn describe` and the log; the broker runs on).
    pub async fn start(
        core: Arc<Core>,
        config: FunctionsConfig,
        peers: Option<Arc<quiver_client::Producer>>,
    ) -> Result<Arc<Self>, String> {
        let engine =
            FnEngine::new().map_err(|err| format!("cannot start the function host: {err}"))?;
        let functions = Arc::new(Functions {
            engine_key: engine.artifact_key(),
            engine: Arc::new(engine),
            pool: Arc::new(CallPool::new(config.threads)?),
            core,
            config,
            shared: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            peers,
        });
        let store = functions.core.store().clone();
        let records = blocking(move || store.catalog().functions())
            .await
            .map_err(|err| format!("cannot read the functions in the catalog: {err}"))?;
        let mut running = functions.running.lock().await;
        for (name, record) in records {
            match functions.load(&record.current.sha256).await {
                Ok((module, compiled)) => {
                    if compiled {
                        let mut record = record.clone();
                        record.compiles += 1;
                        if let Err(err) = functions.put(&name, Some(&record)).await {
                            warn!(function = name, "cannot count a compile: {err}");
                        }
                    }
                    info!(
                        function = name,
                        version = record.current.version,
                        compiled,
                        "function started"
                    );
                    functions.launch(&mut running, &name, record.current, Code::Wasm(module));
                }
                Err(err) => {
                    let why = format!(
                        "failed: cannot load version {}: {err}",
                        record.current.version
                    );
                    warn!(function = name, "{why}");
                    functions.lock_failed().insert(name, why);
                }
            }
        }
        drop(running);
        Ok(functions)
    }

    /// Stops every function (each commits what it finished and leaves its group), then the
    /// call threads.
    pub async fn shutdown(&self) {
        let mut running = self.running.lock().await;
        for (_, run) in running.drain() {
            run.stop.cancel();
            let _ = run.task.await;
        }
        self.pool.stop();
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shared_of(&self, name: &str) -> Arc<FnShared> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(FnShared::new(self.config.log_lines)))
            .clone()
    }

    /// A module ready to call: its stored artefact for this engine, or compiled (and its
    /// artefact stored). `true` when it was compiled.
    async fn load(&self, sha: &Sha256) -> Result<(Arc<FnModule>, bool), StoreError> {
        let (store, engine, key, sha) = (
            self.core.store().clone(),
            self.engine.clone(),
            self.engine_key,
            *sha,
        );
        blocking(move || {
            let catalog = store.catalog();
            if let Some((checksum, artifact)) = catalog.artifact(&sha, key)? {
                match FnModule::from_artifact(&engine, &artifact, checksum) {
                    Ok(module) => return Ok((Arc::new(module), false)),
                    Err(err) => warn!("stored artefact unusable, compiling again: {err}"),
                }
            }
            let Some(wasm) = catalog.module(&sha)? else {
                return Err(StoreError::invalid(
                    Refusal::ModuleMissing,
                    format!(
                        "module {} is not on this broker: upload it first (quiver fn deploy \
                         and replay do)",
                        hex(&sha)
                    ),
                ));
            };
            let module = FnModule::load(&engine, &wasm)
                .map_err(|err| StoreError::invalid(Refusal::InvalidModule, err.to_string()))?;
            let artifact = module
                .artifact()
                .map_err(|err| StoreError::invalid(Refusal::InvalidModule, err.to_string()))?;
            catalog.put_artifact(&sha, key, artifact_checksum(&artifact), &artifact)?;
            Ok((Arc::new(module), true))
        })
        .await
    }

    /// Stores a function's record (`None`: removes it) and drops what nothing names.
    async fn put(
        &self,
        name: &str,
        record: Option<&crate::store::catalog::FnRecord>,
    ) -> Result<(), StoreError> {
        let (store, name, record, key) = (
            self.core.store().clone(),
            name.to_owned(),
            record.cloned(),
            self.engine_key,
        );
        blocking(move || store.catalog().put_function(&name, record.as_ref(), key)).await
    }

    /// Starts `version` of `name` (the caller stopped any earlier one).
    fn launch(
        &self,
        running: &mut HashMap<String, Running>,
        name: &str,
        version: crate::store::catalog::FnVersion,
        code: Code,
    ) {
        let limits = match self.config.limits(&version.spec.limits) {
            Ok(limits) => limits,
            Err(err) => {
                self.lock_failed()
                    .insert(name.to_owned(), format!("failed: {err}"));
                return;
            }
        };
        self.lock_failed().remove(name);
        let number = version.version;
        let deployed = Arc::new(Deployed {
            name: name.to_owned(),
            config: Arc::new(version.spec.config.iter().cloned().collect()),
            version,
            code,
            host: self.config.host_limits(&limits),
            limits,
        });
        let ctx = Arc::new(runner::RunCtx {
            core: self.core.clone(),
            pool: self.pool.clone(),
            instances: Arc::new(tokio::sync::Semaphore::new(
                deployed.limits.instances as usize,
            )),
            deployed,
            shared: self.shared_of(name),
            batch_bytes_max: self.config.batch_bytes_max,
            commit_interval: std::time::Duration::from_millis(self.config.commit_interval_ms),
            member: format!("{name}-v{number}@{}", self.core.config().broker_name),
            next_queue: Default::default(),
            peers: self.peers.clone(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(runner::supervise(ctx, stop.clone()));
        running.insert(
            name.to_owned(),
            Running {
                version: number,
                stop,
                task,
            },
        );
    }
}

/// A SHA-256 in lowercase hex.
pub fn hex(sha: &Sha256) -> String {
    sha.iter().map(|b| format!("{b:02x}")).collect()
}
