//! The message model: ids, names, what a producer sends and what a consumer reads.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Longest topic or group name, in bytes.
pub const NAME_BYTES_MAX: usize = 127;
/// Longest tag, in bytes.
pub const TAG_BYTES_MAX: usize = 127;
/// Longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 255;
/// Most keys on one message.
pub const KEYS_MAX: usize = 32;
/// Most properties on one message.
pub const PROPERTIES_MAX: usize = 64;
/// Longest property name or value, in bytes.
pub const PROPERTY_BYTES_MAX: usize = 4096;
/// Default largest message body (RocketMQ's default).
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// The one reserved property a producer may set: deliver the message at this time (ms since
/// the Unix epoch), not before. The broker keeps it in a system topic until then.
pub const PROP_DELIVER_AT: &str = "%DELIVER_AT";
/// Longest delay a message may ask for (RocketMQ 5 allows up to 40 days too).
pub const DELAY_MS_MAX: u64 = 40 * 24 * 3600 * 1000;
/// Set by the broker on a message sent back for another try: how many times a consumer
/// group has failed it so far (1 on its first retry).
pub const PROP_RECONSUME: &str = "%RECONSUME";
/// Set by the broker on a retried or dead-lettered message: the topic it was first sent to.
pub const PROP_ORIGIN_TOPIC: &str = "%ORIGIN_TOPIC";
/// Set by the broker on a dead letter: why it was given up (the function's reason, or the
/// last failure).
pub const PROP_DLQ_REASON: &str = "%DLQ_REASON";
/// Prefix of a group's retry topic: `%RETRY%<group>`.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic: `%DLQ%<group>`.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// A message's unique 128-bit id, printed as 32 lowercase hex digits. Producers make it
/// (UUIDv7, time-ordered) and keep it across retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u128);

impl MessageId {
    /// The millisecond timestamp of a UUIDv7 id (its top 48 bits).
    pub fn v7_timestamp_ms(self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for MessageId {
    /// 32 lowercase hex digits, written nibble by nibble (ids are printed for every message
    /// a function reads: `{:032x}` took a measurable share of that).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = DIGITS[((self.0 >> (124 - 4 * i)) & 0xf) as usize];
        }
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for MessageId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "message id {text:?} is not 32 hex digits (e.g. 0190f3c2a1b27c3d8e4f5a6b7c8d9e0f)"
            ));
        }
        u128::from_str_radix(&hex, 16)
            .map(MessageId)
            .map_err(|err| format!("message id {text:?}: {err}"))
    }
}

/// A validated topic or group name: `[A-Za-z0-9_.-]`, 1 to 127 bytes. System names (retry and
/// dead-letter topics) start with `%` and are refused from users.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Validates a user-supplied name.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.starts_with('%') {
            return Err(format!(
                "name {text:?} starts with '%', which is reserved for system topics"
            ));
        }
        Self::check_chars(text)?;
        Ok(Name(text.to_owned()))
    }

    fn check_chars(text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Err("name is empty: use 1 to 127 characters from [A-Za-z0-9_.-]".into());
        }
        if text.len() > NAME_BYTES_MAX {
            return Err(format!(
                "name is {} bytes long: the maximum is {NAME_BYTES_MAX}",
                text.len()
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(format!(
                "name {:?} contains {bad:?}: only [A-Za-z0-9_.-] are allowed",
                text.escape_debug().to_string()
            ));
        }
        if text == "." || text == ".." {
            return Err(format!("name {text:?} is not allowed"));
        }
        Ok(())
    }

    /// Validates the name of a topic to read: a user name, or a group's retry or
    /// dead-letter topic (`%RETRY%<group>`, `%DLQ%<group>`), which the broker creates and
    /// clients read, query and route but never create or send to.
    pub fn readable(text: &str) -> Result<Self, String> {
        let Some(group) = text
            .strip_prefix(RETRY_PREFIX)
            .or_else(|| text.strip_prefix(DLQ_PREFIX))
        else {
            return Self::new(text);
        };
        if text.len() > NAME_BYTES_MAX {
            return Err(format!(
                "name is {} bytes long: the maximum is {NAME_BYTES_MAX}",
                text.len()
            ));
        }
        Self::new(group)
            .map(|_| Name(text.to_owned()))
            .map_err(|err| format!("{text:?} names no group's retry or dead-letter topic: {err}"))
    }

    /// The retry topic of `group`.
    pub fn retry_topic(group: &Name) -> Name {
        Name(format!("{RETRY_PREFIX}{group}"))
    }

    /// The dead-letter topic of `group`.
    pub fn dlq_topic(group: &Name) -> Name {
        Name(format!("{DLQ_PREFIX}{group}"))
    }

    /// True for a retry topic's name.
    pub fn is_retry(&self) -> bool {
        self.0.starts_with(RETRY_PREFIX)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a producer sends: one message, before the broker assigns its queue offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The producer's id for the message; the broker assigns one when absent.
    pub msg_id: Option<MessageId>,
    /// Optional sub-type within the topic, for filtering.
    pub tag: Option<String>,
    /// Business keys for lookup.
    #[serde(deserialize_with = "crate::decode::keys")]
    pub keys: Vec<String>,
    /// Free-form properties.
    #[serde(deserialize_with = "crate::decode::properties")]
    pub properties: Vec<(String, String)>,
    /// The payload.
    pub body: Bytes,
    /// When the producer made the message (ms since the Unix epoch).
    pub born_ms: u64,
    /// CRC-32C of the body, checked by the broker before it stores the message.
    pub body_crc: u32,
}

impl SendMessage {
    /// A message with a body and a fresh checksum.
    pub fn new(msg_id: Option<MessageId>, body: Bytes, born_ms: u64) -> Self {
        SendMessage {
            msg_id,
            tag: None,
            keys: Vec::new(),
            properties: Vec::new(),
            body_crc: crc32c::crc32c(&body),
            body,
            born_ms,
        }
    }

    /// Checks every field against its limit; the error says what to fix.
    pub fn validate(&self, body_bytes_max: usize) -> Result<(), String> {
        if self.body.len() > body_bytes_max {
            return Err(format!(
                "message body is {} bytes: the maximum is {body_bytes_max}",
                self.body.len()
            ));
        }
        if let Some(tag) = &self.tag
            && (tag.is_empty() || tag.len() > TAG_BYTES_MAX || tag.contains(['|', '\0']))
        {
            return Err(format!(
                "tag {tag:?} is invalid: use 1 to {TAG_BYTES_MAX} bytes without '|' or NUL"
            ));
        }
        if self.keys.len() > KEYS_MAX {
            return Err(format!(
                "{} keys: the maximum is {KEYS_MAX}",
                self.keys.len()
            ));
        }
        if let Some(key) = self
            .keys
            .iter()
            .find(|key| key.is_empty() || key.len() > KEY_BYTES_MAX)
        {
            return Err(format!(
                "key {key:?} is invalid: use 1 to {KEY_BYTES_MAX} bytes"
            ));
        }
        if self.properties.len() > PROPERTIES_MAX {
            return Err(format!(
                "{} properties: the maximum is {PROPERTIES_MAX}",
                self.properties.len()
            ));
        }
        if self.properties.iter().any(|(k, v)| {
            k.is_empty() || k.len() > PROPERTY_BYTES_MAX || v.len() > PROPERTY_BYTES_MAX
        }) {
            return Err(format!(
                "a property name is empty or a name or value exceeds {PROPERTY_BYTES_MAX} bytes"
            ));
        }
        Ok(())
    }

    /// [`SendMessage::validate`], plus the rule for producers: property names starting with
    /// `%` are the broker's, except [`PROP_DELIVER_AT`] (a time in ms).
    pub fn validate_from_producer(&self, body_bytes_max: usize) -> Result<(), String> {
        self.validate(body_bytes_max)?;
        self.check_reserved_properties()
    }

    /// Property names starting with `%` are the broker's, except [`PROP_DELIVER_AT`] (a time
    /// in ms), which a producer sets to delay a message.
    pub fn check_reserved_properties(&self) -> Result<(), String> {
        for (name, value) in &self.properties {
            if name == PROP_DELIVER_AT {
                if value.parse::<u64>().is_err() {
                    return Err(format!(
                        "property {PROP_DELIVER_AT} is {value:?}: give a time in milliseconds since the Unix epoch"
                    ));
                }
            } else if name.starts_with('%') {
                return Err(format!(
                    "property {name:?} starts with '%', which is reserved for the broker's own properties (retries, delays, origins): rename it"
                ));
            }
        }
        Ok(())
    }

    /// True when `body_crc` matches the body.
    pub fn checksum_ok(&self) -> bool {
        crc32c::crc32c(&self.body) == self.body_crc
    }
}

/// A stored message as a consumer or a query sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Topic name.
    pub topic: String,
    /// Queue within the topic.
    pub queue_id: u32,
    /// Offset within the queue.
    pub offset: u64,
    /// Unique id.
    pub msg_id: MessageId,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Keys.
    #[serde(deserialize_with = "crate::decode::keys")]
    pub keys: Vec<String>,
    /// Properties.
    #[serde(deserialize_with = "crate::decode::properties")]
    pub properties: Vec<(String, String)>,
    /// Payload.
    pub body: Bytes,
    /// Producer's timestamp (ms).
    pub born_ms: u64,
    /// Broker's timestamp when stored (ms).
    pub stored_ms: u64,
    /// Position of the record in the broker's commit log.
    pub log_pos: u64,
    /// CRC-32C of the body.
    pub body_crc: u32,
}

impl StoredMessage {
    /// True when `body_crc` matches the body.
    pub fn checksum_ok(&self) -> bool {
        crc32c::crc32c(&self.body) == self.body_crc
    }

    /// A property's value.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many times a consumer group failed this message before (0 unless it comes from
    /// a retry or dead-letter topic).
    pub fn reconsume_times(&self) -> u32 {
        self.property(PROP_RECONSUME)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The topic the message was sent to: its own, or for a retried or dead-lettered
    /// message, the topic it first went to.
    pub fn origin_topic(&self) -> &str {
        self.property(PROP_ORIGIN_TOPIC).unwrap_or(&self.topic)
    }
}

/// The 32-bit tag hash kept in the consume index (frozen: low 32 bits of xxh3-64 of the
/// tag's UTF-8 bytes; 0 means "no tag").
pub fn tag_hash(tag: Option<&str>) -> u32 {
    match tag {
        None => 0,
        Some(tag) => (xxhash_rust::xxh3::xxh3_64(tag.as_bytes()) as u32).max(1),
    }
}

#[cfg(test)]
mod tests;
