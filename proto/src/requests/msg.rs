//! `msg.*` and `queue.*` bodies.

use serde::{Deserialize, Serialize};

use crate::{MessageId, SendMessage, StoredMessage};

/// Most messages in one send batch.
pub const BATCH_LEN_MAX: usize = 10_000;
/// Default largest send batch (sum of bodies).
pub const BATCH_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// Most messages one pull returns.
pub const PULL_MSGS_MAX: u32 = 10_000;
/// Most bytes one pull returns.
pub const PULL_BYTES_MAX: u32 = 32 << 20;
/// Longest long-poll wait.
pub const PULL_WAIT_MS_MAX: u32 = 60_000;
/// Most messages one query returns.
pub const QUERY_MSGS_MAX: u32 = 1_000;
/// Most body bytes one query returns (at least one message is returned).
pub const QUERY_BYTES_MAX: usize = 32 << 20;

/// `msg.send`: one message or a batch, all to one queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// Topic name.
    pub topic: String,
    /// Target queue.
    pub queue_id: u32,
    /// One or more messages; a batch is stored all-or-nothing with consecutive offsets.
    pub messages: Vec<SendMessage>,
}

/// Response to `msg.send`, after the batch is durable in the broker's flush mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// Queue the batch went to.
    pub queue_id: u32,
    /// Offset of the first message; message `i` has `first_offset + i`.
    pub first_offset: u64,
    /// Ids, in batch order (assigned by the broker where the request had none).
    pub msg_ids: Vec<MessageId>,
}

/// `msg.pull`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Topic name.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// First offset wanted.
    pub offset: u64,
    /// At most this many messages.
    pub max_msgs: u32,
    /// At most about this many body bytes (at least one message is returned).
    pub max_bytes: u32,
    /// Long-poll: wait up to this long for a message at `offset`.
    pub wait_ms: u32,
}

/// Response to `msg.pull`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResponse {
    /// Messages from `offset` on, in offset order.
    pub messages: Vec<StoredMessage>,
    /// Where the next pull should start.
    pub next_offset: u64,
    /// Smallest offset still stored.
    pub min_offset: u64,
    /// One past the largest offset stored.
    pub max_offset: u64,
}

/// `msg.query_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryIdRequest {
    /// Topic name.
    pub topic: String,
    /// The id.
    pub msg_id: MessageId,
}

/// `msg.query_key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryKeyRequest {
    /// Topic name.
    pub topic: String,
    /// The key.
    pub key: String,
    /// Only messages stored at or after this time (ms).
    pub begin_ms: Option<u64>,
    /// Only messages stored before this time (ms).
    pub end_ms: Option<u64>,
    /// At most this many messages.
    pub max_msgs: u32,
}

/// Response to both queries: every stored copy, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Matches.
    pub messages: Vec<StoredMessage>,
}

/// `queue.offsets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOffsetsRequest {
    /// Topic name.
    pub topic: String,
}

/// One queue's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOffsets {
    /// Queue.
    pub queue_id: u32,
    /// Smallest offset still stored.
    pub min_offset: u64,
    /// One past the largest stored offset.
    pub max_offset: u64,
}

/// Response to `queue.offsets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOffsetsResponse {
    /// Every queue of the topic.
    pub queues: Vec<QueueOffsets>,
}

/// Decodes a `msg.send` body without copying message bodies: each body is a slice of
/// `frame_body` (a send batch is the largest thing on the wire; this saves a copy of it).
pub fn decode_send_request(frame_body: &bytes::Bytes) -> Result<SendRequest, crate::WireError> {
    let borrowed: SendRequestRef<'_> = crate::decode_body(frame_body)?;
    Ok(SendRequest {
        topic: borrowed.topic,
        queue_id: borrowed.queue_id,
        messages: borrowed
            .messages
            .into_iter()
            .map(|msg| SendMessage {
                msg_id: msg.msg_id,
                tag: msg.tag,
                keys: msg.keys,
                properties: msg.properties,
                body: frame_body.slice_ref(msg.body),
                born_ms: msg.born_ms,
                body_crc: msg.body_crc,
            })
            .collect(),
    })
}

/// [`SendRequest`] with borrowed bodies; field order mirrors it exactly (postcard is
/// positional).
#[derive(Deserialize)]
struct SendRequestRef<'a> {
    topic: String,
    queue_id: u32,
    #[serde(borrow)]
    messages: Vec<SendMessageRef<'a>>,
}

/// [`SendMessage`] with a borrowed body, in the same field order.
#[derive(Deserialize)]
struct SendMessageRef<'a> {
    msg_id: Option<MessageId>,
    tag: Option<String>,
    keys: Vec<String>,
    properties: Vec<(String, String)>,
    body: &'a [u8],
    born_ms: u64,
    body_crc: u32,
}
