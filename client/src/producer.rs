//! [`Producer`]: sends with round-robin queue selection, sharding-key ordering, batching,
//! timeouts and retries that keep the message id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quiver_proto::requests::msg::{SendRequest, SendResponse};
use quiver_proto::requests::route::TopicRoute;
use quiver_proto::{ErrorCode, MessageId, RequestCode, SendMessage};

use crate::client::Client;
use crate::error::ClientError;

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
}

/// A target queue: broker address and queue id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
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
        }
    }

    /// Sets how many times a retryable failure is retried.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
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
        let target = self.pick(&route, None)?;
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
        loop {
            let result = self.attempt(topic, &messages, sharding_key).await;
            match result {
                Ok(response) => return Ok(results(&response)),
                Err(err) if attempt < self.retries && err.is_retryable() => {
                    tracing::debug!(topic, attempt, cause = %err, "send failed; retrying");
                    attempt += 1;
                }
                Err(err) => {
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

    async fn attempt(
        &self,
        topic: &str,
        messages: &[SendMessage],
        sharding_key: Option<&str>,
    ) -> Result<SendResponse, ClientError> {
        let route = self.client.route(topic).await?;
        let target = self.pick(&route, sharding_key)?;
        let request = SendRequest {
            topic: topic.to_owned(),
            queue_id: target.queue_id,
            messages: messages.to_vec(),
        };
        self.client
            .call(&target.addr, RequestCode::MsgSend, &request)
            .await
    }

    /// Round-robin over every writable queue of every broker, or the sharding key's queue.
    fn pick(&self, route: &TopicRoute, sharding_key: Option<&str>) -> Result<Target, ClientError> {
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
                Some((0..q.queues).map(move |queue_id| Target {
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
        let idx = match sharding_key {
            Some(key) => (xxhash_key(key) % targets.len() as u64) as usize,
            None => {
                (self.next_queue.fetch_add(1, Ordering::Relaxed) % targets.len() as u64) as usize
            }
        };
        Ok(targets[idx].clone())
    }
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
fn xxhash_key(key: &str) -> u64 {
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
