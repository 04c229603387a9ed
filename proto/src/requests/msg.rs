//! `msg.*` and `queue.*` bodies.

use serde::{Deserialize, Serialize};

use crate::decode::{EncodedBytesMin, Reader, encoded_bytes_min};
use crate::message::{
    KEY_BYTES_MAX, KEYS_MAX, NAME_BYTES_MAX, PROPERTIES_MAX, PROPERTY_BYTES_MAX, TAG_BYTES_MAX,
};
use crate::requests::topic::QUEUES_MAX;
use crate::{Limit, MessageId, SendMessage, StoredMessage, WireError};

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
    #[serde(deserialize_with = "crate::decode::batch")]
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
    #[serde(deserialize_with = "crate::decode::seq::<_, _, BATCH_LEN_MAX>")]
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
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { PULL_MSGS_MAX as usize }>")]
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
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { QUERY_MSGS_MAX as usize }>")]
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
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { QUEUES_MAX as usize }>")]
    pub queues: Vec<QueueOffsets>,
}

/// `msg.pull_filtered`: `msg.pull` with a tag expression, applied on the broker (the
/// messages it skips are never read from the log); answered with a
/// [`crate::requests::group::GroupPullResponse`], which counts them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilteredPullRequest {
    /// Topic name.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// First offset to read.
    pub offset: u64,
    /// At most this many messages.
    pub max_msgs: u32,
    /// At most about this many body bytes (at least one message is returned).
    pub max_bytes: u32,
    /// Long-poll: wait up to this long for a matching message.
    pub wait_ms: u32,
    /// Tag expression: `*`, `A`, `A || B`.
    pub tags: String,
}

/// `queue.offset_at_time`: each queue's first offset stored at or after a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetAtTimeRequest {
    /// Topic name.
    pub topic: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// Answer to `queue.offset_at_time`: `(queue, offset)` for every queue of the topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetAtTimeResponse {
    /// `(queue, offset)`.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { QUEUES_MAX as usize }>")]
    pub queues: Vec<(u32, u64)>,
}

/// Decodes a `msg.send` body without copying message bodies: each body is a slice of
/// `frame_body` (a send batch is the largest thing on the wire; this saves a copy of it).
///
/// Every count and length is checked against its named maximum (the limits
/// [`SendMessage::validate`] enforces) and against the bytes that remain before anything is
/// reserved for it, and every `Vec` is reserved exactly: decoding `n` bytes allocates at most
/// [`crate::decode::DECODED_BYTES_PER_BYTE_MAX`] times `n`, however the bytes are spent.
pub fn decode_send_request(frame_body: &bytes::Bytes) -> Result<SendRequest, WireError> {
    let mut reader = Reader::new(frame_body);
    let topic = reader.str_max(Limit::NameBytes, NAME_BYTES_MAX)?.to_owned();
    let queue_id = reader.u32()?;
    let n_msgs = reader.count(Limit::BatchLen, BATCH_LEN_MAX, MSG_ENCODED_BYTES_MIN)?;
    let mut messages = Vec::with_capacity(n_msgs);
    for _ in 0..n_msgs {
        reader.begin(MSG_ENCODED_BYTES_MIN);
        messages.push(decode_send_message(&mut reader, frame_body)?);
    }
    reader.finish()?;
    Ok(SendRequest {
        topic,
        queue_id,
        messages,
    })
}

/// Smallest encoding of a [`SendMessage`]: one byte each for no id, no tag, no keys, no
/// properties, an empty body, `born_ms` and `body_crc`.
pub const MSG_ENCODED_BYTES_MIN: usize = 7;

encoded_bytes_min! {
    SendMessage = MSG_ENCODED_BYTES_MIN;
    // topic, queue_id, offset, msg_id, tag, keys, properties, body, born, stored, log_pos, crc.
    StoredMessage = 12;
    MessageId = 1;
    QueueOffsets = 3;
}

/// One [`SendMessage`], fields in declaration order (postcard is positional).
fn decode_send_message(
    reader: &mut Reader<'_>,
    frame_body: &bytes::Bytes,
) -> Result<SendMessage, WireError> {
    let msg_id = if reader.option()? {
        Some(MessageId(reader.u128()?))
    } else {
        None
    };
    let tag = if reader.option()? {
        Some(reader.str_max(Limit::TagBytes, TAG_BYTES_MAX)?.to_owned())
    } else {
        None
    };
    let n_keys = reader.count(Limit::KeysPerMsg, KEYS_MAX, String::ENCODED_BYTES_MIN)?;
    let mut keys = Vec::with_capacity(n_keys);
    for _ in 0..n_keys {
        reader.begin(String::ENCODED_BYTES_MIN);
        keys.push(reader.str_max(Limit::KeyBytes, KEY_BYTES_MAX)?.to_owned());
    }
    let property_bytes_min = <(String, String)>::ENCODED_BYTES_MIN;
    let n_properties = reader.count(Limit::PropertiesPerMsg, PROPERTIES_MAX, property_bytes_min)?;
    let mut properties = Vec::with_capacity(n_properties);
    for _ in 0..n_properties {
        reader.begin(property_bytes_min);
        let name = reader.str_max(Limit::PropertyBytes, PROPERTY_BYTES_MAX)?;
        let value = reader.str_max(Limit::PropertyBytes, PROPERTY_BYTES_MAX)?;
        properties.push((name.to_owned(), value.to_owned()));
    }
    let body = frame_body.slice_ref(reader.bytes()?);
    Ok(SendMessage {
        msg_id,
        tag,
        keys,
        properties,
        body,
        born_ms: reader.u64()?,
        body_crc: reader.u32()?,
    })
}
