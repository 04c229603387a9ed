//! Errors: [`WireError`] for bytes that do not decode, [`ErrorCode`] for the stable numeric
//! status of a response, [`ErrorBody`] for the human message that goes with it.

use serde::{Deserialize, Serialize};

/// Why bytes did not decode. Never a panic: every decoder returns this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// More bytes are needed; not a failure while reading a stream.
    #[error("incomplete frame: need {need} bytes, have {have}")]
    Incomplete {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The frame does not start with the magic bytes.
    #[error("bad frame magic {found:02x?}: not a quiver/1 frame")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },
    /// The frame version is not ours.
    #[error("unsupported frame version {version} (this build speaks {supported})")]
    UnsupportedVersion {
        /// Version in the frame.
        version: u8,
        /// Version this build speaks.
        supported: u8,
    },
    /// Unknown flag bits.
    #[error("unknown frame flags {flags:#04x}")]
    UnknownFlags {
        /// The flag byte.
        flags: u8,
    },
    /// A length over its named maximum.
    #[error("length {len} exceeds the maximum {max}")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// The maximum.
        max: u64,
    },
    /// Bytes after the one frame a stream may carry.
    #[error("{extra} bytes after the frame")]
    TrailingBytes {
        /// Extra byte count.
        extra: usize,
    },
    /// The request code is not in the table.
    #[error("unknown request code {code}")]
    UnknownCode {
        /// The raw code.
        code: u16,
    },
    /// The body did not decode as the expected struct.
    #[error("malformed body: {reason}")]
    Body {
        /// Decoder message.
        reason: String,
    },
    /// A declared count or length over a limit of the message model, refused before anything
    /// was allocated for it.
    #[error("{limit} is {len}: the maximum is {max}")]
    OverLimit {
        /// Which limit.
        limit: Limit,
        /// The declared count or length.
        len: u64,
        /// The limit's value.
        max: u64,
    },
}

/// The named limits a decoder checks declared counts and lengths against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Messages in one send batch ([`crate::requests::msg::BATCH_LEN_MAX`]).
    BatchLen,
    /// Keys on one message ([`crate::message::KEYS_MAX`]).
    KeysPerMsg,
    /// Bytes of one key ([`crate::message::KEY_BYTES_MAX`]).
    KeyBytes,
    /// Properties on one message ([`crate::message::PROPERTIES_MAX`]).
    PropertiesPerMsg,
    /// Bytes of one property name or value ([`crate::message::PROPERTY_BYTES_MAX`]).
    PropertyBytes,
    /// Bytes of a tag ([`crate::message::TAG_BYTES_MAX`]).
    TagBytes,
    /// Bytes of a topic name ([`crate::message::NAME_BYTES_MAX`]).
    NameBytes,
    /// Any other sequence in a body (messages of a pull, queues of a topic, topics of a
    /// broker, brokers of a route); each has its own named maximum.
    SeqLen,
}

impl Limit {
    /// The response status for a request refused by this limit.
    pub fn code(self) -> ErrorCode {
        match self {
            Limit::BatchLen => ErrorCode::BatchTooLarge,
            Limit::NameBytes => ErrorCode::InvalidName,
            _ => ErrorCode::InvalidArgument,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::BatchLen => "the number of messages in the batch",
            Limit::KeysPerMsg => "the number of keys of a message",
            Limit::KeyBytes => "the length of a key in bytes",
            Limit::PropertiesPerMsg => "the number of properties of a message",
            Limit::PropertyBytes => "the length of a property name or value in bytes",
            Limit::TagBytes => "the length of the tag in bytes",
            Limit::NameBytes => "the length of the topic name in bytes",
            Limit::SeqLen => "the length of a list in the body",
        })
    }
}

impl WireError {
    /// The response status for a request that failed to decode this way.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            WireError::UnknownCode { .. } => ErrorCode::UnknownRequest,
            WireError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::OverLimit { limit, .. } => limit.code(),
            _ => ErrorCode::BadFrame,
        }
    }
}

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $num:literal, $dotted:literal, $retry:literal;)*) => {
        /// Stable numeric response status. Numbers never change meaning; new ones are appended.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name = $num,)*
        }

        impl ErrorCode {
            /// Every code, for tables and tests.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$name,)*];

            /// Parses a raw status; unknown numbers are `None`.
            pub fn from_u16(raw: u16) -> Option<Self> {
                match raw {
                    $($num => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }

            /// The stable dotted name, e.g. `topic.not_found`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $dotted,)*
                }
            }

            /// Whether a client may retry the same request (possibly elsewhere).
            pub fn is_retryable(self) -> bool {
                match self {
                    $(ErrorCode::$name => $retry,)*
                }
            }
        }
    };
}

error_codes! {
    /// Success.
    Ok = 0, "ok", false;
    /// The frame or body did not decode.
    BadFrame = 1, "frame.bad", false;
    /// The frame version is not supported.
    UnsupportedVersion = 2, "frame.unsupported_version", false;
    /// The request code is unknown.
    UnknownRequest = 3, "frame.unknown_request", false;
    /// The frame is larger than the server accepts.
    FrameTooLarge = 4, "frame.too_large", false;
    /// An argument is invalid (the message says which and why).
    InvalidArgument = 10, "request.invalid_argument", false;
    /// A topic or group name breaks the naming rules.
    InvalidName = 11, "request.invalid_name", false;
    /// The caller lacks the role this request needs.
    PermissionDenied = 12, "request.permission_denied", false;
    /// The topic does not exist.
    TopicNotFound = 20, "topic.not_found", false;
    /// The topic already exists.
    TopicExists = 21, "topic.exists", false;
    /// The queue id is outside the topic's queues.
    QueueOutOfRange = 22, "queue.out_of_range", false;
    /// The offset is past the end of the queue.
    OffsetOutOfRange = 23, "queue.offset_out_of_range", false;
    /// The offset was removed by retention.
    OffsetRemoved = 24, "queue.offset_removed", false;
    /// A message is larger than the maximum.
    MessageTooLarge = 30, "msg.too_large", false;
    /// A batch is larger than the maximum.
    BatchTooLarge = 31, "msg.batch_too_large", false;
    /// The body checksum does not match.
    ChecksumMismatch = 32, "msg.checksum_mismatch", true;
    /// No stored message matches.
    MessageNotFound = 33, "msg.not_found", false;
    /// The message existed but was removed by retention.
    MessageRemoved = 34, "msg.removed", false;
    /// The store failed (disk error); the request had no effect.
    StoreError = 40, "store.error", true;
    /// The broker is busy or its queues are full; retry later.
    Busy = 41, "broker.busy", true;
    /// The broker is shutting down.
    ShuttingDown = 42, "broker.shutting_down", true;
    /// The request timed out inside the broker.
    Timeout = 43, "broker.timeout", true;
    /// An unexpected internal error.
    Internal = 44, "broker.internal", true;
    /// A broker registered under a name that a live broker at another address holds.
    BrokerConflict = 50, "namesrv.broker_conflict", false;
    /// A write or sync failed while the send was being stored: it may or may not be stored.
    /// Not retryable, because a retry could store it twice; query by id to find out.
    StoreOutcomeUnknown = 45, "store.outcome_unknown", false;
    /// The store refused the send without storing it: an earlier disk or index failure
    /// fenced it until restart. Safe to send elsewhere.
    StoreFenced = 46, "store.fenced", true;
    /// A group member subscribed differently from the group's live members; the message
    /// names both subscriptions.
    SubscriptionConflict = 60, "group.subscription_conflict", false;
    /// A read or offset commit under a queue lease the member no longer holds (stale epoch,
    /// lease ended): the member must stop reading that queue.
    GroupFenced = 61, "group.fenced", false;
    /// No such consumer group.
    GroupNotFound = 62, "group.not_found", false;
    /// No such function on this broker.
    FunctionNotFound = 70, "fn.not_found", false;
    /// The module is not a component the broker can run (bad bytes, a refused import); the
    /// message names what.
    InvalidModule = 71, "fn.invalid_module", false;
    /// The module is over the broker's module size limit.
    ModuleTooLarge = 72, "fn.module_too_large", false;
    /// A deploy or replay names a module the broker does not hold: upload it first.
    ModuleMissing = 73, "fn.module_missing", false;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u16)
    }
}

/// The body of every non-`Ok` response: a message that says what was wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable explanation.
    pub message: String,
}
