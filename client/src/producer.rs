//! [`Producer`]: sends with round-robin queue selection, sharding-key ordering, batching,
//! timeouts and retries that keep the message id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quiver_proto::requests::msg::{SendRequest, SendResponse};
use quiver_proto::requests::route::TopicRoute;
use quiver_proto::{ErrorCode, MessageId, RequestCode, SendMessage};

use crate::answer;
use crate::batcher::{AutoBatch, Batcher};
use crate::client::Client;
use crate::error::ClientError;
use crate::fault::{BrokerCounters, FaultTolerance};
use crate::ordered;
use crate::queue::{MessageQueue, RoutedQueue, routed_queues};

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

    /// Delivers the message at `ms` (milliseconds since the Unix epoch), not before: the
    /// broker keeps it until then (at most `DELAY_MS_MAX` ahead). A time already past
    /// delivers it at once.
    pub fn with_delivery_at(mut self, ms: u64) -> Self {
        self.properties
            .retain(|(k, _)| k != quiver_proto::message::PROP_DELIVER_AT);
        self.properties.push((
            quiver_proto::message::PROP_DELIVER_AT.into(),
            ms.to_string(),
        ));
        self
    }

    /// Delivers the message `delay` from now, not before.
    pub fn with_delay(self, delay: std::time::Duration) -> Self {
        let at = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self.with_delivery_at(at)
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    /// Its id.
    pub msg_id: MessageId,
    /// The queue it is stored in.
    pub queue: MessageQueue,
    /// Offset in the queue.
    pub offset: u64,
}

/// Sends messages to topics. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Producer {
    core: Arc<Core>,
    batcher: Option<Arc<Batcher>>,
}

/// What every send path shares (also the auto-batch tasks).
pub(crate) struct Core {
    client: Client,
    retries: u32,
    next_queue: AtomicU64,
    // Mutex: touched twice per send, never across an await.
    fault: Mutex<FaultTolerance>,
    ordered_reroute: bool,
}

/// Default back-off of a broker after a failed send (RocketMQ's 30 s).
pub const FAILURE_BACKOFF_DEFAULT: Duration = Duration::from_secs(30);

impl Producer {
    /// A producer with the default retries.
    pub fn new(client: Client) -> Self {
        Producer {
            core: Arc::new(Core {
                client,
                retries: RETRIES_DEFAULT,
                next_queue: AtomicU64::new(0),
                fault: Mutex::new(FaultTolerance::new(FAILURE_BACKOFF_DEFAULT)),
                ordered_reroute: false,
            }),
            batcher: None,
        }
    }

    fn core_mut(&mut self) -> &mut Core {
        Arc::get_mut(&mut self.core).expect("a producer is configured before its first send")
    }

    /// Sets how many times a retryable failure is retried.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.core_mut().retries = retries;
        self
    }

    /// Sets how long a broker is avoided after a failed send (slow answers earn multiples).
    pub fn with_failure_backoff(mut self, backoff: Duration) -> Self {
        self.core_mut().fault = Mutex::new(FaultTolerance::new(backoff));
        self
    }

    /// Lets ordered sends move to another queue while their queue's broker is gone, failing
    /// or backing off (only those keys move, and back when it recovers; order across a move is
    /// not guaranteed). Off by default: such a send fails with
    /// [`ClientError::OrderedQueueUnavailable`] instead.
    pub fn with_ordered_reroute(mut self, reroute: bool) -> Self {
        self.core_mut().ordered_reroute = reroute;
        self
    }

    /// Coalesces concurrent [`Producer::send`]s to one topic into batch requests (see
    /// [`AutoBatch`]); each send still gets its own result. Off by default.
    pub fn with_auto_batch(mut self, config: AutoBatch) -> Self {
        self.batcher = Some(Arc::new(Batcher::new(config)));
        self
    }

    /// Attempts, failures and avoidances per broker.
    pub fn counters(&self) -> HashMap<String, BrokerCounters> {
        self.core.fault().counters()
    }

    /// Sync send: returns after the broker acknowledged the message as durable.
    pub async fn send(&self, topic: &str, message: Message) -> Result<SendResult, ClientError> {
        let message = message.into_send(new_id());
        if let Some(batcher) = &self.batcher {
            return batcher.send(&self.core, topic, message).await;
        }
        let mut results = self.core.send_prepared(topic, &[message], None).await?;
        Ok(results.remove(0))
    }

    /// Sends with an explicit id (what a retry of an earlier attempt does).
    pub async fn send_with_id(
        &self,
        topic: &str,
        msg_id: MessageId,
        message: Message,
    ) -> Result<SendResult, ClientError> {
        let batch = vec![message.into_send(msg_id)];
        let mut results = self.core.send_prepared(topic, &batch, None).await?;
        Ok(results.remove(0))
    }

    /// Batch send: all messages go to one queue with consecutive offsets, all or nothing.
    pub async fn send_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<Vec<SendResult>, ClientError> {
        let batch: Vec<SendMessage> = messages
            .into_iter()
            .map(|m| m.into_send(new_id()))
            .collect();
        self.core.send_prepared(topic, &batch, None).await
    }

    /// Ordered send: every message with the same sharding key goes to the same queue, in
    /// send order. When that queue's broker fails, retries go to the same queue, then
    /// [`ClientError::OrderedQueueUnavailable`] is returned; the key is not moved unless
    /// [`Producer::with_ordered_reroute`] allows it.
    pub async fn send_ordered(
        &self,
        topic: &str,
        sharding_key: &str,
        message: Message,
    ) -> Result<SendResult, ClientError> {
        let batch = vec![message.into_send(new_id())];
        let mut results = self
            .core
            .send_prepared(topic, &batch, Some(sharding_key))
            .await?;
        Ok(results.remove(0))
    }

    /// Oneway send: no acknowledgement; returns once the request reached the broker's QUIC
    /// stack. Nothing tells the caller whether it was stored.
    pub async fn send_oneway(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<MessageId, ClientError> {
        let core = &self.core;
        let msg_id = new_id();
        let route = core.client.route(topic).await?;
        let target = core.pick(&route, None, None)?;
        let request = SendRequest {
            topic: topic.to_owned(),
            queue_id: target.queue.queue_id,
            messages: vec![message.into_send(msg_id)],
        };
        core.client
            .oneway(&target.addr, RequestCode::MsgSend, &request)
            .await?;
        Ok(msg_id)
    }
}

impl Core {
    /// Sends `messages` as one batch, retrying retryable failures (ordered sends on their
    /// queue, others on another broker).
    pub(crate) async fn send_prepared(
        &self,
        topic: &str,
        messages: &[SendMessage],
        sharding_key: Option<&str>,
    ) -> Result<Vec<SendResult>, ClientError> {
        let mut attempt = 0;
        let mut failed_broker: Option<String> = None;
        let strict_order = sharding_key.is_some() && !self.ordered_reroute;
        loop {
            let result = self
                .attempt(topic, messages, sharding_key, failed_broker.as_deref())
                .await;
            match result {
                Ok((queue, response)) => {
                    return answer::send_results(queue, &response, messages.len());
                }
                Err((queue, err)) if attempt < self.retries && err.is_retryable() => {
                    // Ordered sends retry their own queue; others move to another broker.
                    tracing::debug!(topic, attempt, queue = ?queue, cause = %err, "send failed; retrying");
                    failed_broker = queue.map(|q| q.broker_name);
                    attempt += 1;
                }
                Err((queue, err)) => {
                    if err.code() == Some(ErrorCode::TopicNotFound)
                        || err.code() == Some(ErrorCode::QueueOutOfRange)
                    {
                        self.client.forget_route(topic);
                    }
                    return Err(match queue {
                        Some(queue) if strict_order && err.is_retryable() => {
                            // Learn at once whether the broker has left the route.
                            self.client.forget_route(topic);
                            ClientError::OrderedQueueUnavailable {
                                queue,
                                cause: err.to_string(),
                            }
                        }
                        _ => err,
                    });
                }
            }
        }
    }

    /// One attempt; a failure names the queue it happened on.
    async fn attempt(
        &self,
        topic: &str,
        messages: &[SendMessage],
        sharding_key: Option<&str>,
        avoid: Option<&str>,
    ) -> Result<(MessageQueue, SendResponse), (Option<MessageQueue>, ClientError)> {
        let route = self.client.route(topic).await.map_err(|err| (None, err))?;
        let target = self
            .pick(&route, sharding_key, avoid)
            .map_err(|err| (None, err))?;
        let request = SendRequest {
            topic: topic.to_owned(),
            queue_id: target.queue.queue_id,
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
            &target.queue.broker_name,
            started.elapsed(),
            failed,
            Instant::now(),
        );
        match result {
            Ok(response) => Ok((target.queue, response)),
            Err(err) => Err((Some(target.queue), err)),
        }
    }

    fn fault(&self) -> std::sync::MutexGuard<'_, FaultTolerance> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sharding key's queue (see [`ordered::choose`]), or the next queue in round-robin order
    /// whose broker is not backing off and is not `avoid` (the broker that just failed); when
    /// every broker is backing off, the next queue not on `avoid`, else the next queue.
    fn pick(
        &self,
        route: &TopicRoute,
        sharding_key: Option<&str>,
        avoid: Option<&str>,
    ) -> Result<RoutedQueue, ClientError> {
        let targets: Vec<RoutedQueue> = routed_queues(route)
            .into_iter()
            .filter(|q| q.writable)
            .collect();
        if targets.is_empty() {
            return Err(ClientError::Invalid(format!(
                "topic {} has no writable queue",
                route.topic
            )));
        }
        let mut fault = self.fault();
        let now = Instant::now();
        if let Some(key) = sharding_key {
            let usable = |t: &RoutedQueue| {
                Some(t.queue.broker_name.as_str()) != avoid
                    && fault.is_available(&t.queue.broker_name, now)
            };
            let target = ordered::choose(
                &ordered::layout(route),
                &targets,
                key,
                self.ordered_reroute,
                usable,
            )
            .map_err(|home| ClientError::OrderedQueueUnavailable {
                cause: format!(
                    "broker {} has left the topic's route (down?)",
                    home.broker_name
                ),
                queue: home,
            })?;
            fault.note_attempt(&target.queue.broker_name, now);
            return Ok(target);
        }
        let start = self.next_queue.fetch_add(1, Ordering::Relaxed) as usize;
        let in_order = (0..targets.len()).map(|i| &targets[(start + i) % targets.len()]);
        let mut avoided = Vec::new();
        let mut chosen = None;
        for target in in_order.clone() {
            let broker = &target.queue.broker_name;
            if Some(broker.as_str()) == avoid {
                continue;
            }
            if fault.is_available(broker, now) {
                chosen = Some(target.clone());
                break;
            }
            if !avoided.contains(broker) {
                avoided.push(broker.clone());
            }
        }
        let chosen = chosen
            .or_else(|| {
                in_order
                    .clone()
                    .find(|t| Some(t.queue.broker_name.as_str()) != avoid)
                    .cloned()
            })
            .unwrap_or_else(|| targets[start % targets.len()].clone());
        for broker in avoided.iter().filter(|b| **b != chosen.queue.broker_name) {
            fault.note_avoided(broker);
        }
        fault.note_attempt(&chosen.queue.broker_name, now);
        Ok(chosen)
    }
}

/// A new UUIDv7 message id.
pub fn new_id() -> MessageId {
    MessageId(uuid::Uuid::now_v7().as_u128())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
