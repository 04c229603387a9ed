//! Function administration: modules go to each broker by `fn.upload` (resumable chunks,
//! skipped when the broker has the module), then `fn.deploy` / `fn.rollback` /
//! `fn.undeploy` go to every live broker (each runs the function over its own queues);
//! listings, descriptions and logs are asked of every broker; a replay runs on the brokers
//! serving the topic.

use std::time::Duration;

use quiver_proto::requests::function::{
    FnDeploy, FnDeployResponse, FnInfo, FnList, FnListResponse, FnLogs, FnLogsResponse, FnName,
    FnReplay, FnReplayResponse, FnSpec, FnSummary, FnUpload, FnUploadResponse, ReplayFrom, Sha256,
    UPLOAD_CHUNK_MAX,
};
use quiver_proto::{ErrorCode, RequestCode};
use sha2::Digest;

use crate::admin::{Admin, on_broker};
use crate::error::ClientError;

/// A broker's answer.
#[derive(Clone, Debug)]
pub struct OnBroker<T> {
    /// Broker name.
    pub broker_name: String,
    /// Its answer.
    pub value: T,
}

/// A module's SHA-256.
pub fn module_sha256(wasm: &[u8]) -> Sha256 {
    sha2::Sha256::digest(wasm).into()
}

/// What a replay runs over.
#[derive(Clone, Debug)]
pub struct ReplaySpec {
    /// Topic.
    pub topic: String,
    /// One queue, or every queue.
    pub queue_id: Option<u32>,
    /// Tag expression.
    pub tags: String,
    /// Where to start in each queue.
    pub from: ReplayFrom,
    /// Most messages per broker.
    pub limit: u32,
    /// `--config` settings.
    pub config: Vec<(String, String)>,
}

impl Admin {
    /// Puts `wasm` on the broker at `addr` (nothing is sent when it has it already).
    pub async fn upload_module(&self, addr: &str, wasm: &[u8]) -> Result<Sha256, ClientError> {
        let sha256 = module_sha256(wasm);
        let total = wasm.len() as u64;
        // An empty chunk asks where the broker stands (complete, or how much it holds).
        let mut offset = 0u64;
        let mut chunk: &[u8] = &[];
        let mut stalls = 0;
        loop {
            let request = FnUpload {
                sha256,
                total,
                offset,
                chunk: bytes::Bytes::copy_from_slice(chunk),
            };
            let answer: FnUploadResponse = self
                .client()
                .call(addr, RequestCode::FnUpload, &request)
                .await?;
            if answer.complete {
                return Ok(sha256);
            }
            if answer.received == offset && !chunk.is_empty() {
                stalls += 1;
                if stalls > 3 {
                    return Err(ClientError::Invalid(format!(
                        "the broker at {addr} keeps refusing the module's chunk at byte {offset}"
                    )));
                }
            }
            offset = answer.received.min(total);
            let start = offset as usize;
            chunk = &wasm[start..(start + UPLOAD_CHUNK_MAX).min(wasm.len())];
        }
    }

    /// Deploys `wasm` as function `name` on every live broker; returns each one's version.
    pub async fn deploy_function(
        &self,
        name: &str,
        wasm: &[u8],
        spec: FnSpec,
    ) -> Result<Vec<OnBroker<FnDeployResponse>>, ClientError> {
        let mut out = Vec::new();
        for broker in self.live_brokers().await? {
            let request = FnDeploy {
                name: name.to_owned(),
                sha256: self.upload_module(&broker.1, wasm).await?,
                spec: spec.clone(),
            };
            let answer = self
                .with_module(&broker.1, wasm, || {
                    self.client().call::<_, FnDeployResponse>(
                        &broker.1,
                        RequestCode::FnDeploy,
                        &request,
                    )
                })
                .await
                .map_err(|err| on_broker(&broker.0, err))?;
            out.push(OnBroker {
                broker_name: broker.0,
                value: answer,
            });
        }
        Ok(out)
    }

    /// Runs `call`; when the broker dropped the module meanwhile, uploads it again and
    /// calls once more.
    async fn with_module<T, F, Fut>(
        &self,
        addr: &str,
        wasm: &[u8],
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        match call().await {
            Err(err) if err.code() == Some(ErrorCode::ModuleMissing) => {
                self.upload_module(addr, wasm).await?;
                call().await
            }
            other => other,
        }
    }

    /// Goes back to the previous version on every live broker that runs `name`.
    pub async fn rollback_function(
        &self,
        name: &str,
    ) -> Result<Vec<OnBroker<FnDeployResponse>>, ClientError> {
        self.on_function_brokers(name, RequestCode::FnRollback)
            .await
    }

    /// Stops `name` on every live broker that runs it.
    pub async fn undeploy_function(&self, name: &str) -> Result<Vec<OnBroker<()>>, ClientError> {
        self.on_function_brokers(name, RequestCode::FnUndeploy)
            .await
    }

    /// Every function of every live broker.
    pub async fn list_functions(&self) -> Result<Vec<OnBroker<FnSummary>>, ClientError> {
        let mut out = Vec::new();
        for (broker, addr) in self.live_brokers().await? {
            let listing: FnListResponse = self
                .client()
                .call(&addr, RequestCode::FnList, &FnList {})
                .await
                .map_err(|err| on_broker(&broker, err))?;
            out.extend(listing.functions.into_iter().map(|value| OnBroker {
                broker_name: broker.clone(),
                value,
            }));
        }
        Ok(out)
    }

    /// `name` on each live broker that runs it.
    pub async fn describe_function(
        &self,
        name: &str,
    ) -> Result<Vec<OnBroker<FnInfo>>, ClientError> {
        self.on_function_brokers(name, RequestCode::FnDescribe)
            .await
    }

    /// Log lines of `name` on `broker` after `after`, waiting up to `wait` for one.
    pub async fn function_logs(
        &self,
        addr: &str,
        name: &str,
        after: u64,
        wait: Duration,
    ) -> Result<FnLogsResponse, ClientError> {
        let request = FnLogs {
            name: name.to_owned(),
            after,
            max: quiver_proto::requests::function::FN_LOG_LINES_MAX,
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        let timeout = wait + self.client().options().timeout;
        self.client()
            .call_within(addr, RequestCode::FnLogs, &request, timeout)
            .await
    }

    /// `(broker name, address)` of every live broker running `name`.
    pub async fn function_brokers(&self, name: &str) -> Result<Vec<(String, String)>, ClientError> {
        let mut out = Vec::new();
        let mut missing = None;
        for (broker, addr) in self.live_brokers().await? {
            let request = FnName {
                name: name.to_owned(),
            };
            match self
                .client()
                .call::<_, FnInfo>(&addr, RequestCode::FnDescribe, &request)
                .await
            {
                Ok(_) => out.push((broker, addr)),
                Err(err) if err.code() == Some(ErrorCode::FunctionNotFound) => missing = Some(err),
                Err(err) => return Err(on_broker(&broker, err)),
            }
        }
        match (out.is_empty(), missing) {
            (true, Some(err)) => Err(err),
            _ => Ok(out),
        }
    }

    /// Runs `wasm` over stored messages on each broker serving the topic, writing nothing.
    pub async fn replay_function(
        &self,
        wasm: &[u8],
        spec: &ReplaySpec,
    ) -> Result<Vec<OnBroker<FnReplayResponse>>, ClientError> {
        let route = self.client().refresh_route(&spec.topic).await?;
        let mut out = Vec::new();
        for broker in &route.brokers {
            let request = FnReplay {
                sha256: self.upload_module(&broker.addr, wasm).await?,
                topic: spec.topic.clone(),
                queue_id: spec.queue_id,
                tags: spec.tags.clone(),
                from: spec.from,
                limit: spec.limit,
                config: spec.config.clone(),
            };
            let answer = self
                .with_module(&broker.addr, wasm, || {
                    // A replay runs a call per batch: allow it the longest deadline.
                    self.client().call_within::<_, FnReplayResponse>(
                        &broker.addr,
                        RequestCode::FnReplay,
                        &request,
                        Duration::from_secs(600),
                    )
                })
                .await
                .map_err(|err| on_broker(&broker.broker_name, err))?;
            out.push(OnBroker {
                broker_name: broker.broker_name.clone(),
                value: answer,
            });
        }
        Ok(out)
    }

    async fn live_brokers(&self) -> Result<Vec<(String, String)>, ClientError> {
        let brokers = self.cluster().await?;
        if brokers.is_empty() {
            return Err(ClientError::Invalid(
                "no broker is registered with the name servers".into(),
            ));
        }
        Ok(brokers
            .into_iter()
            .map(|b| (b.broker_name, b.addr))
            .collect())
    }

    async fn on_function_brokers<T: for<'a> serde::Deserialize<'a>>(
        &self,
        name: &str,
        code: RequestCode,
    ) -> Result<Vec<OnBroker<T>>, ClientError> {
        let mut out = Vec::new();
        for (broker, addr) in self.function_brokers(name).await? {
            let request = FnName {
                name: name.to_owned(),
            };
            let value = self
                .client()
                .call(&addr, code, &request)
                .await
                .map_err(|err| on_broker(&broker, err))?;
            out.push(OnBroker {
                broker_name: broker,
                value,
            });
        }
        Ok(out)
    }
}
