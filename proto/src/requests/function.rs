//! `fn.*` bodies: WASM consumer functions (5xx).
//!
//! A function is a component the broker runs as the consumer group `fn-<name>`. Its module
//! travels by `fn.upload` (chunks, resumable, keyed by the module's SHA-256) and is then
//! named by `fn.deploy`, `fn.replay`; a broker keeps the current and the previous version of
//! each function.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::decode::encoded_bytes_min;
use crate::requests::group::{GROUP_QUEUES_MAX, GroupQueue, StartFrom};

/// Most bytes of one upload chunk.
pub const UPLOAD_CHUNK_MAX: usize = 4 << 20;
/// Most `--config` entries of a function.
pub const FN_CONFIG_MAX: usize = 64;
/// Most functions one listing carries.
pub const FN_LIST_MAX: usize = 1 << 12;
/// Most log lines one `fn.logs` answer carries.
pub const FN_LOG_LINES_MAX: u32 = 10_000;
/// Most emits and failures a replay answer shows (the rest are counted).
pub const REPLAY_SHOWN_MAX: usize = 100;
/// Most messages one replay runs.
pub const REPLAY_MSGS_MAX: u32 = 100_000;
/// Bytes of an emitted body a replay shows.
pub const REPLAY_BODY_SHOWN: usize = 1024;
/// Prefix of the consumer group a function runs as (reserved: clients cannot join it).
pub const FN_GROUP_PREFIX: &str = "fn-";

/// A module's SHA-256.
pub type Sha256 = [u8; 32];

/// `fn.upload` (admin): one chunk of a module. Chunks go in order; the answer says how many
/// bytes the broker holds, so a sender resumes from there (and stops at once when the broker
/// has the module already).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnUpload {
    /// SHA-256 of the whole module.
    pub sha256: Sha256,
    /// Length of the whole module.
    pub total: u64,
    /// Where this chunk starts.
    pub offset: u64,
    /// The chunk (at most `UPLOAD_CHUNK_MAX` bytes).
    pub chunk: Bytes,
}

/// Answer to `fn.upload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnUploadResponse {
    /// Bytes of the module the broker holds: the next chunk starts here.
    pub received: u64,
    /// The module is stored whole and its hash checked.
    pub complete: bool,
}

/// Per-call limits of a function (0 = the broker's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnLimits {
    /// Fuel per message of a batch.
    pub fuel_per_message: u64,
    /// Wall-clock ms per message of a batch.
    pub deadline_ms_per_message: u64,
    /// Linear memory of one instance.
    pub memory_bytes: u64,
    /// Calls of the function running at once on this broker.
    pub instances: u32,
    /// Messages one handled message may emit.
    pub emits_per_message: u32,
    /// Largest emitted body.
    pub emit_bytes_max: u32,
}

/// What a function reads and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnSpec {
    /// Topic it consumes.
    pub topic: String,
    /// Tag expression: `*`, `A`, `A || B`; other messages never reach the function.
    pub tags: String,
    /// Settings the function reads with `config(key)`.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, FN_CONFIG_MAX>")]
    pub config: Vec<(String, String)>,
    /// Failed deliveries retried before a message is dead-lettered.
    pub max_retries: u32,
    /// Wait before a retry (ms) when the function does not name one.
    pub retry_delay_ms: u64,
    /// Most messages per call.
    pub batch_max: u32,
    /// How long a call waits for a fuller batch (ms; 0: call with what is there).
    pub batch_wait_ms: u32,
    /// Where a queue without a committed offset starts.
    pub start: StartFrom,
    /// Per-call limits.
    pub limits: FnLimits,
}

/// `fn.deploy` (admin): run an uploaded module as function `name`; a new version of a
/// deployed function takes over at the committed offsets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnDeploy {
    /// Function name (the group is `fn-<name>`).
    pub name: String,
    /// The uploaded module.
    pub sha256: Sha256,
    /// What it reads and how.
    pub spec: FnSpec,
}

/// Answer to `fn.deploy` and `fn.rollback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnDeployResponse {
    /// The version now running.
    pub version: u32,
    /// The module was compiled for this deploy (false: a stored artefact was reused).
    pub compiled: bool,
}

/// `fn.undeploy`, `fn.rollback` (admin) and `fn.describe`: one function by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnName {
    /// Function name.
    pub name: String,
}

/// `fn.list` (empty request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnList {}

/// One function in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnSummary {
    /// Function name.
    pub name: String,
    /// Running version.
    pub version: u32,
    /// Its module's SHA-256.
    pub sha256: Sha256,
    /// Topic it consumes.
    pub topic: String,
    /// Its tag expression.
    pub tags: String,
    /// `running` or `failed: <why>`.
    pub state: String,
    /// Messages not yet handled on this broker.
    pub lag: u64,
}

/// Answer to `fn.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnListResponse {
    /// Functions deployed on this broker.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, FN_LIST_MAX>")]
    pub functions: Vec<FnSummary>,
}

/// What a function did since its broker started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnCounters {
    /// Messages handled (each settled message once).
    pub handled: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Sent to the retry topic.
    pub retried: u64,
    /// Sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Calls that trapped, ran out of time, fuel or memory.
    pub traps: u64,
    /// Times its module was compiled on this broker (stored: a restart reuses the artefact).
    pub compiles: u64,
    /// Calls.
    pub calls: u64,
    /// Messages emitted.
    pub emitted: u64,
    /// Messages the tag filter kept from the function (never read from the log).
    pub filtered: u64,
}

/// Answer to `fn.describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnInfo {
    /// Function name.
    pub name: String,
    /// Running version.
    pub version: u32,
    /// Its module's SHA-256.
    pub sha256: Sha256,
    /// The version a rollback returns to, with its SHA-256.
    pub previous: Option<(u32, Sha256)>,
    /// What it reads and how.
    pub spec: FnSpec,
    /// `running` or `failed: <why>`.
    pub state: String,
    /// When this version was deployed (ms since the Unix epoch).
    pub deployed_ms: u64,
    /// Its group's queues on this broker: offsets and lag.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_QUEUES_MAX>")]
    pub queues: Vec<GroupQueue>,
    /// Counters since the broker started.
    pub counters: FnCounters,
    /// Handler time per message, 50th percentile (µs; 0 before any call).
    pub handler_p50_us: u64,
    /// Handler time per message, 99th percentile (µs).
    pub handler_p99_us: u64,
    /// The last failed call, in words.
    pub last_error: Option<String>,
}

/// `fn.logs`: a function's log lines after `after` (a sequence number), waiting up to
/// `wait_ms` for one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnLogs {
    /// Function name.
    pub name: String,
    /// Lines with a larger sequence number (0: from the oldest kept).
    pub after: u64,
    /// At most this many lines.
    pub max: u32,
    /// Long-poll.
    pub wait_ms: u32,
}

/// One log line of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnLogLine {
    /// Sequence number (rises by one per line on this broker).
    pub seq: u64,
    /// When the call that logged it ended (ms since the Unix epoch).
    pub time_ms: u64,
    /// `trace` … `error`, `stdout`, `stderr`, or `broker` for the host's own lines.
    pub level: String,
    /// The line.
    pub text: String,
    /// Version that logged it.
    pub version: u32,
}

/// Answer to `fn.logs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnLogsResponse {
    /// Lines, oldest first.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { FN_LOG_LINES_MAX as usize }>")]
    pub lines: Vec<FnLogLine>,
    /// Lines no longer kept (the log is a bounded ring) or over a call's limit.
    pub dropped: u64,
}

/// Where a replay starts in each queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplayFrom {
    /// This offset of each queue (clamped to what is stored).
    Offset(u64),
    /// The first message stored at or after this time (ms since the Unix epoch).
    Time(u64),
}

/// `fn.replay` (admin): run an uploaded module over stored messages, read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnReplay {
    /// The uploaded module.
    pub sha256: Sha256,
    /// Topic to read.
    pub topic: String,
    /// One queue, or every queue of this broker.
    pub queue_id: Option<u32>,
    /// Tag expression.
    pub tags: String,
    /// Where to start.
    pub from: ReplayFrom,
    /// Most messages in all.
    pub limit: u32,
    /// Settings the function reads.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, FN_CONFIG_MAX>")]
    pub config: Vec<(String, String)>,
}

/// An emit a replay would have made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayEmit {
    /// Topic.
    pub topic: String,
    /// Tag.
    pub tag: Option<String>,
    /// Keys.
    #[serde(deserialize_with = "crate::decode::keys")]
    pub keys: Vec<String>,
    /// The body as text (invalid UTF-8 replaced), cut to `REPLAY_BODY_SHOWN` bytes.
    pub body: String,
    /// The body's length.
    pub body_len: u64,
}

/// A message a replay could not settle normally: dead-lettered, retried or failed alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayFailure {
    /// Queue.
    pub queue_id: u32,
    /// Offset.
    pub offset: u64,
    /// `retry`, `dead-letter: <reason>` or `failed: <why>`.
    pub outcome: String,
}

/// Answer to `fn.replay`: what the function would have done; nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnReplayResponse {
    /// Messages run through it.
    pub handled: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Asked to be retried.
    pub retried: u64,
    /// Dead-lettered by the function.
    pub dead_lettered: u64,
    /// Failed alone (trap, time, fuel, memory): a deployed function would retry them.
    pub failed: u64,
    /// Messages the tag filter kept from it.
    pub filtered: u64,
    /// Emits it would have made, in all.
    pub emits_total: u64,
    /// The first emits.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, REPLAY_SHOWN_MAX>")]
    pub emits: Vec<ReplayEmit>,
    /// The first messages not acknowledged.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, REPLAY_SHOWN_MAX>")]
    pub failures: Vec<ReplayFailure>,
    /// Log lines of the replay (the first ones).
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { FN_LOG_LINES_MAX as usize }>")]
    pub logs: Vec<FnLogLine>,
}

encoded_bytes_min! {
    // name, version, sha256 (32 bytes), topic, tags, state, lag.
    FnSummary = 38;
    // seq, time_ms, level, text, version.
    FnLogLine = 5;
    // topic, tag, keys, body, body_len.
    ReplayEmit = 5;
    // queue_id, offset, outcome.
    ReplayFailure = 3;
}
