//! The `fn.*` operations: upload, deploy, undeploy, rollback, list, describe, logs.

use std::time::Duration;

use quiver_proto::Name;
use quiver_proto::requests::function::{
    FN_LOG_LINES_MAX, FnDeploy, FnDeployResponse, FnInfo, FnLogs, FnLogsResponse, FnSpec,
    FnSummary, FnUpload, FnUploadResponse, UPLOAD_CHUNK_MAX,
};
use quiver_proto::requests::group::GroupInfo;
use quiver_proto::requests::msg::{PULL_MSGS_MAX, PULL_WAIT_MS_MAX};
use sha2::Digest;
use tracing::info;

use super::{Code, Functions, group_of, hex};
use crate::clock::now_ms;
use crate::core::groups::{BACKOFF_MS_MAX, MAX_RETRIES_MAX};
use crate::core::{TagExpr, blocking};
use crate::store::catalog::{FnRecord, FnVersion, GroupSettings, Upload};
use crate::store::{Refusal, StoreError};

/// Longest `--config` key and value.
const CONFIG_KEY_BYTES_MAX: usize = 255;
const CONFIG_VALUE_BYTES_MAX: usize = 4096;

fn invalid(message: String) -> StoreError {
    StoreError::invalid(Refusal::InvalidArgument, message)
}

fn not_found(name: &str) -> StoreError {
    StoreError::invalid(
        Refusal::FunctionNotFound,
        format!("function {name} is not deployed on this broker (quiver fn list shows what is)"),
    )
}

/// Checks a function name: a user name whose group `fn-<name>` is a valid name too.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    Name::new(name).map_err(|err| invalid(format!("function {err}")))?;
    Name::new(&group_of(name)).map_err(|err| invalid(format!("function group {err}")))?;
    Ok(())
}

/// Checks a deploy's settings.
fn check_spec(spec: &FnSpec) -> Result<(), StoreError> {
    Name::new(&spec.topic).map_err(|err| invalid(format!("topic {err}")))?;
    TagExpr::parse(&spec.tags).map_err(|err| invalid(err.to_string()))?;
    for (key, value) in &spec.config {
        if key.is_empty() || key.len() > CONFIG_KEY_BYTES_MAX {
            return Err(invalid(format!(
                "config key {key:?} must be 1 to {CONFIG_KEY_BYTES_MAX} bytes"
            )));
        }
        if value.len() > CONFIG_VALUE_BYTES_MAX {
            return Err(invalid(format!(
                "config value of {key} is over {CONFIG_VALUE_BYTES_MAX} bytes"
            )));
        }
    }
    if !(1..=PULL_MSGS_MAX).contains(&spec.batch_max) {
        return Err(invalid(format!(
            "batch size {} must be 1 to {PULL_MSGS_MAX}",
            spec.batch_max
        )));
    }
    if spec.batch_wait_ms > PULL_WAIT_MS_MAX {
        return Err(invalid(format!(
            "batch window {} ms is over {PULL_WAIT_MS_MAX} ms",
            spec.batch_wait_ms
        )));
    }
    if spec.max_retries > MAX_RETRIES_MAX {
        return Err(invalid(format!(
            "max retries {} is over {MAX_RETRIES_MAX}",
            spec.max_retries
        )));
    }
    if spec.retry_delay_ms > BACKOFF_MS_MAX {
        return Err(invalid(format!(
            "retry delay {} ms is over the maximum delay of 40 days",
            spec.retry_delay_ms
        )));
    }
    Ok(())
}

impl Functions {
    /// Stores a chunk of a module.
    pub async fn upload(&self, req: FnUpload) -> Result<FnUploadResponse, StoreError> {
        let max = self.config.module_bytes_max;
        if req.total > max {
            return Err(StoreError::invalid(
                Refusal::ModuleTooLarge,
                format!(
                    "module of {} bytes is over this broker's limit of {max} bytes \
                     (functions.module_bytes_max)",
                    req.total
                ),
            ));
        }
        if req.total == 0 {
            return Err(invalid("an empty module is not a component".into()));
        }
        if req.chunk.len() > UPLOAD_CHUNK_MAX {
            return Err(invalid(format!(
                "chunk of {} bytes is over {UPLOAD_CHUNK_MAX}",
                req.chunk.len()
            )));
        }
        let store = self.core.store().clone();
        let sha = req.sha256;
        let upload = blocking(move || {
            store
                .catalog()
                .upload_chunk(&sha, req.total, req.offset, &req.chunk, |module| {
                    let got: [u8; 32] = sha2::Sha256::digest(module).into();
                    if got == sha {
                        Ok(())
                    } else {
                        Err(invalid(format!(
                            "the uploaded module's SHA-256 is {}, not {} as announced: \
                             upload it again",
                            hex(&got),
                            hex(&sha)
                        )))
                    }
                })
        })
        .await?;
        Ok(match upload {
            Upload::Partial(received) => FnUploadResponse {
                received,
                complete: false,
            },
            Upload::Complete => FnUploadResponse {
                received: req.total,
                complete: true,
            },
        })
    }

    /// Deploys an uploaded module as `req.name`: a new function, or its next version,
    /// which takes over at the committed offsets.
    pub async fn deploy(&self, req: FnDeploy) -> Result<FnDeployResponse, StoreError> {
        check_name(&req.name)?;
        check_spec(&req.spec)?;
        self.config
            .limits(&req.spec.limits)
            .map_err(|err| invalid(format!("limits: {err}")))?;
        let mut running = self.running.lock().await;
        let (module, compiled) = self.load(&req.sha256).await?;
        let existing = self.record(&req.name).await?;
        let current = FnVersion {
            version: existing.as_ref().map_or(1, FnRecord::next_version),
            sha256: req.sha256,
            spec: req.spec,
            deployed_ms: now_ms(),
        };
        let record = FnRecord {
            previous: existing.as_ref().map(|r| r.current.clone()),
            compiles: existing.as_ref().map_or(0, |r| r.compiles) + u64::from(compiled),
            current: current.clone(),
        };
        self.set_group(&req.name, &record.current.spec).await?;
        self.put(&req.name, Some(&record)).await?;
        if let Some(old) = running.remove(&req.name) {
            old.stop.cancel();
            let _ = old.task.await;
        }
        info!(
            function = req.name,
            version = current.version,
            compiled,
            sha256 = hex(&current.sha256),
            "function deployed"
        );
        let version = current.version;
        self.launch(&mut running, &req.name, current, Code::Wasm(module));
        Ok(FnDeployResponse { version, compiled })
    }

    /// Goes back to the previous version (which becomes the one a second rollback returns
    /// from), at the committed offsets.
    pub async fn rollback(&self, name: &str) -> Result<FnDeployResponse, StoreError> {
        check_name(name)?;
        let mut running = self.running.lock().await;
        let record = self.record(name).await?.ok_or_else(|| not_found(name))?;
        let Some(previous) = record.previous.clone() else {
            return Err(invalid(format!(
                "function {name} has no previous version on this broker to roll back to"
            )));
        };
        let (module, compiled) = self.load(&previous.sha256).await?;
        let record = FnRecord {
            current: previous.clone(),
            previous: Some(record.current),
            compiles: record.compiles + u64::from(compiled),
        };
        self.set_group(name, &previous.spec).await?;
        self.put(name, Some(&record)).await?;
        if let Some(old) = running.remove(name) {
            old.stop.cancel();
            let _ = old.task.await;
        }
        info!(
            function = name,
            version = previous.version,
            "function rolled back"
        );
        let version = previous.version;
        self.launch(&mut running, name, previous, Code::Wasm(module));
        Ok(FnDeployResponse { version, compiled })
    }

    /// Stops a function and forgets its versions; its group's offsets stay (a later deploy
    /// of the name resumes there).
    pub async fn undeploy(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let mut running = self.running.lock().await;
        if self.record(name).await?.is_none() {
            return Err(not_found(name));
        }
        if let Some(old) = running.remove(name) {
            old.stop.cancel();
            let _ = old.task.await;
        }
        self.put(name, None).await?;
        self.lock_failed().remove(name);
        info!(function = name, "function undeployed");
        Ok(())
    }

    /// Every function of this broker.
    pub async fn list(&self) -> Result<Vec<FnSummary>, StoreError> {
        let store = self.core.store().clone();
        let records = blocking(move || store.catalog().functions()).await?;
        let mut all = Vec::with_capacity(records.len());
        for (name, record) in records {
            let lag = match self.core.group_describe(&group_of(&name)).await {
                Ok(info) => info.queues.iter().map(|q| q.lag).sum(),
                Err(_) => 0,
            };
            all.push(FnSummary {
                state: self.state(&name, record.current.version).await,
                version: record.current.version,
                sha256: record.current.sha256,
                topic: record.current.spec.topic,
                tags: record.current.spec.tags,
                name,
                lag,
            });
        }
        Ok(all)
    }

    /// One function: versions, settings, offsets, lag, counters, handler times.
    pub async fn describe(&self, name: &str) -> Result<FnInfo, StoreError> {
        check_name(name)?;
        let record = self.record(name).await?.ok_or_else(|| not_found(name))?;
        let group: GroupInfo = self.core.group_describe(&group_of(name)).await?;
        let shared = self.shared_of(name);
        let (p50, p99) = shared.stats.handler_percentiles();
        Ok(FnInfo {
            name: name.to_owned(),
            version: record.current.version,
            sha256: record.current.sha256,
            previous: record.previous.as_ref().map(|p| (p.version, p.sha256)),
            state: self.state(name, record.current.version).await,
            deployed_ms: record.current.deployed_ms,
            spec: record.current.spec,
            queues: group.queues,
            counters: shared.stats.counters(record.compiles),
            handler_p50_us: p50,
            handler_p99_us: p99,
            last_error: shared.stats.last_error(),
        })
    }

    /// Log lines after `req.after`, waiting up to `req.wait_ms` for one.
    pub async fn logs(&self, req: &FnLogs) -> Result<FnLogsResponse, StoreError> {
        check_name(&req.name)?;
        if self.record(&req.name).await?.is_none() {
            return Err(not_found(&req.name));
        }
        let shared = self.shared_of(&req.name);
        let max = req.max.clamp(1, FN_LOG_LINES_MAX) as usize;
        let wait = Duration::from_millis(u64::from(req.wait_ms.min(PULL_WAIT_MS_MAX)));
        let deadline = tokio::time::Instant::now() + wait;
        let mut newest = shared.log.watch();
        loop {
            newest.borrow_and_update();
            let (lines, dropped) = shared.log.read(req.after, max);
            if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(FnLogsResponse { lines, dropped });
            }
            tokio::select! {
                changed = newest.changed() => if changed.is_err() {
                    return Ok(FnLogsResponse { lines, dropped });
                },
                () = tokio::time::sleep_until(deadline) => {}
                () = self.core.shutting_down() => return Ok(FnLogsResponse { lines, dropped }),
            }
        }
    }

    async fn record(&self, name: &str) -> Result<Option<FnRecord>, StoreError> {
        let (store, name) = (self.core.store().clone(), name.to_owned());
        blocking(move || store.catalog().function(&name)).await
    }

    /// The group's retry settings from the function's.
    async fn set_group(&self, name: &str, spec: &FnSpec) -> Result<(), StoreError> {
        let settings = GroupSettings {
            max_retries: spec.max_retries,
            backoff_ms: vec![spec.retry_delay_ms],
            strategy: "average".into(),
        };
        let (store, group) = (self.core.store().clone(), group_of(name));
        blocking(move || store.catalog().set_group(&group, &settings)).await
    }

    async fn state(&self, name: &str, version: u32) -> String {
        if let Some(why) = self.lock_failed().get(name) {
            return why.clone();
        }
        match self.running.lock().await.get(name) {
            Some(run) if run.version == version && !run.task.is_finished() => "running".into(),
            _ => "stopped".into(),
        }
    }
}
