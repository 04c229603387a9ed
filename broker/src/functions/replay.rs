//! Dry-run replay: an uploaded module over stored messages, through the same calls and
//! bisection as a deployed function, writing nothing: no emit, retry or dead letter is
//! stored and no offset moves. The answer counts the outcomes and shows the first emits,
//! failures and log lines.

use std::sync::Arc;
use std::time::Duration;

use quiver_proto::Name;
use quiver_proto::requests::function::{
    FN_CONFIG_MAX, FnLimits, FnReplay, FnReplayResponse, FnSpec, REPLAY_BODY_SHOWN,
    REPLAY_MSGS_MAX, REPLAY_SHOWN_MAX, ReplayEmit, ReplayFailure, ReplayFrom,
};
use quiver_proto::requests::group::StartFrom;

use super::call::call_batch;
use super::code::Code;
use super::runner::Deployed;
use super::settle::Fate;
use super::{FnShared, Functions};
use crate::core::{PullSpec, TagExpr};
use crate::store::catalog::FnVersion;
use crate::store::{Refusal, StoreError};

/// Messages one replay call gets.
const REPLAY_BATCH: u32 = 256;

impl Functions {
    /// Runs `req`'s module over stored messages; writes nothing.
    pub async fn replay(&self, req: FnReplay) -> Result<FnReplayResponse, StoreError> {
        let invalid = |m: String| StoreError::invalid(Refusal::InvalidArgument, m);
        Name::readable(&req.topic).map_err(|err| invalid(format!("topic {err}")))?;
        let tags = TagExpr::parse(&req.tags).map_err(|err| invalid(err.to_string()))?;
        if !(1..=REPLAY_MSGS_MAX).contains(&req.limit) {
            return Err(invalid(format!(
                "limit {} must be 1 to {REPLAY_MSGS_MAX}",
                req.limit
            )));
        }
        if req.config.len() > FN_CONFIG_MAX {
            return Err(invalid(format!("more than {FN_CONFIG_MAX} config entries")));
        }
        let meta = self.core.store().topic(&req.topic)?;
        let queues: Vec<u32> = match req.queue_id {
            Some(queue) => {
                crate::store::check_queue(&req.topic, &meta, queue)?;
                vec![queue]
            }
            None => (0..meta.queues).collect(),
        };
        let (module, _) = self.load(&req.sha256).await?;
        let limits = self.config.limits(&FnLimits::default()).map_err(invalid)?;
        let instances = Arc::new(tokio::sync::Semaphore::new(limits.instances as usize));
        let deployed = Arc::new(Deployed {
            name: "replay".into(),
            config: Arc::new(req.config.iter().cloned().collect()),
            version: FnVersion {
                version: 0,
                sha256: req.sha256,
                spec: FnSpec {
                    topic: req.topic.clone(),
                    tags: req.tags.clone(),
                    config: req.config.clone(),
                    max_retries: 0,
                    retry_delay_ms: 0,
                    batch_max: REPLAY_BATCH,
                    batch_wait_ms: 0,
                    start: StartFrom::First,
                    limits: limits.clone(),
                },
                deployed_ms: 0,
            },
            code: Code::Wasm(module),
            host: self.config.host_limits(&limits),
            limits,
        });
        let shared = FnShared::new(self.config.log_lines);
        let mut answer = FnReplayResponse {
            handled: 0,
            acked: 0,
            retried: 0,
            dead_lettered: 0,
            failed: 0,
            filtered: 0,
            emits_total: 0,
            emits: Vec::new(),
            failures: Vec::new(),
            logs: Vec::new(),
        };
        let mut left = req.limit;
        for queue_id in queues {
            let range = self.core.store().queue_range(&meta, queue_id);
            let mut offset = match req.from {
                ReplayFrom::Offset(offset) => offset.clamp(range.min, range.max),
                ReplayFrom::Time(ms) => self.core.offset_at_time(&req.topic, queue_id, ms).await?,
            };
            while left > 0 && offset < range.max {
                let spec = PullSpec {
                    topic: req.topic.clone(),
                    queue_id,
                    offset,
                    max_msgs: left.min(REPLAY_BATCH),
                    max_bytes: self.config.batch_bytes_max,
                    tags: tags.clone(),
                };
                let read = self.core.pull(&spec, Duration::ZERO).await?;
                answer.filtered += read
                    .next_offset
                    .saturating_sub(offset)
                    .saturating_sub(read.messages.len() as u64);
                if read.next_offset <= offset {
                    break;
                }
                offset = read.next_offset;
                if read.messages.is_empty() {
                    continue;
                }
                left -= read.messages.len() as u32;
                let settled =
                    call_batch(&self.pool, &deployed, &instances, &shared, &read.messages).await;
                answer.handled += read.messages.len() as u64;
                answer.emits_total += settled.emits.len() as u64;
                for emit in settled.emits {
                    if answer.emits.len() < REPLAY_SHOWN_MAX {
                        let shown = &emit.body[..emit.body.len().min(REPLAY_BODY_SHOWN)];
                        answer.emits.push(ReplayEmit {
                            topic: emit.topic,
                            tag: emit.tag,
                            keys: emit.keys,
                            body: String::from_utf8_lossy(shown).into_owned(),
                            body_len: emit.body.len() as u64,
                        });
                    }
                }
                for (msg, fate) in read.messages.iter().zip(settled.fates) {
                    let shown = match fate {
                        Fate::Ack => {
                            answer.acked += 1;
                            continue;
                        }
                        Fate::Retry(delay) => {
                            answer.retried += 1;
                            match delay {
                                Some(ms) => format!("retry after {ms} ms"),
                                None => "retry".into(),
                            }
                        }
                        Fate::DeadLetter(reason) => {
                            answer.dead_lettered += 1;
                            format!("dead-letter: {reason}")
                        }
                        Fate::Failed(why) => {
                            answer.failed += 1;
                            format!("failed: {why}")
                        }
                    };
                    if answer.failures.len() < REPLAY_SHOWN_MAX {
                        answer.failures.push(ReplayFailure {
                            queue_id,
                            offset: msg.offset,
                            outcome: shown,
                        });
                    }
                }
            }
        }
        answer.logs = shared.log.read(0, self.config.log_lines).0;
        Ok(answer)
    }
}
