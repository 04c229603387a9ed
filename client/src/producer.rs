//! [`Producer`]: sends with round-robin queue selection, sharding-key ordering, batching,
//! timeouts and retries that keep the message id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quiver_proto::requests::msg::{SendRequest, SendResponse};
use quiver_proto::requests::route::TopicRoute;
use quiver_proto::{ErrorCode, MessageId, RequestCode, SendMessage};

use crate::client::Client;
use crate::error::ClientError;
use crate::fault::{BrokerCounters, FaultTolerance};

/// Default retries after a retryable failure.
pub const RETRIES_DEFAULT: u32 = 2;

/// A message to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Optional tag.
    pub tag: Option<String>,
    /// Keys for lookup.
    pub keys: Vec<String>,
    /// Properties.
    pub properties: Vec<(String, String)>,
    /// Payload.
    pub body: Bytes,
}

impl Message {
    /// A message with a body.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            body: body.into(),
            ..Message::default()
        }
    }

    /// Sets the tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Adds a key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Adds a property.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// The wire form with a fresh id and checksum.
    fn into_send(self, msg_id: MessageId) -> SendMessage {
        let mut send = SendMessage::new(Some(msg_id), self.body, now_ms());
        send.tag = self.tag;
        send.keys = self.keys;
        send.properties = self.properties;
        send
    }
}

/// Where a sent message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendResult {
    /// Its id.
    pub msg_id: MessageId,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue.
    pub offset: u64,
}

/// Sends messages to topics.
pub struct Producer {
    client: Client,
    retries: u32,
    next_queue: AtomicU64,
    // Mutex: touched twice per send, never across an await.
    fault: Mutex<FaultTolerance>,
    // Every queue each topic has been seen with, so an ordered key keeps its queue when a
    // broker drops out of the route (Mutex: touched once per ordered send).
    ordered_queues: Mutex<HashMap<String, Vec<QueueSlot>>>,
    ordered_reroute: bool,
}

/// A queue an ordered key can map to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct QueueSlot {
    broker_name: String,
    queue_id: u32,
}

/// Default back-off of a broker after a failed send (RocketMQ's 30 s).
pub const FAILURE_BACKOFF_DEFAULT: Duration = Duration::from_secs(30);

/// A target queue: broker address and queue id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    broker_name: String,
    addr: String,
    queue_id: u32,
}

impl Producer {
    /// A producer with the default retries.
    pub fn new(client: Client) -> Self {
        Producer {
            client,
            retries: RETRIES_DEFAULT,
            next_queue: AtomicU64::new(0),
            fault: Mutex::new(FaultTolerance::new(FAILURE_BACKOFF_DEFAULT)),
            ordered_queues: Mutex::new(HashMap::new()),
            ordered_reroute: false,
        }
    }

    /// Sets how many times a retryable failure is retried.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets how long a broker is avoided after a failed send (slow answers earn multiples).
    pub fn with_failure_backoff(self, backoff: Duration) -> Self {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = FaultTolerance::new(backoff);
        self
    }

    /// Lets ordered sends move to another queue when their queue's broker is gone (order
    /// across the move is then not guaranteed). Off by default: the send fails instead.
    pub fn with_ordered_reroute(mut self, reroute: bool) -> Self {
        self.ordered_reroute = reroute;
        self
    }

    /// Attempts, failures and avoidances per broker.
    pub fn counters(&self) -> HashMap<String, BrokerCounters> {
        self.fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counters()
    }

    /// Sync send: returns after the broker acknowledged the message as durable.
    pub async fn send(&self, topic: &str, message: Message) -> Result<SendResult, ClientError> {
        let results = self.send_batch(topic, vec![message]).await?;
        Ok(results[0])
    }

    /// Sends with an explicit id (what a retry of an earlier attempt does).
    pub async fn send_with_id(
        &self,
        topic: &str,
        msg_id: MessageId,
        message: Message,
    ) -> Result<SendResult, ClientError> {
        let batch = vec![message.into_send(msg_id)];
        let results = self.send_prepared(topic, batch, None).await?;
        Ok(results[0])
    }

    /// Batch send: all messages go to one queue with consecutive offsets, all or nothing.
    pub async fn send_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<Vec<SendResult>, ClientError> {
        let batch = messages
            .into_iter()
            .map(|m| m.into_send(new_id()))
            .collect();
        self.send_prepared(topic, batch, None).await
    }

    /// Ordered send: every message with the same sharding key goes to the same queue, in
    /// send order. It is not re-routed when that queue fails; the error is returned.
    pub async fn send_ordered(
        &self,
        topic: &str,
        sharding_key: &str,
        message: Message,
    ) -> Result<SendResult, ClientError> {
        let batch = vec![message.into_send(new_id())];
        let results = self.send_prepared(topic, batch, Some(sharding_key)).await?;
        Ok(results[0])
    }

    /// Oneway send: no acknowledgement; returns once the request reached the broker's QUIC
    /// stack. Nothing tells the caller whether it was stored.
    pub async fn send_oneway(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<MessageId, ClientError> {
        let msg_id = new_id();
        let route = self.client.route(topic).await?;
        let target = self.pick(&route, None, None)?;
        let request = SendRequest {
            topic: topic.to_owned(),
            queue_id: target.queue_id,
            messages: vec![message.into_send(msg_id)],
        };
        self.client
            .oneway(&target.addr, RequestCode::MsgSend, &request)
            .await?;
        Ok(msg_id)
    }

    async fn send_prepared(
        &self,
        topic: &str,
        messages: Vec<SendMessage>,
        sharding_key: Option<&str>,
    ) -> Result<Vec<SendResult>, ClientError> {
        let mut attempt = 0;
        let mut failed_broker: Option<String> = None;
        loop {
            let result = self
                .attempt(topic, &messages, sharding_key, failed_broker.as_deref())
                .await;
            match result {
                Ok(response) => return Ok(results(&response)),
                Err((broker, err)) if attempt < self.retries && err.is_retryable() => {
                    tracing::debug!(topic, attempt, broker = broker.as_deref(), cause = %err, "send failed; retrying on another broker");
                    failed_broker = broker;
                    attempt += 1;
                }
                Err((_, err)) => {
                    if err.code() == Some(ErrorCode::TopicNotFound)
                        || err.code() == Some(ErrorCode::QueueOutOfRange)
                    {
                        self.client.forget_route(topic);
                    }
                    return Err(err);
                }
            }
        }
    }

    /// One attempt; a failure names the broker it happened on.
    async fn attempt(
        &self,
        topic: &str,
        messages: &[SendMessage],
        sharding_key: Option<&str>,
        avoid: Option<&str>,
    ) -> Result<SendResponse, (Option<String>, ClientError)> {
        let route = self.client.route(topic).await.map_err(|err| (None, err))?;
        let target = self
            .pick(&route, sharding_key, avoid)
            .map_err(|err| (None, err))?;
        let request = SendRequest {
            topic: topic.to_owned(),
            queue_id: target.queue_id,
            messages: messages.to_vec(),
        };
        let started = Instant::now();
        let result = self
            .client
            .call(&target.addr, RequestCode::MsgSend, &request)
            .await;
        // Only failures that say something about the broker count against it.
        let failed = result.as_ref().is_err_and(ClientError::is_retryable);
        self.fault().note_outcome(
            &target.broker_name,
            started.elapsed(),
            failed,
            Instant::now(),
        );
        result.map_err(|err| (Some(target.broker_name), err))
    }

    fn fault(&self) -> std::sync::MutexGuard<'_, FaultTolerance> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sharding key's queue (never re-routed), or the next queue in round-robin order
    /// whose broker is not backing off and is not `avoid` (the broker that just failed); when
    /// every broker is backing off, the next queue not on `avoid`, else the next queue.
    fn pick(
        &self,
        route: &TopicRoute,
        sharding_key: Option<&str>,
        avoid: Option<&str>,
    ) -> Result<Target, ClientError> {
        let targets: Vec<Target> = route
            .queues
            .iter()
            .filter(|q| q.writable)
            .filter_map(|q| {
                let addr = route
                    .brokers
                    .iter()
                    .find(|b| b.broker_name == q.broker_name)?
                    .addr
                    .clone();
                let broker_name = q.broker_name.clone();
                Some((0..q.queues).map(move |queue_id| Target {
                    broker_name: broker_name.clone(),
                    addr: addr.clone(),
                    queue_id,
                }))
            })
            .flatten()
            .collect();
        if targets.is_empty() {
            return Err(ClientError::Invalid(format!(
                "topic {} has no writable queue",
                route.topic
            )));
        }
        let mut fault = self.fault();
        if let Some(key) = sharding_key {
            let target = if self.ordered_reroute {
                targets[(sharding_hash(key) % targets.len() as u64) as usize].clone()
            } else {
                let mut known = self
                    .ordered_queues
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let slots = known.entry(route.topic.clone()).or_default();
                ordered_target(slots, &targets, key).map_err(|slot| {
                    ClientError::Invalid(format!(
                        "ordered send to topic {}: the key's queue {} is on broker {}, which is not in the route (down?); it is not re-routed, to keep the key's order: retry later, or opt in with Producer::with_ordered_reroute",
                        route.topic, slot.queue_id, slot.broker_name
                    ))
                })?
            };
            fault.note_attempt(&target.broker_name, Instant::now());
            return Ok(target);
        }
        let start = self.next_queue.fetch_add(1, Ordering::Relaxed) as usize;
        let now = Instant::now();
        let in_order = (0..targets.len()).map(|i| &targets[(start + i) % targets.len()]);
        let mut avoided = Vec::new();
        let mut chosen = None;
        for target in in_order.clone() {
            if Some(target.broker_name.as_str()) == avoid {
                continue;
            }
            if fault.is_available(&target.broker_name, now) {
                chosen = Some(target.clone());
                break;
            }
            if !avoided.contains(&target.broker_name) {
                avoided.push(target.broker_name.clone());
            }
        }
        let chosen = chosen
            .or_else(|| {
                in_order
                    .clone()
                    .find(|t| Some(t.broker_name.as_str()) != avoid)
                    .cloned()
            })
            .unwrap_or_else(|| targets[start % targets.len()].clone());
        for broker in avoided.iter().filter(|b| **b != chosen.broker_name) {
            fault.note_avoided(broker);
        }
        fault.note_attempt(&chosen.broker_name, now);
        Ok(chosen)
    }
}

/// The queue of `key` among every queue the topic has been seen with (`known`, which only
/// grows), or the missing slot when its broker is not among the current `targets`.
fn ordered_target(
    known: &mut Vec<QueueSlot>,
    targets: &[Target],
    key: &str,
) -> Result<Target, QueueSlot> {
    for target in targets {
        let slot = QueueSlot {
            broker_name: target.broker_name.clone(),
            queue_id: target.queue_id,
        };
        if let Err(at) = known.binary_search(&slot) {
            known.insert(at, slot);
        }
    }
    let slot = &known[(sharding_hash(key) % known.len() as u64) as usize];
    targets
        .iter()
        .find(|t| t.broker_name == slot.broker_name && t.queue_id == slot.queue_id)
        .cloned()
        .ok_or_else(|| slot.clone())
}

fn results(response: &SendResponse) -> Vec<SendResult> {
    response
        .msg_ids
        .iter()
        .enumerate()
        .map(|(idx, msg_id)| SendResult {
            msg_id: *msg_id,
            queue_id: response.queue_id,
            offset: response.first_offset + idx as u64,
        })
        .collect()
}

/// A new UUIDv7 message id.
pub fn new_id() -> MessageId {
    MessageId(uuid::Uuid::now_v7().as_u128())
}

/// Stable hash of a sharding key (FNV-1a 64; frozen so ordering survives client upgrades).
fn sharding_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
